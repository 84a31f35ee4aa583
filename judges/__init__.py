"""Judges: read the judge-visible transcript and return per-option probabilities.

A judge config names its module (`module: judges.model`) and kind; `build_judge(cfg)` returns an
object with `async judge(question, transcript, ctx) -> Judgment`. Weak-model judges live in
`judges.model`.
"""

from __future__ import annotations

import importlib
from typing import Any, Protocol

from oversight.engine import Context
from oversight.errors import ConfigError
from oversight.types import Judgment, Question, Transcript


class Judge(Protocol):
    name: str

    async def judge(self, question: Question, transcript: Transcript, ctx: Context) -> Judgment: ...


def build_judge(cfg: dict[str, Any]) -> Judge:
    module_name = cfg.get("module", "judges.model")
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"judge.module={module_name!r} cannot be imported: {exc}") from exc
    return module.build(cfg)
