"""oversight-report: the static HTML report of a sweep, built from a real tiny sweep and read back.

The sweep runs with the tiny real llama (tests/conftest.py); the report is checked as files here and
in a real headless Chromium in test_report_browser.py.
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from oversight.records import read_records, read_summary

PROTOCOLS = ("direct", "direct_passage", "consultancy", "debate")


def run_sweep(model_dir: Path, root: Path, n: int = 6, protocols=PROTOCOLS) -> subprocess.CompletedProcess:
    args = ["-m", f"protocol={','.join(protocols)}", f"task.n={n}", f"hydra.sweep.dir={root}/sweep",
            f"model.path={model_dir}", "model.package=null", "model.gguf_file=null", "model.name=tiny-llama",
            "progress=false"]
    env = {**os.environ, "OVERSIGHT_CALL_CACHE": str(root / "calls.sqlite")}
    proc = subprocess.run([sys.executable, "-m", "oversight.app.cli", *args], cwd=root, env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, f"sweep failed:\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def sweep_run(tiny_model_dir, tmp_path_factory) -> tuple[Path, subprocess.CompletedProcess]:
    root = tmp_path_factory.mktemp("report-sweep")
    return root / "sweep", run_sweep(tiny_model_dir, root)


@pytest.fixture(scope="module")
def sweep(sweep_run) -> Path:
    return sweep_run[0]


def test_a_sweep_ends_by_printing_the_path_of_its_report(sweep_run):
    sweep, proc = sweep_run
    index = sweep / "report" / "index.html"
    last = [line for line in proc.stdout.splitlines() if line.strip()][-1]
    assert last.startswith(f"report: {index} ") and index.exists()
    _, data = read_data(index.parent / "data" / "sweep.js")
    assert len(data["jobs"]) == len(PROTOCOLS) and data["baseline"] == "direct"


def read_data(path: Path):
    """A report data file is `OVERSIGHT.data("key",JSON);`: the JSON it hands to report.js."""
    text = path.read_text()
    assert text.startswith("OVERSIGHT.data(") and text.rstrip().endswith(");"), path
    key, _, body = text[len("OVERSIGHT.data("):].partition(",")
    return json.loads(key), json.loads(body.rstrip().removesuffix(");"))


def build(directory: Path) -> Path:
    proc = subprocess.run([sys.executable, "-m", "oversight.app.report", str(directory)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    index = directory / "report" / "index.html"
    assert f"report: {index}" in proc.stdout
    return index


def test_report_of_a_sweep_holds_its_comparison_and_every_question(sweep):
    index = build(sweep)
    report = index.parent
    rows = list(csv.DictReader((sweep / "comparison.csv").open()))
    _, data = read_data(report / "data" / "sweep.js")
    assert data["baseline"] == "direct"
    assert sorted(r["job"] for r in data["rows"]) == sorted(r["job"] for r in rows)
    html = index.read_text()
    for row in rows:  # the table shows what oversight-compare computed, formatted
        shown = next(r for r in data["rows"] if r["job"] == row["job"])
        assert shown["accuracy"] == pytest.approx(float(row["accuracy"]))
        assert f"{float(row['accuracy']):.3f}" in html
        if row["diff_vs_baseline"]:
            assert f"{float(row['diff_vs_baseline']):+.3f}" in html
    assert html.count("<svg") >= 3 + len(rows)  # accuracy, difference, cost plots and a reliability diagram per job
    assert "http://" not in html.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing fetched from a network

    jobs = sorted(p.parent for p in sweep.rglob("summary.json") if "report" not in p.parts)
    assert [j["dir"] for j in data["jobs"]] == [str(j.relative_to(sweep)) for j in jobs]
    for k, job in enumerate(jobs):
        records = read_records(job)
        _, index_data = read_data(report / "data" / f"job-{k}.js")
        assert [q["id"] for q in index_data["questions"]] == [r.question_id for r in records]
        assert [q["score"] for q in index_data["questions"]] == [r.correct for r in records]
        for n, record in enumerate(records):  # one data file per question: a page never loads the sweep
            key, page = read_data(report / "data" / "q" / str(k) / f"{n}.js")
            assert key == f"q/{k}/{n}" and page["id"] == record.question_id
            assert [j["p"] for j in page["judgments"]] == [j.p for j in record.judgments]
            assert [[o["p"] for o in j["orders"]] for j in page["judgments"]] == \
                   [[o.p for o in j.orders] for j in record.judgments]
            assert len(page["graph"]["nodes"]) == len(record.graph["nodes"])
            assert len(page["graph"]["edges"]) == len(record.graph["edges"])
            # the hidden passage is kept in the record, and the judge's view says whether it saw it
            assert record.context and record.metadata["subject"] in record.context and page["passage"] == record.context
            assert page["passage_seen_by_judge"] == (read_summary(job)["protocol"] == "direct+passage")
            for t_page, t in zip(page["transcripts"], record.transcripts):
                for turn_page, turn in zip(t_page["turns"], t.turns):
                    quotes = [s for s in turn_page["segments"] if s.get("quote")]
                    assert [(s["text"], s["verified"]) for s in quotes] == [(q.text, q.verified) for q in turn.quotes]
                    assert "".join(s["text"] for s in turn_page["segments"] if not s.get("quote")) in turn.text


def test_report_of_a_single_job_and_bad_directories(sweep, tmp_path):
    job = next(p.parent for p in sweep.rglob("summary.json") if "protocol=debate" in str(p))
    index = build(job)
    _, data = read_data(index.parent / "data" / "sweep.js")
    assert len(data["jobs"]) == 1 and data["jobs"][0]["dir"] == "."
    assert data["rows"][0]["accuracy"] == pytest.approx(read_summary(job)["accuracy"])

    bad = subprocess.run([sys.executable, "-m", "oversight.app.report", str(sweep), "--baseline", "oracle"],
                         capture_output=True, text=True, timeout=120)
    assert bad.returncode == 2 and "baseline 'oracle' matches no job" in bad.stderr
    assert (sweep / "report" / "index.html").exists()  # the report built before is left as it was

    empty = tmp_path / "empty"
    empty.mkdir()
    proc = subprocess.run([sys.executable, "-m", "oversight.app.report", str(empty)], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2 and f"{empty}: no summary.json found" in proc.stderr


def test_passage_comes_from_the_record_and_older_records_regenerate_it(sweep, tmp_path):
    import shutil

    job = next(p.parent for p in sweep.rglob("summary.json") if "protocol=consultancy" in str(p))
    records = read_records(job)

    def page_passages(directory: Path) -> list:
        build(directory)
        return [read_data(directory / "report" / "data" / "q" / "0" / f"{n}.js")[1] for n in range(len(records))]

    # a record is complete on its own: with the task config gone from summary.json, the passage still shows
    alone = tmp_path / "alone"
    shutil.copytree(job, alone)
    summary = json.loads((alone / "summary.json").read_text())
    summary["config"]["task"] = {"_target_": "no.such.Task"}
    (alone / "summary.json").write_text(json.dumps(summary))
    assert [p["passage"] for p in page_passages(alone)] == [r.context for r in records]
    # records written before the passage was kept: it is regenerated from the task config...
    old = tmp_path / "old"
    shutil.copytree(job, old)
    lines = [json.loads(line) for line in (old / "records.jsonl").read_text().splitlines()]
    (old / "records.jsonl").write_text("".join(json.dumps({k: v for k, v in r.items() if k != "context"}) + "\n"
                                               for r in lines))
    assert [p["passage"] for p in page_passages(old)] == [r.context for r in records]
    # ...and where that task cannot be re-read, the page says why instead of showing nothing silently
    (old / "summary.json").write_text(json.dumps(summary))
    notes = {p["passage_note"] for p in page_passages(old)}
    assert len(notes) == 1 and "the task could not be re-read to show the passage" in notes.pop()
