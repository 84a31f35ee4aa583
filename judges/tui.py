"""`oversight-judge RUN_DIR --judge-id NAME`: people judge a run's pending items in the terminal.

Each item shows the question, the options and the judge-visible transcript round by round, quotes
marked verified or unverified. The hidden passage appears only when the transcript carries it
(the protocol lets the judge see it). The judge picks an option and a confidence, may add a short
explanation, and moves on:

    a b c ... (or 1 2 3 ...)   choose an option          y        approve the model (approval)
    + / -  (or right / left)   confidence up / down      n        write an explanation (Esc: done)
    Enter                      record the judgment       s        skip the item
    u                          undo the last decision    q        quit (everything is saved)
    space / page up / up / down  scroll the transcript

Every decision is committed to RUN_DIR/human_judgments.sqlite before the next item appears, so
killing the UI loses nothing and starting it again resumes where the judge stopped. Model output
is shown as literal text: markup is not interpreted, and control characters and escape sequences
appear escaped (e.g. \\x1b), never acted on.
"""

from __future__ import annotations

import argparse
import os
import random
import re
import sys
import time
import unicodedata
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual import events
from textual.widgets import Footer, Static

from judges.human import HumanSettings, human_settings, settings_for
from oversight.errors import OversightError
from judges.store import HumanJudgment, HumanStore, option_probabilities
from judges.policies import Item, Policy, human_items, job_policy
from oversight.quotes import quote_verdicts
from oversight.records import RECORDS, SUMMARY, read_records, read_summary
from judges.view import LETTERS, ordered_turns
from oversight.types import Turn

JUDGE_ID = re.compile(r"[A-Za-z0-9_.@-]{1,64}")

# ---- the session: everything but the screen --------------------------------------------------------


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


# ---- showing model output as literal text ------------------------------------------------------------

_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")
ESCAPE_STYLE = "reverse"
MAX_EXPLANATION = 500


def _escape(ch: str) -> str | None:
    """How a character that must not reach the terminal is shown (None: show it as it is)."""
    code = ord(ch)
    if ch == "\n":
        return None
    if code < 0x20 or code == 0x7F or 0x80 <= code <= 0x9F:
        return f"\\x{code:02x}"
    if ch in _BIDI or unicodedata.category(ch) in ("Cs", "Co", "Cn"):
        return f"\\u{code:04x}"
    return None


def literal(text: str) -> str:
    """`text` with every control character, escape sequence introducer and bidi override escaped."""
    return "".join(_escape(ch) or ch for ch in text)


def literal_parts(text: str, style: str = "") -> list[tuple[str, str]]:
    """(text, style) parts for Content.assemble: escapes are marked with ESCAPE_STYLE so they stand
    apart from text that merely looks like an escape."""
    parts: list[tuple[str, str]] = []
    plain: list[str] = []
    for ch in text:
        escaped = _escape(ch)
        if escaped is None:
            plain.append(ch)
            continue
        if plain:
            parts.append(("".join(plain), style))
            plain = []
        parts.append((escaped, f"{style} {ESCAPE_STYLE}".strip()))
    if plain:
        parts.append(("".join(plain), style))
    return parts


def turn_parts(turn: Turn) -> list[tuple[str, str]]:
    parts: list[tuple[str, str]] = []
    position = 0
    for match, verified in quote_verdicts(turn):
        parts += literal_parts(turn.text[position:match.start()])
        quote = match.group(1).strip()
        if verified:
            parts += [("✓ verified ", "bold green")] + literal_parts(f"“{quote}”", "green")
        else:
            parts += [("✗ UNVERIFIED ", "bold red")] + literal_parts(f"“{quote}”", "red italic")
        position = match.end()
    parts += literal_parts(turn.text[position:])
    return parts


def option_label(item: Item, order: list[int], option: int) -> str:
    return f"{LETTERS[order.index(option)]}) "


