"""A persistent cache of model calls, keyed by everything that changes the answer.

Key = sha256 of (model identity, call kind, messages, prefix, sampling params incl. seed,
candidates). Concurrency, batch size and retries are not in the key: they do not change the answer.
Failed calls are never cached, so a rerun retries them.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path
from typing import Any

from oversight.errors import ConfigError
from oversight.models import cache_root
from oversight.types import Call, CallResult

#: the environment variable naming the call cache file when `cache.path` is not set
CALL_CACHE_ENV = "OVERSIGHT_CALL_CACHE"


def call_cache_path(configured: str | Path | None = None) -> Path:
    """The call cache a job uses: `cache.path` when set, else $OVERSIGHT_CALL_CACHE, else
    calls.sqlite in the cache root ($OVERSIGHT_CACHE, default ~/.cache/oversight). The one place
    this default is decided."""
    if configured:
        return Path(configured)
    if os.environ.get(CALL_CACHE_ENV):
        return Path(os.environ[CALL_CACHE_ENV])
    return cache_root() / "calls.sqlite"


def call_key(model_identity: str, call: Call) -> str:
    payload = json.dumps({"model": model_identity, "call": call.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


class SQLiteStore:
    """Key -> value rows of one SQLite table; safe for several processes (WAL) and threads (one lock).
    The call cache and the feature cache (oversight.train.features) are both one."""

    def __init__(self, path: str | Path, table: str, column: str, kind: str = "TEXT", key: str | None = None):
        """`key`: the config key that named `path`, for the error when it cannot be opened."""
        self.path = Path(path)
        self.table, self.column = table, column
        self._lock = threading.Lock()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute(f"CREATE TABLE IF NOT EXISTS {table} (key TEXT PRIMARY KEY, {column} {kind} NOT NULL)")
            self._db.commit()
        except (OSError, sqlite3.Error) as exc:
            where = f"{key}={str(self.path)!r}" if key else str(self.path)
            raise ConfigError(f"{where}: cannot open or write this SQLite file ({exc}); expected a writable "
                              "path") from None

    def get_many(self, keys: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                query = f"SELECT key, {self.column} FROM {self.table} WHERE key IN ({marks})"
                found.update(self._db.execute(query, chunk))
        return found

    def put_many(self, rows: list[tuple[str, Any]]) -> None:
        if not rows:
            return
        with self._lock:
            self._db.executemany(f"INSERT OR REPLACE INTO {self.table} (key, {self.column}) VALUES (?, ?)", rows)
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute(f"SELECT COUNT(*) FROM {self.table}").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()


class CallCache:
    """Successful call results by `call_key`, in SQLite (one `SQLiteStore`)."""

    def __init__(self, path: str | Path, key: str | None = "cache.path"):
        self.store = SQLiteStore(path, "calls", "result", key=key)
        self.path = self.store.path

    def get_many(self, keys: list[str]) -> dict[str, CallResult]:
        return {k: CallResult.model_validate_json(v) for k, v in self.store.get_many(keys).items()}

    def put_many(self, items: dict[str, CallResult]) -> None:
        self.store.put_many([(k, v.model_dump_json(exclude={"cached"})) for k, v in items.items() if v.ok])

    def __len__(self) -> int:
        return len(self.store)

    def close(self) -> None:
        self.store.close()
