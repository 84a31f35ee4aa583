"""Consultancy (Michael et al. 2023; Khan et al. 2024): one consultant argues an assigned side.

Every question is run twice, once with the consultant assigned the correct answer and once the
incorrect one, so accuracy is averaged over both (the standard 50/50 design, paired per question).
The consultant sees the passage; the judge sees only the consultant's turns. How a turn is made is
the `strategy` (protocols/strategies/).

`interactive: true` (protocols/interactive.py): after every round but the last, the judge writes a
question to the consultant (one `generate` call of role `judge`); the next turn sees it and answers
it, and the verdict reads the whole exchange. Off, nothing changes.
"""

from __future__ import annotations

from pydantic import Field

from oversight.engine import Context
from oversight.plugins import Protocol, TurnRequest, TurnStrategy
from oversight.types import Question, Transcript, Turn

from protocols.interactive import JudgeQuestions


class Consultancy(Protocol):
    name: str = "consultancy"
    rounds: int = Field(default=1, ge=1)
    strategy: TurnStrategy
    speaker: str = Field(default="Consultant", description="the consultant's name as the judge reads it")
    interactive: bool = Field(default=False, description="the judge asks a question between rounds")
    judge_questions: JudgeQuestions = Field(default_factory=JudgeQuestions,
                                            description="how the judge asks (interactive only)")

    async def run(self, question: Question, ctx: Context) -> list[Transcript]:
        transcripts = []
        for side in range(len(question.options)):
            episode = "correct" if side == question.correct else f"incorrect-{side}"
            turns = await self.argue(question, ctx, side, episode)
            transcripts.append(Transcript(protocol=self.name, turns=turns, assigned_side=side, episode=episode))
        return transcripts

    async def argue(self, question: Question, ctx: Context, side: int, episode: str = "main") -> list[Turn]:
        """The consultant's turns for `side`, each seeing the ones before it (and, interactive, the
        judge's question opening each round after the first)."""
        turns: list[Turn] = []
        for r in range(self.rounds):
            if self.interactive and r > 0:
                turns.append(await self.judge_questions.ask(ctx, question, turns, r, episode, "consultant"))
            request = TurnRequest(question=question, side=side, role="consultant", label=self.speaker,
                                  history=tuple(turns), round=r)
            turns.append(await self.strategy.turn(ctx, request))
        return turns
