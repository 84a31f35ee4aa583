"""Direct judging: the judge alone, the floor and the ceiling of every comparison.

`passage: false` is the naive judge (no help: the floor); `passage: true` shows the judge the hidden
passage (the expert ceiling). Makes no model calls itself: the judge's calls are the only ones.
"""

from __future__ import annotations

from oversight.engine import Context
from oversight.plugins import Protocol
from oversight.types import Question, Transcript


class Direct(Protocol):
    name: str = "direct"
    passage: bool = False

    async def run(self, question: Question, ctx: Context) -> list[Transcript]:
        return [Transcript(protocol=self.name, passage=question.context if self.passage else None)]
