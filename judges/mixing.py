"""Mixing judges: a weak model judges inside the job, and people judge some or all items after it.

`policy` is one of route, ensemble, augmented, approval (see oversight/mixing.py for what each
does). The weak model is `judges.model` configured by the nested `model_judge:` block; its verdict
is kept on every judgment (`Judgment.machine`). Items that need a person are left pending
(`source="mixed"`): every item for ensemble, augmented and approval; for route, the least confident
items under `threshold`, at most `budget` of them, chosen once every item has been judged
(`finalize`). People judge in `oversight-judge RUN_DIR`, which shows them the model's verdict for
augmented and approval; `oversight-compare` joins their judgments with the records.
"""

from __future__ import annotations

from typing import Any

from judges import model as model_judges
from judges.human import HumanSettings, human_settings
from oversight.engine import Context
from oversight.errors import ConfigError
from oversight.mixing import POLICY_KEYS, Policy, confidence, route_selection
from oversight.types import Judgment, Question, Transcript

COMMON_KEYS = {"module", "name", "policy", "model_judge", "human"}


def build(cfg: dict[str, Any]) -> "MixingJudge":
    known = COMMON_KEYS | {k for keys in POLICY_KEYS.values() for k in keys}
    unknown = set(cfg) - known
    if unknown:
        raise ConfigError(f"judge: unknown keys {sorted(unknown)}; allowed: {sorted(known)}")
    policy = Policy.from_judge_config(cfg)
    nested = cfg.get("model_judge")
    if not isinstance(nested, dict):
        raise ConfigError(f"judge.model_judge must be a weak-model judge config (kind: likelihood | logprob | "
                          f"generative), got {nested!r}")
    try:
        machine = model_judges.build({k: v for k, v in nested.items() if k != "module"})
    except ConfigError as exc:
        raise ConfigError(f"judge.model_judge: {exc}") from exc
    settings = human_settings(dict(cfg.get("human") or {}), "judge.human")
    return MixingJudge(str(cfg.get("name") or policy.policy), policy, machine, settings)


class MixingJudge:
    def __init__(self, name: str, policy: Policy, machine: model_judges.ModelJudge, settings: HumanSettings):
        self.name = name
        self.policy = policy
        self.machine = machine
        self.settings = settings

    async def judge(self, question: Question, transcript: Transcript, ctx: Context) -> Judgment:
        verdict = await self.machine.judge(question, transcript, ctx)
        return Judgment(judge=self.name, source="mixed", episode=transcript.episode, machine=verdict,
                        pending=True, seconds=verdict.seconds)

    def finalize(self, judgments: list[Judgment]) -> None:
        """Route: only the selected items stay pending; the others take the model's verdict."""
        if self.policy.policy != "route":
            return
        confidences = [confidence(j.machine) for j in judgments]
        chosen = set(route_selection(confidences, self.policy.threshold, self.policy.budget))
        for i, judgment in enumerate(judgments):
            if i in chosen or judgment.machine is None:
                continue
            m = judgment.machine
            judgment.pending = False
            judgment.p, judgment.chosen, judgment.correct = m.p, m.chosen, m.correct
            judgment.parse_failed, judgment.position_flip = m.parse_failed, m.position_flip
