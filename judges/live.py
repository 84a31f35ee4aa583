"""A person in any role, live: the `human` model, whose generate calls a person answers.

A role becomes human by binding it, not by a protocol: `roles.<role>=human` with a model `human`
served by this backend (conf/live/debate.yaml):

    models:
      human: {name: alice, store: runs/live/turns.sqlite, backend: {_target_: judges.live.HumanBackend}}
    roles: {human_debater: human}

The backend is an ordinary `oversight.backends.base.Backend` (no kernel change): the engine hands it
each call of a human role as it would a server's (`dispatch: per_call`), so the model roles of every
other question keep running in batches while the person thinks. Each call is written to the store
as a pending ask (its call key, its messages) and answered when the person, in the terminal UI
`oversight-play STORE` (judges/play.py), has written the reply; the reply is the call's text, and
everything after it is the protocol's own code: a debater's or consultant's turn made by the `free`
strategy is cut to its word limit and its quotes are verified against the passage exactly as a
model's are (oversight.quotes.extract); a judge's question between rounds (protocol.interactive)
is the question turn; a generative verdict is parsed from "Answer: X"; a decomposer's reply is
parsed as the model decomposer's is.

Durability. The store is SQLite (WAL, synchronous=FULL): an ask is committed before the UI can
show it, an answer before the UI moves on, rows are never deleted. Killing either process (kill -9)
loses nothing: rerunning the job asks the same calls, finds the answered ones in the store (and in
the call cache, where the engine puts every answer like a model's, under the identity
`human:<name>`), and waits again only at the turn nobody has answered yet. A sweep re-judged with
another judge reuses the person's turns without asking again.

A person answers generate calls only: a role whose strategy scores text (the `quotes` strategy,
likelihood judges) fails its calls with an error naming the fix, never a made-up score.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable

from pydantic import BaseModel, ConfigDict, Field

from oversight.backends.base import Backend, Capabilities
from oversight.cache import call_key
from oversight.errors import ConfigError, DataError
from oversight.types import Call, CallResult

_SCHEMA = """
CREATE TABLE IF NOT EXISTS asks (
    key         TEXT PRIMARY KEY,
    person      TEXT NOT NULL,
    call        TEXT NOT NULL,
    asked_at    REAL NOT NULL,
    answer      TEXT,
    answered_at REAL,
    seconds     REAL
);
"""


class Ask(BaseModel):
    """One call waiting for (or answered by) a person."""

    key: str
    person: str
    call: Call
    asked_at: float
    answer: str | None = None
    answered_at: float | None = None
    seconds: float | None = None


class TurnStore:
    """The SQLite file of a live session's asks and answers; the job and the UI share it."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        for attempt in range(200):
            try:
                self._db = sqlite3.connect(self.path, timeout=30.0, isolation_level=None)
                self._db.row_factory = sqlite3.Row
                # switching to WAL while the other process opens the file can answer "locked" at once,
                # without SQLite's busy wait: try again shortly (the job and the UI start together)
                self._db.execute("PRAGMA journal_mode=WAL")
                self._db.execute("PRAGMA synchronous=FULL")  # a committed answer survives a power cut
                self._db.executescript(_SCHEMA)
                break
            except sqlite3.OperationalError as exc:
                if "locked" not in str(exc) or attempt == 199:
                    raise DataError(f"{self.path}: not a usable live-session store: {exc}") from exc
                self._db.close()
                time.sleep(0.05)
            except sqlite3.DatabaseError as exc:
                raise DataError(f"{self.path}: not a usable live-session store: {exc}") from exc

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> "TurnStore":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def ask(self, key: str, person: str, call: Call) -> None:
        """Record a pending ask (once: asking the same call again, as a rerun does, changes nothing)."""
        self._db.execute("INSERT OR IGNORE INTO asks (key, person, call, asked_at) VALUES (?, ?, ?, ?)",
                         (key, person, call.model_dump_json(), time.time()))

    def answer(self, key: str, text: str, seconds: float) -> None:
        """Commit a person's answer (durably, before returning). An ask is answered once."""
        cursor = self._db.execute("UPDATE asks SET answer = ?, answered_at = ?, seconds = ? "
                                  "WHERE key = ? AND answer IS NULL", (text, time.time(), seconds, key))
        if cursor.rowcount != 1:
            raise DataError(f"{self.path}: ask {key[:12]} is not pending (answered already, or never asked)")

    def get(self, key: str) -> Ask | None:
        row = self._db.execute("SELECT * FROM asks WHERE key = ?", (key,)).fetchone()
        return self._row(row) if row else None

    def pending(self, person: str | None = None) -> list[Ask]:
        """Unanswered asks, oldest first."""
        query, args = "SELECT * FROM asks WHERE answer IS NULL", []
        if person is not None:
            query, args = query + " AND person = ?", [person]
        return [self._row(r) for r in self._db.execute(query + " ORDER BY asked_at, key", args)]

    def answered(self) -> list[Ask]:
        return [self._row(r) for r in self._db.execute("SELECT * FROM asks WHERE answer IS NOT NULL "
                                                       "ORDER BY answered_at")]

    @staticmethod
    def _row(row: sqlite3.Row) -> Ask:
        values = dict(row)
        values["call"] = Call(**json.loads(values["call"]))
        return Ask(**values)


