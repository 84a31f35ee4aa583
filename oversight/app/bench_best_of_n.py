"""`oversight-bench --best-of-n N`: does best-of-N debate keep the backend's batches full?

Best-of-N turns multiply a debate's calls by N (N sampled free-text arguments per turn, then two
preference calls per candidate). The engine must gather the N draws of every turn of every
question into the same batches. Measured on one model, call cache off:
1. engine: a debate with best_of_n(n=N, inner=free) run end to end through the engine;
2. raw: every call that debate made (the generate calls and the preference loglikelihood calls),
   handed to the backend at once.
Both do the same work, so engine/raw is the ratio of their rates (target >= 0.8).
"""

from __future__ import annotations

import time
from typing import Any

from oversight.backends import get_backend
from oversight.engine import Engine
from oversight.plugins import Protocol, build
from oversight.tasks.hidden_passage import generate as hidden_passage
from oversight.types import Call


def bench_best_of_n(model_cfg: dict[str, Any], backend_cfg: dict[str, Any], questions: int, words: int,
                    n: int) -> dict[str, Any]:
    backend = get_backend(model_cfg, backend_cfg)
    spec = {"_target_": "protocols.debate.Debate", "rounds": 1,
            "strategy": {"_target_": "protocols.strategies.best_of_n.BestOfN", "n": n,
                         "inner": {"_target_": "protocols.strategies.free.Free", "word_limit": words}}}
    protocol: Protocol = build(spec, "protocol", Protocol)
    items = hidden_passage(n=questions, seed=1234)
    Engine(backends={"default": backend}, cache=None).run(items[:1], protocol.run)  # warm-up

    engine = Engine(backends={"default": backend}, cache=None)
    started = time.perf_counter()
    outcomes = engine.run(items, protocol.run)
    engine_s = time.perf_counter() - started

    calls = [Call(**d["call"]) for o in outcomes for _, d in o.graph.nodes("call")]
    started = time.perf_counter()
    raw = backend.run_sync(calls)
    raw_s = time.perf_counter() - started
    tokens = sum(r.output_tokens for r in raw)
    return {
        "model": model_cfg.get("name"), "backend": backend_cfg.get("name"), "questions": questions, "n": n,
        "generate_calls": sum(c.kind == "generate" for c in calls),
        "preference_calls": sum(c.kind == "loglikelihood" for c in calls),
        "engine_batches": engine.stats.batches,
        "seconds": {"engine": engine_s, "raw": raw_s},
        "tokens": {"engine": engine.stats.output_tokens, "raw": tokens},
        "engine_over_raw": raw_s / engine_s,
    }


def print_result(result: dict[str, Any]) -> None:
    from rich.console import Console

    console = Console()
    console.print(f"best-of-{result['n']} debate, {result['questions']} questions: {result['generate_calls']} "
                  f"generate + {result['preference_calls']} preference calls in {result['engine_batches']} "
                  f"engine batches")
    console.print(f"engine {result['seconds']['engine']:.1f} s, raw (all calls at once) "
                  f"{result['seconds']['raw']:.1f} s; generated tokens {result['tokens']['engine']} / "
                  f"{result['tokens']['raw']}")
    console.print(f"engine / raw  = {result['engine_over_raw']:.2f}  (target >= 0.8)")
