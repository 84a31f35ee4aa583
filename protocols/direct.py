"""Direct judging: the judge alone, the floor and the ceiling of every comparison.

`passage: false` is the naive judge (no help: the floor); `passage: true` shows the judge the hidden
passage (the expert ceiling). Makes no model calls itself: the judge's calls are the only ones.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from oversight.engine import Context
from oversight.types import Question, Transcript


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = "direct"
    passage: bool = False


async def run(question: Question, ctx: Context, cfg: Config) -> list[Transcript]:
    return [Transcript(protocol=cfg.name, passage=question.context if cfg.passage else None)]
