"""Checks of the command line before Hydra composes it: a config-group choice that names no YAML
file is one `error:` line naming the group and the valid names (Hydra itself prints several)."""

from __future__ import annotations

from pathlib import Path

from oversight.app import CONF_DIR as _CONF_DIR

#: the config tree, as hydra.main wants it
CONF_DIR = str(_CONF_DIR)


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


