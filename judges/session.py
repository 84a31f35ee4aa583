"""A person's judging session over a run's pending items: which items, in which order, what is
recorded (committed to RUN_DIR/human_judgments.sqlite before the next item appears), undo and
skip. Everything the terminal UI (judges/tui.py) does except drawing the screen.
"""

from __future__ import annotations

import random
import re
import time
from pathlib import Path
from typing import Any


from judges.human import HumanSettings, human_settings, settings_for
from judges.policies import Item, Policy, human_items, job_policy
from judges.store import HumanJudgment, HumanStore, option_probabilities
from oversight.errors import OversightError
from oversight.records import RECORDS, SUMMARY, read_records, read_summary

JUDGE_ID = re.compile(r"[A-Za-z0-9_.@-]{1,64}")


class JudgingSession:
    """One judge working through one run's queue. Each decision is stored before it returns."""

    def __init__(self, run_dir: str | Path, judge_id: str, *, overrides: dict[str, Any] | None = None,
                 include_skipped: bool = False, required_only: bool = False):
        self.run_dir = Path(run_dir)
        if not (self.run_dir / RECORDS).exists() or not (self.run_dir / SUMMARY).exists():
            below = sorted(p.parent for p in self.run_dir.rglob(RECORDS)) if self.run_dir.is_dir() else []
            hint = f"; job directories below it: {[str(p) for p in below[:10]]}" if below else ""
            raise OversightError(f"{self.run_dir}: not a finished job directory (needs {RECORDS} and {SUMMARY}){hint}")
        if not judge_id or not JUDGE_ID.fullmatch(judge_id.strip()):
            raise OversightError(f"--judge-id={judge_id!r} must name the judge with letters, digits and . _ @ - "
                                 "(e.g. --judge-id alice)")
        self.judge_id = judge_id.strip()
        summary = read_summary(self.run_dir)
        records = read_records(self.run_dir)
        policy = job_policy(summary, records)
        judge_cfg = (summary.get("config") or {}).get("judge") or {}
        if policy is None:
            raise OversightError(f"{self.run_dir}: judge {summary.get('judge')!r} leaves nothing to people; "
                                 "run with judge=human (or route, ensemble, augmented, approval)")
        self.policy: Policy = policy
        self.protocol = summary.get("protocol", "")
        self.model_judge = str((judge_cfg.get("model_judge") or {}).get("name") or "model")
        settings = settings_for(judge_cfg)
        if overrides:
            settings = human_settings({**settings.model_dump(), **overrides}, "")
        self.settings: HumanSettings = settings
        self.items: list[Item] = human_items(records, policy)
        if required_only:
            self.items = [i for i in self.items if i.required]
        self.store = HumanStore(self.run_dir)
        self.decided: dict[tuple[str, str], HumanJudgment] = self.store.effective(self.judge_id)
        self._revisit = {k for k, r in self.decided.items() if r.status != "judged"} if include_skipped else set()

    def close(self) -> None:
        self.store.close()

    # ---- the queue ---------------------------------------------------------------------------------

    def queue(self) -> list[Item]:
        fresh = [i for i in self.items if i.key not in self.decided]
        return fresh + [i for i in self.items if i.key in self._revisit]

    def current(self) -> Item | None:
        queue = self.queue()
        return queue[0] if queue else None

    def progress(self) -> dict[str, int]:
        mine = [self.decided[i.key] for i in self.items if i.key in self.decided]
        counts = {status: sum(r.status == status for r in mine) for status in ("judged", "skipped", "timed_out")}
        required = [i for i in self.items if i.required]
        return {"total": len(self.items), "done": len(mine), "remaining": len(self.queue()), **counts,
                "required": len(required), "required_done": sum(i.key in self.decided for i in required)}

    def display_order(self, item: Item) -> list[int]:
        n = len(item.record.options)
        if not self.settings.shuffle_options:
            return list(range(n))
        rng = random.Random(f"{self.judge_id}|{item.record.question_id}|{item.transcript.episode}")
        return rng.sample(range(n), n)

    # ---- decisions ---------------------------------------------------------------------------------

    def decide(self, item: Item, status: str, *, started_at: float, seconds: float, chosen: int | None = None,
               confidence: float | None = None, explanation: str = "", approved: bool | None = None,
               timed_out: bool = False, p: list[float] | None = None) -> HumanJudgment:
        if status == "judged" and p is None:
            p = option_probabilities(chosen, confidence, len(item.record.options))
        row = HumanJudgment(
            judge_id=self.judge_id, question_id=item.record.question_id, episode=item.transcript.episode,
            status=status, chosen=chosen, confidence=confidence, p=p, explanation=explanation.strip(),
            display_order=self.display_order(item), model_shown=item.show_model, approved=approved,
            timed_out=timed_out, started_at=started_at, ended_at=time.time(), seconds=round(seconds, 3))
        row = self.store.add(row)  # committed before the UI moves on
        self.decided[item.key] = row
        self._revisit.discard(item.key)
        return row

    def undo(self) -> tuple[Item, HumanJudgment] | None:
        row = self.store.undo_last(self.judge_id, within={i.key for i in self.items})
        if row is None:
            return None
        self.decided = self.store.effective(self.judge_id)
        item = next(i for i in self.items if i.key == row.item)
        if item.key in self.decided and self.decided[item.key].status != "judged":
            self._revisit.add(item.key)
        return item, row
