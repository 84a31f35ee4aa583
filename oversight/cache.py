"""A persistent cache of model calls, keyed by everything that changes the answer.

Key = sha256 of (model identity, call kind, messages, prefix, sampling params incl. seed,
candidates). Concurrency, batch size and retries are not in the key: they do not change the answer.
Failed calls are never cached, so a rerun retries them.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
from pathlib import Path

from oversight.types import Call, CallResult


def call_key(model_identity: str, call: Call) -> str:
    payload = json.dumps({"model": model_identity, "call": call.model_dump(mode="json")}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


class CallCache:
    """SQLite-backed; safe for several processes (WAL) and threads (one lock)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), timeout=60, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS calls (key TEXT PRIMARY KEY, result TEXT NOT NULL)")
        self._db.commit()

    def get_many(self, keys: list[str]) -> dict[str, CallResult]:
        found: dict[str, CallResult] = {}
        with self._lock:
            for start in range(0, len(keys), 500):
                chunk = keys[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for key, value in self._db.execute(f"SELECT key, result FROM calls WHERE key IN ({marks})", chunk):
                    found[key] = CallResult.model_validate_json(value)
        return found

    def put_many(self, items: dict[str, CallResult]) -> None:
        rows = [(k, v.model_dump_json(exclude={"cached"})) for k, v in items.items() if v.ok]
        if not rows:
            return
        with self._lock:
            self._db.executemany("INSERT OR REPLACE INTO calls (key, result) VALUES (?, ?)", rows)
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM calls").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
