"""The `human` judge: a job generates transcripts and leaves every judgment pending for people.

People fill them in the terminal UI, `oversight-judge RUN_DIR` (judges/tui.py); their judgments go
to RUN_DIR/human_judgments.sqlite and are joined with records.jsonl when the run is summarised
(`oversight-compare`). `HumanSettings` is how the UI asks: the confidence scale, an optional time
limit per item and what happens when it runs out, and whether option order is shuffled.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from oversight.engine import Context
from oversight.errors import ConfigError
from oversight.mixing import check_unit
from oversight.types import Judgment, Question, Transcript


class HumanSettings(BaseModel):
    """How people are asked. Confidence is the probability that the chosen option is right, on a
    grid of `confidence_step` up to `confidence_max`; values at or below chance (1/n options) are
    not offered (choosing A at 30% is choosing B at 70%), except chance itself when `allow_even`."""

    model_config = ConfigDict(extra="forbid")

    confidence_step: float = 0.05
    confidence_max: float = 0.95
    allow_even: bool = False
    time_limit: float | None = None  # seconds per item; None: no limit
    on_timeout: Literal["skip", "force"] = "skip"  # skip: record timed-out, move on; force: answer now
    shuffle_options: bool = True  # per judge and item, so position bias averages out

    def levels(self, n_options: int) -> list[float]:
        chance = 1.0 / n_options
        grid = [round(k * self.confidence_step, 6) for k in range(1, int(1 / self.confidence_step + 1e-9) + 1)]
        values = [v for v in grid if chance + 1e-9 < v <= self.confidence_max + 1e-9]
        if self.allow_even:
            values = [chance] + values
        return values


HUMAN_KEYS = set(HumanSettings.model_fields)


def human_settings(cfg: dict[str, Any], prefix: str) -> HumanSettings:
    """Validate settings, naming the offending key as `prefix.key`."""
    unknown = set(cfg) - HUMAN_KEYS
    if unknown:
        raise ConfigError(f"{prefix}: unknown keys {sorted(unknown)}; allowed: {sorted(HUMAN_KEYS)}")
    dot = f"{prefix}." if prefix else ""
    for key in ("confidence_step", "confidence_max"):
        if key in cfg:
            check_unit(cfg[key], f"{dot}{key}")
    if cfg.get("confidence_step") == 0:
        raise ConfigError(f"{dot}confidence_step=0 must be in (0, 1]")
    limit = cfg.get("time_limit")
    if limit is not None and (isinstance(limit, bool) or not isinstance(limit, (int, float)) or limit <= 0
                              or math.isinf(limit)):
        raise ConfigError(f"{dot}time_limit={limit} must be a positive number of seconds or null")
    try:
        settings = HumanSettings(**cfg)
    except ValidationError as exc:
        problems = "; ".join(f"{dot}{'.'.join(map(str, e['loc']))}={e.get('input')!r}: {e['msg']}"
                             for e in exc.errors())
        raise ConfigError(problems) from exc
    if not settings.levels(2):
        raise ConfigError(f"{dot}confidence_max={settings.confidence_max} leaves no confidence above chance "
                          "for two options")
    return settings


def settings_for(judge_cfg: dict[str, Any]) -> HumanSettings:
    """The UI settings of a human or mixing judge config (as stored in a run's summary.json)."""
    if judge_cfg.get("module") == "judges.human":
        return human_settings({k: v for k, v in judge_cfg.items() if k in HUMAN_KEYS}, "judge")
    return human_settings(dict(judge_cfg.get("human") or {}), "judge.human")


def build(cfg: dict[str, Any]) -> "HumanJudge":
    allowed = HUMAN_KEYS | {"module", "name"}
    unknown = set(cfg) - allowed
    if unknown:
        raise ConfigError(f"judge: unknown keys {sorted(unknown)}; allowed: {sorted(allowed)}")
    settings = human_settings({k: v for k, v in cfg.items() if k in HUMAN_KEYS}, "judge")
    return HumanJudge(str(cfg.get("name") or "human"), settings)


class HumanJudge:
    """Makes no model calls: every transcript gets a pending human judgment."""

    def __init__(self, name: str, settings: HumanSettings):
        self.name = name
        self.settings = settings

    async def judge(self, question: Question, transcript: Transcript, ctx: Context) -> Judgment:
        return Judgment(judge=self.name, source="human", episode=transcript.episode, pending=True)
