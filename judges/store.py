"""Human judgments of a run, stored durably next to its records: RUN_DIR/human_judgments.sqlite.

records.jsonl stays exactly as the job wrote it (human items there are pending Judgments); the
store is joined with the records whenever a run is summarised. Every judgment is one committed row
(WAL journal, synchronous=FULL), written before the judging UI moves on, so killing the UI at any
moment loses nothing. Rows are never deleted: undo marks a row undone, and a judge's verdict on an
item is their latest row for it that is not undone.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field

from oversight.errors import DataError

STORE = "human_judgments.sqlite"

Status = Literal["judged", "skipped", "timed_out"]
ItemKey = tuple[str, str]  # (question_id, episode)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS judgments (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    judge_id      TEXT NOT NULL,
    question_id   TEXT NOT NULL,
    episode       TEXT NOT NULL,
    status        TEXT NOT NULL CHECK (status IN ('judged', 'skipped', 'timed_out')),
    chosen        INTEGER,
    confidence    REAL,
    p             TEXT,
    explanation   TEXT NOT NULL DEFAULT '',
    display_order TEXT NOT NULL DEFAULT '[]',
    model_shown   INTEGER NOT NULL DEFAULT 0,
    approved      INTEGER,
    timed_out     INTEGER NOT NULL DEFAULT 0,
    started_at    REAL NOT NULL,
    ended_at      REAL NOT NULL,
    seconds       REAL NOT NULL,
    undone_at     REAL
);
CREATE INDEX IF NOT EXISTS judgments_by_judge ON judgments (judge_id, question_id, episode);
"""


class HumanJudgment(BaseModel):
    """One human decision on one item: a verdict, a skip, or a time-out."""

    id: int | None = None
    judge_id: str
    question_id: str
    episode: str = "main"
    status: Status
    chosen: int | None = Field(default=None, description="original index of the chosen option")
    confidence: float | None = Field(default=None, description="probability that the chosen option is right")
    p: list[float] | None = Field(default=None, description="per-option probabilities, original order")
    explanation: str = ""
    display_order: list[int] = Field(default_factory=list, description="option order as shown to the judge")
    model_shown: bool = False
    approved: bool | None = Field(default=None, description="approval policy: kept the model's verdict")
    timed_out: bool = False
    started_at: float
    ended_at: float
    seconds: float
    undone_at: float | None = None

    @property
    def item(self) -> ItemKey:
        return (self.question_id, self.episode)


def option_probabilities(chosen: int, confidence: float, n_options: int) -> list[float]:
    """The chosen option gets `confidence`; the rest share what is left equally."""
    if not 0.0 <= confidence <= 1.0:
        raise ValueError(f"confidence {confidence} is outside [0, 1]")
    rest = (1.0 - confidence) / (n_options - 1)
    return [confidence if i == chosen else rest for i in range(n_options)]


class HumanStore:
    """The SQLite file of one run's human judgments. Safe for several judges at once."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        if self.path.is_dir():
            self.path = self.path / STORE
        try:
            self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=FULL")  # a committed judgment survives a power cut
            self._db.executescript(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            raise DataError(f"{self.path}: not a usable human-judgment store: {exc}") from exc

    @classmethod
    def exists(cls, run_dir: str | Path) -> bool:
        return (Path(run_dir) / STORE).exists()

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "HumanStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # ---- writing -------------------------------------------------------------------------------

    def add(self, row: HumanJudgment) -> HumanJudgment:
        """Commit one row (durably, before returning) and return it with its id."""
        values = row.model_dump(exclude={"id"})
        values["p"] = json.dumps(values["p"]) if values["p"] is not None else None
        values["display_order"] = json.dumps(values["display_order"])
        columns = ", ".join(values)
        marks = ", ".join(f":{k}" for k in values)
        with self._transaction():
            cursor = self._db.execute(f"INSERT INTO judgments ({columns}) VALUES ({marks})", values)
        return row.model_copy(update={"id": cursor.lastrowid})

    def undo_last(self, judge_id: str, within: set[ItemKey] | None = None) -> HumanJudgment | None:
        """Mark this judge's most recent live row (on an item in `within`, if given) undone; return
        it, or None if there is nothing to undo."""
        with self._transaction():
            live = self._db.execute(
                "SELECT * FROM judgments WHERE judge_id = ? AND undone_at IS NULL ORDER BY id DESC", (judge_id,))
            row = next((r for r in map(self._row, live) if within is None or r.item in within), None)
            if row is None:
                return None
            now = time.time()
            self._db.execute("UPDATE judgments SET undone_at = ? WHERE id = ?", (now, row.id))
        return row.model_copy(update={"undone_at": now})

    # ---- reading -------------------------------------------------------------------------------

    def rows(self, judge_id: str | None = None, include_undone: bool = False) -> list[HumanJudgment]:
        query, args = "SELECT * FROM judgments", []
        clauses = []
        if judge_id is not None:
            clauses.append("judge_id = ?")
            args.append(judge_id)
        if not include_undone:
            clauses.append("undone_at IS NULL")
        if clauses:
            query += " WHERE " + " AND ".join(clauses)
        return [self._row(r) for r in self._db.execute(query + " ORDER BY id", args)]

    def effective(self, judge_id: str) -> dict[ItemKey, HumanJudgment]:
        """This judge's current decision on each item they have decided."""
        latest: dict[ItemKey, HumanJudgment] = {}
        for row in self.rows(judge_id):
            latest[row.item] = row
        return latest

    def by_judge(self) -> dict[str, dict[ItemKey, HumanJudgment]]:
        """judge id -> that judge's current decisions."""
        out: dict[str, dict[ItemKey, HumanJudgment]] = {}
        for row in self.rows():
            out.setdefault(row.judge_id, {})[row.item] = row
        return out

    def judges(self) -> list[str]:
        return [r[0] for r in self._db.execute("SELECT DISTINCT judge_id FROM judgments ORDER BY judge_id")]

    # ---- helpers -------------------------------------------------------------------------------

    def _transaction(self):
        db = self._db

        class _Tx:
            def __enter__(self_inner):
                db.execute("BEGIN IMMEDIATE")

            def __exit__(self_inner, exc_type, *_):
                db.execute("ROLLBACK" if exc_type else "COMMIT")

        return _Tx()

    @staticmethod
    def _row(found: sqlite3.Row) -> HumanJudgment:
        values = dict(found)
        values["p"] = json.loads(values["p"]) if values["p"] is not None else None
        values["display_order"] = json.loads(values["display_order"])
        return HumanJudgment(**values)


def read_human_judgments(run_dir: str | Path) -> dict[str, dict[ItemKey, HumanJudgment]]:
    """judge id -> current decisions, or {} when the run has no store yet."""
    if not HumanStore.exists(run_dir):
        return {}
    with HumanStore(run_dir) as store:
        return store.by_judge()

