"""Quotes from the hidden passage: extraction, verification, sentence splitting.

As in the debate papers (Khan et al. 2024, ucl-dark/llm_debate), a quote is verified when its
normalised text is a substring of the normalised passage; the judge sees every quote marked
verified or unverified.
"""

from __future__ import annotations

import re
import unicodedata

from oversight.types import Quote, Turn

QUOTE_TAG = re.compile(r"<quote>(.*?)</quote>", re.DOTALL | re.IGNORECASE)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).lower()
    text = re.sub(r"[\"'`“”‘’]", "", text)
    text = re.sub(r"[^\w\s]", " ", text)
    return " ".join(text.split())


def verify(quote: str, passage: str) -> bool:
    q = normalise(quote)
    return bool(q) and q in normalise(passage)


def extract(argument: str, passage: str) -> list[Quote]:
    """All <quote>...</quote> spans in an argument, each checked against the passage."""
    return [Quote(text=m.strip(), verified=verify(m, passage)) for m in QUOTE_TAG.findall(argument)]


def sentences(passage: str) -> list[str]:
    return [s.strip() for s in _SENTENCE_END.split(passage.strip()) if s.strip()]


def quote_verdicts(turn: Turn) -> list[tuple[re.Match, bool]]:
    """Each <quote> span of a turn with whether it was verified when the turn was made (its
    `quotes`, in order): the one place every reader of a turn gets the verdicts from."""
    quotes: list[Quote] = list(turn.quotes)
    out = []
    for index, match in enumerate(QUOTE_TAG.finditer(turn.text)):
        text = normalise(match.group(1))
        if index < len(quotes) and normalise(quotes[index].text) == text:
            verified = quotes[index].verified
        else:
            verified = any(q.verified and normalise(q.text) == text for q in quotes)
        out.append((match, verified))
    return out
