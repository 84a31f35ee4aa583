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
import sys
import time
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual import events
from textual.widgets import Footer, Static

from oversight.errors import OversightError
from judges.store import HumanJudgment
from judges.policies import Item
from oversight.records import read_summary
from judges.view import LETTERS
from judges.literal import body_content, literal, literal_parts, model_content
from judges.session import JudgingSession


MAX_EXPLANATION = 500  # characters of a judge's explanation


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

    from judges.human_report import human_report

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
