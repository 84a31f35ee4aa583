"""The backend interface.

A backend serves one model. `run` receives a batch of Calls (any mix of kinds) and returns one
CallResult per Call, in order. A call that cannot be answered gets a CallResult with `error` set;
it is never answered with made-up output. Synchronous backends implement the three batch methods
and inherit `run`, which executes them in a worker thread so the engine's event loop stays free.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from abc import ABC, abstractmethod
from collections import defaultdict
from contextlib import AbstractContextManager
from typing import Any, AsyncIterator, Awaitable, Callable, Literal

from pydantic import BaseModel, ConfigDict, Field

from oversight.errors import ConfigError
from oversight.types import Call, CallResult

#: every context-length failure starts with this, so servers can answer it as a client error
CONTEXT_TOO_LONG = "prompt too long for the model's context"

CallKind = Literal["generate", "next_token", "loglikelihood"]
CALL_KINDS: tuple[CallKind, ...] = ("generate", "next_token", "loglikelihood")


class Capabilities(BaseModel):
    """What a backend can do, declared by the backend itself (Inspect's ModelAPI does the same):
    the engine, the dev server, feature extraction and training read this, never probe with hasattr.

    `torch_model` promises the attributes `model` (a transformers causal LM in eval mode),
    `tokenizer`, `path` (the weights' directory), `device` and `use_chat_template`; `tokenizer`
    promises `tokenizer` (a transformers tokenizer for the served model)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    engine: str = Field(description="what computes the answers: transformers, vllm, an HTTP server, a test double")
    call_kinds: tuple[CallKind, ...] = CALL_KINDS
    device: str = Field(description="cpu, cuda, cuda:0, ...; 'remote' for a server")
    #: how the engine hands calls over: "batch" (in-process backends: every parked call of the job in
    #: one wave, cut into chunks of `batch_size`, each cached as it returns) or "per_call" (servers:
    #: each call goes out as soon as it is ready, `session()` limiting the calls in flight)
    dispatch: Literal["batch", "per_call"] = "batch"
    batch_size: int = Field(default=0, ge=0, description="rows computed at once (0: the whole wave); "
                                                         "the engine caches per chunk of this size")
    max_batch_tokens: int | None = Field(default=None, description="padded tokens per batch, where bounded")
    max_context: int | None = Field(default=None, description="prompt + added tokens the model attends over")
    tokenizer: bool = Field(default=False, description="a local tokenizer for the served model")
    torch_model: bool = Field(default=False, description="in-process torch weights others may run (features, "
                                                         "the dev server's token-level endpoints)")
    trainable: bool = Field(default=False, description="weights on local disk that oversight-train can train "
                                                       "(LoRA by trl/peft) and serve back as an adapter")
    exact_logprobs: bool = Field(default=True, description="scores are log-probabilities over the whole "
                                                           "vocabulary (False: approximated from a top-N list)")
    dtype: str | None = Field(default=None, description="the weights' compute dtype as resolved (model.dtype=auto "
                                                        "picks it per machine: oversight.backends.base.resolve_dtype)")


class BackendSettings(BaseModel):
    """A backend's config (conf/backend/*.yaml minus `_target_`), validated like every plugin:
    unknown keys and bad values stop with one line naming `backend.<key>`."""

    model_config = ConfigDict(extra="forbid")

    name: str = ""

    @classmethod
    def read(cls, backend_cfg: dict[str, Any]):
        from oversight.plugins import check

        return check(cls, {k: v for k, v in backend_cfg.items() if k != "_target_"}, "backend")


class Backend(ABC):
    #: identifies the model (weights + template) for the call cache; must change when outputs would
    identity: str = ""
    #: what the weights are, by content (oversight.models.weights_fingerprint), for provenance;
    #: "" where the backend cannot know it (a remote server, a test double)
    weights: str = ""
    #: the longest token sequence the model attends over (prompt plus what a call adds to it), and
    #: where that number came from; None where the backend cannot know it
    max_context: int | None = None
    max_context_source: str = ""

    @property
    @abstractmethod
    def capabilities(self) -> Capabilities:
        """This backend's declaration (cheap: read it as often as needed)."""

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Callable[[Call], Awaitable[CallResult]]]:
        """For per_call dispatch: a function answering one call, valid inside this context (one
        engine job). Server backends override it to share one client and concurrency limit."""
        async def answer(call: Call) -> CallResult:
            return (await self.run([call]))[0]

        yield answer

    async def run(self, calls: list[Call]) -> list[CallResult]:
        return await asyncio.to_thread(self.run_sync, calls)

    def run_sync(self, calls: list[Call]) -> list[CallResult]:
        by_kind: dict[str, list[int]] = defaultdict(list)
        for i, call in enumerate(calls):
            by_kind[call.kind].append(i)
        results: list[CallResult | None] = [None] * len(calls)
        methods = {"generate": self.generate, "next_token": self.next_token, "loglikelihood": self.loglikelihood}
        for kind, idx in by_kind.items():
            for i, result in zip(idx, methods[kind]([calls[i] for i in idx])):
                results[i] = result
        return results  # type: ignore[return-value]

    @abstractmethod
    def generate(self, calls: list[Call]) -> list[CallResult]: ...

    @abstractmethod
    def next_token(self, calls: list[Call]) -> list[CallResult]: ...

    @abstractmethod
    def loglikelihood(self, calls: list[Call]) -> list[CallResult]: ...

    def context_error(self, prompt_tokens: int, added: int, added_what: str) -> str | None:
        """The error for a call whose sequence (prompt + `added` tokens: the new tokens a generate
        call may write, the longest continuation scored, the one token read by next_token) does not
        fit the model's context; None when it fits or the limit is unknown. The engine records the
        failed call in its question's record, so the record names the question."""
        total = prompt_tokens + added
        if self.max_context is None or total <= self.max_context:
            return None
        return (f"{CONTEXT_TOO_LONG}: {prompt_tokens} prompt tokens + {added} {added_what} = {total} tokens, "
                f"above the limit of {self.max_context} ({self.max_context_source}); shorten the input "
                f"(e.g. the task's passages) or use a model with a longer context")

    def _fitting(self, results: list, sizes: list[tuple[int, int, str]]) -> list[int]:
        """Fail (in `results`) every call whose (prompt tokens, added tokens, what is added) does not
        fit the model's context; return the indices of those that fit, in order."""
        fits = []
        for i, (prompt_tokens, added, what) in enumerate(sizes):
            error = self.context_error(prompt_tokens, added, what)
            if error is None:
                fits.append(i)
            else:
                results[i] = CallResult(error=error)
        return fits

    def exclusive(self) -> AbstractContextManager:
        """Hold this backend's model for one caller at a time: `with backend.exclusive(): ...`.

        In-process backends take it around every forward pass, so anything else that runs the same
        loaded weights (oversight-serve's token-level endpoints) takes it too instead of racing them.
        One lock per backend instance, created on first use."""
        lock = self.__dict__.get("_exclusive_lock")
        if lock is None:
            with _EXCLUSIVE_GUARD:
                lock = self.__dict__.setdefault("_exclusive_lock", threading.Lock())
        return lock

    def render(self, call: Call) -> str:
        """The exact prompt text for a call. Backends with a chat template override this."""
        return plain_prompt(call)

    def close(self) -> None:
        """Release resources (servers, GPU memory). Optional."""


_EXCLUSIVE_GUARD = threading.Lock()  # makes the lazy creation of each backend's lock race-free


def plain_prompt(call: Call) -> str:
    """A template-free rendering for models without a chat template (e.g. tiny test models)."""
    lines = [f"{m['role']}: {m['content']}" for m in call.messages]
    return "\n".join(lines) + "\nassistant:" + (" " + call.prefix if call.prefix else "")


def render_chat(tokenizer, call: Call, use_chat_template: bool) -> str:
    """The prompt text in-process backends feed their model: the chat template with the generation
    prompt, then the call's prefix (the start of the assistant's reply)."""
    if not use_chat_template:
        return plain_prompt(call)
    text = tokenizer.apply_chat_template(list(call.messages), tokenize=False, add_generation_prompt=True)
    return text + call.prefix


def length_batches(order, lengths, max_rows: int, max_tokens: int, extra=lambda i: 0, same=None):
    """Cut an index list (sorted by length) into batches of at most `max_rows` rows and
    `max_tokens` padded tokens (rows x (longest + extra)); `same(i)` must agree within a batch."""
    batch: list[int] = []
    for i in order:
        candidate = batch + [i]
        tokens = len(candidate) * max(lengths[j] + extra(j) for j in candidate)
        split = batch and (len(candidate) > max_rows or tokens > max_tokens
                           or (same is not None and same(i) != same(batch[0])))
        if split:
            yield batch
            batch = [i]
        else:
            batch = candidate
    if batch:
        yield batch


DTYPES = ("auto", "float32", "bfloat16", "float16")


def native_bf16_cpu(flags: str | None = None) -> bool:
    """Whether this CPU multiplies bfloat16 matrices natively (x86: AVX-512 BF16 or AMX; Arm: the BF16
    extension), read from /proc/cpuinfo's flags (`flags` to test other machines). Without it torch
    emulates bf16 matmul and fp32 is faster, so `auto` keeps fp32 there."""
    if flags is None:
        try:
            with open("/proc/cpuinfo") as f:
                flags = f.read()
        except OSError:
            return False
    words = set(flags.replace(":", " ").split())
    return bool(words & {"avx512_bf16", "amx_bf16"}) or ("bf16" in words and "asimd" in words)


def resolve_dtype(requested: str | None, device: str) -> str:
    """model.dtype as the backend will compute in: an explicit dtype as given; `auto` (the default)
    bfloat16 where the hardware computes it natively (CUDA with bf16 support; a CPU with native bf16
    matmul), float32 elsewhere. Results differ slightly between the two (docs/results.md measures by how
    much), so the resolved dtype is part of the backend's identity (the call cache) and its provenance;
    `model.dtype=float32` gives fp32 anywhere."""
    name = str(requested or "auto")
    if name not in DTYPES:
        raise ConfigError(f"model.dtype: {name!r} is not one of {', '.join(DTYPES)}")
    if name != "auto":
        return name
    if device.startswith("cuda"):
        import torch

        return "bfloat16" if torch.cuda.is_available() and torch.cuda.is_bf16_supported() else "float32"
    return "bfloat16" if device == "cpu" and native_bf16_cpu() else "float32"
