"""Train / held-out splits drawn from a seed: one recipe for every split in the project.

`seeded_order(keys, seed)` sorts keys by sha256 of `"{seed}|{key}"`: the same order on every
machine and in every run, independent of the order the keys came in, and a different one per seed.
`Split` is the task that keeps one part of another task's questions in that order, so a model is
evaluated on questions it was never trained on (trainers/debate_dpo.py; trainers/rrm.py splits the
same way).
"""

from __future__ import annotations

import hashlib
from typing import Callable, Iterable, Literal, TypeVar

from pydantic import Field

from oversight.errors import ConfigError
from oversight.plugins import Task
from oversight.types import Question

T = TypeVar("T")


def seeded_order(items: Iterable[T], seed: int, key: Callable[[T], str] = str) -> list[T]:
    """`items` in the order drawn from `seed` (sha256 of "seed|key")."""
    return sorted(items, key=lambda item: hashlib.sha256(f"{seed}|{key(item)}".encode()).hexdigest())


def split_questions(questions: list[Question], n_train: int, seed: int) -> tuple[list[Question], list[Question]]:
    """The first `n_train` questions in the seeded order, and the rest."""
    order = seeded_order(questions, seed, key=lambda q: q.id)
    return order[:n_train], order[n_train:]


class Split(Task):
    """The `part` ("train" or "heldout") of `task`'s questions: the first `n_train` in an order drawn
    from `seed` are the training part, the rest held out."""

    name: str = "split"
    task: Task
    part: Literal["train", "heldout"]
    n_train: int = Field(ge=1)
    n_heldout: int | None = Field(default=None, ge=1, description="keep at most this many held-out questions")
    seed: int = 0

    def questions(self) -> list[Question]:
        questions = self.task.questions()
        if self.n_train >= len(questions):
            raise ConfigError(f"train.n_train={self.n_train} leaves no held-out questions of the task's "
                              f"{len(questions)} (task.n)")
        train, held = split_questions(questions, self.n_train, self.seed)
        return train if self.part == "train" else held[:self.n_heldout]
