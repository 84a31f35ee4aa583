"""The plugin contract: how protocols, turn strategies, judges and tasks are named, found, checked
and built. One way for all of them.

A plugin is a pydantic model (its fields are its config, `extra="forbid"`) that subclasses one of
the interfaces below. Config names it by import path:

    protocol:
      _target_: protocols.debate.Debate
      rounds: 2
      strategy:
        _target_: protocols.strategies.quotes.Quotes

`build(spec, key)` imports `_target_`, builds nested specs first (any mapping with a `_target_`,
also inside lists), validates the fields, and turns every problem into a `ConfigError` whose
message names the key (`protocol.rounds: Input should be greater than or equal to 1`). A plugin
defined outside this repository is named the same way, once its module is importable.

A training job is a plugin too: `train._target_` names a `Trainer`, whose `run(job)` receives what
the app built for it (`TrainingRun`: the job's task, protocol and judge, a way to build engines and
run protocol jobs, the output directory) and returns its summary.

Optional hooks are methods with no-op defaults, declared here, never discovered with getattr.
Backends are the one kind built differently: `backend._target_` names a class taking
`(model_cfg, backend_cfg)`, found with the same `locate`, because one instance serves every role
bound to its model (oversight.backends.get_backend).
"""

from __future__ import annotations

import importlib
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from oversight.errors import ConfigError
from oversight.types import Judgment, Question, Record, Transcript, Turn

if TYPE_CHECKING:
    from rich.console import Console

    from oversight.engine import Context, Engine

P = TypeVar("P")
TARGET = "_target_"


class Plugin(BaseModel, ABC):
    """Base of every plugin: its fields are its validated config."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True)


class Task(Plugin):
    """Produces the questions of a job (generated from a seed, or loaded from files)."""

    name: str

    @abstractmethod
    def questions(self) -> list[Question]: ...


class Protocol(Plugin):
    """Turns one Question into transcripts (one per episode) through model calls made on `ctx`."""

    name: str = Field(description="the protocol's name, written into every Transcript")
    label: str | None = Field(default=None, description="the name in records and comparisons (default: name)")

    @property
    def title(self) -> str:
        return self.label or self.name

    @abstractmethod
    async def run(self, question: Question, ctx: "Context") -> list[Transcript]: ...

    def extra_metrics(self, records: list[Record]) -> dict[str, Any]:
        """Protocol-specific metrics, saved in summary.json under "extra"."""
        return {}

    def combine(self, question: Question, transcripts: list[Transcript], judgments: list[Judgment]) -> list[Judgment]:
        """The judgments a question is scored on, given the judge's verdict on each of its transcripts
        (in order). The default keeps them as they are; a protocol whose answer is an aggregate of
        verdicts (a majority vote over readings: protocols.judge_vote) returns the aggregate, with
        every verdict's orders and calls kept inside it."""
        return judgments


class TurnRequest(BaseModel):
    """What a turn strategy is asked for: one turn of `side`, given the judge-visible history."""

    model_config = ConfigDict(frozen=True)

    question: Question
    side: int
    role: str = Field(description="model role that speaks (bound to a model in config)")
    label: str = Field(description="the speaker's name as the judge reads it")
    history: tuple[Turn, ...] = ()
    round: int = 0
    opponent_side: int | None = None
    draw: int | None = Field(default=None, description="None: the strategy's own best turn; k: the k-th "
                                                       "independent sampled draw (best-of-N asks for 0..N-1)")

    @property
    def deps(self) -> list[str]:
        """Graph nodes of the history: what this turn's calls read."""
        return [t.node for t in self.history if t.node]


class TurnStrategy(Plugin):
    """How an arguer (debater, consultant) makes one turn. Strategies may wrap other strategies."""

    @abstractmethod
    async def turn(self, ctx: "Context", req: TurnRequest) -> Turn: ...


