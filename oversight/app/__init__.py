"""The application: the only code that wires plugins together.

`cli` (the Hydra app `oversight`), `train` (`oversight-train`: builds trainer plugins), `run` (one
job), `sweep` (the one Hydra sweep callback), `compare`, `report`, `persuasion`, `extras`, `jobdirs`
(job directory names), `args` (command-line checks), `bench`, `serve` (a development
OpenAI-compatible server). The kernel (`oversight.*` outside this
package) never imports from here, nor from `protocols`, `judges` or `trainers`
(tests/test_import_graph.py checks it).
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any, Callable

from oversight.errors import ConfigError, OversightError

#: the Hydra config tree: config groups protocol/, judge/, model/, backend/, task/, experiment/;
#: `oversight/conf` in an installed wheel (setup.py copies it there), else the checkout's `conf/`
_PACKAGED = Path(__file__).resolve().parents[1] / "conf"
CONF_DIR = _PACKAGED if (_PACKAGED / "config.yaml").exists() else Path(__file__).resolve().parents[2] / "conf"


def group_config(group: str, name: str) -> dict[str, Any]:
    """One config of a group (`backend`, `hf`) as a plain dict, the way Hydra would compose it."""
    from omegaconf import OmegaConf

    path = CONF_DIR / group / f"{name}.yaml"
    if not path.exists():
        valid = sorted(p.stem for p in (CONF_DIR / group).glob("*.yaml"))
        raise ConfigError(f"{group}: unknown name {name!r}; valid: {', '.join(valid)}")
    cfg = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    assert isinstance(cfg, dict), path
    cfg.pop("defaults", None)
    return cfg


def exit_code(prog: str, action: Callable[[], Any]) -> int:
    """Run a command-line tool's work: 0, or 2 after one line `prog: what was wrong` on stderr."""
    try:
        action()
    except (OversightError, FileNotFoundError) as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return 2
    return 0
