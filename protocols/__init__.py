"""Oversight protocols: one module per protocol, each turning a Question into transcripts.

A protocol module defines a pydantic `Config` and `async def run(question, ctx, cfg) ->
list[Transcript]` (one transcript per episode: consultancy has one per assigned side), and
optionally `extra_metrics(records, cfg) -> dict` for protocol-specific metrics in summary.json. Model calls go
through `ctx`, so each becomes a node of the question's call graph and is batched across questions
by the engine. A new protocol is one new module here plus one YAML file in conf/protocol/.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Awaitable, Callable

from pydantic import BaseModel, ValidationError

from oversight.engine import Context
from oversight.errors import ConfigError
from oversight.types import Question, Transcript


@dataclass
class Protocol:
    name: str  # the label used in records and comparisons (e.g. "direct+passage")
    cfg: BaseModel
    _run: Callable[[Question, Context, Any], Awaitable[list[Transcript]]]
    #: optional `extra_metrics(records, cfg) -> dict`, merged into summary.json under "extra"
    extra_metrics: Callable[[list, Any], dict] | None = None

    async def run(self, question: Question, ctx: Context) -> list[Transcript]:
        return await self._run(question, ctx, self.cfg)


def build_protocol(cfg: dict[str, Any]) -> Protocol:
    module_name = cfg.get("module") or f"protocols.{cfg.get('name')}"
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise ConfigError(f"protocol.module={module_name!r} cannot be imported: {exc}") from exc
    fields = {k: v for k, v in cfg.items() if k not in ("module", "label")}
    try:
        parsed = module.Config(**fields)
    except ValidationError as exc:
        problems = "; ".join(f"protocol.{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise ConfigError(problems) from exc
    return Protocol(name=cfg.get("label") or cfg["name"], cfg=parsed, _run=module.run,
                    extra_metrics=getattr(module, "extra_metrics", None))
