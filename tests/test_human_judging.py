"""Human judging and mixed human/model judging: the store, the judges, the metrics, and the judging
UI driven headlessly through textual's pilot (tests/test_judge_terminal.py drives it in a real
terminal). Runs are real: debate on the tiny model through run_job, configs composed from conf/."""

from __future__ import annotations

import asyncio
import csv
import json
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.geometry import Region

from human_runs import Runs, plant_markup
from tests.helpers import build_judge
from judges.literal import literal
from judges.session import JudgingSession
from judges.tui import JudgeApp
from judges.agreement import agreement, cohen_kappa, krippendorff_alpha_nominal
from oversight.app.compare import compare
from oversight.errors import ConfigError
from judges.store import STORE, HumanJudgment, HumanStore
from judges.policies import CURVE_CSV, CURVE_PNG, Policy, confidence, human_items, mixed_p, route_selection
from oversight.records import read_records, read_summary
from oversight.app.run import load_task

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def runs(tmp_path_factory, tiny_model_cfg) -> Runs:
    return Runs(tmp_path_factory.mktemp("human-runs"), tiny_model_cfg)


def decide_all(run: Path, judge_id: str, count: int, answer) -> JudgingSession:
    """A scripted judge: `answer(position, item) -> (chosen option, confidence)` for `count` items."""
    session = JudgingSession(run, judge_id)
    for position in range(count):
        item = session.current()
        chosen, conf = answer(position, item)
        session.decide(item, "judged", chosen=chosen, confidence=conf, started_at=time.time(), seconds=0.5)
    session.close()
    return session


# ---- agreement ---------------------------------------------------------------------------------------


def test_agreement_matches_textbook_values():
    # Cohen's kappa, the standard 2x2 example: 20 yes/yes, 5 yes/no, 10 no/yes, 15 no/no -> 0.4
    a = ["y"] * 25 + ["n"] * 25
    b = ["y"] * 20 + ["n"] * 5 + ["y"] * 10 + ["n"] * 15
    assert cohen_kappa(a, b) == pytest.approx(0.4)
    # Krippendorff (2011), "Computing Krippendorff's alpha-reliability": 4 coders, 12 units, nominal
    m = None
    coders = [[1, 2, 3, 3, 2, 1, 4, 1, 2, m, m, m],
              [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, m, 3],
              [m, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, m],
              [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, m]]
    units = [[c[u] for c in coders if c[u] is not None] for u in range(12)]
    assert krippendorff_alpha_nominal(units) == pytest.approx(0.743, abs=5e-4)
    labels = {f"c{i}": {u: v for u, v in enumerate(c) if v is not None} for i, c in enumerate(coders)}
    assert agreement(labels)["measure"] == "krippendorff_alpha"
    two = agreement({"x": dict(enumerate(a)), "y": dict(enumerate(b))})
    assert (two["measure"], two["n_items"]) == ("cohen_kappa", 50) and two["value"] == pytest.approx(0.4)


# ---- the store ------------------------------------------------------------------------------------------


def test_store_commits_each_row_durably_and_undo_keeps_history(tmp_path):
    store = HumanStore(tmp_path)
    assert store.path == tmp_path / STORE
    row = dict(judge_id="alice", episode="main", started_at=1.0, ended_at=2.0, seconds=1.0)
    store.add(HumanJudgment(question_id="q1", status="judged", chosen=1, confidence=0.7, p=[0.3, 0.7], **row))
    store.add(HumanJudgment(question_id="q2", status="skipped", **row))
    # a second connection (another process, a crash-restart) sees both rows at once: committed
    other = sqlite3.connect(tmp_path / STORE)
    assert other.execute("SELECT COUNT(*) FROM judgments").fetchone()[0] == 2
    assert other.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert store._db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    undone = store.undo_last("alice")
    assert undone.question_id == "q2" and undone.undone_at is not None
    assert set(store.effective("alice")) == {("q1", "main")}
    assert len(store.rows(include_undone=True)) == 2  # nothing is ever deleted
    assert store.undo_last("bob") is None
    other.close()
    store.close()


