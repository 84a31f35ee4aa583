"""The engine: runs the call graphs of all questions of a job together, batching across them.

A protocol (and then a judge) is plain async code over a `Context`: `await ctx.generate(...)`
adds a node to the question's call graph and parks the coroutine. When no coroutine of the job can
run any more (each waits on a model call, or on something outside the job), the engine takes all
parked calls, groups them by model, answers what it can from the call cache, and sends the rest of
each group to its backend as one batch. So 200 debates make 200-
prompt batches, not 200 one-prompt calls: this cross-question batching is the main performance
lever on every backend.
"""

from __future__ import annotations

import asyncio
import collections.abc
import time
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Awaitable, Callable, Iterable, Sequence, TypeVar

from oversight.backends.base import Backend
from oversight.cache import CallCache, call_key
from oversight.errors import ConfigError
from oversight.graph import CallGraph
from oversight.types import Call, CallResult, Message, Question, SamplingParams

T = TypeVar("T")


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
    batches: int = 0
    prompt_tokens: int = 0
    output_tokens: int = 0
    backend_seconds: float = 0.0

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
    stats: EngineStats = field(default_factory=EngineStats)
    done: int = 0
    total: int = 0

    def __post_init__(self) -> None:
        self._pending: list[_Pending] = []
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

        tasks = [asyncio.create_task(one(o)) for o in outcomes]
        while True:
            await watcher.settle()
            if self._pending:
                await self._flush()
            elif all(t.done() for t in tasks):
                break
            else:  # parked on something other than a model call (a thread, a timer)
                await asyncio.wait(tasks, timeout=0.01, return_when=asyncio.FIRST_COMPLETED)
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
        await asyncio.gather(*(self._run_group(model, items) for model, items in groups.items()))
        self._progress()

    async def _run_group(self, model: str, items: list[_Pending]) -> None:
        backend = self.backends[model]
        keys = [call_key(backend.identity, item.call) for item in items]
        cached = self.cache.get_many(list(set(keys))) if self.cache is not None else {}
        todo: dict[str, Call] = {}
        for key, item in zip(keys, items):
            if key not in cached and key not in todo:
                todo[key] = item.call
        fresh: dict[str, CallResult] = {}
        if todo:
            started = time.perf_counter()
            try:
                results = await backend.run(list(todo.values()))
            except Exception as exc:  # a backend crash fails these calls; it never answers them
                results = [CallResult(error=f"{type(exc).__name__}: {exc}") for _ in todo]
            self.stats.backend_seconds += time.perf_counter() - started
            self.stats.batches += 1
            fresh = dict(zip(todo.keys(), results))
            for result in results:
                self.stats.calls += 1
                self.stats.failed += 0 if result.ok else 1
                self.stats.prompt_tokens += result.prompt_tokens
                self.stats.output_tokens += result.output_tokens
            if self.cache is not None:
                self.cache.put_many(fresh)
        answered: set[str] = set()
        for key, item in zip(keys, items):
            if key in cached:
                self.stats.cache_hits += 1
                result = cached[key].model_copy(update={"cached": True})
            else:
                if key in answered:
                    self.stats.deduplicated += 1
                answered.add(key)
                result = fresh[key]
            if not item.future.done():
                item.future.set_result(result)

    def _progress(self) -> None:
        if self.on_progress:
            self.on_progress(self)


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
