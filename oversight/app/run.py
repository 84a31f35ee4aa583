"""One job: a task, a protocol, a judge, models -> records.jsonl + summary.json in `out_dir`.

`run_job` takes a plain dict config (what Hydra composes) so it can be called from the CLI, from
tests and from notebooks alike; `await run_job_async(...)` does the same inside a running event
loop (Jupyter). Plugins are built here, through `oversight.plugins.build`, and nowhere else.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from oversight.backends import get_backend
from oversight.cache import CallCache, call_cache_path
from oversight.engine import BUDGET_REACHED, Context, Engine
from oversight.errors import ConfigError
from oversight.graph import call_costs
from oversight.metrics import summarise
from oversight.plugins import Judge, Protocol, Task, build
from oversight.provenance import run_provenance
from oversight.records import write_records, write_summary
from oversight.types import Question, Record


def load_task(task_cfg: dict[str, Any]) -> list[Question]:
    task: Task = build(task_cfg, "task", Task)
    return task.questions()


#: model keys that name the weights' source in different ways: at most one may be set
WEIGHT_SOURCES = ("path", "package")


def check_exclusive(cfg: dict[str, Any]) -> None:
    """Every config value is used or rejected: keys that exclude each other are an error naming both,
    never a silent precedence."""
    models = {"model": cfg.get("model") or {}, **{f"models.{k}": v or {} for k, v in (cfg.get("models") or {}).items()}}
    for where, model in models.items():
        path, package = model.get("path"), model.get("package")
        if path and package:
            raise ConfigError(
                f"{where}.path: {path!r} is set together with {where}.package={package!r}, and a model loads from "
                f"one of them; to load {where}.path add {where}.package=null (and {where}.gguf_file=null unless "
                f"the directory holds that GGUF file), or drop {where}.path")


def build_engine(cfg: dict[str, Any], on_progress=None) -> Engine:
    check_exclusive(cfg)
    backends = {"default": get_backend(cfg["model"], cfg["backend"])}
    for key, model_cfg in (cfg.get("models") or {}).items():
        backends[key] = get_backend(model_cfg, {**cfg["backend"], **(model_cfg.get("backend") or {})})
    cache_cfg = cfg.get("cache") or {}
    cache = None
    if cache_cfg.get("enabled", True):
        cache = CallCache(call_cache_path(cache_cfg.get("path")))
    calls, tokens = budget_limits(cfg)
    return Engine(backends=backends, roles=dict(cfg.get("roles") or {}), cache=cache, on_progress=on_progress,
                  budget_calls=calls, budget_tokens=tokens)


def budget_limits(cfg: dict[str, Any]) -> tuple[int | None, int | None]:
    """`budget.calls` and `budget.tokens` (null: no limit), checked: whole numbers >= 0."""
    budget = cfg.get("budget") or {}
    if not isinstance(budget, dict):
        raise ConfigError(f"budget: expected a mapping with calls and/or tokens, got {budget!r}")
    unknown = sorted(set(budget) - {"calls", "tokens"})
    if unknown:
        raise ConfigError(f"budget.{unknown[0]}: unknown key; valid: calls, tokens")
    limits = []
    for key in ("calls", "tokens"):
        value = budget.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise ConfigError(f"budget.{key}={value!r}: expected a whole number >= 0 or null (no limit)")
        limits.append(value)
    return limits[0], limits[1]


def run_job(cfg: dict[str, Any], out_dir: str | Path, on_progress=None) -> dict[str, Any]:
    return asyncio.run(run_job_async(cfg, out_dir, on_progress))


async def run_job_async(cfg: dict[str, Any], out_dir: str | Path, on_progress=None) -> dict[str, Any]:
    started, started_at = time.perf_counter(), time.time()
    out_dir = Path(out_dir)
    check_exclusive(cfg)
    protocol: Protocol = build(cfg["protocol"], "protocol", Protocol)
    judge: Judge = build(cfg["judge"], "judge", Judge)
    questions = load_task(cfg["task"])
    engine = build_engine(cfg, on_progress)
    out_dir.mkdir(parents=True, exist_ok=True)

    async def episode(question: Question, ctx: Context):
        transcripts = await protocol.run(question, ctx)
        judgments = await asyncio.gather(*(judge.judge(question, t, ctx) for t in transcripts))
        return transcripts, protocol.combine(question, transcripts, list(judgments))

    outcomes = await engine.run_async(questions, episode)
    judge.finalize([j for outcome in outcomes if outcome.value for j in outcome.value[1]])
    records = []
    for outcome in outcomes:
        q = outcome.question
        transcripts, judgments = outcome.value if outcome.value else ([], [])
        done = [j.correct for j in judgments if j.correct is not None]
        records.append(Record.of(
            q, protocol.title, transcripts=transcripts, judgments=judgments,
            correct=sum(done) / len(done) if done else None, error=outcome.error, graph=outcome.graph.to_json()))
    write_records(out_dir, records)
    summary = {
        "protocol": protocol.title,
        "judge": judge.name,
        "model": cfg["model"].get("name"),
        "task": cfg["task"].get("name"),
        **summarise(records, judge.name),
        "questions": len(records),
        "first_error": next((f"{r.question_id}: {r.error}" for r in records if r.error), None),
        "model_calls": engine.stats.calls,
        "cache_hits": engine.stats.cache_hits,
        "failed_calls": engine.stats.failed,
        # questions stopped by the job's budget (config `budget`): recorded with that error; a rerun continues
        "not_run": sum(1 for r in records if r.error and BUDGET_REACHED in r.error),
        "batches": engine.stats.batches,
        "prompt_tokens": engine.stats.prompt_tokens,
        "output_tokens": engine.stats.output_tokens,
        # cost of the protocol itself, whether or not the calls were answered from the cache
        "calls_per_question": call_costs(r.graph for r in records)["calls"] / max(1, len(records)),
        "backend_seconds": round(engine.stats.backend_seconds, 3),
        "call_cache": str(engine.cache.path) if engine.cache is not None else None,
        "wall_seconds": round(time.perf_counter() - started, 3),
        "extra": protocol.extra_metrics(records),
        "config": cfg,
        # what produced these answers: code revision, libraries, weights and backends, machine, time
        "provenance": run_provenance(engine.backends, [cfg["model"], *(cfg.get("models") or {}).values()],
                                     started=started_at),
    }
    write_summary(out_dir, summary)
    if engine.cache is not None:
        engine.cache.close()
    return summary