def body_content(item: Item, order: list[int]) -> Content:
    """Question, (passage if the protocol shows it), options and the transcript round by round."""
    record, transcript = item.record, item.transcript
    parts: list[Any] = [("Question: ", "bold")] + literal_parts(record.question) + ["\n"]
    for position, option in enumerate(order):
        parts += [(f"  {LETTERS[position]}) ", "bold")] + literal_parts(record.options[option]) + ["\n"]
    if transcript.passage:
        parts += ["\n", ("Story (this protocol lets the judge read it):", "bold"), "\n"]
        parts += literal_parts(transcript.passage) + ["\n"]
    turns = ordered_turns(transcript, order)
    if not turns:
        parts += ["\n", ("(no transcript: judge from the question alone)", "italic"), "\n"]
    current_round = None
    for turn in turns:
        if turn.round != current_round:
            current_round = turn.round
            parts += ["\n", (f"── Round {turn.round + 1} ──", "bold"), "\n"]
        who = literal(turn.label)
        if turn.side is not None and 0 <= turn.side < len(record.options):
            side = option_label(item, order, turn.side)
            parts += [(f"{who} for {side}", "bold")] + literal_parts(record.options[turn.side], "bold") + [(":", "bold")]
        else:
            parts += [(f"{who}:", "bold")]
        parts += [" "] + turn_parts(turn) + ["\n"]
    return Content.assemble(*parts, strip_control_codes=False)


def model_content(item: Item, order: list[int], model_name: str, policy: str) -> Content:
    machine = item.machine
    if machine is None or not machine.p or machine.chosen is None:
        return Content.assemble((f"Weak model ({model_name}): no verdict (its answer could not be parsed)", "italic"))
    chosen = machine.chosen
    parts: list[Any] = [(f"Weak model ({literal(model_name)}) says: ", "bold"),
                        (option_label(item, order, chosen), "bold")]
    parts += literal_parts(item.record.options[chosen], "bold") + [f"  ({machine.p[chosen]:.0%} confident)"]
    if policy == "approval":
        parts += ["\n", ("y: approve it · or choose another option and a confidence to override", "italic")]
    return Content.assemble(*parts, strip_control_codes=False)


# ---- the app -------------------------------------------------------------------------------------------


