"""Consultancy (Michael et al. 2023; Khan et al. 2024): one consultant argues an assigned side.

Every question is run twice, once with the consultant assigned the correct answer and once the
incorrect one, so accuracy is averaged over both (the standard 50/50 design, paired per question).
The consultant sees the passage; the judge sees only the consultant's turns.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from oversight.arguments import ArgumentConfig, argue
from oversight.engine import Context
from oversight.types import Question, Transcript, Turn


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "consultancy"
    rounds: int = Field(default=1, ge=1)
    argument: ArgumentConfig = ArgumentConfig()


async def run(question: Question, ctx: Context, cfg: Config) -> list[Transcript]:
    transcripts = []
    for side in range(len(question.options)):
        turns: list[Turn] = []
        for r in range(cfg.rounds):
            turns.append(await argue(ctx, "consultant", question, side, cfg.argument, turns, r))
        episode = "correct" if side == question.correct else f"incorrect-{side}"
        transcripts.append(Transcript(protocol=cfg.name, turns=turns, assigned_side=side, episode=episode))
    return transcripts
