"""The engine: runs the call graphs of all questions of a job together, batching across them.

A protocol (and then a judge) is plain async code over a `Context`: `await ctx.generate(...)`
adds a node to the question's call graph and parks the coroutine. When no coroutine of the job can
run any more (each waits on a model call, or on something outside the job), the engine takes all
parked calls, groups them by model, answers what it can from the call cache, and sends the rest of
each group to its backend. So 200 debates make 200-prompt batches, not 200 one-prompt calls: this
cross-question batching is the main performance lever on every backend.

How a group goes to its backend depends on `backend.capabilities.dispatch`:
- "batch" (in-process models): the wave is sorted by call kind, sampling settings and prompt length
  (as the backend itself would order it) and handed over in chunks of `capabilities.batch_size`; each
  chunk's results reach the call cache as soon as the chunk returns, so a killed job loses at most
  the chunk in flight, and the progress display moves per chunk.
- "per_call" (servers, which batch on their side): each call goes out as soon as it is ready,
  through the backend's `session()` (one client, its concurrency limit), and its question resumes
  as soon as it is answered, so a multi-round protocol never waits for a wave's slowest request.
"""

from __future__ import annotations

import asyncio
import collections.abc
import contextlib
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Iterable, Sequence, TypeVar

from oversight.cache import CallCache, call_key
from oversight.errors import ConfigError
from oversight.graph import CallGraph
from oversight.types import Call, CallResult, Message, Question, SamplingParams

if TYPE_CHECKING:  # the engine drives backends through their interface; it never builds one
    from oversight.backends.base import Backend

T = TypeVar("T")

#: every call refused by a job's budget fails with this, so records and summaries can tell it apart
BUDGET_REACHED = "not run: the job's budget was reached"


class CallFailed(Exception):
    """A model call failed after the backend's retries; the episode is recorded as failed."""

    def __init__(self, node: str, error: str):
        super().__init__(f"call {node} failed: {error}")
        self.node = node
        self.error = error


@dataclass
class Output:
    """A finished node: its id (for data-flow edges) and the backend's result."""

    node: str
    result: CallResult

    @property
    def text(self) -> str:
        return self.result.text or ""

    @property
    def logprobs(self) -> list[float]:
        return list(self.result.logprobs or [])


@dataclass
class EngineStats:
    calls: int = 0  # calls answered by a backend (cache misses)
    cache_hits: int = 0
    deduplicated: int = 0  # identical calls in one batch, answered once
    failed: int = 0
    batches: int = 0  # chunks sent to a batch backend, plus requests sent per call
    prompt_tokens: int = 0
    output_tokens: int = 0
    backend_seconds: float = 0.0
    not_run: int = 0  # calls refused because the job's budget was reached (never sent, never cached)

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class _Pending:
    model: str
    call: Call
    future: asyncio.Future


@dataclass
class Episode:
    """What running one question produced."""

    question: Question
    graph: CallGraph
    value: Any = None
    error: str | None = None


