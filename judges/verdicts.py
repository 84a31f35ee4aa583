"""Turning per-order views into one Judgment: shared by model, human and mixed judges."""

from __future__ import annotations

from typing import Sequence

from oversight.types import Judgment, OrderJudgment, Question, Transcript


def presentation_orders(n_options: int, both_orders: bool) -> list[list[int]]:
    identity = list(range(n_options))
    return [identity, identity[::-1]] if both_orders and n_options > 1 else [identity]


def score(p: Sequence[float], correct: int) -> tuple[int | None, float]:
    """(chosen option, correctness): an exact tie between the top options scores 0.5 if the
    correct option is among them, chosen=None."""
    top = max(p)
    best = [i for i, x in enumerate(p) if abs(x - top) < 1e-12]
    if len(best) == 1:
        return best[0], float(best[0] == correct)
    return None, (1.0 / len(best) if correct in best else 0.0)


def combine_orders(name: str, source: str, question: Question, transcript: Transcript,
                   views: list[OrderJudgment]) -> Judgment:
    usable = [v for v in views if not v.parse_failed]
    judgment = Judgment(judge=name, source=source, episode=transcript.episode, orders=views,
                        parse_failed=len(usable) < len(views))
    if not usable:  # every order failed to parse: no verdict, counted wrong, never right
        judgment.correct = 0.0
        return judgment
    n = len(question.options)
    p = [sum(v.p[i] for v in usable) / len(usable) for i in range(n)]
    judgment.p = p
    judgment.chosen, judgment.correct = score(p, question.correct)
    if len(usable) > 1:
        picks = [score(v.p, question.correct)[0] for v in usable]
        judgment.position_flip = len(set(picks)) > 1
    return judgment
