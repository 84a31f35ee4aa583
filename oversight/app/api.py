"""The notebook API: run a job from Python with the CLI's configs, load results as a DataFrame.

    import oversight
    summary = oversight.run(overrides=["protocol=debate", "task.n=20"])   # blocks; fine in Jupyter too
    summary = await oversight.run_async(overrides=["protocol=debate"])    # inside a running event loop
    df = oversight.load(summary["dir"])

The config is composed by Hydra's compose API from the same conf/ as the `oversight` command, so an
override means the same thing in both, and a job lands where the command would put it
(runs/<name>/<overrides>) unless `out_dir` says otherwise.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
from pathlib import Path
from typing import Any, Iterable, Sequence

from oversight import frame
from oversight.app import CONF_DIR
from oversight.errors import ConfigError


def compose(overrides: Sequence[str] = ()) -> tuple[dict[str, Any], str]:
    """(the job's resolved config as a plain dict, its directory name from the overrides)."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.errors import HydraException
    from omegaconf import OmegaConf
    from omegaconf.errors import OmegaConfBaseException

    from oversight.app.args import unknown_group_choice
    from oversight.app.jobdirs import run_dir

    overrides = list(overrides)
    problem = unknown_group_choice(overrides, CONF_DIR)  # one line naming the group and the valid names
    if problem:
        raise ConfigError(problem)
    try:
        with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3", job_name="oversight"):
            cfg = hydra_compose(config_name="config", overrides=overrides, return_hydra_config=True)
    except (HydraException, OmegaConfBaseException) as exc:
        raise ConfigError(f"overrides {overrides}: {exc}") from exc
    with_hydra = OmegaConf.to_container(cfg, resolve=False)
    with_hydra.pop("hydra", None)
    plain = OmegaConf.to_container(OmegaConf.create(with_hydra), resolve=True)
    return plain, run_dir(str(plain.get("name", "default")), overrides)


async def run_async(overrides: Sequence[str] = (), out_dir: str | Path | None = None) -> dict[str, Any]:
    """Run one job inside the caller's running event loop (a Jupyter cell: `await oversight.run_async([...])`).
    Returns the job's summary with `dir`, where records.jsonl and summary.json were written."""
    from oversight.app.run import run_job_async

    cfg, dirname = compose(overrides)
    out = Path(out_dir) if out_dir is not None else Path(dirname)
    summary = await run_job_async(cfg, out)
    return {**summary, "dir": str(out)}


def run(overrides: Sequence[str] = (), out_dir: str | Path | None = None) -> dict[str, Any]:
    """Run one job and wait for it. Works with or without a running event loop: inside one (Jupyter)
    the job runs on its own loop in a worker thread, so the notebook's loop is never re-entered."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(run_async(overrides, out_dir))
    with concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="oversight-run") as pool:
        return pool.submit(asyncio.run, run_async(overrides, out_dir)).result()


def load(directory: str | Path):
    """Every judgment under `directory` (a job or a sweep) as a pandas DataFrame, one row per
    judgment, people's decisions from each job's human_judgments.sqlite included (`human` column)."""
    return frame.load(directory, humans=_human_rows)


def _human_rows(job_dir: Path) -> Iterable[dict[str, Any]]:
    from judges.store import read_human_judgments

    for decisions in read_human_judgments(job_dir).values():
        for row in decisions.values():
            if row.status == "judged":
                yield row.model_dump()
