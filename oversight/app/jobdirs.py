"""Job directory names, derived from the result-affecting part of a job's config (weak-to-strong's
habit): a finished cell of a sweep is found again by its name, never redone or overwritten. conf/
config.yaml names run and sweep directories through the resolvers registered here, so every Hydra
app of this project (`oversight`, `oversight-train`) imports this module before composing.
"""

from __future__ import annotations

import hashlib

from hydra.core.hydra_config import HydraConfig
from omegaconf import OmegaConf

#: overrides that never change a job's results, left out of its directory name (`experiment` names
#: the sweep instead; its values reach the job name as the sweep's own overrides; `budget` stops a job
#: early and a rerun without it finishes the same job; `cost` only sets how --dry-run estimates)
NO_EFFECT_KEYS = ("name", "progress", "baseline", "experiment", "cache.path", "cache.enabled", "budget", "cost")
#: between the levels of a nested config group's name (`protocol/strategy`)
GROUP_SEP = "/"
#: the longest job directory name, in bytes (most file systems allow 255); longer ones end in a digest
MAX_NAME_BYTES = 200
#: keys whose values are paths, URLs or packages (a digest stands for them even without a slash)
PATH_KEY_ENDINGS = ("path", "url", "_file", "package", "dir")


def job_name(overrides, *leave_out: str) -> str:
    """A job's directory name: its overrides, sorted and joined with commas as Hydra's
    `override_dirname` does (`protocol=debate,task.n=40`), except that an override holding a path or
    a URL appears as `key@digest` (8 hex digits of its value's sha256): unique per value, and one
    directory level whatever the value; and a nested config group's key (`protocol/strategy=free`)
    is written with a dot (`protocol.strategy=free`), so the name is one directory level too.
    `leave_out` drops keys (and their sub-keys) from the name."""
    items = []
    for line in overrides:
        key, _, value = str(line).partition("=")
        bare = key.lstrip("+~").split("@", 1)[0].replace(GROUP_SEP, ".")
        if any(bare == k or bare.startswith(k + ".") for k in (*NO_EFFECT_KEYS, *leave_out)):
            continue
        key = key.replace(GROUP_SEP, ".")
        if holds_path(bare, value):
            items.append(f"{key}@{hashlib.sha256(value.encode()).hexdigest()[:8]}")
        else:
            items.append(f"{key}={value}" if "=" in str(line) else key)
    name = ",".join(sorted(items)) or "defaults"
    if len(name.encode()) > MAX_NAME_BYTES:  # file systems refuse names over 255 bytes
        digest = hashlib.sha256(name.encode()).hexdigest()[:8]
        name = name.encode()[:MAX_NAME_BYTES - 12].decode(errors="ignore") + f"...@{digest}"
    return name


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