# ---- configs -------------------------------------------------------------------------------------------


def _judge_cfg(name: str) -> dict:
    import yaml

    return yaml.safe_load((ROOT / "conf" / "judge" / f"{name}.yaml").read_text())


@pytest.mark.parametrize("name,key,value,message", [
    ("route", "budget", 1.5, "judge.budget: Input should be less than or equal to 1"),
    ("route", "threshold", -0.1, "judge.threshold: Input should be greater than or equal to 0"),
    ("ensemble", "human_weight", 2, "judge.human_weight: Input should be less than or equal to 1"),
    ("ensemble", "model_weight", "x", "judge.model_weight: Input should be a valid number"),
    ("ensemble", "threshold", 0.5, "judge: threshold does not apply to policy='ensemble'"),
    ("route", "policy", "vote", "judge.policy: Input should be 'route', 'ensemble', 'augmented' or 'approval'"),
    ("route", "budgett", 0.1, "judge.budgett: Extra inputs are not permitted"),
    ("human", "time_limit", -1, "judge.time_limit: Input should be greater than 0"),
    ("human", "confidence_max", 1.2, "judge.confidence_max: Input should be less than or equal to 1"),
    ("human", "on_timeout", "wait", "judge.on_timeout: Input should be 'skip' or 'force'"),
])
def test_out_of_range_judge_values_name_the_key(name, key, value, message):
    cfg = {**_judge_cfg(name), key: value}
    with pytest.raises(ConfigError) as error:
        build_judge(cfg)
    assert message in str(error.value)


def test_every_shipped_mixing_config_builds():
    for name in ("human", "route", "ensemble", "augmented", "approval"):
        judge = build_judge(_judge_cfg(name))
        assert judge.name == name
    nested = {**_judge_cfg("route"), "human": {"time_limit": 0}}
    with pytest.raises(ConfigError, match=r"judge\.human\.time_limit: Input should be greater than 0"):
        build_judge(nested)


