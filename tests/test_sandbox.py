"""The suite's sandbox (tests/conftest.py) and the call cache a job uses: no test reads or writes
the user's home or caches, and a job's call cache is the one it was given."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from oversight.app.run import run_job
from oversight.cache import call_cache_path
from oversight.models import cache_root
from tests.conftest import SANDBOX, SANDBOX_DIRS
from tests.helpers import job_config

SCRIPTED = {"_target_": "oversight.backends.scripted.ScriptedBackend"}
ROOT = Path(__file__).resolve().parents[1]


def test_home_and_every_cache_directory_point_into_the_sandbox(tmp_path):
    for var in set(SANDBOX_DIRS) - {"OVERSIGHT_CALL_CACHE"}:
        assert Path(os.environ[var]).is_relative_to(SANDBOX), var
    assert Path(os.environ["OVERSIGHT_CALL_CACHE"]) == tmp_path / "calls.sqlite"  # each test its own
    assert Path.home().is_relative_to(SANDBOX) and cache_root().is_relative_to(SANDBOX)
    from huggingface_hub import constants

    assert Path(constants.HF_HOME).is_relative_to(SANDBOX)


def test_a_job_without_cache_path_uses_the_call_cache_the_test_gave_it(tmp_path, tiny_model_cfg, monkeypatch):
    given = tmp_path / "given" / "calls.sqlite"
    monkeypatch.setenv("OVERSIGHT_CALL_CACHE", str(given))
    cfg = job_config(tiny_model_cfg, {"name": "direct"}, n=2)  # cache.path: None
    cfg["backend"] = SCRIPTED
    summary = run_job(cfg, tmp_path / "job")
    assert summary["call_cache"] == str(given) and given.exists()
    again = run_job(cfg, tmp_path / "again")  # the same cache answers every call of the second run
    assert again["call_cache"] == str(given) and summary["model_calls"] > 0 and again["cache_hits"] >= summary["model_calls"]
    assert again["model_calls"] == 0


def test_cache_path_wins_over_the_environment_and_the_default_is_under_the_cache_root(tmp_path, monkeypatch):
    assert call_cache_path(tmp_path / "c.sqlite") == tmp_path / "c.sqlite"
    monkeypatch.setenv("OVERSIGHT_CALL_CACHE", str(tmp_path / "env.sqlite"))
    assert call_cache_path(None) == tmp_path / "env.sqlite"
    monkeypatch.delenv("OVERSIGHT_CALL_CACHE")
    monkeypatch.setenv("OVERSIGHT_CACHE", str(tmp_path / "root"))
    assert call_cache_path(None) == tmp_path / "root" / "calls.sqlite"


def test_the_cli_job_reports_the_cache_it_was_given(tmp_path):
    given = tmp_path / "cli-calls.sqlite"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "oversight.app.cli", "protocol=direct", "task.n=2", "progress=false",
                           "backend._target_=oversight.backends.scripted.ScriptedBackend", f"cache.path={given}",
                           f"hydra.run.dir={tmp_path}/job"], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    import json

    assert json.loads((tmp_path / "job" / "summary.json").read_text())["call_cache"] == str(given)
    assert given.exists()
