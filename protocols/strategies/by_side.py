"""`by_side`: each side of a debate makes its turns with its own strategy, so one side can be a
person (as_role on a role bound to the `human` model, with `free`: they write the turn) and the
other a model (quotes, free, best_of_n, ...). The judge reads the protocol's label for both, so it
cannot tell who is who by name."""

from __future__ import annotations

from pydantic import Field

from oversight.engine import Context
from oversight.plugins import TurnRequest, TurnStrategy
from oversight.types import Turn


class BySide(TurnStrategy):
    sides: list[TurnStrategy] = Field(min_length=1, description="the strategy of side 0, side 1, ...")

    async def turn(self, ctx: Context, req: TurnRequest) -> Turn:
        if req.side >= len(self.sides):
            raise ValueError(f"question {req.question.id}: by_side has strategies for {len(self.sides)} sides, "
                             f"asked for side {req.side}")
        return await self.sides[req.side].turn(ctx, req)
