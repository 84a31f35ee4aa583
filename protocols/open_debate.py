"""Open debate (Kenton et al. 2024): the protagonist picks the side it believes; the antagonist
argues the other.

The protagonist reads the passage and chooses the option it finds most likely (the same `belief`
call as open consultancy, protocols/open_consultancy.py), then the debate runs as usual, the
protagonist on its chosen side. With sequential turns the protagonist opens. Each transcript's
`info` records `chosen_side`, `chose_correctly` and `belief`; `extra_metrics` gives how often the
protagonist chose correctly, judge accuracy when it did and did not, and how often the judge sided
with it.
"""

from __future__ import annotations

from typing import Any

from oversight.engine import Context
from oversight.types import Question, Record, Transcript

from protocols.debate import Debate
from protocols.open_consultancy import choice_info, choose_side, open_metrics


class OpenDebate(Debate):
    name: str = "open_debate"

    async def run(self, question: Question, ctx: Context) -> list[Transcript]:
        if len(question.options) != 2:
            raise ValueError(f"question {question.id}: debate needs exactly 2 options, got {len(question.options)}")
        side, belief = await choose_side(ctx, "debater", question)
        first = None if self.turns == "simultaneous" else side
        transcript = await self.debate(question, ctx, first, "open")
        transcript.info.update(choice_info(question, side, belief))
        return [transcript]

    def extra_metrics(self, records: list[Record]) -> dict[str, Any]:
        return open_metrics(records)
