"""Any OpenAI-compatible server (`vllm serve`, `oversight-serve`, hosted APIs): async, with retries.

How each call kind maps onto the wire (chosen so that a vLLM server gives exactly what the
in-process backends give, token for token):

- generate: POST {base_url}/chat/completions with the messages. A non-empty `prefix` (the start of
  the assistant's reply) is sent as a final assistant message with vLLM's chat extensions
  `continue_final_message: true, add_generation_prompt: false`, so the server renders
  `template(messages, add_generation_prompt=True) + prefix` exactly as the hf backend does. A
  server without those extensions (most hosted APIs) rejects the request, and the call fails
  with the server's message; it is never silently sent without its prefix. (Chat templates that
  trim message content, e.g. Llama 3's, drop trailing whitespace of the prefix.)
- loglikelihood: the context (messages + prefix) is tokenized by the server's own chat template
  through vLLM's `POST /tokenize` (messages form), each candidate through `/tokenize` (prompt form,
  no special tokens); then one `POST {base_url}/completions` per call sends the token-id prompts
  `context + candidate_k` for all k with `echo: true, logprobs: 1, max_tokens: 1`, and the
  candidate's score is the sum of the echoed prompt log-probabilities over its tokens (as
  lm-evaluation-harness scores multiple choice). Token ids, not text, go to /completions, so
  tokenization at the context/candidate boundary is the same as in the hf backend.
- next_token (`next_token_method: echo`, the default): the same request with each candidate's
  first token as a one-token continuation: exact log-probabilities.
- next_token (`next_token_method: top_logprobs`, for servers without /tokenize): a one-token chat
  completion with `logprobs: true, top_logprobs: N` (N <= 20). A candidate matches the top entry
  whose token text equals it, else the longest top entry that is a prefix of it and has a
  non-space character. A candidate in none of the top N gets log(min(p_N, 1 - sum of top-N p)),
  an upper bound on its true probability (it is less likely than every listed token and than
  the unlisted mass); this approximation is why the method is part of the backend identity.

`render: local` (for servers without vLLM's extensions, e.g. llama.cpp's): the client renders the
prompt with the model's own chat template (from model.path / model.package, exactly as the hf
backend does) and sends text to /completions: generate directly; loglikelihood (and next_token with
`echo`) as one echo request per option on `prompt + option`, the option's tokens being the last n
echoed, n from the server's tokenizer (checked to split prompt and option at the boundary);
next_token with `top_logprobs` as a one-token completion's top list. `server: llama_cpp` selects
llama-cpp-python's request shapes (/extras/tokenize with `input`) and resets its sampler defaults.

Capabilities (vLLM-style /tokenize, echo with logprobs, top_logprobs, continue_final_message) are
checked once per backend with one small probe each; a call that needs one the server lacks fails at
once with an error naming it and the method to use instead, and is not retried.

Faults: HTTP 408/409/429/5xx, timeouts and connection errors are retried up to `max_retries`
times with exponential backoff and jitter (honouring Retry-After, capped at `backoff_max_s`).
Any other HTTP error fails the call at once. A call that still fails gets a CallResult with
`error` set, never an answer.

`extra_body` (a mapping) is merged into every chat completion request (e.g. `top_k`,
`repetition_penalty`, `chat_template_kwargs`); its `chat_template` and `chat_template_kwargs`
keys also go to /tokenize, so scoring renders prompts the way generation does.

The API key is read from the environment variable named by `api_key_env` for each run (batch of
calls) and lives only in that run's HTTP client: it is never kept on the backend, nor written to
its identity, records, logs or error messages.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import math
import os
import random
import threading
from collections import OrderedDict
from typing import Any, Literal
from urllib.parse import urlsplit, urlunsplit

import httpx

from pydantic import Field, field_validator

from oversight.backends.base import Backend, BackendSettings, Capabilities, render_chat
from oversight.errors import ConfigError
from oversight.types import Call, CallResult

# httpx logs every request at INFO; a job sends thousands, which would bury Hydra's job log.
if logging.getLogger("httpx").level == logging.NOTSET:
    logging.getLogger("httpx").setLevel(logging.WARNING)

RETRY_STATUS = frozenset({408, 409, 429}) | frozenset(range(500, 600))
# llama-cpp-python's sampler defaults (top_k 40, min_p 0.05, repeat_penalty 1.1) would change
# greedy and sampled outputs; plain temperature/top-p sampling is what the other backends do
LLAMA_CPP_SAMPLING = {"top_k": 0, "min_p": 0.0, "repeat_penalty": 1.0}
# extra_body keys that change how the chat template renders, so /tokenize must see them too
TEMPLATE_KEYS = ("chat_template", "chat_template_kwargs")


class OpenAISettings(BackendSettings):
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key_env: str = Field(default="OPENAI_API_KEY", description="env var holding the key (unset: no auth header)")
    concurrency: int = Field(default=32, ge=1, description="requests in flight per job")
    max_retries: int = Field(default=6, ge=0)
    timeout_s: float = Field(default=120.0, gt=0)
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_max_s: float = Field(default=30.0, gt=0)
    top_logprobs: int = Field(default=20, ge=1, le=20, description="the OpenAI API's limit is 20")
    next_token_method: Literal["echo", "top_logprobs"] = "echo"
    tokenize_url: str | None = None
    server: Literal["vllm", "llama_cpp"] = "vllm"
    render: Literal["server", "local"] = "server"
    extra_body: dict[str, Any] = Field(default_factory=dict)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        value = value.rstrip("/")
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{value!r} must be an http(s) URL such as http://127.0.0.1:8000/v1")
        return value


class OpenAIBackend(Backend):
    def __init__(self, model_cfg: dict[str, Any], backend_cfg: dict[str, Any]):
        # a null value means the default (as the YAML files write it)
        settings = OpenAISettings.read({k: _plain(v) for k, v in backend_cfg.items() if v is not None})
        self.base_url = settings.base_url
        self.served_name = str(model_cfg.get("served_name") or model_cfg.get("name") or "")
        if not self.served_name:
            raise ConfigError("model.served_name (or model.name) must be set for backend=openai")
        self.api_key_env = settings.api_key_env
        self.concurrency = settings.concurrency
        self.max_retries = settings.max_retries
        self.timeout_s = settings.timeout_s
        self.backoff_base_s = settings.backoff_base_s
        self.backoff_max_s = settings.backoff_max_s
        self.top_logprobs = settings.top_logprobs
        self.next_token_method = settings.next_token_method
        self.server = settings.server
        self.render_mode = settings.render
        self.tokenizer = None
        if self.render_mode == "local":
            self.tokenizer, tokenizer_id = _local_tokenizer(model_cfg)
            self.use_chat_template = bool(model_cfg.get("chat_template", True)) and bool(
                getattr(self.tokenizer, "chat_template", None))
        self.extra_body: dict[str, Any] = {str(k): _plain(v) for k, v in settings.extra_body.items()}
        root = self.base_url[: -len("/v1")] if self.base_url.endswith("/v1") else self.base_url
        default_tokenize = f"{root}/extras/tokenize" if self.server == "llama_cpp" else f"{root}/tokenize"
        self.tokenize_url = settings.tokenize_url or default_tokenize
        self.sampling_defaults = dict(LLAMA_CPP_SAMPLING) if self.server == "llama_cpp" else {}
        # Identity: what changes answers (server, model, request extras, approximate next_token),
        # never concurrency, retries or the key.
        identity = f"openai:{public_url(self.base_url)}:{self.served_name}"
        if self.extra_body:
            digest = hashlib.sha256(json.dumps(self.extra_body, sort_keys=True).encode()).hexdigest()[:12]
            identity += f":extra={digest}"
        if self.next_token_method != "echo":
            identity += f":next_token={self.next_token_method}{self.top_logprobs}"
        if self.server != "vllm":
            identity += f":server={self.server}"
        if self.render_mode == "local":  # the client's template renders prompts: it is part of the model
            identity += f":render=local:{tokenizer_id}"
        self.identity = identity
        # capability -> why the server cannot provide it; found by one probe per backend (see _Session.need)
        self.missing: dict[str, str] = {}
        self.probed: set[str] = set()
        self._token_cache: OrderedDict[str, list[int]] = OrderedDict()
        self._token_cache_lock = threading.Lock()
        self._limit_asked = False  # whether GET /models was asked for max_model_len (once per backend)
        # the server batches: each call goes out when ready ("batch" only for oversight-bench --multi-wave)
        self.dispatch: Literal["batch", "per_call"] = "per_call"

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            engine=f"HTTP ({self.server} server)", device="remote", dispatch=self.dispatch, batch_size=0,
            max_context=self.max_context, tokenizer=self.tokenizer is not None,
            exact_logprobs=self.next_token_method == "echo",
        )

    # ---- public entry -------------------------------------------------------------------------

    async def run(self, calls: list[Call]) -> list[CallResult]:
        async with self.session() as answer:
            return list(await asyncio.gather(*(answer(call) for call in calls)))

    @contextlib.asynccontextmanager
    async def session(self):
        # A client per run or engine job: an httpx client is bound to the event loop it first ran on,
        # and each engine job runs its own loop.
        headers = {"Content-Type": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        limits = httpx.Limits(max_connections=self.concurrency, max_keepalive_connections=self.concurrency)
        async with httpx.AsyncClient(headers=headers, limits=limits, timeout=httpx.Timeout(self.timeout_s)) as client:
            session = _Session(self, client, asyncio.Semaphore(self.concurrency))
            if not self._limit_asked:
                await session.ask_context_limit()
            yield session.answer

    def run_sync(self, calls: list[Call]) -> list[CallResult]:
        return _blocking(self.run(calls))

    def generate(self, calls: list[Call]) -> list[CallResult]:
        return self.run_sync(calls)

    def next_token(self, calls: list[Call]) -> list[CallResult]:
        return self.run_sync(calls)

    def loglikelihood(self, calls: list[Call]) -> list[CallResult]:
        return self.run_sync(calls)

    def render(self, call: Call) -> str:
        """With `render: local`, the exact prompt text sent to /completions (the model's chat template
        with the generation prompt, then the prefix), as the hf backend renders it."""
        if self.tokenizer is None:
            return super().render(call)
        return render_chat(self.tokenizer, call, self.use_chat_template)

    # ---- helpers used by the session -----------------------------------------------------------

    def backoff(self, attempt: int, retry_after: float | None) -> float:
        """Exponential backoff with jitter in [0.5, 1] of the step; Retry-After is a floor."""
        step = min(self.backoff_max_s, self.backoff_base_s * (2**attempt))
        delay = step * (0.5 + 0.5 * random.random())
        if retry_after is not None:
            delay = max(delay, min(retry_after, self.backoff_max_s))
        return delay

    def cached_tokens(self, text: str) -> list[int] | None:
        with self._token_cache_lock:
            ids = self._token_cache.get(text)
            if ids is not None:
                self._token_cache.move_to_end(text)
            return ids

    def remember_tokens(self, text: str, ids: list[int]) -> None:
        with self._token_cache_lock:
            self._token_cache[text] = ids
            while len(self._token_cache) > 20000:
                self._token_cache.popitem(last=False)


class RequestFailed(Exception):
    """One HTTP request failed for good (non-retryable status, or retries exhausted)."""


class _Session:
    """One `run`: a client bound to the running event loop and a concurrency limit."""

    def __init__(self, backend: OpenAIBackend, client: httpx.AsyncClient, limit: asyncio.Semaphore):
        self.b = backend
        self.client = client
        self.limit = limit
        self.probe_lock = asyncio.Lock()

    async def answer(self, call: Call) -> CallResult:
        local = self.b.render_mode == "local"
        try:
            for capability in self.needs(call):
                await self.need(capability, call)
            if call.kind == "generate":
                return await (self.generate_text(call) if local else self.generate(call))
            if call.kind == "next_token":
                if self.b.next_token_method == "top_logprobs":
                    return await (self.next_token_top_logprobs_text(call) if local else self.next_token_top_logprobs(call))
                return await (self.score_text(call, first_only=True) if local else self.next_token_echo(call))
            return await (self.score_text(call) if local else self.loglikelihood(call))
        except RequestFailed as exc:
            return CallResult(error=str(exc))
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            return CallResult(error=f"unexpected response from {self.b.base_url}: {type(exc).__name__}: {exc}")

    # ---- capabilities: found once per backend, then every call that needs a missing one fails at once

    def needs(self, call: Call) -> list[str]:
        """The server capabilities this call relies on (see CAPABILITIES)."""
        top = self.b.next_token_method == "top_logprobs"
        if self.b.render_mode == "local":
            if call.kind == "generate":
                return []
            return ["completion_logprobs"] if call.kind == "next_token" and top else ["tokenize_text", "echo"]
        # a prefix (the start of the assistant's reply) in a chat request needs continue_final_message
        prefix = ["continue_final_message"] if call.prefix and self.b.server == "llama_cpp" else []
        if call.kind == "generate":
            return prefix
        if call.kind == "next_token" and top:
            return prefix + ["chat_logprobs"]
        return ["tokenize_messages", "echo"]

    async def need(self, capability: str, call: Call) -> None:
        if capability not in self.b.probed and capability not in self.b.missing:
            async with self.probe_lock:  # one probe per capability, whatever the number of calls waiting
                if capability not in self.b.probed and capability not in self.b.missing:
                    verdict = await self.probe(capability)
                    if verdict is not None:  # None: undecided (server down, transient error): probe again later
                        self.b.probed.add(capability)
                        if verdict:
                            self.b.missing[capability] = verdict
        if capability in self.b.missing:
            what = CAPABILITIES[capability]
            raise RequestFailed(
                f"{call.kind} through {public_url(self.b.base_url)} (backend.server={self.b.server}) needs {what}, "
                f"which this server does not provide ({self.b.missing[capability]}); {_instead(call, self.b)}"
            )

    async def probe(self, capability: str) -> str | None:
        """'' when the server has the capability, the reason when it has not, None when undecided.
        One small request, never retried."""
        name = self.b.served_name
        if capability in ("continue_final_message", "tokenize_messages") and self.b.server == "llama_cpp":
            return "llama.cpp's chat endpoint and /extras/tokenize take no assistant-prefix or chat-message form"
        if capability == "tokenize_messages":
            url, body = self.b.tokenize_url, {"model": name, "messages": [{"role": "user", "content": "hi"}],
                                              "add_generation_prompt": True, "add_special_tokens": False}
        elif capability == "tokenize_text":
            url, body = self.b.tokenize_url, self.tokenize_body("hi")
        elif capability == "echo":
            url = f"{self.b.base_url}/completions"
            body = {**self.b.sampling_defaults, "model": name, "prompt": "Hello there, world", "echo": True,
                    "logprobs": 1, "max_tokens": 1, "temperature": 0.0}
        elif capability == "chat_logprobs":
            url = f"{self.b.base_url}/chat/completions"
            body = {**self.b.sampling_defaults, "model": name, "messages": [{"role": "user", "content": "hi"}],
                    "max_tokens": 1, "temperature": 0.0, "logprobs": True, "top_logprobs": 2}
        else:  # completion_logprobs
            url = f"{self.b.base_url}/completions"
            body = {**self.b.sampling_defaults, "model": name, "prompt": "Hello", "max_tokens": 1, "temperature": 0.0,
                    "logprobs": 2}
        try:
            async with self.limit:
                response = await self.client.post(url, json=body)
        except httpx.TransportError:
            return None
        path = urlsplit(url).path
        if response.status_code != 200:
            text = response.text[:200]
            if response.status_code in RETRY_STATUS and "logits_all" not in text and "logprobs" not in text:
                return None
            return f"HTTP {response.status_code} from {path}: {text}"
        try:
            data = response.json()
            if capability.startswith("tokenize"):
                ok = isinstance(data.get("tokens"), list) and len(data["tokens"]) > 0
            elif capability == "echo":
                lps = data["choices"][0]["logprobs"]["token_logprobs"]
                ok = len(lps) >= 3 and all(isinstance(x, (int, float)) for x in lps[1:])
            elif capability == "chat_logprobs":
                ok = bool(data["choices"][0]["logprobs"]["content"][0]["top_logprobs"])
            else:
                ok = bool(data["choices"][0]["logprobs"]["top_logprobs"][0])
        except (KeyError, IndexError, TypeError, ValueError, AttributeError):
            ok = False
        return "" if ok else f"{path} answered without them: {response.text[:200]}"

    async def ask_context_limit(self) -> None:
        """Read the server's context length once: vLLM (and oversight-serve) list `max_model_len`
        per model in GET /models. Servers that do not (llama.cpp's, hosted APIs) leave it unknown,
        and then a too-long prompt fails with the server's own error."""
        self.b._limit_asked = True
        try:
            response = await self.client.get(f"{self.b.base_url}/models", timeout=min(self.b.timeout_s, 10.0))
            entries = (response.json().get("data") or []) if response.status_code == 200 else []
        except (httpx.HTTPError, ValueError, AttributeError):
            return  # the calls themselves report an unreachable server, with retries
        for entry in entries:
            if isinstance(entry, dict) and entry.get("id") == self.b.served_name and entry.get("max_model_len"):
                self.b.max_context = int(entry["max_model_len"])
                self.b.max_context_source = f"max_model_len of {self.b.served_name} in {public_url(self.b.base_url)}/models"

    def check_context(self, prompt_tokens: int, added: int, added_what: str) -> None:
        error = self.b.context_error(prompt_tokens, added, added_what)
        if error:
            raise RequestFailed(error)

    # ---- call kinds ---------------------------------------------------------------------------

    async def generate(self, call: Call) -> CallResult:
        p = call.params
        body = self.chat_body(call)
        body.update(max_tokens=p.max_new_tokens, temperature=p.temperature, top_p=p.top_p, seed=p.seed)
        if p.stop:
            body["stop"] = list(p.stop)
        data = await self.post(f"{self.b.base_url}/chat/completions", body)
        choice = data["choices"][0]
        text = choice["message"].get("content")
        if text is None:
            raise RequestFailed(f"chat completion from {self.b.base_url} has no message content: {choice!r:.300}")
        usage = data.get("usage") or {}
        return CallResult(
            text=text, prompt_tokens=int(usage.get("prompt_tokens") or 0),
            output_tokens=int(usage.get("completion_tokens") or 0),
        )

    async def next_token_echo(self, call: Call) -> CallResult:
        context, candidates = await asyncio.gather(
            self.context_tokens(call), asyncio.gather(*(self.text_tokens(c) for c in call.candidates))
        )
        for text, ids in zip(call.candidates, candidates):
            if not ids:
                raise RequestFailed(f"candidate {text!r} encodes to no tokens")
        self.check_context(len(context), 2, "tokens (the candidate's first token and max_tokens=1)")
        firsts = list(dict.fromkeys(ids[0] for ids in candidates))
        scores = dict(zip(firsts, await self.score(context, [[t] for t in firsts])))
        return CallResult(logprobs=[scores[ids[0]] for ids in candidates], prompt_tokens=len(context))

    async def loglikelihood(self, call: Call) -> CallResult:
        context, conts = await asyncio.gather(
            self.context_tokens(call), asyncio.gather(*(self.text_tokens(c) for c in call.candidates))
        )
        for text, ids in zip(call.candidates, conts):
            if not ids:
                raise RequestFailed(f"continuation {text!r} encodes to no tokens")
        self.check_context(len(context), max(len(c) for c in conts) + 1,
                           "tokens (the longest option and max_tokens=1)")
        scores = await self.score(context, conts)
        return CallResult(logprobs=scores, prompt_tokens=len(context) + sum(len(c) for c in conts))

    async def next_token_top_logprobs(self, call: Call) -> CallResult:
        body = self.chat_body(call)
        body.update(max_tokens=1, temperature=0.0, logprobs=True, top_logprobs=self.b.top_logprobs)
        data = await self.post(f"{self.b.base_url}/chat/completions", body)
        content = (data["choices"][0].get("logprobs") or {}).get("content") or []
        if not content or not content[0].get("top_logprobs"):
            raise RequestFailed(f"{self.b.base_url} returned no top_logprobs; does it support logprobs?")
        top = [(str(e["token"]), float(e["logprob"])) for e in content[0]["top_logprobs"]]
        usage = data.get("usage") or {}
        return CallResult(
            logprobs=[match_top_logprobs(c, top) for c in call.candidates],
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
        )

    # ---- call kinds with backend.render=local: prompts rendered here, sent as text to /completions

    async def generate_text(self, call: Call) -> CallResult:
        p = call.params
        body = self.completion_body(self.b.render(call))
        body.update(max_tokens=p.max_new_tokens, temperature=p.temperature, top_p=p.top_p, seed=p.seed)
        if p.stop:
            body["stop"] = list(p.stop)
        data = await self.post(f"{self.b.base_url}/completions", body)
        usage = data.get("usage") or {}
        return CallResult(text=data["choices"][0]["text"], prompt_tokens=int(usage.get("prompt_tokens") or 0),
                          output_tokens=int(usage.get("completion_tokens") or 0))

    async def score_text(self, call: Call, first_only: bool = False) -> CallResult:
        """Summed log-probabilities of each candidate after the rendered prompt (or of its first token,
        for next_token): one echo request per candidate with the text `prompt + candidate`; the
        candidate's tokens are the last n of the echo, n from the server's tokenizer, which must split
        `prompt + candidate` at the boundary (checked)."""
        context = self.b.render(call)
        context_ids, joined = await asyncio.gather(
            self.text_tokens(context), asyncio.gather(*(self.text_tokens(context + c) for c in call.candidates)))
        spans = []
        for k, (text, ids) in enumerate(zip(call.candidates, joined)):
            if ids[: len(context_ids)] != context_ids:
                raise RequestFailed(f"the server's tokenizer merges the end of the prompt with option {k} ({text!r}), "
                                    "so its tokens cannot be scored apart from the prompt")
            if len(ids) == len(context_ids):
                raise RequestFailed(f"continuation {text!r} encodes to no tokens")
            spans.append(len(ids) - len(context_ids))
        self.check_context(len(context_ids), max(spans) + 1, "tokens (the longest option and max_tokens=1)")
        scores = await asyncio.gather(*(self.echo_tail(context + c, n) for c, n in zip(call.candidates, spans)))
        return CallResult(logprobs=[s[0] if first_only else sum(s) for s in scores],
                          prompt_tokens=len(context_ids) + (len(spans) if first_only else sum(spans)))

    async def echo_tail(self, prompt: str, n: int) -> list[float]:
        """Log-probabilities of the last n prompt tokens, from an echoed one-token completion."""
        body = self.completion_body(prompt)
        body.update(echo=True, logprobs=1, max_tokens=1, temperature=0.0)
        data = await self.post(f"{self.b.base_url}/completions", body)
        logprobs = data["choices"][0]["logprobs"]["token_logprobs"]
        generated = int((data.get("usage") or {}).get("completion_tokens", 1))
        echoed = logprobs[: len(logprobs) - generated]
        tail = echoed[-n:]
        if len(echoed) <= n or any(x is None for x in tail):
            raise RequestFailed(f"{self.b.base_url}/completions echoed {len(echoed)} prompt log-probabilities, "
                                f"too few to score the last {n} tokens")
        return [float(x) for x in tail]

    async def next_token_top_logprobs_text(self, call: Call) -> CallResult:
        body = self.completion_body(self.b.render(call))
        body.update(max_tokens=1, temperature=0.0, logprobs=self.b.top_logprobs)
        data = await self.post(f"{self.b.base_url}/completions", body)
        top_map = (data["choices"][0].get("logprobs") or {}).get("top_logprobs") or [None]
        if not top_map[0]:
            raise RequestFailed(f"{self.b.base_url}/completions returned no top_logprobs")
        top = [(str(t), float(lp)) for t, lp in top_map[0].items()]
        usage = data.get("usage") or {}
        return CallResult(logprobs=[match_top_logprobs(c, top) for c in call.candidates],
                          prompt_tokens=int(usage.get("prompt_tokens") or 0))

    def completion_body(self, prompt: str) -> dict[str, Any]:
        extra = {k: v for k, v in self.b.extra_body.items() if k not in TEMPLATE_KEYS}
        return {**self.b.sampling_defaults, **extra, "model": self.b.served_name, "prompt": prompt}

    def tokenize_body(self, text: str) -> dict[str, Any]:
        if self.b.server == "llama_cpp":  # llama-cpp-python's /extras/tokenize
            return {"model": self.b.served_name, "input": text}
        return {"model": self.b.served_name, "prompt": text, "add_special_tokens": False}

    # ---- requests -----------------------------------------------------------------------------

    def chat_body(self, call: Call) -> dict[str, Any]:
        body: dict[str, Any] = {**self.b.sampling_defaults, **self.b.extra_body, "model": self.b.served_name,
                                "messages": chat_messages(call)}
        if call.prefix:
            body.update(continue_final_message=True, add_generation_prompt=False)
        return body

    async def context_tokens(self, call: Call) -> list[int]:
        """The rendered prompt's token ids, by the server's own chat template."""
        body: dict[str, Any] = {
            key: self.b.extra_body[key] for key in TEMPLATE_KEYS if key in self.b.extra_body
        }
        body.update(model=self.b.served_name, messages=chat_messages(call), add_special_tokens=False)
        if call.prefix:
            body.update(continue_final_message=True, add_generation_prompt=False)
        else:
            body.update(add_generation_prompt=True)
        data = await self.post(self.b.tokenize_url, body, what="tokenize")
        return [int(t) for t in data["tokens"]]

    async def text_tokens(self, text: str) -> list[int]:
        ids = self.b.cached_tokens(text)
        if ids is None:
            data = await self.post(self.b.tokenize_url, self.tokenize_body(text), what="tokenize")
            ids = [int(t) for t in data["tokens"]]
            self.b.remember_tokens(text, ids)
        return list(ids)

    async def score(self, context: list[int], conts: list[list[int]]) -> list[float]:
        """Sum of log P(cont tokens | context) for each continuation, from echoed prompt logprobs."""
        body = {
            "model": self.b.served_name, "prompt": [context + c for c in conts],
            "echo": True, "logprobs": 1, "max_tokens": 1, "temperature": 0.0,
        }
        data = await self.post(f"{self.b.base_url}/completions", body)
        choices = sorted(data["choices"], key=lambda c: int(c["index"]))
        if len(choices) != len(conts):
            raise RequestFailed(f"{self.b.base_url}/completions returned {len(choices)} choices for {len(conts)} prompts")
        scores = []
        for choice, cont in zip(choices, conts):
            logprobs = (choice.get("logprobs") or {}).get("token_logprobs") or []
            span = logprobs[len(context) : len(context) + len(cont)]
            if len(logprobs) < len(context) + len(cont) or any(x is None for x in span):
                raise RequestFailed(
                    f"{self.b.base_url}/completions echoed {len(logprobs)} token logprobs for a prompt of "
                    f"{len(context) + len(cont)} tokens; the server must support echo with logprobs"
                )
            scores.append(float(sum(span)))
        return scores

    async def post(self, url: str, body: dict[str, Any], what: str = "") -> dict[str, Any]:
        """POST with retries on transient faults; returns the decoded JSON body."""
        last = ""
        path = urlsplit(url).path
        for attempt in range(self.b.max_retries + 1):
            retry_after: float | None = None
            try:
                async with self.limit:
                    response = await self.client.post(url, json=body)
            except httpx.TransportError as exc:  # timeouts, refused/reset/dropped connections
                last = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
            else:
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError:
                        last = f"HTTP 200 with a body that is not JSON: {response.text[:200]!r}"
                elif response.status_code in RETRY_STATUS:
                    last = f"HTTP {response.status_code}: {response.text[:300]}"
                    retry_after = _retry_after(response)
                elif what == "tokenize" and response.status_code in (404, 405):
                    raise RequestFailed(
                        f"{url} answered HTTP {response.status_code}: the server has no vLLM-style /tokenize "
                        "endpoint, which loglikelihood and next_token_method=echo need; for next_token use "
                        "backend.next_token_method=top_logprobs, or set backend.tokenize_url"
                    )
                else:
                    raise RequestFailed(f"HTTP {response.status_code} from {path}: {response.text[:500]}")
            if attempt < self.b.max_retries:
                await asyncio.sleep(self.b.backoff(attempt, retry_after))
        raise RequestFailed(f"{path} failed after {self.b.max_retries + 1} attempts; last error: {last}")


CAPABILITIES = {
    "tokenize_messages": "a vLLM-style /tokenize endpoint that renders chat messages with the server's template",
    "tokenize_text": "a tokenize endpoint for text",
    "echo": "prompt log-probabilities from /completions (echo: true with logprobs)",
    "chat_logprobs": "top_logprobs from /chat/completions",
    "completion_logprobs": "top log-probabilities (logprobs) from /completions",
    "continue_final_message": "continuing an assistant prefix in /chat/completions (vLLM's continue_final_message)",
}


def _instead(call: Call, backend: OpenAIBackend) -> str:
    """What to use instead, for a call whose method the server cannot serve."""
    local = ("set backend.render=local (the client renders prompts with the model's own chat template, "
             "from model.path or model.package) to send them as text to /completions")
    if call.kind == "generate":
        return local
    if call.kind == "next_token" and backend.next_token_method == "top_logprobs":
        return "use judge=generative (it needs only generate)" + ("" if backend.render_mode == "local" else f", or {local}")
    alternatives = "use judge=logprob with backend.next_token_method=top_logprobs, or judge=generative"
    if call.kind == "next_token":
        alternatives = "set backend.next_token_method=top_logprobs"
    if backend.server == "llama_cpp" and backend.render_mode == "server":
        alternatives += f", or {local}"
    return alternatives


def _local_tokenizer(model_cfg: dict[str, Any]):
    """The model's own tokenizer and chat template on the client (`backend.render: local`), from
    `model.tokenizer`, `model.path` or the GGUF of `model.package`; returns (tokenizer, its fingerprint)."""
    from transformers import AutoTokenizer

    from oversight.models import WeightsSource, local_weights, weights_fingerprint

    source = WeightsSource(path=str(model_cfg.get("tokenizer") or model_cfg.get("path") or ""),
                           gguf_file=model_cfg.get("gguf_file"), package=model_cfg.get("package"))
    if not source.path and not source.package:
        raise ConfigError("backend.render=local needs the model's tokenizer on the client: set model.tokenizer, "
                          "model.path or model.package + model.gguf_file")
    directory = local_weights(source) if (source.package or source.gguf_file) else source.path
    tokenizer = AutoTokenizer.from_pretrained(directory)
    return tokenizer, hashlib.sha256(weights_fingerprint(directory).encode()).hexdigest()[:12]


def chat_messages(call: Call) -> list[dict[str, str]]:
    """The call's messages, plus the prefix as an open final assistant message."""
    messages = [dict(m) for m in call.messages]
    if call.prefix:
        messages.append({"role": "assistant", "content": call.prefix})
    return messages


def match_top_logprobs(candidate: str, top: list[tuple[str, float]]) -> float:
    """The log-probability of a candidate's first token read off a top-N list (see module doc)."""
    exact = [lp for token, lp in top if token == candidate]
    if exact:
        return max(exact)
    prefixes = [(len(token), lp) for token, lp in top if token.strip() and candidate.startswith(token)]
    if prefixes:
        return max(prefixes)[1]
    probs = [math.exp(lp) for _, lp in top]
    bound = min(min(probs), max(0.0, 1.0 - sum(probs))) or min(probs)
    return math.log(bound)


def public_url(url: str) -> str:
    """The URL without credentials, query or fragment, safe to store in identities and records."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path.rstrip("/"), "", ""))


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("retry-after")
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None


def _blocking(coro):
    """Run a coroutine to completion from sync code, also when called inside a running loop."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["value"] = asyncio.run(coro)
        except BaseException as exc:  # re-raised in the caller's thread
            box["error"] = exc

    thread = threading.Thread(target=target)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


def _plain(value: Any) -> Any:
    """OmegaConf containers to plain JSON-able values."""
    if isinstance(value, dict) or hasattr(value, "items"):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)) or (hasattr(value, "__iter__") and not isinstance(value, (str, bytes))):
        return [_plain(v) for v in value]
    return value

