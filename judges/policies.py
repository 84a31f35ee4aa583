"""Judging that mixes humans with weak models: policies, the human queue, and mixed metrics.

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
the items follow them in the judging queue, to extend the curve.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Sequence

from pydantic import BaseModel

from judges.agreement import agreement
from judges.store import HumanJudgment, ItemKey, read_human_judgments
from oversight.records import jsonable, read_records
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


# ---- metrics -----------------------------------------------------------------------------------------


@dataclass
class HumanReport:
    """A human or mixed job, joined with its human judgments: comparison rows and extras."""

    policy: Policy
    rows: list[dict[str, Any]] = field(default_factory=list)
    scores: list[dict[str, float]] = field(default_factory=list)  # question scores, one per row
    agreement: dict[str, Any] = field(default_factory=dict)
    curve: list[dict[str, Any]] = field(default_factory=list)


def human_report(job_dir: str | Path, summary: dict[str, Any], write: bool = True) -> HumanReport | None:
    """Rows for the comparison table from a job's records joined with its human store: the model
    alone, each person (`human:<id>`, marked `(saw <model>)` under augmented and approval), everyone
    pooled (`human`, when there are several people or none yet), and the policy's mixed verdict
    (`route:<id>`, `route`). None if no person takes part in the job. With `write`, the route curve
    (route_curve.csv/.png) and the agreement between people (human_agreement.json) are written to
    the job directory."""
    job_dir = Path(job_dir)
    records = read_records(job_dir)
    policy = job_policy(summary, records)
    if policy is None:
        return None
    items = human_items(records, policy.model_copy(update={"curve": True}))
    decisions = read_human_judgments(job_dir)
    people = sorted(decisions)
    report = HumanReport(policy=policy)
    base = {"protocol": summary.get("protocol"), "model_calls": summary.get("model_calls"),
            "cache_hits": summary.get("cache_hits"), "output_tokens": summary.get("output_tokens"),
            "wall_seconds": summary.get("wall_seconds")}

    def add(label: str, verdicts: dict[ItemKey, list[float] | None], humans: int, source: str,
            extra: dict | None = None) -> None:
        row, scores = _scored_row(label, items, verdicts, source)
        row.update(base if source != "human" else {**base, "model_calls": None, "cache_hits": None,
                                                   "output_tokens": None, "wall_seconds": None})
        row.update(humans=humans, **(extra or {}))
        report.rows.append(row)
        report.scores.append(scores)

    model_name = next((i.machine.judge for i in items if i.machine is not None), "model")
    if policy.policy != "human":
        flips = [i.machine.position_flip for i in items if i.machine and i.machine.position_flip is not None]
        orders = [o for i in items if i.machine for o in i.machine.orders]
        add(model_name, {i.key: i.machine.p if i.machine else None for i in items}, 0, "model",
            {"position_bias_rate": sum(flips) / len(flips) if flips else math.nan,
             "parse_failure_rate": sum(o.parse_failed for o in orders) / len(orders) if orders else 0.0})

    # people who saw the model's verdict are not unassisted judges: their rows say so
    seen = f" (saw {model_name})" if policy.shows_model else ""
    groups: list[tuple[str, dict[ItemKey, list[HumanJudgment]]]] = [
        (f"human:{person}{seen}", {key: [row] for key, row in decisions[person].items()}) for person in people]
    if len(people) > 1 or (not people and policy.policy == "human"):  # everyone pooled (nobody yet: a placeholder)
        merged: dict[ItemKey, list[HumanJudgment]] = {}
        for person in people:
            for key, row in decisions[person].items():
                merged.setdefault(key, []).append(row)
        groups.append((f"human{seen}", merged))
    for label, rows in groups:
        human = {key: pooled(r) for key, r in rows.items()}
        judged = {key: p for key, p in human.items() if p is not None}
        seconds = sum(row.seconds for r in rows.values() for row in r)
        add(label, judged, len(judged), "human")
        report.rows[-1]["wall_seconds"] = round(seconds, 3)
        if policy.policy != "human":
            suffix = label.partition(":")[2].removesuffix(seen)
            mixed = {i.key: mixed_p(policy, i, human.get(i.key)) for i in items}
            used = sum(1 for i in items if human.get(i.key) is not None and (policy.policy != "route" or i.required))
            add(f"{policy.policy}:{suffix}" if suffix else policy.policy, mixed, used, "mixed")
        if policy.policy == "route":
            report.curve += route_curve(label, items, human, decided=set(rows))

    if not groups and policy.policy != "human":  # nobody has judged yet: the policy rests on the model alone
        add(policy.policy, {i.key: mixed_p(policy, i, None) for i in items}, 0, "mixed")

    report.agreement = agreement({p: {k: r.chosen for k, r in decisions[p].items()
                                      if r.status == "judged" and r.chosen is not None} for p in people})
    if write:
        if people:
            (job_dir / AGREEMENT_JSON).write_text(json.dumps(jsonable(report.agreement), indent=2) + "\n")
        if policy.policy == "route":
            write_route_curve(job_dir, report, items)
    return report


def route_curve(label: str, items: Sequence[Item], human: dict[ItemKey, list[float] | None],
                decided: set[ItemKey]) -> list[dict[str, Any]]:
    """Accuracy against human budget. `items` are in confidence order; at k items the first k take
    the person's verdict (where they gave one) and the rest the model's. Points past the longest
    prefix the person has worked through are left empty (accuracy None)."""
    from oversight.metrics import accuracy_ci

    reached = 0
    while reached < len(items) and items[reached].key in decided:
        reached += 1
    points = []
    for k in range(len(items) + 1):
        point = {"judge": label, "budget": k / len(items) if items else 0.0, "k": k, "n_items": len(items),
                 "humans": sum(1 for i in items[:k] if human.get(i.key) is not None),
                 "accuracy": None, "ci_low": None, "ci_high": None}
        if k <= reached:
            verdicts = {i.key: (human.get(i.key) if pos < k and human.get(i.key) is not None else
                                (i.machine.p if i.machine else None)) for pos, i in enumerate(items)}
            values = list(_question_scores(items, verdicts).values())
            if values:
                low, high = accuracy_ci(values)
                point.update(accuracy=sum(values) / len(values), ci_low=low, ci_high=high)
        points.append(point)
    return points


def write_route_curve(job_dir: Path, report: HumanReport, items: Sequence[Item]) -> None:
    columns = ["judge", "budget", "k", "n_items", "humans", "accuracy", "ci_low", "ci_high"]
    with (job_dir / CURVE_CSV).open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(report.curve)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for label in dict.fromkeys(p["judge"] for p in report.curve):
        points = [p for p in report.curve if p["judge"] == label and p["accuracy"] is not None]
        if points:
            ax.plot([100 * p["budget"] for p in points], [p["accuracy"] for p in points], marker=".", label=label)
            ax.fill_between([100 * p["budget"] for p in points], [p["ci_low"] for p in points],
                            [p["ci_high"] for p in points], alpha=0.15)
    if items:
        ax.axvline(100 * sum(i.required for i in items) / len(items), color="grey", linestyle="--", linewidth=1,
                   label=f"configured (threshold {report.policy.threshold:g})")
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_xlim(0, 100)
    ax.set_ylim(0, 1)
    ax.set_xlabel("human budget (% of items, least confident first)")
    ax.set_ylabel("accuracy (95% CI)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(job_dir / CURVE_PNG, dpi=120)
    plt.close(fig)


def report_renderables(job: str, report: HumanReport) -> list[Any]:
    """What oversight-compare prints under its table for a human or mixed job: agreement between
    people, and for route the accuracy at budgets 0%, 10%, ..., 100%."""
    from rich.table import Table
    from rich.text import Text

    out: list[Any] = []
    a = report.agreement
    if a.get("measure"):
        name = "Cohen's kappa" if a["measure"] == "cohen_kappa" else "Krippendorff's alpha (nominal)"
        out.append(Text(f"{job}: agreement between {', '.join(a['judges'])}: {name} = {_num(a['value'])} "
                        f"on {a['n_items']} items"))
    if any(p["k"] > 0 and p["accuracy"] is not None for p in report.curve):  # someone has judged
        budgets = [b / 10 for b in range(11)]
        labels = list(dict.fromkeys(p["judge"] for p in report.curve))
        t = Table(title="Route: accuracy vs human budget", caption=f"{job}/{CURVE_CSV}; least confident items first")
        t.add_column("budget", justify="right")
        for label in labels:
            t.add_column(label, justify="right")
        columns = [curve_at(report.curve, label, budgets) for label in labels]
        for row, budget in enumerate(budgets):
            t.add_row(f"{budget:.0%}", *[_point(points[row]) for points in columns])
        out.append(t)
    return out


def _point(point: dict[str, Any]):
    from rich.text import Text

    if point["accuracy"] is None:
        return Text("not judged yet")
    return Text(f"{point['accuracy']:.3f} [{point['ci_low']:.2f}, {point['ci_high']:.2f}]")


def _num(value: float) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.3f}"


def curve_at(points: Sequence[dict[str, Any]], label: str, budgets: Sequence[float]) -> list[dict[str, Any]]:
    """The curve's points for `label` at the given budgets (k = floor(budget * N))."""
    mine = [p for p in points if p["judge"] == label]
    if not mine:
        return []
    n = mine[0]["n_items"]
    return [mine[math.floor(b * n + 1e-9)] for b in budgets]


