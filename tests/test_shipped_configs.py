"""Every shipped config composes and runs (ICE's recipe check): each protocol, turn strategy, judge,
generated task and experiment preset in conf/, two questions on the scripted test double
(oversight/backends/scripted.py), in seconds. A config that no longer composes, names a class that
moved, or sets a field its plugin no longer has fails here first. Tasks that read a local dataset
file and the training presets' trainers (they need a real in-process model) compose and build only."""

from __future__ import annotations

import pytest
from omegaconf import OmegaConf

from oversight.app import CONF_DIR
from oversight.app.api import compose
from oversight.app.run import run_job
from oversight.plugins import Judge, Protocol, Task, Trainer, build
from oversight.records import read_records

SCRIPTED = {"_target_": "oversight.backends.scripted.ScriptedBackend"}
#: protocols that need a kind of question the default task (hidden_passage) does not have
TASK_FOR = {"decomposition": "multihop", "rrm": "arithmetic_answers", "prover_estimator": "arithmetic"}
#: tasks that read a local dataset file (task.path): compose and validate only
FILE_TASKS = {"boolq", "gpqa", "jsonl", "mmlu", "quality"}
TRAINING_PRESETS = {"rrm_train", "debate_train"}


def names(group: str) -> list[str]:
    return sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))


#: the prover-estimator variants (conf/protocol/prover_estimator_d<depth>_o<obfuscate>.yaml) play on sums too
TASK_FOR.update({p: "arithmetic" for p in names("protocol") if p.startswith("prover_estimator_")})


def run_two(tmp_path, overrides: list[str]) -> tuple[dict, list]:
    cfg, _ = compose([*overrides, "progress=false"])
    cfg["backend"] = dict(SCRIPTED)
    cfg["task"]["n"] = 2
    summary = run_job(cfg, tmp_path / "job")
    records = read_records(tmp_path / "job")
    assert summary["questions"] == 2 and len(records) == 2
    assert summary["n_failed"] == 0, summary["first_error"]
    return summary, records


@pytest.mark.parametrize("protocol", names("protocol"))
def test_every_protocol_runs(protocol, tmp_path):
    overrides = [f"protocol={protocol}"] + ([f"task={TASK_FOR[protocol]}"] if protocol in TASK_FOR else [])
    summary, records = run_two(tmp_path, overrides)
    assert all(r.judgments and all(j.p is not None for j in r.judgments) for r in records)
    assert summary["protocol"] == records[0].protocol


@pytest.mark.parametrize("strategy", names("protocol/strategy"))
def test_every_turn_strategy_runs_in_a_debate(strategy, tmp_path):
    _, records = run_two(tmp_path, ["protocol=debate", f"protocol/strategy={strategy}"])
    turns = [t for r in records for tr in r.transcripts for t in tr.turns]
    assert len(turns) == 2 * 2 and all(t.text for t in turns)  # two debaters, one round, two questions


@pytest.mark.parametrize("judge", names("judge"))
def test_every_judge_runs(judge, tmp_path):
    summary, records = run_two(tmp_path, ["protocol=direct", f"judge={judge}"])
    assert summary["judge"] == judge
    assert all(r.judgments for r in records)  # human judges: pending judgments, answered later in the TUI


@pytest.mark.parametrize("task", names("task"))
def test_every_task_composes_and_the_generated_ones_run(task, tmp_path):
    if task in FILE_TASKS:
        cfg, _ = compose([f"task={task}", "task.path=/nonexistent/data.jsonl"])
        assert cfg["task"]["_target_"]
        built = build(cfg["task"], "task", Task)  # the fields validate; reading the file is the loader tests'
        assert built.name == cfg["task"]["name"]
        return
    protocol = next((p for p, t in TASK_FOR.items() if t == task), "direct")
    _, records = run_two(tmp_path, [f"task={task}", f"protocol={protocol}"])
    assert len({r.question_id for r in records}) == 2


@pytest.mark.parametrize("preset", names("experiment"))
def test_every_experiment_preset_runs(preset, tmp_path):
    swept = OmegaConf.load(CONF_DIR / "experiment" / f"{preset}.yaml").get("hydra", {}).get("sweeper", {})
    params = dict(swept.get("params", {}))
    if preset in TRAINING_PRESETS:
        cfg, _ = compose([f"+experiment={preset}"])
        assert isinstance(build(cfg["train"], "train", Trainer), Trainer)
        build(cfg["task"], "task", Task)
        build(cfg["judge"], "judge", Judge)
        if cfg.get("protocol") is not None:  # debate_train: its data run is the protocol job, run it
            build(cfg["protocol"], "protocol", Protocol)
            run_two(tmp_path, [f"+experiment={preset}"])
        return
    # one job per value of the preset's swept parameter (at most a few)
    sweeps = [[]] if not params else [[f"{k}={v}"] for k, values in params.items() for v in str(values).split(",")]
    for i, extra in enumerate(sweeps):
        run_two(tmp_path / str(i), [f"+experiment={preset}", *extra])