@dataclass
class Engine:
    """Binds roles to models and runs question coroutines with cross-question batching."""

    backends: dict[str, Backend]
    roles: dict[str, str] = field(default_factory=dict)  # role -> model key
    default_model: str = "default"
    cache: CallCache | None = None
    on_progress: Callable[["Engine"], None] | None = None
    # a job's budget (config `budget`): fresh backend calls, and prompt + output tokens, after which
    # further calls are refused (their questions are recorded as not run); None: no limit
    budget_calls: int | None = None
    budget_tokens: int | None = None
    stats: EngineStats = field(default_factory=EngineStats)
    done: int = 0
    total: int = 0

    def __post_init__(self) -> None:
        self._pending: list[_Pending] = []
        self._answer: dict[str, Callable[[Call], Awaitable[CallResult]]] = {}  # per_call models
        self._in_flight: set[asyncio.Task] = set()  # per_call requests
        self._waiting: dict[str, list[_Pending]] = {}  # per_call: key in flight -> calls awaiting it
        self._busy, self._busy_since = 0, 0.0
        for role, model in self.roles.items():
            if model not in self.backends:
                raise ConfigError(f"roles.{role}={model!r} is not a configured model; models: {sorted(self.backends)}")
        if self.default_model not in self.backends:
            raise ConfigError(f"default model {self.default_model!r} not in {sorted(self.backends)}")

    def model_for(self, role: str) -> str:
        return self.roles.get(role, self.default_model)

    # ---- public entry -------------------------------------------------------------------------

    def run(
        self, questions: Sequence[Question], episode: Callable[[Question, "Context"], Awaitable[T]]
    ) -> list[Episode]:
        """Run `episode(question, ctx)` for every question, batching model calls across all.
        From inside a running event loop (a notebook), await `run_async` instead."""
        return asyncio.run(self.run_async(questions, episode))

    async def run_async(
        self, questions: Sequence[Question], episode: Callable[[Question, "Context"], Awaitable[T]]
    ) -> list[Episode]:
        """`run` for an already running event loop: tasks of the job are watched through the
        loop's task factory (public asyncio API), which is restored afterwards."""
        loop = asyncio.get_running_loop()
        previous = loop.get_task_factory()
        watcher = _Watcher(previous)
        loop.set_task_factory(watcher.factory)
        try:
            return await self._run(questions, episode, watcher)
        finally:
            loop.set_task_factory(previous)

    async def _run(self, questions, episode, watcher: "_Watcher") -> list[Episode]:
        self.total += len(questions)
        outcomes = [Episode(question=q, graph=CallGraph(q.id)) for q in questions]

        async def one(outcome: Episode) -> None:
            ctx = Context(self, outcome.question, outcome.graph)
            try:
                outcome.value = await episode(outcome.question, ctx)
            except CallFailed as failure:
                outcome.error = str(failure)
            self.done += 1
            self._progress()

        async with contextlib.AsyncExitStack() as stack:
            self._answer = {}
            for model, backend in self.backends.items():
                if backend.capabilities.dispatch == "per_call":
                    self._answer[model] = await stack.enter_async_context(backend.session())
            tasks = [asyncio.create_task(one(o)) for o in outcomes]
            while True:
                await watcher.settle()
                if self._pending:
                    await self._flush()
                elif all(t.done() for t in tasks):
                    break
                else:  # parked on a call in flight, or on something else (a thread, a timer)
                    await asyncio.wait([*tasks, *self._in_flight], timeout=0.01, return_when=asyncio.FIRST_COMPLETED)
        for t in tasks:
            t.result()  # re-raise programming errors from protocol code
        return outcomes

    # ---- batching -----------------------------------------------------------------------------

    async def submit(self, model: str, call: Call) -> CallResult:
        future = asyncio.get_running_loop().create_future()
        self._pending.append(_Pending(model, call, future))
        return await future

    async def _flush(self) -> None:
        pending, self._pending = self._pending, []
        groups: dict[str, list[_Pending]] = defaultdict(list)
        for item in pending:
            groups[item.model].append(item)
        waves = []
        for model, items in groups.items():
            if model in self._answer:
                self._dispatch_each(model, items)
            else:
                waves.append(self._run_wave(model, items))
        await asyncio.gather(*waves)
        self._progress()

    def _from_cache(self, model: str, items: list[_Pending]) -> dict[str, list[_Pending]]:
        """Answer what the call cache holds; return the rest grouped by call key (identical calls
        are sent once)."""
        backend = self.backends[model]
        keys = [call_key(backend.identity, item.call) for item in items]
        cached = self.cache.get_many(list(set(keys))) if self.cache is not None else {}
        todo: dict[str, list[_Pending]] = {}
        for key, item in zip(keys, items):
            if key in cached:
                self.stats.cache_hits += 1
                _resolve(item, cached[key].model_copy(update={"cached": True}))
            else:
                if key in todo:
                    self.stats.deduplicated += 1
                todo.setdefault(key, []).append(item)
        return todo

    def _answered(self, fresh: dict[str, CallResult], todo: dict[str, list[_Pending]]) -> None:
        """Count, cache (at once: a kill loses nothing answered) and hand out fresh results."""
        for result in fresh.values():
            self.stats.calls += 1
            self.stats.failed += 0 if result.ok else 1
            self.stats.prompt_tokens += result.prompt_tokens
            self.stats.output_tokens += result.output_tokens
        if self.cache is not None:
            self.cache.put_many(fresh)
        for key, result in fresh.items():
            for item in todo[key]:
                _resolve(item, result)

    async def _run_wave(self, model: str, items: list[_Pending]) -> None:
        """Batch dispatch: the wave's uncached calls in chunks of the backend's batch size, ordered
        the way the backend batches them (kind, sampling settings, prompt length)."""
        backend = self.backends[model]
        todo = self._from_cache(model, items)
        order = sorted(todo, key=lambda key: _batch_order(todo[key][0].call))
        size = backend.capabilities.batch_size or len(order) or 1
        for start in range(0, len(order), size):
            chunk = order[start : start + size]
            allowed = self._allowance(len(chunk))
            self._refuse(chunk[allowed:], todo)
            chunk = chunk[:allowed]
            if not chunk:
                continue
            calls = [todo[key][0].call for key in chunk]
            started = time.perf_counter()
            try:
                results = await backend.run(calls)
            except Exception as exc:  # a backend crash fails these calls; it never answers them
                results = [CallResult(error=f"{type(exc).__name__}: {exc}") for _ in calls]
            self.stats.backend_seconds += time.perf_counter() - started
            self.stats.batches += 1
            self._answered(dict(zip(chunk, results)), todo)
            self._progress()

    def _dispatch_each(self, model: str, items: list[_Pending]) -> None:
        """Per-call dispatch: each uncached call becomes a request of its own, started now; a call
        identical to one already in flight waits for that one."""
        for key, same in self._from_cache(model, items).items():
            if key not in self._waiting and not self._allowance(1):
                self._refuse([key], {key: same})
                continue
            if key in self._waiting:
                self.stats.deduplicated += len(same)
                self._waiting[key].extend(same)
                continue
            self._waiting[key] = same
            task = asyncio.create_task(self._request(model, key, same[0].call))
            self._in_flight.add(task)
            task.add_done_callback(self._in_flight.discard)

    async def _request(self, model: str, key: str, call: Call) -> None:
        if not self._busy:  # backend_seconds: time with at least one request in flight
            self._busy_since = time.perf_counter()
        self._busy += 1
        try:
            result = await self._answer[model](call)
        except Exception as exc:  # as in a batch: the call fails, it is never answered
            result = CallResult(error=f"{type(exc).__name__}: {exc}")
        self._busy -= 1
        if not self._busy:
            self.stats.backend_seconds += time.perf_counter() - self._busy_since
        self.stats.batches += 1
        self._answered({key: result}, {key: self._waiting.pop(key)})
        self._progress()

    def _allowance(self, wanted: int) -> int:
        """How many of `wanted` fresh calls the budget still allows (calls in flight count as spent;
        tokens are known only once answered, so a token budget may be passed by one chunk)."""
        if self.budget_calls is not None:
            wanted = min(wanted, max(0, self.budget_calls - self.stats.calls - self._busy))
        if self.budget_tokens is not None and self.stats.prompt_tokens + self.stats.output_tokens >= self.budget_tokens:
            wanted = 0
        return wanted

    def _refuse(self, keys: list[str], todo: dict[str, list[_Pending]]) -> None:
        """Fail calls the budget does not allow: not sent, not cached, so a rerun makes them."""
        limits = ", ".join(f"budget.{k}={v}" for k, v in (("calls", self.budget_calls), ("tokens", self.budget_tokens))
                           if v is not None)
        for key in keys:
            for item in todo[key]:
                self.stats.not_run += 1
                _resolve(item, CallResult(error=f"{BUDGET_REACHED} ({limits}); run the same command again to "
                                                "continue (answered calls are in the call cache)"))

    def _progress(self) -> None:
        if self.on_progress:
            self.on_progress(self)


