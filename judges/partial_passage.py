"""A judge that sees `k` of the hidden passage's sentences: a judge-strength axis (capability-gap
curves, oversight.app.gap). The `inner` judge (a model judge) reads the transcript with those k
sentences as its passage; k = 0 is the inner judge as it is (no passage), and a k at least the
passage's length shows it all (as direct+passage does). Which k sentences: a fixed sample per
question (seeded by its id, kept in passage order), so every transcript of a question, every run and
every machine show the judge the same evidence, and a larger k shows a superset of a smaller one.
"""

from __future__ import annotations

import hashlib
import random

from pydantic import Field

from oversight.engine import Context
from oversight.plugins import Judge
from oversight.quotes import sentences
from oversight.types import Judgment, Question, Transcript


class PartialPassageJudge(Judge):
    name: str
    k: int = Field(ge=0, description="passage sentences the judge may see (0: none)")
    inner: Judge = Field(description="the judge that reads the transcript and the k sentences")

    async def judge(self, question: Question, transcript: Transcript, ctx: Context) -> Judgment:
        shown = transcript
        if self.k and question.context:
            shown = transcript.model_copy(update={"passage": " ".join(visible_sentences(question, self.k))})
        judgment = await self.inner.judge(question, shown, ctx)
        return judgment.model_copy(update={"judge": self.name})

    def finalize(self, judgments: list[Judgment]) -> None:
        self.inner.finalize(judgments)


def visible_sentences(question: Question, k: int) -> list[str]:
    """The first k of a fixed random order of the passage's sentences, shown in passage order."""
    pool = sentences(question.context or "")
    order = list(range(len(pool)))
    random.Random(hashlib.sha256(question.id.encode()).digest()).shuffle(order)
    return [pool[i] for i in sorted(order[:k])]
