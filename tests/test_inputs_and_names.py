"""Bad inputs stop with one line naming what was wrong, and names stay one directory level:
duplicate question ids in a JSONL task, an unwritable call cache, nested config-group overrides
in job directory names, no empty progress bar before a config error, and trainers that reject a
task or protocol they cannot use instead of ignoring or replacing it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from oversight.app.jobdirs import job_name
from oversight.errors import ConfigError, DataError
from oversight.tasks.loaders import load_jsonl

ROOT = Path(__file__).resolve().parents[1]
SCRIPTED = "backend._target_=oversight.backends.scripted.ScriptedBackend"


def oversight(args: list[str], cwd: Path, module: str = "oversight.app.cli") -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "COLUMNS": "120"}
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=300)


def error_lines(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if line.strip()]


def test_jsonl_rows_sharing_an_id_are_rejected_naming_both_lines(tmp_path):
    rows = [{"id": "a", "question": "Q1?", "options": ["x", "y"], "answer": 0},
            {"id": "b", "question": "Q2?", "options": ["x", "y"], "answer": 1},
            {"id": "a", "question": "Q3?", "options": ["x", "y"], "answer": 1}]
    file = tmp_path / "qs.jsonl"
    file.write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.raises(DataError, match=r"qs.jsonl, line 3, field 'id': question id 'a' is also the id of line 1"):
        load_jsonl(str(file), id_field="id")
    kept = load_jsonl(str(file), id_field="id", skip_malformed=True)  # skipping keeps the first of them
    assert [q.question for q in kept] == ["Q1?", "Q2?"] and "line 3" in kept.skipped[0]


def test_an_unwritable_call_cache_is_one_error_line(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    (locked / "calls.sqlite").mkdir()  # a directory where the SQLite file should be: never openable
    proc = oversight(["protocol=direct", "task.n=2", SCRIPTED, f"cache.path={locked}/calls.sqlite",
                      f"hydra.run.dir={tmp_path}/job"], tmp_path)
    assert proc.returncode == 2, proc.stderr[-2000:]
    (line,) = error_lines(proc)
    assert line.startswith(f"error: cache.path='{locked}/calls.sqlite': cannot open or write")
    assert "Traceback" not in proc.stderr


def test_a_nested_group_override_names_one_directory_level(tmp_path):
    assert job_name(["protocol/strategy=free", "protocol=debate"]) == "protocol.strategy=free,protocol=debate"
    assert job_name(["+protocol/strategy@x=free"]) == "+protocol.strategy@x=free"
    long = [f"train.dpo.field_number_{i}={i}" for i in range(20)]
    name = job_name(long)
    assert len(name.encode()) <= 200 and name != job_name(long[:-1])  # still one level, still unique
    proc = oversight(["-m", "protocol=debate", "protocol/strategy=free", "protocol.strategy.word_limit=8", "task.n=2",
                      SCRIPTED, "progress=false", f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    (job,) = [p.parent for p in (tmp_path / "sweep").rglob("summary.json")]
    assert job.parent == tmp_path / "sweep"
    assert job.name == (f"{SCRIPTED},protocol.strategy.word_limit=8,protocol.strategy=free,protocol=debate,task.n=2")


def test_a_config_error_prints_no_progress_bar(tmp_path):
    # progress on (the default), a TTY-less console still renders a bar when one is started
    proc = oversight(["protocol=debate", "protocol.rounds=0", "task.n=2", SCRIPTED, f"hydra.run.dir={tmp_path}/job"],
                     tmp_path)
    assert proc.returncode == 2
    assert error_lines(proc) == ["error: protocol.rounds: Input should be greater than or equal to 1"]


def test_rrm_trainer_rejects_a_protocol_in_one_line(tmp_path):
    proc = oversight(["train=rrm", "protocol=debate", f"hydra.run.dir={tmp_path}/rrm"], tmp_path, "oversight.app.train")
    assert proc.returncode == 2
    (line,) = error_lines(proc)
    assert line.startswith("error: protocol: train=rrm_train labels with its own episodes") and "'debate'" in line
    assert not (tmp_path / "rrm" / "level0").exists()


def test_rrm_trainer_rejects_a_task_without_worked_answers(tmp_path):
    proc = oversight(["train=rrm", "task=hidden_passage", f"hydra.run.dir={tmp_path}/rrm"], tmp_path,
                     "oversight.app.train")
    assert proc.returncode == 2
    (line,) = error_lines(proc)
    assert line.startswith("error: task: 'hidden_passage' question") and "task=arithmetic_answers" in line


@pytest.mark.parametrize("strategy, key", [("quotes", "protocol.strategy"), ("best_of_n", "protocol.strategy.inner")])
def test_debate_trainer_rejects_a_strategy_it_cannot_train_on(tmp_path, strategy, key):
    proc = oversight(["train=debate_dpo", f"protocol/strategy={strategy}", f"hydra.run.dir={tmp_path}/dpo"], tmp_path,
                     "oversight.app.train")
    assert proc.returncode == 2
    (line,) = error_lines(proc)
    assert line.startswith(f"error: {key}: train=debate_dpo needs")
    assert not (tmp_path / "dpo" / "data").exists()


def test_debate_trainer_uses_the_configured_strategy():
    from oversight.app.api import compose
    from oversight.plugins import Protocol, build
    from trainers.debate_dpo import DebateDPO, check_protocol, generation_config

    cfg, _ = compose(["+train=debate_dpo", "protocol/strategy=cbon", "protocol.strategy.n=3"])
    data = generation_config(DebateDPO.model_validate({k: v for k, v in cfg["train"].items() if k != "_target_"}), cfg)
    protocol = check_protocol(build(data["protocol"], "protocol", Protocol))
    assert type(protocol.strategy.inner).__name__ == "CritiqueRefine" and protocol.strategy.n == 3


def test_a_trainer_that_is_not_a_trainer_is_named():
    from oversight.app.train import run_train

    with pytest.raises(ConfigError, match=r"train._target_='protocols.debate.Debate' is not a Trainer"):
        run_train({"train": {"_target_": "protocols.debate.Debate"}}, "/nonexistent")
