"""What a judge reads: the judge-visible part of a transcript, under one order of the options.

Hidden context appears only when the transcript carries it (the `direct` + passage ceiling). Every
quote is shown marked verified or unverified. Presenting options in both orders, and turns within a
round in the same order as their options, is how position bias is measured and controlled.
"""

from __future__ import annotations

from typing import Sequence

from oversight.quotes import quote_verdicts
from oversight.types import Question, Transcript, Turn

LETTERS = "ABCDEFGHIJ"


def show_turn(turn: Turn) -> str:
    """The turn's text with every quote marked as it was verified when the turn was made."""
    parts, position = [], 0
    for match, ok in quote_verdicts(turn):
        parts.append(turn.text[position:match.start()])
        parts.append(f'"{match.group(1).strip()}" ({"verified" if ok else "unverified"})')
        position = match.end()
    parts.append(turn.text[position:])
    return "".join(parts)


def ordered_turns(transcript: Transcript, order: Sequence[int]) -> list[Turn]:
    """Turns as the judge reads them. Sequential transcripts keep their speaking order (the second
    speaker answers the first); otherwise each round follows the presentation order of the options,
    so judging in both orders also swaps who is read first."""
    if transcript.sequential:
        return list(transcript.turns)
    rank = {option: position for position, option in enumerate(order)}
    return sorted(transcript.turns, key=lambda t: (t.round, rank.get(t.side, -1) if t.side is not None else -1))


def render(question: Question, transcript: Transcript, order: Sequence[int], *, show_options: bool) -> str:
    """The judge's user message: hidden context only if the transcript carries it, quotes marked."""
    parts: list[str] = []
    if transcript.passage:
        parts.append(f"Story:\n{transcript.passage}")
    turns = ordered_turns(transcript, order)
    if turns:
        lines = []
        for turn in turns:
            who = turn.label
            if turn.side is not None:
                who += f' for "{question.options[turn.side]}"'
            lines.append(f"{who}: {show_turn(turn)}")
        parts.append("\n".join(lines))
    parts.append(f"Question: {question.question}")
    if show_options:
        parts.append("\n".join(f"{LETTERS[i]}) {question.options[o]}" for i, o in enumerate(order)))
    return "\n\n".join(parts)
