"""`oversight-play STORE`: a person answers a live job's calls for a human role in the terminal.

The job (`oversight ... roles.<role>=human`, judges/live.py) writes each call of the human role to
STORE and waits; this UI shows the oldest waiting call exactly as a model would read it (the
system line and the prompt: for a debater the story, the question, the side to argue, the
transcript so far and the judge's question; for a judge the transcript and what to write), and the
person types the reply:

    (any text)   the reply; <quote>...</quote> marks a quote from the story
    Enter        send the reply (committed to STORE before the next call appears)
    Backspace    delete a character          Ctrl+U  clear the reply
    Page up / down, up / down   scroll the prompt           Ctrl+Q  quit (everything sent is saved)

Under the reply, every quote is checked as it is typed against the text shown (a preview: the job
verifies the quotes of the turn against the passage itself, exactly as a model's, when the reply
arrives). Prompt and reply are shown as literal text: markup is not interpreted, control characters
and escape sequences appear escaped (e.g. \\x1b), never acted on. When no call waits, the UI says
so and shows the next one as soon as the job asks it.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import Any

from textual import events
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.content import Content
from textual.widgets import Footer, Static

from judges.literal import literal_parts
from judges.live import Ask, TurnStore
from oversight.errors import OversightError
from oversight.quotes import extract

MAX_REPLY = 2000  # characters


class PlayApp(App):
    TITLE = "oversight-play"
    CSS = """
    #status { height: 1; background: $primary; color: $text; padding: 0 1; }
    #body { height: 1fr; border: round $secondary; padding: 0 1; }
    #reply { height: auto; min-height: 2; padding: 0 1; background: $boost; }
    #quotes { height: auto; min-height: 1; padding: 0 1; }
    #message { height: auto; min-height: 1; padding: 0 1; color: $warning; }
    """
    BINDINGS = [Binding("ctrl+q", "quit", "quit", priority=True),
                Binding("pagedown", "scroll(1)", show=False), Binding("pageup", "scroll(-1)", show=False),
                Binding("down", "scroll(0.2)", show=False), Binding("up", "scroll(-0.2)", show=False)]

    def __init__(self, store: TurnStore, person: str | None = None, poll: float = 0.3):
        super().__init__()
        self.store = store
        self.person = person
        self.poll = poll
        self.ask: Ask | None = None
        self.reply = ""
        self.started = 0.0
        self.sent = 0

    def compose(self) -> ComposeResult:
        yield Static(id="status", markup=False)
        with VerticalScroll(id="body"):
            yield Static(id="prompt", markup=False)
        yield Static(id="reply", markup=False)
        yield Static(id="quotes", markup=False)
        yield Static(id="message", markup=False)
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#body", VerticalScroll).can_focus = False
        self.next_ask()
        self.set_interval(self.poll, self._look)

    # ---- showing -----------------------------------------------------------------------------------

    def next_ask(self) -> None:
        waiting = self.store.pending(self.person)
        self.ask = waiting[0] if waiting else None
        self.reply, self.started = "", time.monotonic()
        prompt = self.query_one("#prompt", Static)
        if self.ask is None:
            prompt.update(Content.assemble(("No call is waiting for you.", "bold"),
                                           " The next one appears here as soon as the job asks it. Ctrl+Q: quit."))
        else:
            parts: list[Any] = []
            for message in self.ask.call.messages:
                parts += [(f"{message['role']}:", "bold"), "\n"] + literal_parts(str(message.get("content") or ""))
                parts += ["\n\n"]
            parts += [("Your reply: type it below, Enter sends it.", "bold italic")]
            prompt.update(Content.assemble(*parts, strip_control_codes=False))
            self.query_one("#body", VerticalScroll).scroll_home(animate=False)
        self._reply()
        self._status(len(waiting))

    def _status(self, waiting: int) -> None:
        who = f"{self.person} · " if self.person else ""
        shown = f" · call {self.ask.key[:8]}" if self.ask is not None else ""
        self.query_one("#status", Static).update(Content(
            f"{who}{self.store.path.name}{shown} · waiting calls {waiting} · sent this session {self.sent}"))

    def _reply(self) -> None:
        cursor = ("▏", "blink")
        if self.ask is None:
            self.query_one("#reply", Static).update("")
            self.query_one("#quotes", Static).update("")
            return
        self.query_one("#reply", Static).update(Content.assemble(
            ("Reply: ", "bold"), *literal_parts(self.reply), cursor, strip_control_codes=False))
        context = "\n".join(str(m.get("content") or "") for m in self.ask.call.messages)
        quotes = extract(self.reply, context)
        if not quotes:
            self.query_one("#quotes", Static).update(Content.assemble(
                ("Quotes: none yet (write <quote>exact words from the story</quote>)", "dim")))
            return
        parts: list[Any] = [("Quotes: ", "bold")]
        for quote in quotes:
            parts += [("✓ found " if quote.verified else "✗ NOT in the text ", "bold green" if quote.verified else
                       "bold red")] + literal_parts(f"“{quote.text}”") + ["  "]
        self.query_one("#quotes", Static).update(Content.assemble(*parts, strip_control_codes=False))

    def _say(self, text: str) -> None:
        self.query_one("#message", Static).update(Content(text))

    def _look(self) -> None:
        if not self.screen.query("#message"):  # closing
            return
        if self.ask is None:
            self.next_ask()
        else:
            self._status(len(self.store.pending(self.person)))

    # ---- typing ------------------------------------------------------------------------------------

    def action_scroll(self, pages: float) -> None:
        body = self.query_one("#body", VerticalScroll)
        body.scroll_relative(y=pages * max(1, body.size.height - 2), animate=False)

    def on_key(self, event: events.Key) -> None:
        if event.key in ("ctrl+q", "pageup", "pagedown", "up", "down"):
            return
        event.prevent_default()
        event.stop()
        if self.ask is None:
            return
        if event.key == "enter":
            self.send()
        elif event.key == "backspace":
            self.reply = self.reply[:-1]
        elif event.key == "ctrl+u":
            self.reply = ""
        elif event.is_printable and event.character and len(self.reply) < MAX_REPLY:
            self.reply += event.character
        self._reply()

    def on_paste(self, event: events.Paste) -> None:
        if self.ask is not None:
            self.reply = (self.reply + " ".join(event.text.split()))[:MAX_REPLY]
            self._reply()

    def send(self) -> None:
        if self.ask is None:
            return
        if not self.reply.strip():
            self._say("Write a reply first.")
            return
        self.store.answer(self.ask.key, self.reply, time.monotonic() - self.started)
        self.sent += 1
        self._say(f"Sent ({len(self.reply.split())} words). Saved in {self.store.path}.")
        self.next_ask()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="oversight-play", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter,
                                     epilog="keys:\n" + "\n".join(line for line in __doc__.splitlines()
                                                                  if line.startswith("    ")))
    parser.add_argument("store", help="the live session's store (the human model's `store`)")
    parser.add_argument("--person", help="answer only the calls of this person (the human model's `name`)")
    parser.add_argument("--status", action="store_true", help="print waiting and answered calls; no UI")
    args = parser.parse_args(argv)
    try:
        store = TurnStore(args.store)
    except OversightError as exc:
        print(f"oversight-play: {exc}", file=sys.stderr)
        return 2
    try:
        if args.status:
            print(f"{args.store}: {len(store.pending(args.person))} waiting, {len(store.answered())} answered")
            return 0
        app = PlayApp(store, args.person)
        app.run()
        print(f"oversight-play: {app.sent} replies sent this session; {len(store.pending(args.person))} calls "
              f"waiting. Saved in {args.store}")
    finally:
        store.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
