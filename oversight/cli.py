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

from oversight.errors import OversightError

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")
log = logging.getLogger("oversight")


@hydra.main(version_base="1.3", config_path=CONF_DIR, config_name="config")
def app(cfg: DictConfig) -> float:
    from oversight.run import run_job

    out_dir = Path(HydraConfig.get().runtime.output_dir)
    plain = OmegaConf.to_container(cfg, resolve=True)
    console = Console(stderr=True)
    label = f"{plain['protocol'].get('label') or plain['protocol']['name']} / {plain['judge']['name']}"
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
            console.print(f"[red]error:[/red] {exc}")
            sys.exit(2)
    lo, hi = summary["accuracy_ci"]
    console.print(
        f"{label}: accuracy {summary['accuracy']:.3f} [95% CI {lo:.3f}, {hi:.3f}] on n={summary['n']}; "
        f"{summary['model_calls']} model calls, {summary['cache_hits']} cache hits -> {out_dir}"
    )
    return summary["accuracy"]


def main() -> None:
    app()


if __name__ == "__main__":
    main()