class JudgeApp(App):
    """The judging screen. `session` does the storing; the app only shows and asks."""

    TITLE = "oversight-judge"
    CSS = """
    #status { height: 1; background: $primary; color: $text; padding: 0 1; }
    #body { height: 1fr; border: round $secondary; padding: 0 1; }
    #model { height: auto; padding: 0 1; background: $boost; }
    #options { height: auto; padding: 0 1; }
    #confidence { height: 1; padding: 0 1; }
    #explanation { height: auto; min-height: 1; padding: 0 1; }
    #explanation.writing { background: $boost; color: $text; text-style: bold; }
    #message { height: auto; min-height: 1; padding: 0 1; color: $warning; }
    """
    BINDINGS = [
        Binding("enter", "submit", "record"),
        Binding("right,plus,equals_sign", "confidence(1)", "confidence +"),
        Binding("left,minus", "confidence(-1)", "confidence -"),
        Binding("s", "skip", "skip"),
        Binding("u", "undo", "undo"),
        Binding("y", "approve", "approve", show=False),
        Binding("n", "note", "explain"),
        Binding("pagedown,space", "scroll(1)", "scroll", show=False),
        Binding("pageup", "scroll(-1)", show=False),
        Binding("down", "scroll(0.2)", show=False),
        Binding("up", "scroll(-0.2)", show=False),
        Binding("q", "quit", "quit"),
        *[Binding(LETTERS[i].lower(), f"choose({i})", show=False) for i in range(len(LETTERS))],
        *[Binding(str(i + 1), f"choose({i})", show=False) for i in range(9)],
    ]

    def __init__(self, session: JudgingSession):
        super().__init__()
        self.session = session
        self.item: Item | None = None
        self.order: list[int] = []
        self.levels: list[float] = []
        self.selected: int | None = None  # position in the displayed order
        self.level: int | None = None  # index into self.levels
        self.forced = False  # on_timeout=force and time ran out: the judge must answer now
        self.explanation = ""
        self.writing = False  # keys are typed into the explanation
        self.started_at = 0.0
        self.started_clock = 0.0

    def compose(self) -> ComposeResult:
        yield Static(id="status", markup=False)
        with VerticalScroll(id="body"):
            yield Static(id="transcript", markup=False)
        yield Static(id="model", markup=False)
        yield Static(id="options", markup=False)
        yield Static(id="confidence", markup=False)
        yield Static(id="explanation", markup=False)
        yield Static(id="message", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        # Nothing takes focus: every key reaches the app in the order it was typed, so fast typing
        # or a paste right after `n` or Enter can never land in the wrong place.
        self.query_one("#body", VerticalScroll).can_focus = False
        self.show(self.session.current())
        if self.session.settings.time_limit:
            self.set_interval(0.2, self._tick)

    # ---- showing -----------------------------------------------------------------------------------

    def show(self, item: Item | None, prefill: HumanJudgment | None = None) -> None:
        self.item = item
        self.forced = False
        self.started_at, self.started_clock = time.time(), time.monotonic()
        self.explanation = prefill.explanation if prefill else ""
        self.writing = False
        self._explanation()
        if item is None:
            self.order, self.levels, self.selected, self.level = [], [], None, None
            p = self.session.progress()
            self.query_one("#transcript", Static).update(Content.assemble(
                ("All items done", "bold"), f": {p['judged']} judged, {p['skipped']} skipped, "
                f"{p['timed_out']} timed out. Your judgments are saved in {self.session.store.path}.\n\n"
                "u: undo the last decision · q: quit"))
            for widget in ("#model", "#options", "#confidence"):
                self.query_one(widget, Static).update("")
            self.query_one("#model", Static).display = False
            self._status()
            return
        self.order = self.session.display_order(item)
        self.levels = self.session.settings.levels(len(item.record.options))
        self.selected = self.level = None
        if prefill is not None and prefill.status == "judged" and prefill.chosen is not None:
            self.selected = self.order.index(prefill.chosen)
            if prefill.confidence is not None and self.levels:
                self.level = min(range(len(self.levels)), key=lambda i: abs(self.levels[i] - prefill.confidence))
        self.query_one("#transcript", Static).update(body_content(item, self.order))
        self.query_one("#body", VerticalScroll).scroll_home(animate=False)
        model = self.query_one("#model", Static)
        model.display = item.show_model
        if item.show_model:
            model.update(model_content(item, self.order, self.session.model_judge, self.session.policy.policy))
        self._options()
        self._status()

    def _options(self) -> None:
        if self.item is None:
            return
        parts: list[Any] = [("Your answer: ", "bold")]
        for position, option in enumerate(self.order):
            style = "bold reverse" if position == self.selected else ""
            parts += [(f" {LETTERS[position]}) ", style)] + literal_parts(self.item.record.options[option], style)
            parts += ["   "]
        self.query_one("#options", Static).update(Content.assemble(*parts, strip_control_codes=False))
        if self.level is None:
            confidence = Content.assemble(("Confidence: ", "bold"), "not set (+ / - or → / ←)")
        else:
            value = self.levels[self.level]
            bar = "".join("●" if i == self.level else "─" for i in range(len(self.levels)))
            confidence = Content.assemble(("Confidence: ", "bold"), (f"{value:.0%}", "bold"),
                                          f"  {self.levels[0]:.0%} {bar} {self.levels[-1]:.0%}")
        self.query_one("#confidence", Static).update(confidence)

    def _status(self) -> None:
        p = self.session.progress()
        text = f"judge {literal(self.session.judge_id)} · {self.session.protocol} · done {p['done']} · remaining {p['remaining']}"
        if self.session.policy.policy == "route":
            text += f" · budget items {p['required_done']}/{p['required']}"
        limit = self.session.settings.time_limit
        if limit and self.item is not None:
            left = limit - (time.monotonic() - self.started_clock)
            text += " · TIME UP" if self.forced or left <= 0 else f" · {int(left + 0.999)}s left"
        self.query_one("#status", Static).update(Content(text))

    def _say(self, text: str) -> None:
        self.query_one("#message", Static).update(Content(text))

    # ---- actions -------------------------------------------------------------------------------------

    def action_choose(self, position: int) -> None:
        if self.item is None or position >= len(self.order):
            return
        self.selected = position
        if self.level is None and self.levels:
            self._say("Now set your confidence (+ / -), then Enter.")
        self._options()

    def action_confidence(self, step: int) -> None:
        if self.item is None or not self.levels:
            return
        if self.level is None:
            self.level = len(self.levels) // 2
        else:
            self.level = max(0, min(len(self.levels) - 1, self.level + step))
        self._options()

    def action_scroll(self, pages: float) -> None:
        body = self.query_one("#body", VerticalScroll)
        body.scroll_relative(y=pages * max(1, body.size.height - 2), animate=False)

    def action_submit(self) -> None:
        if self.item is None:
            return
        if self.selected is None:
            self._say("Choose an option first (its letter).")
            return
        if self.level is None:
            self._say("Set your confidence first (+ / -).")
            return
        item = self.item
        chosen = self.order[self.selected]
        approved = None
        if self.session.policy.policy == "approval" and item.machine is not None:
            approved = chosen == item.machine.chosen
        self.session.decide(item, "judged", chosen=chosen, confidence=self.levels[self.level],
                            explanation=self.explanation, approved=approved,
                            timed_out=self.forced, **self._timing())
        self._say(f"Recorded: {LETTERS[self.selected]}) at {self.levels[self.level]:.0%}.")
        self.show(self.session.current())

    def action_approve(self) -> None:
        item = self.item
        if item is None or self.session.policy.policy != "approval" or item.machine is None \
                or item.machine.chosen is None:
            return
        machine = item.machine
        self.session.decide(item, "judged", chosen=machine.chosen, confidence=max(machine.p), p=list(machine.p),
                            explanation=self.explanation, approved=True,
                            timed_out=self.forced, **self._timing())
        self._say("Recorded: approved the model's verdict.")
        self.show(self.session.current())

    def action_skip(self) -> None:
        if self.item is None:
            return
        self.session.decide(self.item, "skipped", explanation=self.explanation,
                            timed_out=self.forced, **self._timing())
        self._say("Skipped.")
        self.show(self.session.current())

    def action_undo(self) -> None:
        undone = self.session.undo()
        if undone is None:
            self._say("Nothing to undo.")
            return
        item, row = undone
        self._say(f"Undid your {row.status.replace('_', ' ')} decision on this item; decide again.")
        self.show(item, prefill=row)

    def action_note(self) -> None:
        if self.item is not None:
            self.writing = True
            self._explanation()

    def on_key(self, event: events.Key) -> None:
        """While writing an explanation, keys are text (Enter records, Esc goes back)."""
        if not self.writing:
            return
        event.prevent_default()  # no command bindings while writing
        event.stop()
        if event.key == "escape":
            self.writing = False
        elif event.key == "enter":
            self.writing = False
            self.action_submit()
        elif event.key == "backspace":
            self.explanation = self.explanation[:-1]
        elif event.is_printable and event.character and len(self.explanation) < MAX_EXPLANATION:
            self.explanation += event.character
        self._explanation()

    def on_paste(self, event: events.Paste) -> None:
        if self.writing:
            self.explanation = (self.explanation + " ".join(event.text.split()))[:MAX_EXPLANATION]
            self._explanation()

    def _explanation(self) -> None:
        widget = self.query_one("#explanation", Static)
        widget.set_class(self.writing, "writing")
        if self.writing:
            content = Content.assemble(("Explanation: ", "bold"), *literal_parts(self.explanation), ("▏", "blink"),
                                       ("   Enter: record · Esc: back", "dim"), strip_control_codes=False)
        elif self.explanation:
            content = Content.assemble(("Explanation: ", "bold"), *literal_parts(self.explanation), ("   (n: edit)", "dim"),
                                       strip_control_codes=False)
        else:
            content = Content.assemble(("Explanation (optional): press n to write one", "dim"))
        widget.update(content)

    def _timing(self) -> dict[str, float]:
        return {"started_at": self.started_at, "seconds": time.monotonic() - self.started_clock}

    def _tick(self) -> None:
        # The interval can fire once more while the app closes and its widgets are already gone: a
        # judge who has left decides nothing then (the item stays pending and comes back next time).
        if not self.screen.query("#message"):
            return
        limit = self.session.settings.time_limit
        if self.item is not None and limit and not self.forced and time.monotonic() - self.started_clock >= limit:
            if self.session.settings.on_timeout == "skip":
                self.session.decide(self.item, "timed_out", timed_out=True,
                                    explanation=self.explanation, **self._timing())
                self._say("Time ran out: that item is recorded as timed out.")
                self.show(self.session.current())
            else:
                self.forced = True
                self._say("Time is up: choose an option and a confidence now, then Enter.")
        self._status()


# ---- command line ------------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oversight-judge", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="keys:\n" + "\n".join(line for line in __doc__.splitlines() if line.startswith("    ")))
    parser.add_argument("run_dir", help="a finished job directory (records.jsonl + summary.json)")
    parser.add_argument("--judge-id", default=os.environ.get("OVERSIGHT_JUDGE_ID"),
                        help="your name or id, the same every session (default: $OVERSIGHT_JUDGE_ID)")
    parser.add_argument("--time-limit", type=float, help="seconds per item, with a countdown (overrides the config)")
    parser.add_argument("--on-timeout", choices=["skip", "force"], help="when time runs out (overrides the config)")
    parser.add_argument("--include-skipped", action="store_true", help="offer skipped and timed-out items again")
    parser.add_argument("--required-only", action="store_true",
                        help="route: only the items the budget sends to people, not the extra curve items")
    parser.add_argument("--status", action="store_true", help="print progress and agreement; no UI")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("time_limit", args.time_limit), ("on_timeout", args.on_timeout)) if v is not None}
    try:
        if args.status:
            return _print_status(args.run_dir)
        if not args.judge_id:
            parser.error("--judge-id is required (or set OVERSIGHT_JUDGE_ID)")
        session = JudgingSession(args.run_dir, args.judge_id, overrides=overrides,
                                 include_skipped=args.include_skipped, required_only=args.required_only)
    except OversightError as exc:
        print(f"oversight-judge: {exc}", file=sys.stderr)
        return 2
    try:
        JudgeApp(session).run()
    finally:
        session.close()
    p = session.progress()
    print(f"{session.judge_id}: {p['done']} of {p['total']} items done ({p['judged']} judged, {p['skipped']} skipped, "
          f"{p['timed_out']} timed out), {p['remaining']} remaining. Saved in {session.store.path}")
    return 0


def _print_status(run_dir: str) -> int:
    from rich.console import Console

    from judges.policies import human_report

    summary = read_summary(run_dir)
    report = human_report(run_dir, summary, write=False)
    console = Console()
    if report is None:
        console.print(f"{run_dir}: no human judging in this job (judge {summary.get('judge')!r})", markup=False)
        return 2
    for row in report.rows:
        console.print(f"{row['judge']}: n={row['n']} accuracy={row['accuracy']:.3f} humans={row['humans']}",
                      markup=False)
    a = report.agreement
    if a.get("measure"):
        console.print(f"agreement ({a['measure']}, {', '.join(a['judges'])}): {a['value']:.3f} on {a['n_items']} items",
                      markup=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