def _resolve(item: _Pending, result: CallResult) -> None:
    if not item.future.done():
        item.future.set_result(result)


def _batch_order(call: Call) -> tuple:
    """Roughly the order an in-process backend batches in, so its chunks pad little."""
    settings = call.params.model_copy(update={"seed": 0}).model_dump_json() if call.kind == "generate" else ""
    size = len(call.prefix) + sum(len(str(m.get("content") or "")) for m in call.messages)
    return call.kind, settings, size


class _Watcher:
    """Knows, through the task factory, what every task of the job is waiting for, so the engine can
    tell when none of them can run: each task waits on a future that is not done yet (a model call,
    a child task, a thread). A task is runnable when it has not started, yielded to the loop, or
    waits on a future that is already done."""

    def __init__(self, previous):
        self.previous = previous
        self.live: set[_Watched] = set()
        self.finished = 0

    def factory(self, loop, coro, **kwargs):
        watched = _Watched(coro, self)
        if self.previous is not None:
            return self.previous(loop, watched, **kwargs)
        return asyncio.Task(watched, loop=loop, **kwargs)

    def runnable(self) -> bool:
        return any(w.waiting is _RUNNABLE or w.waiting.done() for w in self.live)

    async def settle(self) -> None:
        """Yield to the loop until no task of the job can run. A finished task wakes its awaiter
        through callbacks one loop pass later, so quiet must hold over two passes."""
        quiet = 0
        while quiet < 2:
            finished = self.finished
            await asyncio.sleep(0)
            quiet = 0 if self.runnable() or self.finished != finished else quiet + 1


