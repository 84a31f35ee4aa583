"""Cost before you spend: `oversight --dry-run ...` estimates every job's model calls and tokens (and,
with a price table, money) without loading a model, prints them, and stops.

How the estimate is made: the job's task builds its real questions, and the job's real protocol and
judge run on the real engine, but every model is a `CountingBackend`: an ESTIMATOR, not a model. It
computes nothing; it tokenises each prompt (with the model's own tokenizer when it is on local disk,
else by `cost.chars_per_token`), answers each generate call with filler of `cost.output_fill` x
`max_new_tokens` tokens and each scoring call with arbitrary (deterministic) scores, and counts.
So the call graph has the protocol's real shape on the task's real lengths: the same nodes, the
same prompts wherever a prompt does not quote an earlier generation, and the same sharing of calls
between jobs (every job of a dry-run sweep uses one throw-away call cache, as a real sweep on an
empty cache would). Why not a per-protocol formula: calls depend on the strategy (best-of-N,
critique-refine, quotes over a passage's sentences), the judge (both orders, ensembles) and the task
(sentences per passage), and a formula per combination drifts from the code; walking the code
cannot. What it cannot know: how long real generations are (`cost.output_fill` sets it; 1.0 is the
upper bound), and graph shapes that depend on what a model writes (a `decomposer: model` tree; a
generative judge's parse failures); what the real cache already holds (the estimate assumes an
empty one, so it is an upper bound on fresh calls). Measured against real runs in docs/cost.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from oversight.backends.base import Backend, Capabilities, plain_prompt
from oversight.cache import CallCache
from oversight.engine import Context, Engine
from oversight.graph import call_costs
from oversight.plugins import Judge, Protocol, build
from oversight.types import Call, CallResult, Question

#: set by `oversight --dry-run` (oversight/app/cli.py) to the dry run's scratch directory; read by the
#: job and the sweep callback, in this process or a launcher's worker processes
DRY_RUN_ENV = "OVERSIGHT_DRY_RUN"
ESTIMATE_FILE = "estimate.json"


def dry_run_dir() -> Path | None:
    value = os.environ.get(DRY_RUN_ENV)
    return Path(value) if value else None


@dataclass
class Tally:
    """What one model was asked (fresh calls only: the call cache answers the rest)."""

    calls: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


class CountingBackend(Backend):
    """An ESTIMATOR standing in for a model in `--dry-run`: never a result. Answers instantly with
    typical-length filler and arbitrary scores, and counts calls and tokens."""

    def __init__(self, model_cfg: dict[str, Any], tokenizer: Any = None, chars_per_token: float = 4.0,
                 output_fill: float = 1.0, chat_template: bool = True):
        self.name = str(model_cfg.get("name") or "model")
        self.identity = f"estimate:{self.name}"
        self.tokenizer = tokenizer
        self.chars_per_token = chars_per_token
        self.output_fill = output_fill
        self.use_chat_template = chat_template and bool(getattr(tokenizer, "chat_template", None))
        self.tally = Tally()

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(engine="cost estimate (counts, computes nothing)", device="none")

    async def run(self, calls: list[Call]) -> list[CallResult]:
        return self.run_sync(calls)

    def render(self, call: Call) -> str:
        if self.tokenizer is None or not self.use_chat_template:
            return plain_prompt(call)
        text = self.tokenizer.apply_chat_template(list(call.messages), tokenize=False, add_generation_prompt=True)
        return text + call.prefix

    def tokens(self, text: str) -> int:
        if self.tokenizer is not None:
            return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])
        return max(1, math.ceil(len(text) / self.chars_per_token))

    def _count(self, call: Call, prompt: int, output: int = 0) -> None:
        self.tally.calls += 1
        self.tally.prompt_tokens += prompt
        self.tally.output_tokens += output
        self.tally.by_kind[call.kind] = self.tally.by_kind.get(call.kind, 0) + 1

    def generate(self, calls: list[Call]) -> list[CallResult]:
        out = []
        for call in calls:
            n = max(1, round(self.output_fill * call.params.max_new_tokens))
            prompt = self.tokens(self.render(call))
            self._count(call, prompt, n)
            out.append(CallResult(text=" ".join(["text"] * n), prompt_tokens=prompt, output_tokens=n))
        return out

    def next_token(self, calls: list[Call]) -> list[CallResult]:
        out = []
        for call in calls:
            prompt = self.tokens(self.render(call))
            self._count(call, prompt)
            out.append(CallResult(logprobs=_scores(call), prompt_tokens=prompt))
        return out

    def loglikelihood(self, calls: list[Call]) -> list[CallResult]:
        out = []
        for call in calls:
            # as the hf backend counts: the context once, plus each continuation's tokens after its first
            prompt = self.tokens(self.render(call)) + sum(self.tokens(c) - 1 for c in call.candidates)
            self._count(call, prompt)
            out.append(CallResult(logprobs=_scores(call), prompt_tokens=prompt))
        return out


def _scores(call: Call) -> list[float]:
    """Arbitrary but deterministic scores (a function of the call), so that identical calls agree
    across jobs as real ones would, and no option wins systematically."""
    digest = hashlib.sha256(call.model_dump_json().encode()).digest()
    return [-1.0 - digest[i % len(digest)] / 255.0 for i in range(len(call.candidates))]


def local_tokenizer(model_cfg: dict[str, Any]):
    """The model's tokenizer when it is on this disk already (a converted GGUF, a local directory);
    None otherwise (a hub id, a served model): then tokens are counted by characters. Never downloads,
    never loads weights."""
    from oversight.models import WeightsSource, converted_dir

    candidates = []
    try:
        source = WeightsSource(path=str(model_cfg.get("path") or ""), gguf_file=model_cfg.get("gguf_file"),
                               package=model_cfg.get("package"))
        if source.package or source.gguf_file:
            candidates.append(converted_dir(source, join=False))
            candidates += same_gguf_converted(source)
        elif source.path and Path(source.path).is_dir():
            candidates.append(Path(source.path))
    except Exception:  # a package not installed, a file not there: count by characters
        return None
    for directory in candidates:
        if (directory / "tokenizer_config.json").exists() or (directory / "tokenizer.json").exists():
            from transformers import AutoTokenizer

            try:
                return AutoTokenizer.from_pretrained(str(directory))
            except Exception:
                return None
    return None


def same_gguf_converted(source) -> list[Path]:
    """Converted directories of the same GGUF file by content (another venv's copy of the package
    converts to another directory, whose tokenizer is the same)."""
    from oversight.models import cache_root

    directory, gguf_name = source.resolve(join=False)
    gguf = Path(directory) / gguf_name
    found, digest = [], None
    for meta in sorted((cache_root() / "models").glob("*/source.json")):
        try:
            recorded = json.loads(meta.read_text())
        except (OSError, ValueError):
            continue
        if recorded.get("gguf") != gguf_name or not (meta.parent / "done").exists():
            continue
        if digest is None:
            h = hashlib.sha256()
            with gguf.open("rb") as handle:
                for block in iter(lambda: handle.read(1 << 22), b""):
                    h.update(block)
            digest = h.hexdigest()
        if recorded.get("gguf_sha256") == digest:
            found.append(meta.parent)
    return found


def estimate_job(cfg: dict[str, Any], out_dir: Path, scratch: Path) -> dict[str, Any]:
    """Walk one job with counting backends; write and return its estimate."""
    return asyncio.run(estimate_job_async(cfg, out_dir, scratch))


async def estimate_job_async(cfg: dict[str, Any], out_dir: Path, scratch: Path) -> dict[str, Any]:
    from oversight.app.run import check_exclusive, load_task

    check_exclusive(cfg)
    settings = cfg.get("cost") or {}
    chars_per_token = float(settings.get("chars_per_token", 4.0))
    output_fill = float(settings.get("output_fill", 1.0))
    prices = settings.get("prices") or {}
    protocol: Protocol = build(cfg["protocol"], "protocol", Protocol)
    judge: Judge = build(cfg["judge"], "judge", Judge)
    questions: list[Question] = load_task(cfg["task"])
    models = {"default": cfg["model"], **(cfg.get("models") or {})}
    tokenizers: dict[str, Any] = {}
    backends: dict[str, CountingBackend] = {}
    for key, model_cfg in models.items():
        tok_key = json.dumps({k: model_cfg.get(k) for k in ("path", "package", "gguf_file")}, sort_keys=True)
        if tok_key not in tokenizers:
            tokenizers[tok_key] = local_tokenizer(model_cfg)
        backends[key] = CountingBackend(model_cfg, tokenizers[tok_key], chars_per_token, output_fill,
                                        bool(model_cfg.get("chat_template", True)))
    cache = CallCache(scratch / "estimate-calls.sqlite")
    engine = Engine(backends=dict(backends), roles=dict(cfg.get("roles") or {}), cache=cache)

    async def episode(question: Question, ctx: Context):
        transcripts = await protocol.run(question, ctx)
        return await asyncio.gather(*(judge.judge(question, t, ctx) for t in transcripts))

    outcomes = await engine.run_async(questions, episode)
    cache.close()
    graph = call_costs(o.graph.to_json() for o in outcomes)
    per_model = {}
    money = 0.0 if any(models[k].get("name") in prices for k in backends) else None
    for key, backend in backends.items():
        t = backend.tally
        row = {"model": backend.name, "calls": t.calls, "prompt_tokens": t.prompt_tokens,
               "output_tokens": t.output_tokens, "by_kind": t.by_kind,
               "tokens_counted_by": "tokenizer" if backend.tokenizer is not None else f"{chars_per_token} chars/token"}
        price = prices.get(backend.name)
        if price is not None:
            row["usd"] = (t.prompt_tokens * float(price.get("prompt", 0.0))
                          + t.output_tokens * float(price.get("output", 0.0))) / 1e6
            money += row["usd"]
        per_model[key] = row
    estimate = {
        "protocol": protocol.title,
        "judge": judge.name,
        "task": cfg["task"].get("name"),
        "questions": len(questions),
        "graph_calls": graph["calls"],  # what the protocol costs, cached or not (summary: calls_per_question x n)
        "judge_calls": graph["judge_calls"],
        "model_calls": engine.stats.calls,  # fresh calls on an empty cache (summary: model_calls)
        "cache_hits": engine.stats.cache_hits,  # answered by an earlier job of this sweep
        "deduplicated": engine.stats.deduplicated,
        "prompt_tokens": engine.stats.prompt_tokens,
        "output_tokens": engine.stats.output_tokens,
        "usd": money,
        "failed_questions": sum(1 for o in outcomes if o.error),
        "models": per_model,
        "output_fill": output_fill,
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / ESTIMATE_FILE).write_text(json.dumps(estimate, indent=2))
    return estimate


def estimate_line(label: str, est: dict[str, Any]) -> str:
    money = f", ${est['usd']:.4f}" if est.get("usd") is not None else ""
    counted = {m["tokens_counted_by"] for m in est["models"].values()}
    return (f"{label}: estimate (dry run, no model loaded) for {est['questions']} questions: "
            f"{est['model_calls']} model calls + {est['cache_hits']} cache hits "
            f"({est['graph_calls'] / max(1, est['questions']):.1f} calls per question), "
            f"{est['prompt_tokens']} prompt tokens, {est['output_tokens']} output tokens{money} "
            f"(tokens counted by {', '.join(sorted(counted))}; outputs at {est['output_fill']:g} x max_new_tokens)")


def sweep_table(sweep_dir: Path) -> str:
    """The dry-run sweep's estimates, one row per job, and the total, as markdown."""
    rows = []
    for path in sorted(sweep_dir.glob(f"*/{ESTIMATE_FILE}")):
        est = json.loads(path.read_text())
        rows.append((path.parent.name, est))
    lines = ["| job | questions | model calls | cache hits | calls/question | prompt tokens | output tokens | $ |",
             "|---|---|---|---|---|---|---|---|"]
    total = {"model_calls": 0, "cache_hits": 0, "prompt_tokens": 0, "output_tokens": 0, "usd": None}
    for name, est in rows:
        money = f"{est['usd']:.4f}" if est.get("usd") is not None else "-"
        lines.append(f"| {name} | {est['questions']} | {est['model_calls']} | {est['cache_hits']} | "
                     f"{est['graph_calls'] / max(1, est['questions']):.1f} | {est['prompt_tokens']} | "
                     f"{est['output_tokens']} | {money} |")
        for k in ("model_calls", "cache_hits", "prompt_tokens", "output_tokens"):
            total[k] += est[k]
        if est.get("usd") is not None:
            total["usd"] = (total["usd"] or 0.0) + est["usd"]
    money = f"{total['usd']:.4f}" if total["usd"] is not None else "-"
    lines.append(f"| **total** | | {total['model_calls']} | {total['cache_hits']} | | {total['prompt_tokens']} | "
                 f"{total['output_tokens']} | {money} |")
    return "\n".join(lines)
