"""`oversight-judge` in a real terminal: the console script runs on a pseudo-terminal (os.openpty,
Python's stdlib only), keys are typed into it and the bytes it draws are read back.

Covers the issue's end-to-end case: a person judges a 20-item debate run, the UI is killed with
SIGKILL halfway, restarted, finishes, and oversight-compare shows the person next to the weak model
and mixed with it. Also a time limit running out, and a transcript full of markup and escape
sequences that must reach the terminal as literal text.
"""

from __future__ import annotations

import csv
import fcntl
import os
import re
import signal
import struct
import subprocess
import sys
import termios
import threading
import time
from pathlib import Path

import pytest

from human_runs import Runs, plant_markup
from oversight.app.compare import compare
from judges.store import HumanStore
from judges.policies import CURVE_CSV

JUDGE = Path(sys.executable).parent / "oversight-judge"

pytestmark = pytest.mark.skipif(not JUDGE.exists(), reason="console script not installed: pip install -e .")


@pytest.fixture(scope="session")
def runs(tmp_path_factory, tiny_model_cfg) -> Runs:
    return Runs(tmp_path_factory.mktemp("human-runs"), tiny_model_cfg)


class Terminal:
    """One process on its own pseudo-terminal (120x40, xterm-256color)."""

    def __init__(self, *args: str, rows: int = 40, cols: int = 120):
        master, slave = os.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
        env = {k: v for k, v in os.environ.items() if k not in ("NO_COLOR", "FORCE_COLOR", "TEXTUAL")}
        env["TERM"] = "xterm-256color"
        self.proc = subprocess.Popen([str(JUDGE), *args], stdin=slave, stdout=slave, stderr=slave, env=env,
                                     start_new_session=True, close_fds=True)
        os.close(slave)
        self.master = master
        self.output = bytearray()
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        while True:
            try:
                data = os.read(self.master, 65536)
            except OSError:  # EIO: the process closed the terminal
                return
            if not data:
                return
            with self._lock:
                self.output.extend(data)

    def mark(self) -> int:
        with self._lock:
            return len(self.output)

    def wait_for(self, text: str | bytes, since: int = 0, timeout: float = 30.0) -> None:
        needle = text.encode() if isinstance(text, str) else text
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                if needle in self.output[since:]:
                    return
            if self.proc.poll() is not None and not self._reader.is_alive():
                break
            time.sleep(0.02)
        raise AssertionError(f"{needle!r} never appeared; last output: {bytes(self.output[-600:])!r}")

    def type(self, keys: str) -> None:
        os.write(self.master, keys.encode())

    def kill(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(10)
        self.close()

    def close(self) -> None:
        self._reader.join(2)
        try:
            os.close(self.master)
        except OSError:
            pass


@pytest.fixture
def terminals():
    started: list[Terminal] = []

    def start(*args: str, cols: int = 120) -> Terminal:
        terminal = Terminal(*args, cols=cols)
        started.append(terminal)
        return terminal

    yield start
    for terminal in started:
        if terminal.proc.poll() is None:
            terminal.kill()


def live_rows(run: Path, judge: str = "alice") -> list:
    with HumanStore(run) as store:
        return store.rows(judge)


def wait_rows(run: Path, count: int, timeout: float = 20.0, **kw) -> list:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = live_rows(run, **kw)
        if len(rows) == count:
            return rows
        time.sleep(0.02)
    raise AssertionError(f"expected {count} live judgments, found {len(live_rows(run, **kw))}")


def test_judge_a_20_item_debate_run_kill_it_halfway_resume_and_compare(runs, tmp_path, terminals):
    sweep = tmp_path / "sweep"
    run = Runs.fresh(runs.get("route"), sweep / "route")
    ui = terminals(str(run), "--judge-id", "alice")
    ui.wait_for("remaining 20")
    ui.type("b+\r")  # option B, confidence set (75%), record
    (first,) = wait_rows(run, 1)
    assert first.confidence == pytest.approx(0.75) and first.chosen == first.display_order[1]
    ui.type("n")  # explanation first, then the choice
    ui.type("too close to call\x1b")  # Esc leaves the explanation box
    time.sleep(0.3)  # a lone Esc is told apart from an escape sequence by a pause
    ui.type("a+++-\r")  # A: 75%, 80%, 85%, back to 80%
    second = wait_rows(run, 2)[1]
    assert second.explanation == "too close to call" and second.confidence == pytest.approx(0.80)
    ui.type("s")  # skip
    assert wait_rows(run, 3)[2].status == "skipped"
    ui.type("u")  # undo the skip
    wait_rows(run, 2)
    for count in range(3, 11):
        mark = ui.mark()
        ui.type("a+\r")
        wait_rows(run, count)
        ui.wait_for(f"remaining {20 - count}", since=mark)
    before = [r.model_dump() for r in live_rows(run)]
    ui.type("b+")  # a choice on screen, not yet recorded, when the process dies
    time.sleep(0.2)
    ui.kill()
    assert [r.model_dump() for r in live_rows(run)] == before  # nothing lost

    ui = terminals(str(run), "--judge-id", "alice")
    ui.wait_for("done 10 · remaining 10")  # resumed where alice stopped
    for count in range(11, 21):
        ui.type("a+\r")
        wait_rows(run, count)
    ui.wait_for("All items done")
    ui.type("q")
    assert ui.proc.wait(15) == 0
    ui.close()
    assert b"alice: 20 of 20 items done" in ui.output
    rows = live_rows(run)
    assert [r.model_dump() for r in rows[:10]] == before and len({r.item for r in rows}) == 20

    table = {r["judge"]: r for r in compare(sweep)}
    assert table["human:alice"]["n"] == 20 and table["human:alice"]["humans"] == 20
    assert table["route:alice"]["humans"] == 4 and table["likelihood"]["n"] == 20
    with (run / CURVE_CSV).open() as f:
        curve = [p for p in csv.DictReader(f) if p["judge"] == "human:alice"]
    assert len(curve) == 21 and all(p["accuracy"] for p in curve)  # every budget, from one pass
    assert float(curve[0]["accuracy"]) == pytest.approx(table["likelihood"]["accuracy"])
    assert float(curve[-1]["accuracy"]) == pytest.approx(table["human:alice"]["accuracy"])


def test_time_limit_runs_out_in_the_terminal(runs, tmp_path, terminals):
    run = Runs.fresh(runs.get("human"), tmp_path / "job")
    ui = terminals(str(run), "--judge-id", "alice", "--time-limit", "1", "--on-timeout", "skip")
    ui.wait_for("s left")  # the countdown
    (row,) = wait_rows(run, 1, timeout=10)
    assert row.status == "timed_out" and row.timed_out and row.seconds >= 1.0
    ui.wait_for("timed out")
    ui.type("q")
    assert ui.proc.wait(15) == 0


_SGR = re.compile(rb"\x1b\[([0-9;]*)m")


def style_before(output: bytes, text: bytes) -> bytes:
    """The SGR (colour and attribute) sequence in force where `text` is drawn."""
    at = output.index(text)
    sequences = list(_SGR.finditer(output, 0, at))
    assert sequences, text
    return sequences[-1].group(1)


def test_markup_and_escape_sequences_reach_the_terminal_as_literal_text(runs, tmp_path, terminals):
    run = Runs.fresh(runs.get("human"), tmp_path / "job")
    plant_markup(run)
    ui = terminals(str(run), "--judge-id", "alice", cols=240)  # wide enough that no line wraps
    ui.wait_for("AFTER-ALL")
    time.sleep(0.3)
    out = bytes(ui.output)
    for shown in (b"[bold]not bold[/bold] [red]plain[/red] [link=https://evil.example]click[/link]",
                  b"[31mRED?", b"[5mBLINK?", b"]0;pwned", b"[i]quoted markup[/i]", b"[b]opt[/b]"):
        assert shown in out, shown
    assert out.count(b"\\x1b") >= 6 and b"\\x07" in out and b"\\x0d" in out and b"\\u202e" in out
    for raw in (b"\x1b[31mRED", b"\x1b[5m", b"\x1b]0;pwned", b"\x07 bell", b"\rback", "\u202e".encode(),
                b"\x1b]8;", b"\x1b[1m</quote>"):
        assert raw not in out, raw  # never passed through to the terminal
    question = read_question(run).encode()
    plain = style_before(out, question)
    assert style_before(out, b"[bold]not bold") == plain  # the markup did not style the text
    assert style_before(out, b"[31mRED?") == plain  # nor did the escape sequence before it
    ui.type("q")
    assert ui.proc.wait(15) == 0


def read_question(run: Path) -> str:
    from oversight.records import read_records

    return read_records(run)[0].question
