"""`oversight`: the Hydra app. One job per config; `-m` sweeps; `+experiment=NAME` loads a preset.

    oversight protocol=debate
    oversight -m protocol=direct,direct_passage,consultancy,debate
    oversight -m +experiment=compare
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from oversight.app import CONF_DIR
from oversight.errors import OversightError

CONF_DIR = str(CONF_DIR)
log = logging.getLogger("oversight")


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
    lo, hi = summary["accuracy_ci"]
    console.print(
        f"{label}: accuracy {summary['accuracy']:.3f} [95% CI {lo:.3f}, {hi:.3f}] on n={summary['n']}; "
        f"{summary['model_calls']} model calls, {summary['cache_hits']} cache hits -> {out_dir}"
    )
    return summary["accuracy"]


def main() -> None:
    problem = unknown_group_choice(sys.argv[1:], Path(CONF_DIR))
    if problem:
        print(f"error: {problem}", file=sys.stderr)
        sys.exit(2)
    app()


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
