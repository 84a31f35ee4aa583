"""Compare the jobs of a sweep: comparison.csv, comparison.md, comparison.png and a rich table.

Works from finished files alone (each job's summary.json and records.jsonl), so any sweep can be
re-compared later: `oversight-compare runs/compare`. Paired differences are computed question by
question against a baseline job (by default the judge alone without the passage, the floor).
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from oversight.app import exit_code
from oversight.errors import OversightError
from oversight.metrics import paired_difference, question_scores
from oversight.plugins import TARGET, Judge, JudgeReport, build
from oversight.records import job_dirs, read_records, read_summary

COLUMNS = ["job", "protocol", "judge", "n", "failed", "accuracy", "ci_low", "ci_high", "diff_vs_baseline", "diff_ci_low",
           "diff_ci_high", "brier", "ece", "position_bias_rate", "parse_failure_rate", "model_calls", "cache_hits",
           "output_tokens", "calls_per_question", "wall_seconds", "humans"]


DEFAULT_BASELINE = "direct"  # the judge alone: the floor (conf/config.yaml `baseline`)

#: how the accuracy intervals are made (oversight.metrics.accuracy_ci), under the printed table
CI_CAPTION = ("95% CI over questions: Wilson when every question scores 0 or 1; else a t interval, widened to the "
              "Wilson interval over the judgments when fewer than 10 questions differ from the most common score "
              "(never zero-width). Δ: paired t interval over questions.")


@dataclass
class Comparison:
    """A sweep's comparison: one row per job (or per person / policy of a human job), each paired
    with the baseline job question by question."""

    rows: list[dict[str, Any]]
    baseline: str | None  # the baseline job's protocol label; None: no paired differences
    reports: dict[Path, JudgeReport | None] = field(default_factory=dict)


def compare(sweep_dir: str | Path, baseline: str | None = DEFAULT_BASELINE, console: Console | None = None,
            strict: bool = False) -> list[dict]:
    """Compare every finished job under `sweep_dir`, pairing each with the `baseline` job (a protocol
    label, a job directory name or one of its overrides). An ambiguous baseline is an error; one
    that matches no job is an error when `strict`, else a printed note and no paired differences.
    Writes comparison.csv, comparison.md and comparison.png and prints the table."""
    sweep_dir = Path(sweep_dir)
    # off a terminal (CI logs, pipes) rich would squeeze the table into 80 columns
    console = console or Console(width=None if sys.stdout.isatty() else 200)
    found = comparison(sweep_dir, baseline, console, strict)
    rows, baseline_label = found.rows, found.baseline or "none"
    _write_csv(sweep_dir / "comparison.csv", rows)
    _write_md(sweep_dir / "comparison.md", rows, baseline_label)
    _plot(sweep_dir / "comparison.png", rows, baseline_label)
    console.print(table(rows, baseline_label))
    for report in found.reports.values():
        for renderable in report.renderables if report else ():
            console.print(renderable)
    return rows


def comparison(sweep_dir: str | Path, baseline: str | None = DEFAULT_BASELINE, console: Console | None = None,
               strict: bool = False) -> Comparison:
    """The comparison rows of every finished job under `sweep_dir` (what `compare` writes and the
    report shows), computed from the files alone; writes nothing."""
    sweep_dir = Path(sweep_dir)
    jobs = job_dirs(sweep_dir, required=True)
    summaries = {job: read_summary(job) for job in jobs}
    scores = {job: question_scores(read_records(job), summaries[job]["judge"]) for job in jobs}
    console = console or Console(stderr=True)
    base = _pick_baseline(summaries, baseline, strict, console)
    # judges with rows of their own (people, mixing policies) are asked for them
    reports = {job: judge_report(job, summaries[job]) for job in jobs}
    rows = []
    for job in jobs:
        s = summaries[job]
        if reports[job] is not None:
            for row, row_scores in zip(reports[job].rows, reports[job].scores):
                diff = paired_difference(row_scores, scores[base]) if base is not None else {}
                rows.append({"job": str(job.relative_to(sweep_dir)) or ".", **row, "diff_vs_baseline": diff.get("diff"),
                             "diff_ci_low": diff.get("ci_low"), "diff_ci_high": diff.get("ci_high")})
            continue
        diff = paired_difference(scores[job], scores[base]) if base is not None else {}
        rows.append({
            "job": str(job.relative_to(sweep_dir)) or ".", "protocol": s["protocol"], "judge": s["judge"],
            "n": s["n"], "failed": s.get("n_failed", 0), "accuracy": s["accuracy"], "ci_low": s["accuracy_ci"][0], "ci_high": s["accuracy_ci"][1],
            "diff_vs_baseline": diff.get("diff"), "diff_ci_low": diff.get("ci_low"),
            "diff_ci_high": diff.get("ci_high"), "brier": s["brier"], "ece": s["ece"],
            "position_bias_rate": s["position_bias_rate"], "parse_failure_rate": s["parse_failure_rate"],
            "model_calls": s["model_calls"], "cache_hits": s["cache_hits"], "output_tokens": s["output_tokens"],
            "calls_per_question": s.get("calls_per_question"), "wall_seconds": s["wall_seconds"],
        })
    disambiguate_labels(rows)
    rows.sort(key=lambda r: (r["accuracy"] is None, r["accuracy"] or 0))
    return Comparison(rows=rows, baseline=summaries[base]["protocol"] if base is not None else None, reports=reports)


# judge configs saved before the plugin contract named a module instead of a class
_LEGACY_JUDGES = {"judges.model": "judges.model.ModelJudge", "judges.human": "judges.human.HumanJudge",
                  "judges.mixing": "judges.mixing.MixingJudge"}


def judge_report(job: Path, summary: dict[str, Any]) -> JudgeReport | None:
    """The job's judge, rebuilt from its saved config, asked for its comparison rows."""
    spec = dict((summary.get("config") or {}).get("judge") or {})
    if TARGET not in spec and spec.get("module") in _LEGACY_JUDGES:
        spec[TARGET] = _LEGACY_JUDGES[spec.pop("module")]
    if TARGET not in spec:
        return None
    judge: Judge = build(spec, "judge", Judge)
    return judge.report(job, summary)


