"""`oversight-agree A B`: do two finished sweeps of the same jobs reach the same verdicts?

For checking that a change of backend (hf vs vllm vs a server), dtype or machine leaves results
alone: jobs are matched by their protocol label (and judge), questions by id, judgments by episode
and position. Prints, per job: questions in both, judgments compared, how often the chosen option
agrees, the largest difference in a judge probability, and each side's accuracy with its 95% CI.
Reads records.jsonl and summary.json only. Exit 1 when the sweeps share no job.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from oversight.app import exit_code
from oversight.errors import ConfigError
from oversight.records import read_records, read_summary


def agreement(a: str | Path, b: str | Path) -> list[dict[str, Any]]:
    jobs_a, jobs_b = _jobs(Path(a)), _jobs(Path(b))
    rows = []
    for key in sorted(set(jobs_a) & set(jobs_b)):
        (dir_a, sum_a), (dir_b, sum_b) = jobs_a[key], jobs_b[key]
        by_id = {r.question_id: r for r in read_records(dir_b)}
        questions = judged = same = 0
        largest = 0.0
        for ra in read_records(dir_a):
            rb = by_id.get(ra.question_id)
            if rb is None:
                continue
            questions += 1
            for ja, jb in zip(ra.judgments, rb.judgments):
                judged += 1
                same += ja.chosen == jb.chosen
                if ja.p and jb.p:
                    largest = max(largest, *(abs(x - y) for x, y in zip(ja.p, jb.p)))
        rows.append({"protocol": key[0], "judge": key[1], "questions": questions, "judgments": judged,
                     "verdict_agreement": same / judged if judged else float("nan"), "max_abs_dp": largest,
                     "accuracy_a": sum_a.get("accuracy"), "ci_a": sum_a.get("accuracy_ci"),
                     "accuracy_b": sum_b.get("accuracy"), "ci_b": sum_b.get("accuracy_ci")})
    return rows


def _jobs(sweep: Path) -> dict[tuple[str, str], tuple[Path, dict[str, Any]]]:
    if not sweep.is_dir():
        raise ConfigError(f"{sweep}: no such directory")
    jobs = {}
    for path in sorted(sweep.rglob("summary.json")):
        summary = read_summary(path.parent)
        key = (str(summary.get("protocol")), str(summary.get("judge")))
        if key in jobs:
            raise ConfigError(f"{sweep}: two jobs of protocol {key[0]!r} and judge {key[1]!r} "
                              f"({jobs[key][0]} and {path.parent}); compare job directories instead")
        jobs[key] = (path.parent, summary)
    if not jobs:
        raise ConfigError(f"{sweep}: no finished job (summary.json) in it")
    return jobs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oversight-agree", description=__doc__.splitlines()[0])
    parser.add_argument("a", help="a sweep (or job) directory")
    parser.add_argument("b", help="another sweep (or job) directory with the same jobs")
    args = parser.parse_args(argv)
    found: list[dict[str, Any]] = []

    def work() -> None:
        from rich.console import Console
        from rich.table import Table

        found.extend(agreement(args.a, args.b))
        table = Table(title=f"verdicts: A = {args.a}, B = {args.b}")
        for column in ("protocol", "judge", "questions", "judgments", "same verdict", "max |Δp|",
                       "accuracy A [95% CI]", "accuracy B [95% CI]"):
            table.add_column(column, justify="left" if column in ("protocol", "judge") else "right")
        for r in found:
            table.add_row(r["protocol"], r["judge"], str(r["questions"]), str(r["judgments"]),
                          f"{r['verdict_agreement']:.4f}", f"{r['max_abs_dp']:.2e}",
                          _acc(r["accuracy_a"], r["ci_a"]), _acc(r["accuracy_b"], r["ci_b"]))
        Console(width=160).print(table)

    code = exit_code("oversight-agree", work)
    if code == 0 and not found:
        print(f"oversight-agree: {args.a} and {args.b} share no job (protocol and judge)", file=sys.stderr)
        return 1
    return code


def _acc(value: Any, ci: Any) -> str:
    if value is None:
        return "-"
    return f"{value:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{value:.3f}"


if __name__ == "__main__":
    sys.exit(main())
