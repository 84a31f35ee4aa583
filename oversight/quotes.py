"""Quotes from the hidden passage: extraction, verification, sentence splitting.

As in the debate papers (Khan et al. 2024, ucl-dark/llm_debate), a quote is verified when its
normalised text is a substring of the normalised passage; the judge sees every quote marked
verified or unverified.
"""

from __future__ import annotations

import re
import unicodedata

from oversight.types import Quote

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


def mark(argument: str, passage: str) -> str:
    """The argument as the judge sees it: every quote tagged verified or unverified."""

    def tag(match: re.Match) -> str:
        ok = verify(match.group(1), passage)
        return f'<{"v" if ok else "u"}_quote>{match.group(1).strip()}</{"v" if ok else "u"}_quote>'

    return QUOTE_TAG.sub(tag, argument)
