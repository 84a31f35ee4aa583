"""A person debates a model live, in a real terminal: the job (`oversight +live=debate`
on the tiny model, the model judging and asking between rounds) runs as its own process, the person
types into `oversight-play` on a pseudo-terminal (the pty approach of test_judge_terminal.py). Both
are killed with SIGKILL mid-session and restarted; the session resumes at the waiting turn, and
the record shows the person's turns, exactly as typed, with their quotes verified. What the person
types (markup, escape-looking text) reaches the screen and the record as literal text."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from judges.live import TurnStore
from oversight.records import read_records
from test_judge_terminal import Terminal

PLAY = Path(sys.executable).parent / "oversight-play"
TYPED_MARKUP = "[bold]not bold[/bold] [link=https://evil.example]click[/link] \\x1b[31m"

pytestmark = pytest.mark.skipif(not PLAY.exists(), reason="console script not installed: pip install -e .")


class Play(Terminal):
    """oversight-play on its own pseudo-terminal."""

    def __init__(self, *args: str):
        import test_judge_terminal

        previous, test_judge_terminal.JUDGE = test_judge_terminal.JUDGE, PLAY
        try:
            super().__init__(*args)
        finally:
            test_judge_terminal.JUDGE = previous


def start_job(tmp_path: Path, model: dict) -> subprocess.Popen:
    args = ["+live=debate", "task.n=2", f"models.human.store={tmp_path / 'turns.sqlite'}",
            "models.human.poll_seconds=0.05", f"hydra.run.dir={tmp_path / 'run'}", f"model.path={model['path']}",
            "model.package=null", "model.gguf_file=null", f"model.name={model['name']}", "progress=false",
            "protocol.judge_questions.words=8"]
    log = tmp_path / f"job-{time.monotonic_ns()}.log"
    job = subprocess.Popen([sys.executable, "-m", "oversight.app.cli", *args], cwd=tmp_path, stdout=log.open("w"),
                           stderr=subprocess.STDOUT, start_new_session=True)
    job.log = log  # type: ignore[attr-defined]
    return job


def until(what, timeout: float = 180.0, job: subprocess.Popen | None = None):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = what()
        if found:
            return found
        if job is not None and job.poll() is not None:
            raise AssertionError(f"the job ended (rc {job.returncode}): {job.log.read_text()[-3000:]}")
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what.__doc__ or what}")


def store_state(path: Path) -> tuple[list, list]:
    with TurnStore(path) as store:
        return store.pending(), store.answered()


def story_sentence(ask, k: int) -> str:
    story = ask.call.messages[-1]["content"].split("Story:\n", 1)[1].split("\n\n", 1)[0]
    sentences = [s.strip().rstrip(".") + "." for s in story.split(". ") if s.strip()]
    return sentences[k % len(sentences)]


def answer_next(ui: Play, path: Path, k: int, job: subprocess.Popen) -> str:
    """Type a reply to the call shown (the oldest waiting), send it, wait until it is committed."""
    pending = until(lambda: store_state(path)[0], job=job)
    answered = len(store_state(path)[1])
    sentence = story_sentence(pending[0], k)
    reply = f"<quote>{sentence}</quote> {TYPED_MARKUP} reply{k}"
    mark = ui.mark()
    ui.wait_for(f"call {pending[0].key[:8]}", timeout=60)  # the UI shows this call (it polls the store)
    ui.type(reply)
    ui.wait_for("✓ found", since=mark, timeout=60)  # the quote preview checked it as it was typed
    ui.wait_for(f"reply{k}", since=mark, timeout=60)
    ui.type("\r")
    until(lambda: len(store_state(path)[1]) == answered + 1, job=job)
    return reply


def test_a_person_debates_the_model_live_kill_9_resume_and_the_record_shows_their_turns(tmp_path, tiny_model_cfg):
    store = tmp_path / "turns.sqlite"
    job = start_job(tmp_path, tiny_model_cfg)
    ui = None
    try:
        # both questions run at once: each waits at the person's first turn
        until(lambda: len(store_state(store)[0]) == 2 if store.exists() else False, job=job)
        ui = Play(str(store))
        ui.wait_for("You argue that the answer is", timeout=60)
        first = answer_next(ui, store, 0, job)
        # what the person typed is on the screen literally: markup not interpreted, nothing escaped away
        assert b"[bold]not bold[/bold]" in ui.output and b"[link=https://evil.example]click[/link]" in ui.output
        # SIGKILL both, mid-session (three turns still to write)
        ui.kill()
        os.killpg(job.pid, signal.SIGKILL)
        job.wait(30)
        pending, answered = store_state(store)
        # the answer survived; the other question's first turn still waits (and, if the job got that
        # far before the kill, this question's second turn, after the judge's question)
        assert [a.answer for a in answered] == [first] and 1 <= len(pending) <= 2
        assert answered[0].key not in {a.key for a in pending}
        # restart: the job asks again, the answered turn is not asked again
        job = start_job(tmp_path, tiny_model_cfg)
        ui = Play(str(store))
        replies = [first] + [answer_next(ui, store, k, job) for k in (1, 2, 3)]
        assert job.wait(300) == 0, (tmp_path / "run" / "cli.log").read_text()[-2000:]
        ui.kill()
    finally:
        if ui is not None and ui.proc.poll() is None:
            ui.kill()
        if job.poll() is None:
            os.killpg(job.pid, signal.SIGKILL)
            job.wait(30)
    pending, answered = store_state(store)
    assert not pending and sorted(a.answer for a in answered) == sorted(replies)
    # round 2's prompts showed the judge's question
    assert sum("The judge asks: " in a.call.messages[-1]["content"] for a in answered) == 2
    records = read_records(tmp_path / "run")
    assert len(records) == 2
    typed = []
    for record in records:
        assert record.error is None
        (transcript,) = record.transcripts
        human = [t for t in transcript.turns if t.side == 0]
        assert [t.role for t in human] == ["human_debater"] * 2
        for turn in human:
            typed.append(turn.text)
            assert turn.text.endswith(TYPED_MARKUP + turn.text[-7:]) and turn.text[-7:-1] == " reply"
            assert [q.verified for q in turn.quotes] == [True]
        assert [t.round for t in transcript.turns if t.side is None] == [1]  # the judge's question
        assert all(t.role == "debater" for t in transcript.turns if t.side == 1)
        assert record.judgments and record.judgments[0].p
    assert sorted(typed) == sorted(replies)  # exactly as typed, into the record