def _scored_row(label: str, items: Sequence[Item], verdicts: dict[ItemKey, list[float] | None],
                source: str) -> tuple[dict[str, Any], dict[str, float]]:
    from oversight.metrics import accuracy_ci, brier, expected_calibration_error

    judged = []
    for item in items:
        p = verdicts.get(item.key)
        if p is None:
            continue
        chosen, correct = score(p, item.record.correct_index)
        judged.append((Judgment(judge=label, source=source, p=p, chosen=chosen, correct=correct),
                       item.record.correct_index))
    scores = _question_scores(items, verdicts)
    values = list(scores.values())
    low, high = accuracy_ci(values)
    row = {"judge": label, "n": len(values), "accuracy": sum(values) / len(values) if values else None,
           "ci_low": low, "ci_high": high, "brier": brier(judged), "ece": expected_calibration_error(judged),
           "position_bias_rate": math.nan, "parse_failure_rate": 0.0}
    return row, scores


def _question_scores(items: Sequence[Item], verdicts: dict[ItemKey, list[float] | None]) -> dict[str, float]:
    """question_id -> mean correctness over its items that have a verdict (as metrics.question_scores)."""
    per_question: dict[str, list[float]] = {}
    for item in items:
        p = verdicts.get(item.key)
        if p is not None:
            per_question.setdefault(item.record.question_id, []).append(score(p, item.record.correct_index)[1])
    return {q: sum(v) / len(v) for q, v in per_question.items()}
