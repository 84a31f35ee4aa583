"""A reward model as a head on frozen features: logistic regression (scikit-learn) trained on the
labels some judge gave, never on ground truth unless the caller passes ground truth on purpose
(the ceiling of a weak-to-strong comparison).

When the labels hold only one class (a judge that calls everything wrong), there is nothing to
separate: the head is `degenerate` and returns that class's rate for every input, and says so.
"""

from __future__ import annotations

import json
import math
import pickle
from pathlib import Path
from typing import Any, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field


class HeadConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    C: float | None = Field(default=None, gt=0, description="inverse L2 regularisation strength; null: chosen "
                            "by cross-validation on the training labels (the judge's, never the ground truth)")
    Cs: list[float] = Field(default_factory=lambda: [0.001, 0.01, 0.1, 1.0, 10.0], description="the grid for null C")
    folds: int = Field(default=5, ge=2)
    max_iter: int = Field(default=2000, ge=10)
    class_weight: str | None = Field(default="balanced", description="'balanced' or null")


class RewardHead:
    def __init__(self, cfg: HeadConfig | None = None):
        self.cfg = cfg or HeadConfig()
        self.pipeline: Any = None
        self.constant: float | None = None
        self.C: float | None = None
        self.n_train = 0
        self.label_rate = float("nan")

    @property
    def degenerate(self) -> bool:
        return self.constant is not None

    def _pipeline(self, C: float) -> Any:
        """Standardised features into an L2 logistic regression."""
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        return make_pipeline(StandardScaler(), LogisticRegression(C=C, max_iter=self.cfg.max_iter,
                                                                  class_weight=self.cfg.class_weight))

    def fit(self, features: np.ndarray, labels: Sequence[bool]) -> "RewardHead":
        y = np.asarray(labels, dtype=int)
        if len(y) != len(features):
            raise ValueError(f"{len(features)} feature rows but {len(y)} labels")
        if len(y) == 0:
            raise ValueError("no training rows")
        self.n_train, self.label_rate = len(y), float(y.mean())
        if len(set(y.tolist())) < 2:
            self.constant, self.pipeline = float(y[0]), None
            return self
        self.constant = None
        self.C = self.cfg.C if self.cfg.C is not None else self._cross_validated_C(features, y)
        self.pipeline = self._pipeline(self.C)
        self.pipeline.fit(np.asarray(features, dtype=np.float64), y)
        return self

    def _cross_validated_C(self, features: np.ndarray, y: np.ndarray) -> float:
        """The C of the grid with the best stratified k-fold log-loss on the training labels (the
        smallest class bounds k; with fewer than 2 of a class per fold, the middle of the grid)."""
        from sklearn.model_selection import StratifiedKFold, cross_val_score

        folds = min(self.cfg.folds, int(np.bincount(y).min()))
        if folds < 2:
            return sorted(self.cfg.Cs)[len(self.cfg.Cs) // 2]
        split = StratifiedKFold(n_splits=folds, shuffle=True, random_state=0)
        x = np.asarray(features, dtype=np.float64)
        scores = {C: cross_val_score(self._pipeline(C), x, y, cv=split, scoring="neg_log_loss").mean()
                  for C in self.cfg.Cs}
        return max(scores, key=scores.get)

    def reward(self, features: np.ndarray) -> np.ndarray:
        """Probability that each row is good (label 1)."""
        if self.constant is not None:
            return np.full(len(features), self.constant)
        if self.pipeline is None:
            raise RuntimeError("RewardHead.reward before fit")
        return self.pipeline.predict_proba(np.asarray(features, dtype=np.float64))[:, 1]

    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with (directory / "head.pkl").open("wb") as handle:
            pickle.dump({"cfg": self.cfg.model_dump(), "pipeline": self.pipeline, "constant": self.constant,
                         "C": self.C, "n_train": self.n_train, "label_rate": self.label_rate}, handle)
        (directory / "head.json").write_text(json.dumps({
            "config": self.cfg.model_dump(), "degenerate": self.degenerate, "constant": self.constant, "C": self.C,
            "n_train": self.n_train, "label_rate": self.label_rate}, indent=2))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "RewardHead":
        with (Path(directory) / "head.pkl").open("rb") as handle:
            state = pickle.load(handle)
        head = cls(HeadConfig(**state["cfg"]))
        head.pipeline, head.constant = state["pipeline"], state["constant"]
        head.n_train, head.label_rate, head.C = state["n_train"], state["label_rate"], state.get("C")
        return head


def performance_gap_recovered(weak: float, floor: float, ceiling: float, min_gap: float = 1e-9) -> float:
    """Burns et al. (2023): (weak - floor) / (ceiling - floor); NaN when the ceiling is not above the
    floor by at least `min_gap` (a smaller gap makes the ratio noise: 0.025 apart gives PGR 4).
    Accuracies are fractions of whole items, so a gap of exactly `min_gap` (8 of 80) counts, whatever
    the rounding of the subtraction."""
    gap = ceiling - floor
    return (weak - floor) / gap if gap >= min_gap - 1e-9 else float("nan")


def pgr_floor(floor_head: float | None, majority: float) -> float:
    """The floor PGR is measured from: the better of the head trained on the weak supervisor's labels
    and the majority-class constant, so that a constant can never sit below chance (a judge that
    calls every item wrong trains a head whose accuracy is the minority class's share)."""
    if floor_head is None or math.isnan(floor_head):
        return majority
    return max(floor_head, majority)


def best_of_n_accuracy(rewards: Sequence[Sequence[float]], good: Sequence[Sequence[bool]], n: int) -> float:
    """Policy accuracy of best-of-n: for each item, among its first n candidates pick the highest
    reward (ties: the earliest), and score whether it is good."""
    hits = []
    for r, g in zip(rewards, good):
        r, g = list(r)[:n], list(g)[:n]
        if len(r) < n:
            raise ValueError(f"best-of-{n} needs {n} candidates per item, got {len(r)}")
        hits.append(bool(g[int(np.argmax(r))]))
    return sum(hits) / len(hits) if hits else float("nan")
