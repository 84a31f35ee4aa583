"""Debate (Irving et al. 2018; Michael et al. 2023; Khan et al. 2024): two debaters, one per option.

Each debater sees the passage and argues for its option for `rounds` rounds. Turns are
`simultaneous` (each round, both see only earlier rounds) or `sequential` (the second debater also
sees the first's argument of the same round). The judge sees all turns, quotes marked verified or
unverified, but not the passage.
"""

from __future__ import annotations

import asyncio
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from oversight.arguments import ArgumentConfig, argue
from oversight.engine import Context
from oversight.types import Question, Transcript, Turn


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "debate"
    rounds: int = Field(default=1, ge=1)
    turns: Literal["simultaneous", "sequential"] = "simultaneous"
    argument: ArgumentConfig = ArgumentConfig()


async def run(question: Question, ctx: Context, cfg: Config) -> list[Transcript]:
    if len(question.options) != 2:
        raise ValueError(f"question {question.id}: debate needs exactly 2 options, got {len(question.options)}")
    turns: list[Turn] = []
    for r in range(cfg.rounds):
        if cfg.turns == "simultaneous":
            seen = list(turns)
            turns += await asyncio.gather(
                *(argue(ctx, "debater", question, side, cfg.argument, seen, r, 1 - side) for side in (0, 1))
            )
        else:
            for side in (0, 1):
                turns.append(await argue(ctx, "debater", question, side, cfg.argument, list(turns), r, 1 - side))
    return [Transcript(protocol=cfg.name, turns=turns)]
