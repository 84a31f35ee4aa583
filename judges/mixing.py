"""Mixing judges: a weak model judges inside the job, and people judge some or all items after it.

`policy` is one of route, ensemble, augmented, approval (see judges/policies.py for what each
does). The weak model is `judges.model` configured by the nested `model_judge:` block; its verdict
is kept on every judgment (`Judgment.machine`). Items that need a person are left pending
(`source="mixed"`): every item for ensemble, augmented and approval; for route, the least confident
items under `threshold`, at most `budget` of them, chosen once every item has been judged
(`finalize`). People judge in `oversight-judge RUN_DIR`, which shows them the model's verdict for
augmented and approval; `oversight-compare` joins their judgments with the records.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

from judges.human import HumanSettings, human_rows
from judges.model import ModelJudge
from judges.policies import POLICY_KEYS, Policy, confidence, route_selection
from oversight.engine import Context
from oversight.plugins import Judge, JudgeReport
from oversight.types import Judgment, Question, Transcript


class MixingJudge(Judge):
    policy: Literal["route", "ensemble", "augmented", "approval"]
    threshold: float | None = Field(default=None, ge=0.0, le=1.0)
    budget: float | None = Field(default=None, ge=0.0, le=1.0)
    curve: bool | None = None
    human_weight: float | None = Field(default=None, ge=0.0, le=1.0)
    model_weight: float | None = Field(default=None, ge=0.0, le=1.0)
    model_judge: ModelJudge = Field(description="the weak-model judge run inside the job")
    human: HumanSettings = HumanSettings()

    @model_validator(mode="after")
    def _keys_of_the_policy(self) -> "MixingJudge":
        own = POLICY_KEYS[self.policy]
        for keys in POLICY_KEYS.values():
            for key in keys:
                if key not in own and getattr(self, key) is not None:
                    raise ValueError(f"{key} does not apply to policy={self.policy!r}; its keys: {sorted(own) or 'none'}")
        if self.policy == "ensemble" and self.rule.human_weight + self.rule.model_weight == 0:
            raise ValueError("human_weight and model_weight are both 0; at least one must be > 0")
        return self

    @property
    def rule(self) -> Policy:
        return Policy.from_judge_config(self.model_dump())

    async def judge(self, question: Question, transcript: Transcript, ctx: Context) -> Judgment:
        verdict = await self.model_judge.judge(question, transcript, ctx)
        return Judgment(judge=self.name, source="mixed", episode=transcript.episode, machine=verdict,
                        pending=True, seconds=verdict.seconds)

    def finalize(self, judgments: list[Judgment]) -> None:
        """Route: only the selected items stay pending; the others take the model's verdict."""
        rule = self.rule
        if rule.policy != "route":
            return
        confidences = [confidence(j.machine) for j in judgments]
        chosen = set(route_selection(confidences, rule.threshold, rule.budget))
        for i, judgment in enumerate(judgments):
            if i in chosen or judgment.machine is None:
                continue
            m = judgment.machine
            judgment.pending = False
            judgment.p, judgment.chosen, judgment.correct = m.p, m.chosen, m.correct
            judgment.parse_failed, judgment.position_flip = m.parse_failed, m.position_flip

    def report(self, job_dir: Path, summary: dict[str, Any]) -> JudgeReport | None:
        return human_rows(job_dir, summary)
