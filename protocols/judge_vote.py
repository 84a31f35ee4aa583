"""The judge alone with debate's call budget: a majority vote over readings of the passage in pieces.

A compute-matched baseline (Debate-or-Vote, 2025: majority voting explains most multi-agent debate
gains). Debate spends 16 calls per question on the embedded default; the judge alone spends 2 (one
per option order). Here the judge reads the passage `readings` times, each time a different random
share of its sentences (in passage order), and the question's verdict is the majority of the
readings' verdicts: with the default 8 readings and a judge that reads both orders, 16 calls, all of
them the judge's, no arguer at all. A reading's verdict is its judgment's most probable option (an
exact tie splits its vote); the vote's probabilities are the shares of votes, so a 5-3 vote is 0.625.

Unlike `direct+passage` (one reading of the whole passage: the ceiling) no reading sees everything,
so the vote measures how far spending the budget on the judge alone gets without any argument.
The readings' judgments are kept: each reading's orders (with their call nodes) inside the vote's
judgment, and each reading's own verdict in its transcript's `info`.
"""

from __future__ import annotations

import itertools
import math
import random

from pydantic import Field

from oversight.engine import Context
from oversight.plugins import Protocol
from oversight.quotes import sentences
from oversight.types import Judgment, Question, Transcript


class JudgeVote(Protocol):
    name: str = "judge_vote"
    readings: int = Field(default=8, ge=1, description="how many times the judge reads the passage")
    share: float = Field(default=0.5, gt=0.0, le=1.0, description="the fraction of the passage's sentences "
                                                                 "one reading sees (rounded up)")
    seed: int = Field(default=0, description="draws which sentences each reading sees (per question id)")

    async def run(self, question: Question, ctx: Context) -> list[Transcript]:
        if not question.context:
            raise ValueError(f"question {question.id}: judge_vote reads the hidden passage in pieces, and this "
                             f"question has none (a task with passages: task=hidden_passage)")
        parts = sentences(question.context)
        return [Transcript(protocol=self.name, passage=" ".join(parts[i] for i in piece), episode=f"reading-{k}",
                           info={"sentences": list(piece), "of": len(parts)})
                for k, piece in enumerate(self.pieces(question.id, len(parts)))]

    def pieces(self, question_id: str, n: int) -> list[tuple[int, ...]]:
        """`readings` distinct sets of ceil(share * n) sentence indices (every set there is, if fewer)."""
        width = max(1, math.ceil(self.share * n))
        if math.comb(n, width) <= self.readings:
            return list(itertools.combinations(range(n), width))
        rng = random.Random(f"judge_vote:{self.seed}:{question_id}")
        chosen: list[tuple[int, ...]] = []
        while len(chosen) < self.readings:
            piece = tuple(sorted(rng.sample(range(n), width)))
            if piece not in chosen:
                chosen.append(piece)
        return chosen

    def combine(self, question: Question, transcripts: list[Transcript], judgments: list[Judgment]) -> list[Judgment]:
        """One judgment: the majority of the readings' verdicts. Left as they are while any reading
        waits for a person or has no verdict (nothing to vote on yet)."""
        if not judgments or any(j.pending or j.p is None for j in judgments):
            return judgments
        n = len(question.options)
        for t, j in zip(transcripts, judgments):
            t.info["verdict"] = {"judge": j.judge, "p": j.p, "chosen": j.chosen, "correct": j.correct}
        p = vote_shares([j.p for j in judgments], n)
        chosen, correct = _score(p, question.correct)
        orders = [o for j in judgments for o in j.orders]
        flip = None
        by_order: dict[tuple[int, ...], list[list[float]]] = {}
        for o in orders:
            if o.p:
                by_order.setdefault(tuple(o.order), []).append(o.p)
        if len(by_order) > 1:
            picks = {_score(vote_shares(ps, n), question.correct)[0] for ps in by_order.values()}
            flip = len(picks) > 1
        first = judgments[0]
        return [Judgment(judge=first.judge, source=first.source, episode="vote", p=p, chosen=chosen, correct=correct,
                         parse_failed=any(j.parse_failed for j in judgments), position_flip=flip, orders=orders,
                         seconds=sum(j.seconds for j in judgments), judge_id=first.judge_id)]


def vote_shares(ps: list[list[float]], n: int) -> list[float]:
    """Each reading votes for its most probable option (an exact tie splits the vote); the shares."""
    votes = [0.0] * n
    for p in ps:
        top = max(p)
        best = [i for i, x in enumerate(p) if abs(x - top) < 1e-12]
        for i in best:
            votes[i] += 1.0 / len(best)
    return [v / len(ps) for v in votes]


def _score(p: list[float], correct: int) -> tuple[int | None, float]:
    """(chosen, correctness) as every judge scores: an exact tie between the top options is None and
    counts 1/k when the correct option is among the k."""
    top = max(p)
    best = [i for i, x in enumerate(p) if abs(x - top) < 1e-12]
    if len(best) == 1:
        return best[0], float(best[0] == correct)
    return None, (1.0 / len(best) if correct in best else 0.0)