def disambiguate_labels(rows: list[dict]) -> None:
    """Jobs that share a protocol label and judge (a sweep over `protocol.turns`, say) are told apart
    in the tables by the overrides in which their job names differ."""
    groups: dict[tuple, list[dict]] = {}
    for row in rows:
        groups.setdefault((row["protocol"], row["judge"], row.get("humans")), []).append(row)
    for same in groups.values():
        if len(same) < 2:
            continue
        items = [row["job"].split(",") for row in same]
        common = set(items[0]).intersection(*items[1:])
        for row, own in zip(same, items):
            differing = [item for item in own if item not in common]
            if differing:
                row["protocol"] = f"{row['protocol']} ({','.join(differing)})"


def _pick_baseline(summaries: dict[Path, dict], wanted: str | None, strict: bool, console: Console) -> Path | None:
    if wanted:
        matches = [job for job, s in summaries.items()
                   if s["protocol"] == wanted or job.name == wanted or wanted in job.name.split(",")]
        if len(matches) == 1:
            return matches[0]
        if matches:
            raise OversightError(f"baseline {wanted!r} matches {len(matches)} jobs: {sorted(j.name for j in matches)}; "
                                 f"name one protocol label or job override")
        problem = (f"baseline {wanted!r} matches no job; protocols: "
                   f"{sorted({s['protocol'] for s in summaries.values()})}; jobs: {sorted(j.name for j in summaries)}")
        if strict:
            raise OversightError(problem)
        console.print(f"note: {problem}; the table has no paired differences")
    return None