_RUNNABLE = object()


class _Watched(collections.abc.Coroutine):
    """A task's coroutine, seen from outside: what it waits on after each step."""

    __slots__ = ("coro", "watcher", "waiting")

    def __init__(self, coro, watcher: _Watcher):
        self.coro = coro
        self.watcher = watcher
        self.waiting: Any = _RUNNABLE
        watcher.live.add(self)

    def send(self, value):
        return self._step(self.coro.send, value)

    def throw(self, *args):
        return self._step(self.coro.throw, *args)

    def __next__(self):
        return self.send(None)

    def close(self):
        self.watcher.live.discard(self)
        return self.coro.close()

    def __await__(self):
        return self

    def _step(self, method, *args):
        self.waiting = _RUNNABLE
        try:
            yielded = method(*args)
        except BaseException:
            self.watcher.live.discard(self)
            self.watcher.finished += 1
            raise
        self.waiting = yielded if isinstance(yielded, asyncio.Future) else _RUNNABLE
        return yielded


class Context:
    """What a protocol or judge sees of the engine for one question: calls become graph nodes."""

    def __init__(self, engine: Engine, question: Question, graph: CallGraph):
        self.engine = engine
        self.question = question
        self.graph = graph

    async def generate(
        self,
        role: str,
        messages: Sequence[Message],
        *,
        params: SamplingParams | None = None,
        prefix: str = "",
        deps: Iterable[str] = (),
        label: str | None = None,
        **attrs: Any,
    ) -> Output:
        call = Call(kind="generate", messages=tuple(messages), prefix=prefix, params=params or SamplingParams())
        return await self._call(role, call, deps, label, attrs)

    async def next_token(
        self, role: str, messages: Sequence[Message], candidates: Sequence[str], *, prefix: str = "",
        deps: Iterable[str] = (), label: str | None = None, **attrs: Any,
    ) -> Output:
        call = Call(kind="next_token", messages=tuple(messages), prefix=prefix, candidates=tuple(candidates))
        return await self._call(role, call, deps, label, attrs)

    async def loglikelihood(
        self, role: str, messages: Sequence[Message], candidates: Sequence[str], *, prefix: str = "",
        deps: Iterable[str] = (), label: str | None = None, **attrs: Any,
    ) -> Output:
        call = Call(kind="loglikelihood", messages=tuple(messages), prefix=prefix, candidates=tuple(candidates))
        return await self._call(role, call, deps, label, attrs)

    def step(self, label: str, output: Any, deps: Iterable[str] = (), **attrs: Any) -> str:
        """Record a deterministic step (quote verification, aggregation) as a graph node."""
        return self.graph.add_node("step", label, deps, output=output, **attrs)

    async def _call(self, role: str, call: Call, deps: Iterable[str], label: str | None, attrs: dict) -> Output:
        model = self.engine.model_for(role)
        node = self.graph.add_node(
            "call", label or role, deps, role=role, model=model, call=call.model_dump(mode="json"), **attrs
        )
        result = await self.engine.submit(model, call)
        self.graph.set(node, output=result.model_dump(mode="json"))
        if not result.ok:
            raise CallFailed(node, result.error or "unknown error")
        return Output(node, result)
