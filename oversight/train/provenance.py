"""What produced a checkpoint: written beside it so a trained artefact can be traced and redone."""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path
from typing import Any

from oversight.provenance import git_revision, library_versions, machine


def data_digest(rows: list[Any]) -> str:
    """sha256 of the training rows as canonical JSON: two checkpoints with the same digest saw the same data."""
    return hashlib.sha256(json.dumps(rows, sort_keys=True, default=str).encode()).hexdigest()


def write_provenance(directory: str | Path, *, config: dict[str, Any], data: list[Any], base_model: str,
                     extra: dict[str, Any] | None = None) -> Path:
    """Write `provenance.json` (config, library versions, code revision, machine, base model identity,
    data digest) and `data.jsonl` (the rows themselves) into `directory`."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    with (directory / "data.jsonl").open("w") as handle:
        for row in data:
            handle.write(json.dumps(row, default=str) + "\n")
    info = {"created": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "base_model": base_model, "config": config,
            "data_rows": len(data), "data_sha256": data_digest(data), "libraries": library_versions(),
            "revision": git_revision(), "machine": machine(),
            **(extra or {})}
    path = directory / "provenance.json"
    path.write_text(json.dumps(info, indent=2, default=str))
    return path
