"""What a judge reads: the judge-visible part of a transcript, under one order of the options.

Hidden context appears only when the transcript carries it (the `direct` + passage ceiling). Every
quote is shown marked verified or unverified. Presenting options in both orders, and turns within a
round in the same order as their options, is how position bias is measured and controlled.
"""

from __future__ import annotations

from typing import Sequence

from oversight.quotes import QUOTE_TAG, verify
from oversight.types import Question, Transcript, Turn

LETTERS = "ABCDEFGHIJ"


def show_turn(turn: Turn, passage: str | None) -> str:
    def tag(match) -> str:
        text = match.group(1).strip()
        ok = passage is not None and verify(text, passage)
        return f'"{text}" ({"verified" if ok else "unverified"})'

    return QUOTE_TAG.sub(tag, turn.text)


def ordered_turns(transcript: Transcript, order: Sequence[int]) -> list[Turn]:
    """Turns as the judge reads them. Sequential transcripts keep their speaking order (the second
    speaker answers the first); otherwise each round follows the presentation order of the options,
    so judging in both orders also swaps who is read first."""
    if transcript.sequential:
        return list(transcript.turns)
    rank = {option: position for position, option in enumerate(order)}
    return sorted(transcript.turns, key=lambda t: (t.round, rank.get(t.side, -1) if t.side is not None else -1))


def render(
    question: Question, transcript: Transcript, order: Sequence[int], *, show_options: bool,
    hidden_passage: str | None = None,
) -> str:
    """The judge's user message. `hidden_passage` is only used to mark quotes, never shown."""
    passage_for_marks = hidden_passage if hidden_passage is not None else question.context
    parts: list[str] = []
    if transcript.passage:
        parts.append(f"Story:\n{transcript.passage}")
    turns = ordered_turns(transcript, order)
    if turns:
        lines = []
        for turn in turns:
            who = turn.speaker.capitalize()
            if turn.side is not None:
                who += f' for "{question.options[turn.side]}"'
            lines.append(f"{who}: {show_turn(turn, passage_for_marks)}")
        parts.append("\n".join(lines))
    parts.append(f"Question: {question.question}")
    if show_options:
        parts.append("\n".join(f"{LETTERS[i]}) {question.options[o]}" for i, o in enumerate(order)))
    return "\n\n".join(parts)
