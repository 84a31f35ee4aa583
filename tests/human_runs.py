"""Shared pieces for the human-judging tests: real runs on the tiny model, made once per session.

A run is made with `oversight.app.run.run_job` on a config composed by Hydra from conf/ (exactly what
the `oversight` CLI composes), so the judge configs under test are the shipped YAML files.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from hydra import compose, initialize_config_dir
from omegaconf import OmegaConf

from oversight.records import RECORDS, SUMMARY

CONF = str(Path(__file__).resolve().parent.parent / "conf")
_MADE: dict[tuple, Path] = {}


def job_config(model_cfg: dict, cache: Path, overrides: list[str]) -> dict:
    with initialize_config_dir(config_dir=CONF, version_base="1.3"):
        cfg = compose("config", overrides=[
            f"model.path={model_cfg['path']}", f"model.name={model_cfg['name']}", "model.package=null",
            "model.gguf_file=null", f"cache.path={cache}", "progress=false", *overrides])
    return OmegaConf.to_container(cfg, resolve=True)


class Runs:
    """Finished jobs, made on first use and shared by every test of the session (read-only:
    tests judge in a fresh copy, see `fresh`)."""

    def __init__(self, root: Path, model_cfg: dict):
        self.root = root
        self.model_cfg = model_cfg

    def get(self, judge: str, n: int = 20, *overrides: str) -> Path:
        from oversight.app.run import run_job

        key = (judge, n, overrides)
        if key not in _MADE:
            out = self.root / f"{judge}-{n}-{len(_MADE)}"
            run_job(job_config(self.model_cfg, self.root / "calls.sqlite",
                               [f"judge={judge}", f"task.n={n}", *overrides]), out)
            _MADE[key] = out
        return _MADE[key]

    @staticmethod
    def fresh(run: Path, dest: Path) -> Path:
        """A copy of a finished job with no human judgments yet."""
        dest.mkdir(parents=True, exist_ok=True)
        for name in (RECORDS, SUMMARY):
            shutil.copy(run / name, dest / name)
        return dest


MARKUP_TURN = ("[bold]not bold[/bold] [red]plain[/red] [link=https://evil.example]click[/link] "
               "\x1b[31mRED?\x1b[0m \x1b[5mBLINK?\x1b[0m \x1b]0;pwned\x07 bell\x07 cr\rback \u202eevil "
               "<quote>[i]quoted markup[/i] \x1b[1m</quote> AFTER-ALL")


def plant_markup(run: Path) -> None:
    """Rewrite the first item's debate turns (in place) to be full of markup and escape sequences."""
    from oversight.records import read_records, write_records

    records = read_records(run)
    first = records[0]
    for turn in first.transcripts[0].turns:
        turn.text = MARKUP_TURN
        turn.quotes[:] = []
    first.options[0] = "[b]opt[/b]\x1b[7m"
    write_records(run, records)
