"""`oversight`: the Hydra app. One job per config; `-m` sweeps; `+experiment=NAME` loads a preset.

    oversight protocol=debate
    oversight -m protocol=direct,direct_passage,consultancy,debate
    oversight -m +experiment=compare
"""

from __future__ import annotations

import hashlib
import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from hydra.types import RunMode
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)

from oversight.app import CONF_DIR
from oversight.app.compare import SweepCallback
from oversight.errors import OversightError

CONF_DIR = str(CONF_DIR)
log = logging.getLogger("oversight")

#: overrides that never change a job's results, left out of its directory name (`experiment` names
#: the sweep instead; its values reach the job name as the sweep's own overrides)
NO_EFFECT_KEYS = ("name", "progress", "baseline", "experiment", "cache.path", "cache.enabled")
#: keys whose values are paths, URLs or packages (a digest stands for them even without a slash)
PATH_KEY_ENDINGS = ("path", "url", "_file", "package", "dir")


def job_name(overrides, *leave_out: str) -> str:
    """A job's directory name: its overrides, sorted and joined with commas as Hydra's
    `override_dirname` does (`protocol=debate,task.n=40`), except that an override holding a path or
    a URL appears as `key@digest` (8 hex digits of its value's sha256): unique per value, and one
    directory level whatever the value. `leave_out` drops keys (and their sub-keys) from the name."""
    items = []
    for line in overrides:
        key, _, value = str(line).partition("=")
        bare = key.lstrip("+~").split("@", 1)[0]
        if any(bare == k or bare.startswith(k + ".") for k in (*NO_EFFECT_KEYS, *leave_out)):
            continue
        if holds_path(bare, value):
            items.append(f"{key}@{hashlib.sha256(value.encode()).hexdigest()[:8]}")
        else:
            items.append(str(line))
    return ",".join(sorted(items)) or "defaults"


def holds_path(key: str, value: str) -> bool:
    if value in ("", "null"):
        return False
    return key.lower().endswith(PATH_KEY_ENDINGS) or any(mark in value for mark in ("/", "\\", "://"))


def run_dir(name: str, overrides) -> str:
    """A single run's directory: `runs/NAME/JOB`, like a sweep's job, so single runs named into a
    sweep (`name=demo`) are compared with it; a preset run without `-m` goes to
    `runs/single/NAME/JOB` instead, so it never lands among the preset sweep's jobs."""
    preset = any(str(line).partition("=")[0].lstrip("+~") == "experiment" for line in overrides)
    return f"runs/single/{name}/{job_name(overrides)}" if preset else f"runs/{name}/{job_name(overrides)}"


def cell_name() -> str:
    """The running job's name without its judge: one sweep cell, whatever judges it; for a per-cell
    call cache, `cache.path='${hydra:sweep.dir}/cache/${oversight.cell:}.sqlite'`."""
    return job_name(HydraConfig.get().overrides.task, "judge")


OmegaConf.register_new_resolver("oversight.job", job_name, replace=True)
OmegaConf.register_new_resolver("oversight.cell", cell_name, replace=True)
OmegaConf.register_new_resolver("oversight.run_dir", run_dir, replace=True)


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def app(cfg: DictConfig) -> float:
    from oversight.app.run import run_job

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    plain = OmegaConf.to_container(cfg, resolve=True)
    if plain.get("train"):  # a training job (+experiment=rrm_train, debate_train): oversight/app/train.py
        from oversight.app.train import run_train

        try:
            run_train(plain, out_dir)
        except OversightError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
        return 0.0
    console = Console(stderr=True)
    label = f"{plain['protocol'].get('label') or plain['protocol'].get('name')} / {plain['judge'].get('name')}"
    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("{task.fields[stats]}"), TimeElapsedColumn(), console=console,
                  disable=not plain.get("progress", True)) as progress:
        task = progress.add_task(label, total=None, stats="")

        def on_progress(engine) -> None:
            s = engine.stats
            progress.update(task, total=engine.total, completed=engine.done,
                            stats=f"calls {s.calls} cached {s.cache_hits} tokens out {s.output_tokens}")

        try:
            summary = run_job(plain, out_dir, on_progress)
        except OversightError as exc:
            print(f"error: {exc}", file=sys.stderr)
            sys.exit(2)
    console.print(summary_line(label, summary, out_dir), soft_wrap=True, markup=False, highlight=False)
    if summary["questions"] and summary["n_failed"] == summary["questions"]:
        print(f"error: every question of {out_dir} failed; first: {summary['first_error']}", file=sys.stderr)
        if HydraConfig.get().mode != RunMode.MULTIRUN:
            sys.exit(1)  # in a sweep the other jobs still run; the sweep exits non-zero at its end
    return summary["accuracy"]


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
    app()
    if SweepCallback.failed_jobs:  # a sweep with a job whose every question failed
        sys.exit(1)


def unknown_group_choice(args: list[str], conf_dir: Path) -> str | None:
    """A config-group choice that names no YAML file (`protocol=debat`, `protocol/strategy=best`),
    as one line naming the group and the valid names; Hydra itself would print a multi-line error.
    Config directories added with --config-dir or hydra.searchpath count too."""
    roots = [conf_dir, *extra_config_dirs(args)]
    for arg in args:
        if arg.startswith("-") or "=" not in arg:
            continue
        key, _, value = arg.partition("=")
        group = key.lstrip("+~").split("@", 1)[0]
        dirs = [root / group for root in roots if (root / group).is_dir()]
        if "." in group or not dirs or value.startswith(("choice(", "range(", "glob(", "[", "{")):
            continue
        valid = sorted({p.stem for d in dirs for p in d.glob("*.yaml")})
        for name in value.split(","):
            if name and name != "null" and name not in valid:
                return f"{group}: unknown name {name!r}; valid: {', '.join(valid)}"
    return None


def extra_config_dirs(args: list[str]) -> list[Path]:
    found = []
    for i, arg in enumerate(args):
        if arg in ("--config-dir", "-cd") and i + 1 < len(args):
            found.append(Path(args[i + 1]))
        elif arg.startswith("--config-dir="):
            found.append(Path(arg.partition("=")[2]))
        elif arg.startswith("hydra.searchpath="):
            for item in arg.partition("=")[2].strip("[]").split(","):
                if item.strip().startswith("file://"):
                    found.append(Path(item.strip()[len("file://"):]))
    return found


if __name__ == "__main__":
    main()