class HumanModel(BaseModel):
    """The `human` model's config (`models.<key>`): who answers, and where asks and answers live."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="the person's id; part of the call-cache identity (human:<name>)")
    store: str = Field(description="the live session's SQLite file, shared with `oversight-play STORE`")
    poll_seconds: float = Field(default=0.2, gt=0.0, description="how often a waiting call looks for its answer")
    backend: dict[str, Any] = Field(default_factory=dict)


class HumanBackend(Backend):
    """Answers generate calls with a person's replies, through a TurnStore (see the module doc).

    The job's `backend` settings (device, batch size: merged in for every model) do not apply to a
    person and are not read; the person's settings are the model's own keys (HumanModel)."""

    def __init__(self, model_cfg: dict[str, Any], backend_cfg: dict[str, Any]):
        from oversight.plugins import check

        where = "models.<human model>"
        settings = check(HumanModel, dict(model_cfg), where)
        assert isinstance(settings, HumanModel)
        if not settings.store:
            raise ConfigError(f"{where}.store: the live session's store file is required")
        self.settings = settings
        self.identity = f"human:{settings.name}"
        self.store = TurnStore(settings.store)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(engine="a person (oversight-play)", device="human", call_kinds=("generate",),
                            dispatch="per_call")

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[Callable[[Call], Awaitable[CallResult]]]:
        yield self.answer

    async def answer(self, call: Call) -> CallResult:
        if call.kind != "generate":
            return CallResult(error=f"a person answers generate calls only, not {call.kind}: give the human role a "
                                    "strategy that writes text (protocol/strategy=free) or a generative judge")
        key = call_key(self.identity, call)
        self.store.ask(key, self.settings.name, call)
        while True:
            found = self.store.get(key)
            if found is not None and found.answer is not None:
                return CallResult(text=found.answer, output_tokens=len(found.answer.split()))
            await asyncio.sleep(self.settings.poll_seconds)

    async def run(self, calls: list[Call]) -> list[CallResult]:
        return list(await asyncio.gather(*(self.answer(c) for c in calls)))

    def run_sync(self, calls: list[Call]) -> list[CallResult]:
        """Blocking: ask every call, return when a person has answered them all (outside an event
        loop: a script, `Backend.run_sync`; the engine uses `session`, per_call). Calls of other
        kinds come back as the same error result `answer` gives."""
        return asyncio.run(self.run(calls))

    generate = next_token = loglikelihood = run_sync

    def close(self) -> None:
        self.store.close()
