"""A third trainer is one module and one YAML: the example of docs/extending.md, read from the page
itself, put in a directory outside the repository and run through `oversight-train` (the scripted
test double answers the calls, so this is about the contract, not about the model)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MARK = "<!-- trainer example"


def example_blocks() -> tuple[str, str]:
    page = (ROOT / "docs" / "extending.md").read_text()
    after = page[page.index(MARK):]
    python, yaml = re.findall(r"```(?:python|yaml)\n(.*?)```", after, flags=re.S)[:2]
    return python, yaml


def train(args: list[str], cwd: Path, lab: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(lab), str(ROOT)])}
    return subprocess.run([sys.executable, "-m", "oversight.app.train", f"hydra.searchpath=[file://{lab / 'conf'}]",
                           "backend._target_=oversight.backends.scripted.ScriptedBackend", "progress=false", *args],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_the_documented_trainer_runs_as_one_module_and_one_yaml(tmp_path):
    python, yaml = example_blocks()
    lab = tmp_path / "outside"
    (lab / "mylab").mkdir(parents=True)
    (lab / "mylab" / "__init__.py").write_text("")
    (lab / "mylab" / "calibrate.py").write_text(python)
    (lab / "conf" / "train").mkdir(parents=True)
    (lab / "conf" / "train" / "judge_temperature.yaml").write_text(yaml)
    proc = train(["train=judge_temperature", "protocol=debate", "task.n=6", "train.n_train=4",
                  f"hydra.run.dir={tmp_path}/job"], tmp_path, lab)
    assert proc.returncode == 0, proc.stderr[-3000:]
    summary = json.loads((tmp_path / "job" / "summary.json").read_text())
    # the protocol ran on the 4 training questions and the 2 held out, each judged in both orders
    assert summary["n_train"] == 4 and summary["n_heldout"] == 2
    assert summary["temperature"] in [0.25, 0.5, 1.0, 2.0, 4.0]
    assert summary["heldout_log_loss"] > 0 and "| temperature | held-out log loss" in proc.stdout + proc.stderr
    for part, n in (("train", 4), ("heldout", 2)):
        job = json.loads((tmp_path / "job" / part / "summary.json").read_text())
        assert job["questions"] == n and job["protocol"] == "debate"
    # the trainer's own rejection, and a field's bound, as one line each
    for override, message in (("~protocol", "error: protocol: judge_temperature calibrates"),
                              ("train.n_train=0", "error: train.n_train: Input should be greater than or equal to 1")):
        proc = train(["train=judge_temperature", override, f"hydra.run.dir={tmp_path}/bad"], tmp_path, lab)
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 2 and len(lines) == 1 and lines[0].startswith(message), proc.stderr[-2000:]
