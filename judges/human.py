"""The `human` judge: a job generates transcripts and leaves every judgment pending for people.

People fill them in the terminal UI, `oversight-judge RUN_DIR` (judges/tui.py); their judgments go
to RUN_DIR/human_judgments.sqlite and are joined with records.jsonl when the run is summarised
(`oversight-compare`). `HumanSettings` is how the UI asks: the confidence scale, an optional time
limit per item and what happens when it runs out, and whether option order is shuffled.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from oversight.engine import Context
from oversight.plugins import Judge, JudgeReport, check
from oversight.types import Judgment, Question, Transcript


class HumanSettings(BaseModel):
    """How people are asked. Confidence is the probability that the chosen option is right, on a
    grid of `confidence_step` up to `confidence_max`; values at or below chance (1/n options) are
    not offered (choosing A at 30% is choosing B at 70%), except chance itself when `allow_even`."""

    model_config = ConfigDict(extra="forbid")

    confidence_step: float = Field(default=0.05, gt=0.0, le=1.0)
    confidence_max: float = Field(default=0.95, ge=0.0, le=1.0)
    allow_even: bool = False
    time_limit: float | None = Field(default=None, gt=0.0, description="seconds per item; None: no limit")
    on_timeout: Literal["skip", "force"] = "skip"  # skip: record timed-out, move on; force: answer now
    shuffle_options: bool = True  # per judge and item, so position bias averages out

    @field_validator("time_limit")
    @classmethod
    def _finite(cls, value: float | None) -> float | None:
        if value is not None and math.isinf(value):
            raise ValueError("must be a finite number of seconds or null")
        return value

    @model_validator(mode="after")
    def _some_level(self) -> "HumanSettings":
        if not self.levels(2):
            raise ValueError(f"confidence_max={self.confidence_max} leaves no confidence above chance for two options")
        return self

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
    return check(HumanSettings, cfg, prefix)  # type: ignore[return-value]


def settings_for(judge_cfg: dict[str, Any]) -> HumanSettings:
    """The UI settings of a human or mixing judge config (as stored in a run's summary.json)."""
    if "human" not in judge_cfg:  # the human judge: its settings are its own fields
        return human_settings({k: v for k, v in judge_cfg.items() if k in HUMAN_KEYS}, "judge")
    return human_settings(dict(judge_cfg.get("human") or {}), "judge.human")


class HumanJudge(Judge, HumanSettings):
    """Makes no model calls: every transcript gets a pending human judgment."""

    name: str = "human"
    policy: Literal["human"] = "human"

    async def judge(self, question: Question, transcript: Transcript, ctx: Context) -> Judgment:
        return Judgment(judge=self.name, source="human", episode=transcript.episode, pending=True)

    def report(self, job_dir: Path, summary: dict[str, Any]) -> JudgeReport | None:
        return human_rows(job_dir, summary)


def human_rows(job_dir: Path, summary: dict[str, Any]) -> JudgeReport | None:
    """A job's records joined with its human judgments: the comparison rows of judges with people."""
    from judges.policies import human_report, report_renderables

    found = human_report(job_dir, summary)
    if found is None:
        return None
    return JudgeReport(rows=found.rows, scores=found.scores, renderables=report_renderables(job_dir.name, found))
