"""Small shared pieces for tests (not fixtures)."""

from __future__ import annotations

from oversight.backends.base import Backend
from oversight.types import Call, CallResult


class CountingBackend(Backend):
    """Test double: wraps a real backend and records the size of every batch it is sent."""

    def __init__(self, inner: Backend):
        self.inner = inner
        self.identity = inner.identity
        self.batches: list[int] = []

    async def run(self, calls: list[Call]) -> list[CallResult]:
        self.batches.append(len(calls))
        return await self.inner.run(calls)

    def generate(self, calls):
        return self.inner.generate(calls)

    def next_token(self, calls):
        return self.inner.next_token(calls)

    def loglikelihood(self, calls):
        return self.inner.loglikelihood(calls)


class FailingBackend(CountingBackend):
    """Test double: fails every call whose prompt contains `marker`, answers the rest for real."""

    def __init__(self, inner: Backend, marker: str):
        super().__init__(inner)
        self.marker = marker

    async def run(self, calls: list[Call]) -> list[CallResult]:
        self.batches.append(len(calls))
        ok = [c for c in calls if not any(self.marker in m["content"] for m in c.messages)]
        answers = iter(await self.inner.run(ok)) if ok else iter(())
        return [next(answers) if c in ok else CallResult(error="injected failure") for c in calls]


def job_config(model_cfg: dict, protocol: dict, judge: dict | None = None, n: int = 6, **task) -> dict:
    """A plain job config dict, as Hydra would compose it, for oversight.run.run_job."""
    return {
        "model": dict(model_cfg),
        "backend": {"name": "hf", "device": "cpu", "batch_size": 32, "max_batch_tokens": 16384},
        "task": {"name": "hidden_passage", "loader": "oversight.tasks.hidden_passage:generate", "n": n, "seed": 0,
                 **task},
        "protocol": protocol,
        "judge": judge or {"module": "judges.model", "name": "likelihood", "kind": "likelihood"},
        "cache": {"enabled": True, "path": None},
        "roles": {},
        "models": {},
    }
