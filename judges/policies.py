"""Judging that mixes humans with weak models: the policies, who judges what, how verdicts combine.

Policies (judge configs in conf/judge/):
- `human`: people judge every item; no model.
- `route`: the weak model judges every item; the items it is least sure of (confidence = the
  probability of its chosen option, below `threshold`) go to people, at most `budget` of all items.
- `ensemble`: p = (human_weight * p_human + model_weight * p_model) / (human_weight + model_weight).
- `augmented`: the person sees the model's verdict and confidence before choosing; theirs is final.
- `approval`: the model's verdict stands unless the person overrides it.
An item with no human verdict (not judged yet, skipped, timed out) keeps the model's verdict.

For `route`, people work in model-confidence order, least confident first, so the accuracy at any
budget from 0% to 100% is read off one set of judgments without re-judging: at budget b the first
floor(b * N) items take the human verdict (`route_curve`). The run itself only marks the items the
configured threshold and budget send to people (`route_selection`); with `curve: true` the rest of
the items follow them in the judging queue, to extend the curve (judges.human_report scores it).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence

from pydantic import BaseModel

from judges.store import HumanJudgment, ItemKey
from oversight.types import Judgment, Record, Transcript
from judges.verdicts import score

# oversight.metrics (scipy) is imported where metrics are computed, so the judging UI starts fast

POLICIES = ("human", "route", "ensemble", "augmented", "approval")
#: keys each mixing policy accepts, with their defaults
POLICY_KEYS: dict[str, dict[str, Any]] = {
    "route": {"threshold": 0.8, "budget": 0.2, "curve": True},
    "ensemble": {"human_weight": 0.5, "model_weight": 0.5},
    "augmented": {},
    "approval": {},
}
CURVE_CSV = "route_curve.csv"
CURVE_PNG = "route_curve.png"
AGREEMENT_JSON = "human_agreement.json"


class Policy(BaseModel):
    """How human and model verdicts are combined (validated from a judge config)."""

    policy: Literal["human", "route", "ensemble", "augmented", "approval"]
    threshold: float = 0.8
    budget: float = 0.2
    curve: bool = True
    human_weight: float = 0.5
    model_weight: float = 0.5

    @property
    def shows_model(self) -> bool:
        """Whether the person sees the model's verdict before choosing."""
        return self.policy in ("augmented", "approval")

    @classmethod
    def from_judge_config(cls, cfg: dict[str, Any]) -> "Policy":
        """The policy of a (validated) judge config, as saved in a job's summary.json: keys left
        unset (None) take the policy's defaults."""
        name = cfg.get("policy") or "human"
        if cfg.get("module") == "judges.human":  # summaries written before the plugin contract
            name = "human"
        values = {k: cfg[k] for k in POLICY_KEYS.get(name, {}) if cfg.get(k) is not None}
        return cls(policy=name, **values)


# ---- which items go to people, and in what order ---------------------------------------------------


def confidence(judgment: Judgment | None) -> float:
    """The model's confidence: the probability of its chosen option (0 for a failed verdict)."""
    if judgment is None or not judgment.p:
        return 0.0
    return max(judgment.p)


def confidence_order(confidences: Sequence[float]) -> list[int]:
    """Indices, least confident first (ties keep their original order)."""
    return sorted(range(len(confidences)), key=lambda i: (confidences[i], i))


def route_selection(confidences: Sequence[float], threshold: float, budget: float) -> list[int]:
    """Indices of the items sent to people: below `threshold`, least confident first, at most
    floor(budget * N) of the N items."""
    limit = math.floor(budget * len(confidences) + 1e-9)
    return [i for i in confidence_order(confidences) if confidences[i] < threshold][:limit]


@dataclass
class Item:
    """One transcript that a person may judge, with the job's judgment of it."""

    record: Record
    transcript: Transcript
    judgment: Judgment  # pending when the policy needs a person's verdict
    required: bool  # the policy needs a person's verdict (False: an extra item for the route curve)
    show_model: bool  # the person sees judgment.machine before choosing

    @property
    def key(self) -> ItemKey:
        return (self.record.question_id, self.transcript.episode)

    @property
    def machine(self) -> Judgment | None:
        return self.judgment.machine


def human_items(records: Sequence[Record], policy: Policy) -> list[Item]:
    """Every item of a human or mixed job, in the order people judge them."""
    items = []
    for record in records:
        episodes = {t.episode: t for t in record.transcripts}
        for judgment in record.judgments:
            if judgment.source not in ("human", "mixed") or judgment.episode not in episodes:
                continue
            items.append(Item(record=record, transcript=episodes[judgment.episode], judgment=judgment,
                              required=judgment.pending, show_model=policy.shows_model))
    if policy.policy == "route":
        order = confidence_order([confidence(item.machine) for item in items])
        items = [items[i] for i in order]
        if not policy.curve:
            items = [item for item in items if item.required]
    return items


def job_policy(summary: dict[str, Any], records: Sequence[Record]) -> Policy | None:
    """The job's policy, or None when no person takes part in its judging."""
    if not any(j.source in ("human", "mixed") for r in records for j in r.judgments):
        return None
    return Policy.from_judge_config((summary.get("config") or {}).get("judge") or {})


# ---- combining verdicts -----------------------------------------------------------------------------


def pooled(rows: Sequence[HumanJudgment]) -> list[float] | None:
    """Several people's verdicts on one item: their probabilities averaged."""
    ps = [r.p for r in rows if r.status == "judged" and r.p]
    if not ps:
        return None
    return [sum(p[i] for p in ps) / len(ps) for i in range(len(ps[0]))]


def mixed_p(policy: Policy, item: Item, human: list[float] | None) -> list[float] | None:
    """The policy's verdict on one item, given the person's probabilities (None: no verdict)."""
    model = item.machine.p if item.machine is not None else None
    if policy.policy == "human":
        return human
    if human is None:
        return model
    if policy.policy == "route":
        return human if item.required else model
    if policy.policy == "augmented" or model is None:
        return human
    if policy.policy == "ensemble":
        wh, wm = policy.human_weight, policy.model_weight
        return [(wh * h + wm * m) / (wh + wm) for h, m in zip(human, model)]
    # approval: the model's verdict stands unless the person picked another option
    approved = score(human, 0)[0] == item.machine.chosen
    return model if approved else human
