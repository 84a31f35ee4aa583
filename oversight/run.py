"""One job: a task, a protocol, a judge, models -> records.jsonl + summary.json in `out_dir`.

`run_job` takes a plain dict config (what Hydra composes) so it can be called from the CLI, from
tests and from notebooks alike.
"""

from __future__ import annotations

import asyncio
import importlib
import time
from pathlib import Path
from typing import Any

from oversight.backends import get_backend
from oversight.cache import CallCache
from oversight.engine import Context, Engine
from oversight.errors import ConfigError
from oversight.graph import call_costs
from oversight.metrics import summarise
from oversight.models import cache_root
from oversight.records import write_records, write_summary
from oversight.types import Question, Record


def load_task(task_cfg: dict[str, Any]) -> list[Question]:
    target = task_cfg.get("loader")
    if not target or ":" not in str(target):
        raise ConfigError(f"task.loader must be 'module:function', got {target!r}")
    module_name, fn_name = str(target).split(":")
    try:
        loader = getattr(importlib.import_module(module_name), fn_name)
    except (ModuleNotFoundError, AttributeError) as exc:
        raise ConfigError(f"task.loader={target!r} cannot be loaded: {exc}") from exc
    kwargs = {k: v for k, v in task_cfg.items() if k not in ("name", "loader", "family")}
    try:
        return loader(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"task ({task_cfg.get('name')}): {exc}") from exc


def build_engine(cfg: dict[str, Any], on_progress=None) -> Engine:
    backends = {"default": get_backend(cfg["model"], cfg["backend"])}
    for key, model_cfg in (cfg.get("models") or {}).items():
        backends[key] = get_backend(model_cfg, {**cfg["backend"], **(model_cfg.get("backend") or {})})
    cache_cfg = cfg.get("cache") or {}
    cache = None
    if cache_cfg.get("enabled", True):
        cache = CallCache(cache_cfg.get("path") or cache_root() / "calls.sqlite")
    return Engine(backends=backends, roles=dict(cfg.get("roles") or {}), cache=cache, on_progress=on_progress)


def run_job(cfg: dict[str, Any], out_dir: str | Path, on_progress=None) -> dict[str, Any]:
    from judges import build_judge
    from protocols import build_protocol

    started = time.perf_counter()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    questions = load_task(cfg["task"])
    protocol = build_protocol(cfg["protocol"])
    judge = build_judge(cfg["judge"])
    engine = build_engine(cfg, on_progress)

    async def episode(question: Question, ctx: Context):
        transcripts = await protocol.run(question, ctx)
        judgments = await asyncio.gather(*(judge.judge(question, t, ctx) for t in transcripts))
        return transcripts, list(judgments)

    outcomes = engine.run(questions, episode)
    finalize = getattr(judge, "finalize", None)  # mixing judges decide over all items (e.g. a human budget)
    if finalize is not None:
        finalize([j for outcome in outcomes if outcome.value for j in outcome.value[1]])
    records = []
    for outcome in outcomes:
        q = outcome.question
        transcripts, judgments = outcome.value if outcome.value else ([], [])
        done = [j.correct for j in judgments if j.correct is not None]
        records.append(Record(
            question_id=q.id, question=q.question, options=q.options, correct_index=q.correct,
            protocol=protocol.name, metadata=q.metadata, transcripts=transcripts, judgments=judgments,
            correct=sum(done) / len(done) if done else None, error=outcome.error,
            graph=outcome.graph.to_json(),
        ))
    write_records(out_dir, records)
    summary = {
        "protocol": protocol.name,
        "judge": judge.name,
        "model": cfg["model"].get("name"),
        "task": cfg["task"].get("name"),
        **summarise(records, judge.name),
        "model_calls": engine.stats.calls,
        "cache_hits": engine.stats.cache_hits,
        "failed_calls": engine.stats.failed,
        "batches": engine.stats.batches,
        "prompt_tokens": engine.stats.prompt_tokens,
        "output_tokens": engine.stats.output_tokens,
        # cost of the protocol itself, whether or not the calls were answered from the cache
        "calls_per_question": call_costs(r.graph for r in records)["calls"] / max(1, len(records)),
        "backend_seconds": round(engine.stats.backend_seconds, 3),
        "wall_seconds": round(time.perf_counter() - started, 3),
        "extra": protocol.extra_metrics(records, protocol.cfg) if protocol.extra_metrics else {},
        "config": cfg,
    }
    write_summary(out_dir, summary)
    if engine.cache is not None:
        engine.cache.close()
    return summary
