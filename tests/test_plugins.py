"""The plugin contract from outside: a protocol, a turn strategy, a judge and a task defined in a
directory outside the repository, named in config and run end to end through the `oversight`
command (tiny real model); config errors as one `error:` line and exit code 2; a job awaited
inside an already running event loop."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import textwrap

import pytest

from oversight.app import CONF_DIR
from oversight.app.run import run_job_async
from oversight.records import read_records
from tests.helpers import job_config

PLUGINS = '''
from pydantic import Field

from oversight.plugins import Judge, Protocol, Task, TurnRequest, TurnStrategy
from oversight.quotes import extract, sentences
from oversight.types import Judgment, Question, Transcript, Turn


class FirstMention(TurnStrategy):
    """Quotes the first sentence that mentions the side's answer, reading nothing."""
    max_quotes: int = Field(default=1, ge=1)

    async def turn(self, ctx, req: TurnRequest) -> Turn:
        answer = req.question.options[req.side]
        hits = [s for s in sentences(req.question.context) if answer in s][: self.max_quotes]
        text = " ".join(f"<quote>{s}</quote>" for s in hits) or f"The answer is {answer}."
        node = ctx.step("argument", text, deps=req.deps, role=req.role, side=req.side, round=req.round)
        return Turn(role=req.role, label=req.label, side=req.side, round=req.round, text=text,
                    quotes=extract(text, req.question.context), node=node)


class Monologue(Protocol):
    """One arguer for the correct side only (not a fair protocol: a plugin test)."""
    name: str = "monologue"
    strategy: TurnStrategy

    async def run(self, question, ctx):
        req = TurnRequest(question=question, side=question.correct, role="arguer", label="Arguer")
        turn = await self.strategy.turn(ctx, req)
        return [Transcript(protocol=self.name, turns=[turn])]

    def extra_metrics(self, records):
        return {"turns": sum(len(t.turns) for r in records for t in r.transcripts)}


class QuoteCounter(Judge):
    """Picks the option named in more verified quotes (a rule, no model)."""
    name: str = "quote_counter"

    async def judge(self, question, transcript, ctx):
        votes = [1.0 + sum(q.verified and o in q.text for t in transcript.turns for q in t.quotes)
                 for o in question.options]
        p = [v / sum(votes) for v in votes]
        chosen = max(range(len(p)), key=p.__getitem__)
        return Judgment(judge=self.name, episode=transcript.episode, p=p, chosen=chosen,
                        correct=float(chosen == question.correct))


class Capitals(Task):
    name: str = "capitals"
    n: int = Field(default=3, ge=1)

    def questions(self):
        facts = [("France", "Paris", "Lyon"), ("Italy", "Rome", "Milan"), ("Spain", "Madrid", "Seville")]
        return [Question(id=f"cap-{i}", question=f"What is the capital of {c}?", options=[a, b], correct=0,
                         context=f"{a} is the capital of {c}. {b} is a large city.")
                for i, (c, a, b) in enumerate(facts[: self.n])]
'''


def oversight(args, cwd, pythonpath):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(pythonpath), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "oversight.app.cli", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


def tiny(model_dir):
    return [f"model.path={model_dir}", "model.package=null", "model.gguf_file=null", "model.name=tiny-llama",
            "progress=false"]


CONFIGS = {
    "protocol/monologue.yaml": "defaults:\n  - strategy: first_mention\n  - _self_\n"
                               "_target_: mylab.plugins.Monologue\nname: monologue\nlabel: monologue\n",
    "protocol/strategy/first_mention.yaml": "_target_: mylab.plugins.FirstMention\nmax_quotes: 1\n",
    "judge/quote_counter.yaml": "_target_: mylab.plugins.QuoteCounter\nname: quote_counter\n",
    "task/capitals.yaml": "_target_: mylab.plugins.Capitals\nname: capitals\nn: 3\n",
}


@pytest.fixture
def mylab(tmp_path):
    """A lab's own package and config directory, outside the repository."""
    root = tmp_path / "outside"
    (root / "mylab").mkdir(parents=True)
    (root / "mylab" / "__init__.py").write_text("")
    (root / "mylab" / "plugins.py").write_text(textwrap.dedent(PLUGINS))
    for name, text in CONFIGS.items():
        (root / "conf" / name).parent.mkdir(parents=True, exist_ok=True)
        (root / "conf" / name).write_text(text)
    return root


def test_plugins_defined_outside_the_repository_run_end_to_end(tiny_model_dir, tmp_path, mylab):
    args = [f"hydra.searchpath=[file://{mylab / 'conf'}]", "protocol=monologue", "judge=quote_counter",
            "task=capitals", f"hydra.run.dir={tmp_path}/job", *tiny(tiny_model_dir)]
    proc = oversight(args, tmp_path, mylab)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads((tmp_path / "job" / "summary.json").read_text())
    assert summary["protocol"] == "monologue" and summary["judge"] == "quote_counter" and summary["n"] == 3
    assert summary["extra"] == {"turns": 3}
    # the honest arguer quotes the capital, and the rule judge follows the verified quote
    assert summary["accuracy"] == 1.0
    for record in read_records(tmp_path / "job"):
        (turn,) = record.transcripts[0].turns
        assert turn.label == "Arguer" and turn.quotes and turn.quotes[0].verified


@pytest.mark.parametrize("override, message", [
    ("judge.temperature=-1", "error: judge.temperature: Input should be greater than 0"),
    ("protocol.rounds=0", "error: protocol.rounds: Input should be greater than or equal to 1"),
    ("protocol.first=3", "error: protocol.first: Input should be 0, 1, 'alternate' or 'both'"),
    ("task.n=-3", "error: task.n: Input should be greater than or equal to 1"),
    ("protocol/strategy=eloquent", "error: protocol/strategy: unknown name 'eloquent'; valid: "
                                    + ", ".join(sorted(p.stem for p in (CONF_DIR / "protocol" / "strategy").glob("*.yaml")))),
    ("protocol._target_=mylab.nowhere.Debate", "error: protocol._target_='mylab.nowhere.Debate': cannot import"),
    ("protocol.strategy._target_=mylab.plugins.Nope", "error: protocol.strategy._target_='mylab.plugins.Nope': "
                                                      "module 'mylab.plugins' has no 'Nope'"),
    ("judge._target_=mylab.plugins.FirstMention", "error: judge._target_='mylab.plugins.FirstMention' is not a Judge"),
])
def test_each_bad_value_is_one_error_line_and_exit_2(tmp_path, mylab, override, message):
    proc = oversight(["task.n=2", override, "progress=false", f"hydra.run.dir={tmp_path}/job"], tmp_path, mylab)
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr


def test_a_job_runs_inside_an_already_running_event_loop(tiny_model_cfg, tmp_path):
    cfg = job_config(tiny_model_cfg, {"name": "debate"}, n=3)

    async def notebook_cell():
        assert asyncio.get_running_loop().is_running()
        other = asyncio.create_task(asyncio.sleep(0.05, result="the notebook's own task"))  # left alone
        summary = await run_job_async(cfg, tmp_path / "job")
        return summary, await other

    summary, other = asyncio.run(notebook_cell())
    assert other == "the notebook's own task"
    assert summary["n"] == 3 and summary["n_failed"] == 0
    records = read_records(tmp_path / "job")
    assert len(records) == 3 and all(len(r.judgments) == 1 and r.judgments[0].p for r in records)
