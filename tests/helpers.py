"""Small shared pieces for tests (not fixtures)."""

from __future__ import annotations

from typing import Any

from oversight.app import group_config
from oversight.backends.base import Backend
from oversight.plugins import Judge, Protocol, build
from oversight.types import Call, CallResult

from oversight.app import CONF_DIR

CONF_JUDGES = CONF_DIR / "judge"


def protocol_spec(cfg: dict[str, Any]) -> dict[str, Any]:
    """A protocol config as Hydra composes it from conf/protocol/<name>.yaml (and, for arguing
    protocols, its strategy sub-group), with `cfg`'s values on top. `argument: {format: free, ...}`
    picks the strategy (`format`) and sets its fields."""
    cfg = dict(cfg)
    name = "direct_passage" if cfg.get("name") == "direct" and cfg.get("passage") else cfg.get("name")
    spec = group_config("protocol", name)
    if name in ("debate", "consultancy"):
        argument = dict(cfg.pop("argument", {}) or {})
        strategy = argument.pop("format", "quotes")
        spec["strategy"] = {**group_config("protocol/strategy", strategy), **argument}
    spec.pop("label", None)  # its interpolation needs the whole config
    return {**spec, **cfg}


def build_protocol(cfg: dict[str, Any]) -> Protocol:
    return build(protocol_spec(cfg), "protocol", Protocol)


def judge_spec(cfg: dict[str, Any]) -> dict[str, Any]:
    """A judge config: the shipped YAML of that name (`name`), with `cfg`'s values on top."""
    if "_target_" in cfg:
        return dict(cfg)
    base = group_config("judge", cfg["name"]) if (CONF_JUDGES / f"{cfg['name']}.yaml").exists() else \
        {"_target_": "judges.model.ModelJudge"}
    return {**base, **cfg}


def build_judge(cfg: dict[str, Any]) -> Judge:
    return build(judge_spec(cfg), "judge", Judge)


def task_spec(name: str, **fields: Any) -> dict[str, Any]:
    return {**group_config("task", name), **fields}


class CountingBackend(Backend):
    """Test double: wraps a real backend and records the size of every batch it is sent."""

    def __init__(self, inner: Backend):
        self.inner = inner
        self.identity = inner.identity
        self.batches: list[int] = []

    @property
    def capabilities(self):
        return self.inner.capabilities

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
    """A plain job config dict, as Hydra would compose it, for oversight.app.run.run_job."""
    return {
        "model": dict(model_cfg),
        "backend": {**group_config("backend", "hf"), "device": "cpu", "batch_size": 32, "max_batch_tokens": 16384},
        "task": task_spec("hidden_passage", n=n, seed=0, **task),
        "protocol": protocol_spec(protocol),
        "judge": judge_spec(judge or {"name": "likelihood"}),
        "cache": {"enabled": True, "path": None},
        "roles": {},
        "models": {},
    }
