"""Job output: records.jsonl (one line per question) and summary.json, read back validated."""

from __future__ import annotations

import json
import math
import os
from pathlib import Path
from typing import Any, Iterable

from oversight.errors import DataError, OversightError
from oversight.types import Record

RECORDS = "records.jsonl"
SUMMARY = "summary.json"


def write_records(directory: str | Path, records: Iterable[Record]) -> Path:
    path = Path(directory) / RECORDS
    tmp = path.with_suffix(".jsonl.tmp")
    with tmp.open("w") as f:
        for record in records:
            f.write(record.model_dump_json() + "\n")
        f.flush()
        os.fsync(f.fileno())
    tmp.replace(path)  # atomic: a killed job never leaves a half-written records file
    return path


def read_records(directory: str | Path) -> list[Record]:
    path = Path(directory) / RECORDS
    records = []
    with path.open() as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                records.append(Record.model_validate_json(line))
            except ValueError as exc:
                raise DataError(f"{path}:{line_no}: not a valid record: {exc}") from exc
    return records


def job_dirs(directory: str | Path, required: bool = False, skip: str | None = None) -> list[Path]:
    """Every job directory under `directory` (itself included): those holding a summary.json, sorted.
    `required`: none is an error naming the directory. `skip`: leave out jobs inside a folder of
    that name (the report's copies)."""
    directory = Path(directory)
    jobs = sorted(p.parent for p in directory.rglob(SUMMARY)
                  if skip is None or skip not in p.relative_to(directory).parts[:-1])
    if required and not jobs:
        raise OversightError(f"{directory}: no {SUMMARY} found in any job directory (not a job or sweep directory)")
    return jobs


def write_summary(directory: str | Path, summary: dict[str, Any]) -> Path:
    path = Path(directory) / SUMMARY
    path.write_text(json.dumps(jsonable(summary), indent=2, sort_keys=False) + "\n")
    return path


def read_summary(directory: str | Path) -> dict[str, Any]:
    path = Path(directory) / SUMMARY
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise DataError(f"{path}:{exc.lineno}: invalid JSON: {exc.msg}") from exc


def jsonable(value: Any) -> Any:
    """JSON-ready: NaN and infinities become null (JSON has neither)."""
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    return value