class JudgeReport(BaseModel):
    """Rows a judge adds to a sweep's comparison (e.g. human, model and mixed accuracy), plus
    anything it wants printed under the table."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    rows: list[dict[str, Any]] = Field(default_factory=list)
    scores: list[dict[str, float]] = Field(default_factory=list, description="per-row question scores, for "
                                                                            "paired differences")
    renderables: list[Any] = Field(default_factory=list)


class Judge(Plugin):
    """Reads the judge-visible part of a transcript and returns per-option probabilities."""

    name: str

    @abstractmethod
    async def judge(self, question: Question, transcript: Transcript, ctx: "Context") -> Judgment: ...

    def finalize(self, judgments: list[Judgment]) -> None:
        """Called once with every judgment of the job (e.g. to route a budget of items to people)."""

    def report(self, job_dir: Path, summary: dict[str, Any]) -> JudgeReport | None:
        """Comparison rows for a finished job; None: the standard row from summary.json."""
        return None


@dataclass
class TrainingRun:
    """What the app hands a trainer: the job's plugins, built from its config, and the app's own
    ways to build an engine and to run a protocol job, so a trainer wires nothing itself.

    `protocol` is None when the config names none (`protocol: null`); a trainer that needs one, or
    cannot use the one given, raises a ConfigError naming `protocol`, never ignores or replaces it."""

    config: dict[str, Any]  # the job's whole config, resolved (sub-jobs are built from it)
    out_dir: Path
    task: "Task"
    protocol: "Protocol | None"
    judge: "Judge"
    console: "Console"
    progress: bool  # show progress bars (config `progress`)
    #: an engine for a job config (its models, roles, backend and call cache), reporting to on_progress
    build_engine: Callable[[dict[str, Any], Callable[[Any], None] | None], "Engine"]
    #: run a protocol job of a config into a directory (records.jsonl, summary.json), with a progress
    #: bar labelled as given; returns its summary
    run_job: Callable[[dict[str, Any], Path, str], dict[str, Any]]


class Trainer(Plugin):
    """A training job (`train:` in config): reward models, debaters, ... from what protocols produce.
    Its fields are its config; `run` does the work and returns the summary (also written to
    `job.out_dir/summary.json`). Running it again in the same directory resumes."""

    name: str = Field(description="the job's name, in its outputs")

    @abstractmethod
    def run(self, job: TrainingRun) -> dict[str, Any]: ...


# ---- finding and building ----------------------------------------------------------------------


def locate(target: Any, key: str) -> Any:
    """The object a dotted path (`pkg.module.Name` or `pkg.module:Name`) names."""
    if not isinstance(target, str) or not target.strip():
        raise ConfigError(f"{key}.{TARGET}: expected a dotted import path such as 'protocols.debate.Debate', "
                          f"got {target!r}")
    path = target.replace(":", ".")
    module_name, _, attr = path.rpartition(".")
    if not module_name:
        raise ConfigError(f"{key}.{TARGET}={target!r}: expected 'package.module.Name'")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ConfigError(f"{key}.{TARGET}={target!r}: cannot import module {module_name!r} ({exc})") from exc
    try:
        return getattr(module, attr)
    except AttributeError:
        raise ConfigError(f"{key}.{TARGET}={target!r}: module {module_name!r} has no {attr!r}") from None


def build(spec: Any, key: str, base: type[P] | None = None) -> P:
    """Build the plugin `spec` describes (a mapping with `_target_`); errors name `key`."""
    if isinstance(spec, BaseModel) and (base is None or isinstance(spec, base)):
        return spec  # already built
    if not isinstance(spec, Mapping):
        raise ConfigError(f"{key}: expected a mapping with {TARGET}, got {spec!r}")
    if TARGET not in spec:
        kind = base.__name__ if base else "plugin"
        raise ConfigError(f"{key}.{TARGET}: missing; expected the import path of a {kind} class")
    cls = locate(spec[TARGET], key)
    if base is not None and not (isinstance(cls, type) and issubclass(cls, base)):
        raise ConfigError(f"{key}.{TARGET}={spec[TARGET]!r} is not a {base.__name__} "
                          f"(a subclass of oversight.plugins.{base.__name__})")
    fields = {name: _build_nested(value, f"{key}.{name}") for name, value in spec.items() if name != TARGET}
    try:
        return cls(**fields)
    except ValidationError as exc:
        raise validation_error(exc, key) from None
    except TypeError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _build_nested(value: Any, key: str) -> Any:
    if isinstance(value, Mapping):
        if TARGET in value:
            return build(value, key)
        return {k: _build_nested(v, f"{key}.{k}") for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_build_nested(v, f"{key}.{i}") for i, v in enumerate(value)]
    return value


def validation_error(exc: ValidationError, key: str) -> ConfigError:
    """One line per problem: `key.field: what was expected`."""
    lines = []
    for error in exc.errors():
        where = ".".join(str(part) for part in (key, *error["loc"]) if part != "")
        lines.append(f"{where}: {error['msg'].removeprefix('Value error, ')}")
    return ConfigError("; ".join(lines))


def check(model: type[BaseModel], values: Mapping[str, Any], key: str) -> BaseModel:
    """Validate plain settings (not a plugin) the same way: errors name `key`."""
    try:
        return model(**values)
    except ValidationError as exc:
        raise validation_error(exc, key) from None
