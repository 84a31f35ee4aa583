"""Tidy exports: every judgment of a job or a sweep as one row of a pandas DataFrame.

    df = oversight.load("runs/compare")
    df.groupby("protocol").correct.mean()
    df.to_parquet("compare.parquet")

One row per judgment (a question's episode judged by one judge). The option orders the judge read
and its probabilities under each order are list columns (`orders`, `p_by_order`), so nothing in
records.jsonl is averaged away. Calls and tokens are the question's whole call graph (the protocol
and the judge, answered by a backend or by the call cache), repeated on each of its judgments.

Protocol diagnostics (oversight.diagnostics) come two ways: per judgment as columns
(`honest_arguer`: the episode's one arguer argued the true answer, None for debate and direct;
`leaked_turns`: its turns for a wrong answer that give the right one away; `correct_flips_as_ties`:
correctness with a position flip scored 0.5), and per job in `df.attrs["diagnostics"]` (job ->
truth advantage, style balance, leaks, order effects, judge and arguer models).

Human decisions stored next to a job (human_judgments.sqlite) are read by the judge layer, which
the kernel does not import: `oversight.load` (oversight.app.api.load) passes them in as `humans`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Callable, Iterable

from oversight.diagnostics import diagnose, judgment_diagnostics
from oversight.graph import call_costs
from oversight.records import SUMMARY, job_dirs, read_records, read_summary
from oversight.types import Judgment, Record

COLUMNS = ["job", "question_id", "protocol", "judge", "episode", "source", "human", "judge_id", "n_options",
           "correct_index", "orders", "p_by_order", "p", "p_correct", "chosen", "correct", "position_flip",
           "parse_failed", "pending", "confidence", "explanation", "seconds", "calls", "judge_calls",
           "cache_hits", "prompt_tokens", "output_tokens", "honest_arguer", "leaked_turns", "correct_flips_as_ties",
           "question"]

# job directory -> the human rows of that job, each a dict with question_id, episode, judge_id,
# chosen, p, confidence, explanation, seconds (see judges.store.HumanJudgment)
HumanRows = Callable[[Path], Iterable[dict[str, Any]]]


def load(directory: str | Path, humans: HumanRows | None = None):
    """A DataFrame with one row per judgment in every job under `directory` (a job or a sweep)."""
    import pandas as pd

    directory = Path(directory)
    jobs = job_dirs(directory, required=True)
    rows: list[dict[str, Any]] = []
    diagnostics: dict[str, dict[str, Any]] = {}
    for job in jobs:
        rel = str(job.relative_to(directory)) or "."
        records = read_records(job)
        judge = read_summary(job).get("judge") if (job / SUMMARY).exists() else None
        diagnostics[rel] = diagnose(records, judge)
        for record in records:
            costs = _costs(record)
            for judgment in record.judgments:
                rows.append(_row(rel, record, judgment, costs))
        if humans is not None:
            by_id = {r.question_id: r for r in records}
            for h in humans(job):
                record = by_id.get(h["question_id"])
                if record is not None:
                    rows.append(_human_row(rel, record, h, _costs(record)))
    df = pd.DataFrame(rows, columns=COLUMNS)
    df.attrs["diagnostics"] = diagnostics
    return df


def _costs(record: Record) -> dict[str, int]:
    costs = call_costs([record.graph])
    costs["cache_hits"] = sum(1 for n in record.graph.get("nodes", ())
                              if n.get("kind") == "call" and (n.get("output") or {}).get("cached"))
    return costs


def _row(job: str, record: Record, j: Judgment, costs: dict[str, int]) -> dict[str, Any]:
    return {
        "job": job, "question_id": record.question_id, "protocol": record.protocol, "judge": j.judge,
        "episode": j.episode, "source": j.source, "human": j.source != "model", "judge_id": j.judge_id,
        "n_options": len(record.options), "correct_index": record.correct_index,
        "orders": [list(o.order) for o in j.orders], "p_by_order": [list(o.p) for o in j.orders],
        "p": list(j.p) if j.p is not None else None,
        "p_correct": j.p[record.correct_index] if j.p else None,
        "chosen": j.chosen, "correct": j.correct, "position_flip": j.position_flip, "parse_failed": j.parse_failed,
        "pending": j.pending, "confidence": max(j.p) if j.p else None, "explanation": None, "seconds": j.seconds,
        **costs, **judgment_diagnostics(record, j), "question": record.question,
    }


def _human_row(job: str, record: Record, h: dict[str, Any], costs: dict[str, int]) -> dict[str, Any]:
    chosen = h.get("chosen")
    p = h.get("p")
    return {
        "job": job, "question_id": record.question_id, "protocol": record.protocol,
        "judge": f"human:{h['judge_id']}", "episode": h.get("episode", "main"), "source": "human", "human": True,
        "judge_id": h["judge_id"], "n_options": len(record.options), "correct_index": record.correct_index,
        "orders": [list(h["display_order"])] if h.get("display_order") else [],
        "p_by_order": [list(p)] if p and h.get("display_order") else [],
        "p": list(p) if p else None, "p_correct": p[record.correct_index] if p else None,
        "chosen": chosen, "correct": None if chosen is None else float(chosen == record.correct_index),
        "position_flip": None, "parse_failed": False, "pending": False, "confidence": h.get("confidence"),
        "explanation": h.get("explanation"), "seconds": h.get("seconds"), **costs,
        **judgment_diagnostics(record, Judgment(judge=f"human:{h['judge_id']}", episode=h.get("episode", "main"),
                                                chosen=chosen, correct=None if chosen is None else
                                                float(chosen == record.correct_index))),
        "question": record.question,
    }
