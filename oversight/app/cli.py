"""`oversight`: the Hydra app. One job per config; `-m` sweeps; `+experiment=NAME` loads a preset.

    oversight protocol=debate
    oversight -m protocol=direct,direct_passage,consultancy,debate
    oversight -m +experiment=compare
    oversight -m +experiment=compare --dry-run   # what it will cost (oversight/app/cost.py); runs nothing
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import tempfile
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from rich.console import Console

from oversight.app import cost
from oversight.app.args import CONF_DIR, unknown_group_choice
import oversight.app.jobdirs  # noqa: F401  (registers the resolvers that name job directories)
from oversight.app.run import run_job
from oversight.app.sweep import SweepCallback
from oversight.app.train import run_train
from oversight.errors import OversightError
from oversight.progress import RunProgress

log = logging.getLogger("oversight")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def app(cfg: DictConfig) -> float:
    out_dir = Path(HydraConfig.get().runtime.output_dir)
    plain = OmegaConf.to_container(cfg, resolve=True)
    scratch = cost.dry_run_dir()
    if scratch is not None:  # --dry-run: estimate, load no model, run nothing
        return dry_run(plain, out_dir, scratch)
    if plain.get("train"):  # a training job (+experiment=rrm_train, debate_train): oversight/app/train.py
        try:
            run_train(plain, out_dir)
        except OversightError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        return 0.0
    console = Console(stderr=True)
    label = f"{plain['protocol'].get('label') or plain['protocol'].get('name')} / {plain['judge'].get('name')}"
    with RunProgress(console, bool(plain.get("progress", True))) as progress:
        try:
            summary = run_job(plain, out_dir, progress.engine(label))
        except OversightError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
    console.print(summary_line(label, summary, out_dir), soft_wrap=True, markup=False, highlight=False)
    if summary.get("not_run"):
        print(f"budget reached: {summary['not_run']} of {summary['questions']} questions not run "
              f"(budget: {plain.get('budget')}); run the same command again to continue", file=sys.stderr)
    if summary["questions"] and summary["n_failed"] == summary["questions"]:
        print(f"error: every question of {out_dir} failed; first: {summary['first_error']}", file=sys.stderr)
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            sys.exit(1)  # in a sweep the other jobs still run; the sweep exits non-zero at its end
    return summary["accuracy"]


def dry_run(plain: dict, out_dir: Path, scratch: Path) -> float:
    if plain.get("train"):
        print(f"{out_dir.name}: a training job (train: {plain['train'].get('name') or plain['train'].get('_target_')}); "
              "--dry-run estimates protocol jobs only, not a trainer's data generation and training", file=sys.stderr)
        return 0.0
    label = f"{plain['protocol'].get('label') or plain['protocol'].get('name')} / {plain['judge'].get('name')}"
    try:
        estimate = cost.estimate_job(plain, out_dir, scratch)
    except OversightError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    print(cost.estimate_line(label, estimate))
    return 0.0


def summary_line(label: str, summary: dict, out_dir: Path) -> str:
    """The one line a job ends with: accuracy, how many questions failed and why, calls, where."""
    lo, hi = summary["accuracy_ci"]
    failed = ""
    if summary.get("n_failed"):
        failed = f"; {summary['n_failed']} of {summary['questions']} questions failed (first: {summary['first_error']})"
    return (f"{label}: accuracy {summary['accuracy']:.3f} [95% CI {lo:.3f}, {hi:.3f}] on n={summary['n']}{failed}; "
            f"{summary['model_calls']} model calls, {summary['cache_hits']} cache hits -> {out_dir}")


def main() -> None:
    problem = unknown_group_choice(sys.argv[1:], Path(CONF_DIR))
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    if "--dry-run" in sys.argv[1:]:
        # jobs and the sweep callback see the scratch directory; Hydra writes its files there, not in runs/
        scratch = Path(tempfile.mkdtemp(prefix="oversight-dry-run-"))
        os.environ[cost.DRY_RUN_ENV] = str(scratch)
        sys.argv = [a for a in sys.argv if a != "--dry-run"] + [
            f"hydra.run.dir={scratch / 'job'}", f"hydra.sweep.dir={scratch / 'sweep'}"]
        try:
            app()
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
            os.environ.pop(cost.DRY_RUN_ENV, None)
        return
    app()
    if SweepCallback.failed_jobs:  # a sweep with a job whose every question failed
        sys.exit(1)


if __name__ == "__main__":
    main()
