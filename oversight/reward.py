"""Reward-model metrics: how well a judge's reward (its probability that an answer is correct)
separates correct answers from wrong ones, and how calibrated it is.

A reward question is a two-option Question whose option `metadata["reward_option"]` (default 0)
means "the answer is correct"; a judgment's reward is its probability of that option, and the label
is whether that option is the ground truth. Used by protocols.rrm's extra_metrics; usable for any
protocol run on reward questions (e.g. `direct`, which is RRM level 0).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

from oversight.metrics import accuracy_ci, auroc
from oversight.types import Record


def rewards_and_labels(records: Sequence[Record], judge: str | None = None) -> tuple[list[float], list[bool]]:
    """One (reward, answer is correct) pair per finished judgment."""
    rewards, labels = [], []
    for record in records:
        good = int(record.metadata.get("reward_option", 0))
        for j in record.judgments:
            if j.p and not j.pending and (judge is None or j.judge == judge):
                rewards.append(j.p[good])
                labels.append(record.correct_index == good)
    return rewards, labels


def reward_metrics(rewards: Sequence[float], labels: Sequence[bool], bins: int = 10) -> dict[str, Any]:
    """Reward accuracy (right side of 0.5, ties half) with a 95% CI, AUROC, ECE, Brier, and the mean
    reward of correct and of wrong answers."""
    hits = [0.5 if r == 0.5 else float((r > 0.5) == bool(y)) for r, y in zip(rewards, labels)]
    low, high = accuracy_ci(hits)
    right = [r for r, y in zip(rewards, labels) if y]
    wrong = [r for r, y in zip(rewards, labels) if not y]
    return {
        "n_rewards": len(rewards),
        "reward_accuracy": sum(hits) / len(hits) if hits else math.nan,
        "reward_accuracy_ci": [low, high],
        "auroc": auroc(rewards, labels) if rewards else math.nan,
        "ece": reward_ece(rewards, labels, bins),
        "brier": sum((r - float(y)) ** 2 for r, y in zip(rewards, labels)) / len(rewards) if rewards else math.nan,
        "mean_reward_correct": sum(right) / len(right) if right else math.nan,
        "mean_reward_wrong": sum(wrong) / len(wrong) if wrong else math.nan,
    }


def reward_ece(rewards: Sequence[float], labels: Sequence[bool], bins: int = 10) -> float:
    """Expected calibration error of the reward as a probability that the answer is correct:
    rewards binned into `bins` equal-width bins, |fraction correct - mean reward| weighted by bin size."""
    if not rewards:
        return math.nan
    buckets: dict[int, list[tuple[float, float]]] = {}
    for r, y in zip(rewards, labels):
        buckets.setdefault(min(int(r * bins), bins - 1), []).append((r, float(y)))
    return sum(len(b) / len(rewards) * abs(sum(y for _, y in b) / len(b) - sum(r for r, _ in b) / len(b))
               for b in buckets.values())