def test_cli_rejects_out_of_range_budget_naming_the_key(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "oversight.app.cli", "judge=route", "judge.budget=1.5", "task.n=2", "progress=false",
         f"hydra.run.dir={tmp_path / 'job'}"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert result.returncode == 2
    assert result.stderr == "error: judge.budget: Input should be less than or equal to 1\n"


# ---- judges inside real runs ---------------------------------------------------------------------------


def test_human_job_leaves_every_judgment_pending_and_calls_no_judge(runs):
    run = runs.get("human")
    records, summary = read_records(run), read_summary(run)
    judgments = [j for r in records for j in r.judgments]
    assert len(judgments) == 20 and all(j.pending and j.source == "human" and j.p is None for j in judgments)
    assert summary["n"] == 0 and summary["n_pending"] == 20
    roles = {d.get("role") for r in records for d in r.graph["nodes"]}
    assert "judge" not in roles and "debater" in roles


def test_route_sends_least_confident_items_to_people_within_budget(runs):
    run = runs.get("route")
    judgments = [j for r in read_records(run) for j in r.judgments]
    assert all(j.machine is not None and j.machine.p for j in judgments)
    pending = [j for j in judgments if j.pending]
    assert len(pending) == 4  # budget 0.2 of 20 items; every tiny-model confidence is under 0.8
    worst = sorted(confidence(j.machine) for j in judgments)[:4]
    assert sorted(confidence(j.machine) for j in pending) == worst
    for j in judgments:
        if not j.pending:  # decided by the model alone
            assert (j.p, j.chosen, j.correct) == (j.machine.p, j.machine.chosen, j.machine.correct)
    # the weak model inside the mixing judge is the same judge as running it alone
    alone = {r.question_id: r.judgments[0].p for r in read_records(runs.get("likelihood"))}
    assert {r.question_id: r.judgments[0].machine.p for r in read_records(run)} == alone


def test_route_selection_respects_threshold_and_budget():
    conf = [0.9, 0.55, 0.7, 0.51, 0.6, 0.95]
    assert route_selection(conf, threshold=0.8, budget=0.5) == [3, 1, 4]
    assert route_selection(conf, threshold=0.58, budget=1.0) == [3, 1]
    assert route_selection(conf, threshold=1.0, budget=0.0) == []


@pytest.mark.parametrize("name", ["ensemble", "augmented", "approval"])
def test_other_mixing_judges_leave_every_item_to_people_with_the_model_verdict(runs, name):
    records = read_records(runs.get(name, 6))
    judgments = [j for r in records for j in r.judgments]
    assert len(judgments) == 6
    assert all(j.pending and j.source == "mixed" and j.machine.source == "model" and j.machine.p for j in judgments)


def test_mixed_verdicts_follow_each_policy(runs):
    records = read_records(runs.get("ensemble", 6))
    item = human_items(records, Policy(policy="ensemble"))[0]
    model = item.machine.p
    human = [0.9, 0.1]
    ensemble = Policy(policy="ensemble", human_weight=0.75, model_weight=0.25)
    assert mixed_p(ensemble, item, human) == pytest.approx([0.75 * 0.9 + 0.25 * model[0], 0.75 * 0.1 + 0.25 * model[1]])
    assert mixed_p(ensemble, item, None) == model  # no human verdict: the model's stands
    assert mixed_p(Policy(policy="augmented"), item, human) == human
    agree = [0.8, 0.2] if item.machine.chosen == 0 else [0.2, 0.8]
    approval = Policy(policy="approval")
    assert mixed_p(approval, item, agree) == model  # approved: the model's verdict stands
    assert mixed_p(approval, item, agree[::-1]) == agree[::-1]  # overridden


# ---- metrics: oversight-compare with people ---------------------------------------------------------


def test_compare_reports_people_model_and_mixed_rows_with_route_curve(runs, tmp_path):
    sweep = tmp_path / "sweep"
    run = Runs.fresh(runs.get("route"), sweep / "route")
    items = human_items(read_records(run), Policy(policy="route"))
    model_right = [item.machine.correct == 1.0 for item in items]  # in confidence order
    # alice always right, on the 10 least confident items; bob on all 20, wrong on every third
    decide_all(run, "alice", 10, lambda i, item: (item.record.correct_index, 0.9))
    decide_all(run, "bob", 20, lambda i, item: (item.record.correct_index if i % 3 else 1 - item.record.correct_index, 0.7))

    rows = {r["judge"]: r for r in compare(sweep)}
    n = 20
    assert rows["likelihood"]["accuracy"] == pytest.approx(sum(model_right) / n)
    assert rows["human:alice"]["n"] == 10 and rows["human:alice"]["accuracy"] == 1.0
    assert rows["human:bob"]["accuracy"] == pytest.approx(13 / 20)
    # route: the 4 budget items take alice's (right) verdict, the rest the model's
    assert rows["route:alice"]["accuracy"] == pytest.approx((sum(model_right[4:]) + 4) / n)
    assert rows["route:alice"]["humans"] == 4
    assert {"route:bob", "route", "human"} <= set(rows)
    low, high = rows["route:alice"]["ci_low"], rows["route:alice"]["ci_high"]
    assert low <= rows["route:alice"]["accuracy"] <= high

    with (run / CURVE_CSV).open() as f:
        curve = [r for r in csv.DictReader(f) if r["judge"] == "human:alice"]
    assert len(curve) == n + 1 and (run / CURVE_PNG).stat().st_size > 0
    for k, point in enumerate(curve):
        if k <= 10:  # read off alice's one pass, budget by budget
            assert float(point["accuracy"]) == pytest.approx((sum(model_right[k:]) + k) / n)
        else:  # past where alice stopped
            assert point["accuracy"] == ""
    agreement_report = json.loads((run / "human_agreement.json").read_text())
    assert agreement_report["measure"] == "cohen_kappa" and agreement_report["n_items"] == 10
    labels = [item.record.correct_index for item in items[:10]]
    bob = [c if i % 3 else 1 - c for i, c in enumerate(labels)]
    assert agreement_report["value"] == pytest.approx(cohen_kappa(labels, bob))
    with (sweep / "comparison.csv").open() as f:
        assert {r["judge"] for r in csv.DictReader(f)} >= {"likelihood", "human:alice", "route:alice"}


def test_compare_marks_people_who_saw_the_model(runs, tmp_path):
    run = Runs.fresh(runs.get("approval", 6), tmp_path / "sweep" / "approval")
    decide_all(run, "carol", 6, lambda i, item: (item.record.correct_index, 0.8))
    rows = {r["judge"]: r for r in compare(tmp_path / "sweep")}
    assert rows["human:carol (saw likelihood)"]["accuracy"] == 1.0
    assert rows["approval:carol"]["accuracy"] == 1.0  # every wrong model verdict was overridden
    assert rows["likelihood"]["humans"] == 0


# ---- the UI, headless ------------------------------------------------------------------------------------


def screen_of(app, selector: str) -> tuple[str, list]:
    """The rendered text of a widget and each character's style, as the terminal would get them."""
    widget = app.query_one(selector)
    strips = widget.render_lines(Region(0, 0, widget.size.width, widget.size.height))
    chars, styles = [], []
    for strip in strips:
        for segment in strip:
            chars.append(segment.text)
            styles += [segment.style] * len(segment.text)
        chars.append("\n")
        styles.append(None)
    return "".join(chars), styles


def look(style) -> tuple:
    """Everything about a character's style that shows on screen (not textual's mouse metadata)."""
    return (style.color, style.bgcolor, style.bold, style.dim, style.italic, style.underline, style.blink,
            style.reverse, style.strike, style.link)


def plain(app, selector: str) -> str:
    return str(app.query_one(selector).render())


def run_ui(run: Path, judge_id: str, script, size=(110, 36), **session_kw):
    """Run the app headlessly; `script(pilot, app)` is an async function driving it."""
    session = JudgingSession(run, judge_id, **session_kw)

    async def go():
        app = JudgeApp(session)
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await script(pilot, app)
        return app

    try:
        return asyncio.run(go())
    finally:
        session.close()


def test_ui_choose_confidence_explain_skip_undo_and_progress(runs, tmp_path):
    run = Runs.fresh(runs.get("human"), tmp_path / "job")
    seen = {}

    async def script(pilot, app):
        assert "done 0 · remaining 20" in plain(app, "#status")
        first, shown = app.item, list(app.order)
        await pilot.press("enter")  # nothing chosen yet: nothing recorded
        assert "Choose an option first" in plain(app, "#message")
        await pilot.press("b", "enter")
        assert "Set your confidence first" in plain(app, "#message")
        await pilot.press("plus", "plus", "n", *"quote 2 is fake", "enter")  # set at 75%, then 80%
        seen["first"] = (first.key, shown[1])
        assert "done 1 · remaining 19" in plain(app, "#status")
        await pilot.press("a", "minus", "minus", "minus", "enter")  # set at 75%, then 70%, 65%
        await pilot.press("s")
        assert "done 3 · remaining 17" in plain(app, "#status")
        await pilot.press("u")  # undo the skip: that item is back
        assert "done 2 · remaining 18" in plain(app, "#status") and "Undid" in plain(app, "#message")
        await pilot.press("u")  # and the judgment before it, shown again with its choices
        assert "done 1 · remaining 19" in plain(app, "#status")
        assert app.selected == 0 and app.levels[app.level] == pytest.approx(0.65)
        await pilot.press("plus", "enter")

    run_ui(run, "alice", script)
    with HumanStore(run) as store:
        live = store.rows("alice")
        everything = store.rows("alice", include_undone=True)
    assert [r.status for r in everything] == ["judged", "judged", "skipped", "judged"]
    assert [r.undone_at is not None for r in everything] == [False, True, True, False]
    first_key, first_chosen = seen["first"]
    assert live[0].item == first_key and live[0].chosen == first_chosen  # letter B as displayed
    assert live[0].confidence == pytest.approx(0.80) and live[0].explanation == "quote 2 is fake"
    assert live[0].p[first_chosen] == pytest.approx(0.80) and sum(live[0].p) == pytest.approx(1.0)
    assert live[1].confidence == pytest.approx(0.70)
    assert all(r.seconds > 0 and r.ended_at >= r.started_at and r.judge_id == "alice" for r in live)
    assert len(live[0].display_order) == 2


def test_ui_resumes_where_the_judge_stopped(runs, tmp_path):
    run = Runs.fresh(runs.get("human"), tmp_path / "job")
    decide_all(run, "alice", 3, lambda i, item: (0, 0.7))
    order = [item.key for item in human_items(read_records(run), Policy(policy="human"))]

    async def script(pilot, app):
        assert "done 3 · remaining 17" in plain(app, "#status")
        assert app.item.key == order[3]

    run_ui(run, "alice", script)

    async def other_judge(pilot, app):  # another judge starts from the beginning of the same run
        assert "done 0 · remaining 20" in plain(app, "#status") and app.item.key == order[0]

    run_ui(run, "bob", other_judge)


def test_ui_time_limit_skip_records_a_timed_out_item(runs, tmp_path):
    run = Runs.fresh(runs.get("human"), tmp_path / "job")

    async def script(pilot, app):
        assert "s left" in plain(app, "#status")
        first = app.item.key
        await pilot.pause(1.0)
        assert app.item.key != first and "timed out" in plain(app, "#message")

    run_ui(run, "alice", script, overrides={"time_limit": 0.5, "on_timeout": "skip"})
    with HumanStore(run) as store:
        rows = store.rows("alice")
    assert rows[0].status == "timed_out" and rows[0].timed_out and rows[0].chosen is None
    assert rows[0].seconds >= 0.5


def test_a_time_limit_tick_while_the_ui_closes_records_nothing(runs, tmp_path):
    """Closing the app removes its widgets before its interval timer stops; a tick in between once
    crashed the app (NoMatches '#message') after recording a timeout nobody saw."""
    run = Runs.fresh(runs.get("human"), tmp_path / "job")

    async def script(pilot, app):
        await app.query_one("#message").remove()  # the state a closing app passes through
        app.started_clock -= 1000  # the shown item's time is long up
        app._tick()

    run_ui(run, "alice", script, overrides={"time_limit": 30, "on_timeout": "skip"})
    with HumanStore(run) as store:
        assert store.rows("alice") == []


def test_ui_time_limit_force_makes_the_judge_answer(runs, tmp_path):
    run = Runs.fresh(runs.get("human"), tmp_path / "job")

    async def script(pilot, app):
        first = app.item.key
        await pilot.pause(0.9)
        assert app.item.key == first and "TIME UP" in plain(app, "#status")
        assert "Time is up" in plain(app, "#message")
        await pilot.press("a", "plus", "enter")
        assert app.item.key != first

    run_ui(run, "alice", script, overrides={"time_limit": 0.4, "on_timeout": "force"})
    with HumanStore(run) as store:
        (row,) = store.rows("alice")
    assert row.status == "judged" and row.timed_out and row.confidence == pytest.approx(0.75)


def test_ui_never_shows_the_hidden_passage_unless_the_protocol_allows(runs, tmp_path):
    run = Runs.fresh(runs.get("human"), tmp_path / "debate")
    record = read_records(run)[0]
    passage = next(q.context for q in load_task(read_summary(run)["config"]["task"]) if q.id == record.question_id)
    quoted = {q.text for t in record.transcripts[0].turns for q in t.quotes}
    hidden = [s for s in passage.split(". ") if not any(s.strip(". ") in q for q in quoted)]

    async def debate(pilot, app):
        text = plain(app, "#transcript")
        assert record.question in text and "Story" not in text
        for sentence in hidden:  # sentences no debater quoted never reach the judge's screen
            assert sentence.strip(". ") not in text

    run_ui(run, "alice", debate)
    ceiling = Runs.fresh(runs.get("human", 20, "protocol=direct_passage"), tmp_path / "ceiling")

    async def with_passage(pilot, app):
        assert app.item.transcript.passage and literal(app.item.transcript.passage) in plain(app, "#transcript")

    run_ui(ceiling, "alice", with_passage)


def test_ui_shows_model_output_as_literal_text(runs, tmp_path):
    run = Runs.fresh(runs.get("human"), tmp_path / "job")
    plant_markup(run)

    async def script(pilot, app):
        text, styles = screen_of(app, "#transcript")
        for ch in ("\x1b", "\x07", "\r", "\u202e"):
            assert ch not in text  # control characters never reach the terminal
        for shown in ("[bold]not bold[/bold]", "[red]plain[/red]", "[link=https://evil.example]click[/link]",
                      "\\x1b[31mRED?\\x1b[0m", "\\x1b[5mBLINK?", "\\x1b]0;pwned\\x07", "cr\\x0dback",
                      "\\u202eevil", "[i]quoted markup[/i]", "AFTER-ALL", "[b]opt[/b]\\x1b[7m"):
            assert shown in text, shown
        question = app.item.record.question
        base = styles[text.index(question)]  # how ordinary text looks
        assert not base.bold and not base.italic and not base.reverse
        for literal_text in ("[bold]not bold[/bold]", "RED?", "BLINK?", "AFTER-ALL", "[link=https://evil.example]click"):
            start = text.index(literal_text)
            for offset in range(len(literal_text)):
                assert look(styles[start + offset]) == look(base), (literal_text, offset, styles[start + offset])
        escape = text.index("\\x1b[31m")
        assert all(styles[escape + i].reverse for i in range(4))  # escapes stand out, and nothing more
        assert "✗ UNVERIFIED" in text  # the planted quote has no verified match

    run_ui(run, "alice", script, size=(140, 40))


def test_ui_approval_shows_the_model_verdict_and_y_approves_it(runs, tmp_path):
    run = Runs.fresh(runs.get("approval", 6), tmp_path / "job")
    machine = {}

    async def script(pilot, app):
        panel = plain(app, "#model")
        assert app.query_one("#model").display and "Weak model (likelihood) says" in panel
        machine["first"] = app.item.machine
        chosen = app.item.machine.chosen
        assert f"{app.item.machine.p[chosen]:.0%} confident" in panel
        await pilot.press("y")
        other = 1 - app.order.index(app.item.machine.chosen)  # override: the option the model did not pick
        await pilot.press("abcdefghij"[other], "plus", "enter")

    run_ui(run, "alice", script)
    with HumanStore(run) as store:
        approved, overridden = store.rows("alice")
    assert approved.approved is True and approved.model_shown and approved.p == machine["first"].p
    assert overridden.approved is False and overridden.confidence == pytest.approx(0.75)


def test_ui_route_queue_runs_in_model_confidence_order(runs, tmp_path):
    run = Runs.fresh(runs.get("route"), tmp_path / "job")
    order = []

    async def script(pilot, app):
        assert "budget items 0/4" in plain(app, "#status") and not app.query_one("#model").display
        for _ in range(5):
            order.append(confidence(app.item.machine))
            await pilot.press("a", "plus", "enter")
        assert "budget items 4/4" in plain(app, "#status")

    run_ui(run, "alice", script)
    assert order == sorted(order)
    with HumanStore(run) as store:
        assert len(store.rows("alice")) == 5


def test_judge_status_prints_progress_and_agreement(runs, tmp_path, capsys):
    from judges.tui import main

    run = Runs.fresh(runs.get("human"), tmp_path / "job")
    decide_all(run, "alice", 4, lambda i, item: (item.record.correct_index, 0.9))
    decide_all(run, "bob", 4, lambda i, item: (0, 0.6))
    assert main([str(run), "--status"]) == 0
    out = capsys.readouterr().out
    assert "human:alice: n=4 accuracy=1.000 humans=4" in out and "cohen_kappa" in out
    assert main([str(tmp_path), "--judge-id", "alice"]) == 2  # not a job directory
    assert main([str(run), "--judge-id", "bad id!"]) == 2
