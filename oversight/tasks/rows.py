"""Reading rows of local dataset files and checking their fields, for the loaders in
oversight.tasks.loaders: JSONL lines, CSV rows, parquet/arrow tables (through `datasets` when it is
installed), and typed field access whose errors name the file, line and field.
"""

from __future__ import annotations

import csv
import json
import string
from pathlib import Path
from typing import Any, Iterable, Iterator, Sequence

from oversight.errors import ConfigError, DataError

LETTERS = string.ascii_uppercase


class _RowError(Exception):
    def __init__(self, field: str, message: str):
        super().__init__(message)
        self.field = field
        self.message = message


def _reject(file: Path, line: int, err: _RowError, skipped: list[str], skip: bool) -> None:
    error = DataError(f"{file}, line {line}, field {err.field!r}: {err.message}")
    if not skip:
        raise error
    skipped.append(str(error))


def _existing(path: str | Path | None) -> Path:
    if path is None or str(path) in ("", "???"):
        raise ConfigError("task.path must name a local dataset file (or directory)")
    file = Path(str(path)).expanduser()
    if not file.exists():
        raise DataError(f"{file}: no such file (task.path)")
    return file


def _split_from_name(file: Path) -> str | None:
    name = file.name.lower()
    for split in ("train", "dev", "validation", "val", "test"):
        if split in name:
            return {"val": "validation"}.get(split, split)
    return None


def _jsonl(file: Path, skipped: list[str] | None) -> Iterator[tuple[int, Any]]:
    """(line number, decoded object) per non-blank line; bad JSON is a DataError unless skipping."""
    with file.open(encoding="utf-8") as handle:
        for line, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except json.JSONDecodeError as exc:
                error = DataError(f"{file}, line {line}, field '(line)': not valid JSON: {exc.msg}")
                if skipped is None:
                    raise error from None
                skipped.append(str(error))
                continue
            if not isinstance(record, dict):
                error = DataError(f"{file}, line {line}, field '(line)': must be a JSON object")
                if skipped is None:
                    raise error
                skipped.append(str(error))
                continue
            yield line, record


def _csv_rows(file: Path) -> Iterator[tuple[int, list[str]]]:
    """(first line of the record, cells) per CSV record; quoted fields may span lines."""
    with file.open(encoding="utf-8", newline="") as handle:
        reader = csv.reader(handle)
        start = 1
        for row in reader:
            if row:
                yield start, row
            start = reader.line_num + 1


def _csv_dicts(file: Path, required: Iterable[str]) -> Iterator[tuple[int, dict[str, str] | _RowError]]:
    """(line, row as a dict) per record after the header, or (line, _RowError) for a record whose
    cell count differs from the header's."""
    rows = _csv_rows(file)
    try:
        _, header = next(rows)
    except StopIteration:
        raise DataError(f"{file}: the file is empty") from None
    header = [h.strip().lstrip("\ufeff") for h in header]
    missing = [c for c in required if c not in header]
    if missing:
        raise DataError(f"{file}, line 1, field {missing[0]!r}: missing column(s) {missing}; header is {header}")
    for line, cells in rows:
        if len(cells) != len(header):
            yield line, _RowError("(row)", f"has {len(cells)} cells, the header has {len(header)}")
        else:
            yield line, dict(zip(header, cells))


def _table_rows(file: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    try:
        import datasets
    except ImportError:
        raise ConfigError(
            f"{file}: reading {file.suffix} files needs the `datasets` package: pip install -e '.[data]'"
        ) from None
    kind = "parquet" if file.suffix == ".parquet" else "arrow"
    table = datasets.load_dataset(kind, data_files=str(file), split="train")
    for index, row in enumerate(table, start=1):
        yield index, dict(row)


def _field(record: dict[str, Any], key: str, kind: type, where: str = "") -> Any:
    name = f"{where}.{key}" if where else key
    if key not in record or record[key] is None:
        raise _RowError(name, "is missing")
    value = record[key]
    if not isinstance(value, kind):
        raise _RowError(name, f"must be a {kind.__name__}, got {type(value).__name__}")
    if kind is str and not value.strip():
        raise _RowError(name, "is empty")
    return value


def _text(value: Any, field: str) -> str:
    if value is None:
        raise _RowError(field, "is missing")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        value = str(value)
    if not isinstance(value, str) or not value.strip():
        raise _RowError(field, f"must be a non-empty string, got {value!r}")
    return value.strip()


def _options(raw: Sequence[Any], field: str) -> list[str]:
    options = [_text(value, f"{field}[{i}]") for i, value in enumerate(raw)]
    if len(options) < 2:
        raise _RowError(field, f"needs at least 2 options, got {len(options)}")
    return options


def _cell(row: dict[str, str], column: str) -> str:
    value = (row.get(column) or "").strip()
    if not value:
        raise _RowError(column, "is empty")
    return value


def _int_in(value: Any, low: int, high: int, field: str) -> int:
    if isinstance(value, str) and value.strip().lstrip("-").isdigit():
        value = int(value.strip())
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise _RowError(field, f"must be an integer in {low}..{high}, got {value!r}")
    return value


def _letter(value: Any, n: int, field: str) -> int:
    letter = str(value).strip().upper() if value is not None else ""
    if len(letter) != 1 or letter not in LETTERS[:n]:
        raise _RowError(field, f"must be one of {list(LETTERS[:n])}, got {value!r}")
    return LETTERS.index(letter)
