"""`as_role`: the inner strategy's turn, spoken by the model bound to another role, so two players
of one cross-play tournament can be different models (a trained adapter and its base model;
trainers/debate_dpo.py)."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from oversight.plugins import TurnRequest, TurnStrategy
from oversight.types import Turn


class AsRole(TurnStrategy):
    """The judge still reads the protocol's label (e.g. "Debater"), so it cannot tell the players
    apart by name."""

    role: str = Field(description="model role, bound to a model in `roles`")
    inner: TurnStrategy

    async def turn(self, ctx: Any, req: TurnRequest) -> Turn:
        return await self.inner.turn(ctx, req.model_copy(update={"role": self.role}))
