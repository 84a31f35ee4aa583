"""`oversight-train`: training jobs from what the protocols produce. The same Hydra app and config
tree as `oversight`, with a `train/` config group whose `_target_` names a trainer plugin
(oversight.plugins.Trainer; the shipped ones live in trainers/):

    oversight-train train=rrm                  # reward models per RRM level (trainers/rrm.py)
    oversight-train train=debate_dpo           # debaters by DPO on best-of-N debates, then evaluated
    oversight -m +experiment=rrm_train         # the presets: the same jobs inside the main app
    oversight -m +experiment=debate_train

The app builds the trainer, the job's task, protocol (none when the config says `protocol: null`)
and judge, and hands them to the trainer's `run` with its own engine and job runner. Outputs go to
the job's directory under runs/; running the same command again resumes.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from rich.console import Console

from oversight.app.args import CONF_DIR, unknown_group_choice
from oversight.app.run import build_engine, run_job
from oversight.errors import OversightError
from oversight.plugins import Judge, Protocol, Task, Trainer, TrainingRun, build
from oversight.progress import RunProgress


def run_train(cfg: dict[str, Any], out_dir: str | Path, console: Console | None = None) -> dict[str, Any]:
    """Build `cfg.train` and run it; returns its summary (also written to out_dir/summary.json)."""
    console = console or Console(stderr=True)
    trainer = build(cfg.get("train"), "train", Trainer)
    task = build(cfg.get("task"), "task", Task)
    protocol = build(cfg["protocol"], "protocol", Protocol) if cfg.get("protocol") is not None else None
    judge = build(cfg.get("judge"), "judge", Judge)
    out_dir = Path(out_dir)
    progress = bool(cfg.get("progress", True))

    def job_runner(job_cfg: dict[str, Any], job_dir: Path, label: str) -> dict[str, Any]:
        with RunProgress(console, progress) as bar:
            return run_job(job_cfg, job_dir, bar.engine(label))

    job = TrainingRun(config=cfg, out_dir=out_dir, task=task, protocol=protocol, judge=judge, console=console,
                      progress=progress, build_engine=build_engine, run_job=job_runner)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "config.json").write_text(json.dumps(cfg, indent=2, default=str))
    return trainer.run(job)


def main() -> None:
    import hydra
    from hydra.core.hydra_config import HydraConfig
    from omegaconf import DictConfig, OmegaConf

    args = sys.argv[1:]
    if not any(a.split("=", 1)[0].lstrip("+") == "train" for a in args):
        sys.argv.append("+train=rrm")
    elif any(a.startswith("train=") for a in args):  # the group has no default in config.yaml: add it
        sys.argv = [sys.argv[0]] + ["+" + a if a.startswith("train=") else a for a in args]
    problem = unknown_group_choice(sys.argv[1:], Path(CONF_DIR))
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)

    @hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
    def app(cfg: DictConfig) -> None:
        out_dir = Path(HydraConfig.get().runtime.output_dir)
        try:
            run_train(OmegaConf.to_container(cfg, resolve=True), out_dir)
        except OversightError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)

    app()


if __name__ == "__main__":
    main()