def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def table(rows: list[dict], baseline: str) -> Table:
    t = Table(title=f"Judge accuracy by protocol (95% CI; paired difference vs {baseline})", caption=CI_CAPTION)
    for column in ["protocol", "judge", "n", "failed", "humans", "accuracy", "95% CI", f"Δ vs {baseline}", "Brier", "ECE",
                   "pos. bias", "calls/q", "calls", "cache hits"]:
        t.add_column(column, justify="right" if column not in ("protocol", "judge") else "left")
    for r in rows:
        t.add_row(r["protocol"], r["judge"], str(r["n"]), _fmt(r.get("failed")), _fmt(r.get("humans")), _fmt(r["accuracy"]),
                  f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}]", _diff(r), _fmt(r["brier"]), _fmt(r["ece"]),
                  _fmt(r["position_bias_rate"]), _fmt(r.get("calls_per_question"), 1), _fmt(r["model_calls"]),
                  _fmt(r["cache_hits"]))
    return t


def _diff(r: dict) -> str:
    if r["diff_vs_baseline"] is None or (isinstance(r["diff_vs_baseline"], float) and math.isnan(r["diff_vs_baseline"])):
        return "-"
    return f"{r['diff_vs_baseline']:+.3f} [{r['diff_ci_low']:+.3f}, {r['diff_ci_high']:+.3f}]"


def _write_csv(path: Path, rows: list[dict]) -> None:
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)


def _write_md(path: Path, rows: list[dict], baseline: str) -> None:
    lines = [f"| protocol | judge | n | failed | accuracy | 95% CI | Δ vs {baseline} [95% CI] | Brier | ECE | position bias | "
             "calls/question | calls | cache hits |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['protocol']} | {r['judge']} | {r['n']} | {_fmt(r.get('failed'))} | {_fmt(r['accuracy'])} | "
                     f"[{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] | {_diff(r)} | {_fmt(r['brier'])} | "
                     f"{_fmt(r['ece'])} | {_fmt(r['position_bias_rate'])} | {_fmt(r.get('calls_per_question'), 1)} | "
                     f"{_fmt(r['model_calls'])} | {_fmt(r['cache_hits'])} |")
    path.write_text("\n".join(lines) + "\n")


def _plot(path: Path, rows: list[dict], baseline: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(max(5, 1.3 * len(rows)), 3.6))
    xs = range(len(rows))
    acc = [r["accuracy"] if r["accuracy"] is not None else math.nan for r in rows]
    err = [[a - (r["ci_low"] or a) for a, r in zip(acc, rows)], [(r["ci_high"] or a) - a for a, r in zip(acc, rows)]]
    ax.bar(xs, acc, yerr=err, capsize=4, color="#6b9ac4")
    ax.axhline(0.5, color="grey", linestyle=":", linewidth=1)
    ax.set_xticks(list(xs), [f"{r['protocol']}\n{r['judge']}" for r in rows], fontsize=8)
    ax.set_ylim(0, 1)
    ax.set_ylabel("judge accuracy (95% CI)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def all_failed(sweep_dir: str | Path) -> list[str]:
    """The jobs under `sweep_dir` whose every question failed, with their first error."""
    found = []
    for job in job_dirs(sweep_dir):
        s = read_summary(job)
        questions = s.get("questions", s["n"] + s.get("n_failed", 0))
        if questions and s.get("n_failed", 0) >= questions:
            found.append(f"{job.relative_to(sweep_dir)} ({s.get('first_error') or 'no error recorded'})")
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oversight-compare", description=__doc__.splitlines()[0])
    parser.add_argument("sweep_dir", help="a sweep directory under runs/ (or any directory of finished jobs)")
    parser.add_argument("--baseline", help="protocol label, job directory name or one of a job's overrides "
                                           "(protocol.max_depth=0) to pair differences against")
    args = parser.parse_args(argv)

    def work() -> None:
        compare(args.sweep_dir, args.baseline or DEFAULT_BASELINE, strict=args.baseline is not None)
        for job in all_failed(args.sweep_dir):
            print(f"oversight-compare: every question failed in {job}", file=sys.stderr)

    return exit_code("oversight-compare", work)


if __name__ == "__main__":
    sys.exit(main())
