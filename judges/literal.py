"""Model output shown to people as literal text: markup is not interpreted, and control characters
and escape sequences appear escaped (e.g. \\x1b), never acted on; plus the judge-visible item
(question, options, turns with verified quotes marked) as textual Content.
"""

from __future__ import annotations

import unicodedata
from typing import Any

from textual.content import Content

from judges.policies import Item
from judges.view import LETTERS, ordered_turns
from oversight.quotes import quote_verdicts
from oversight.types import Turn


_BIDI = set("\u061c\u200e\u200f\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u2028\u2029")
ESCAPE_STYLE = "reverse"


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
