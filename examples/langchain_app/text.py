"""Tokenising shared by the hash embedding and the extractive answerer: lower case, no stop words, crude stems."""

from __future__ import annotations

import re

__all__ = ["terms"]

_WORD = re.compile(r"[a-z0-9_]+")
_STOP_WORDS = (
    "a an and are as at be by can do does for from has have how i if in into is it its of on or so that the then "
    "this to was what when where which who why will with you your my me we our not no"
)
_STOP = frozenset(_STOP_WORDS.split())
_SUFFIXES = ("ing", "ed", "es", "s")


def _stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)]
    return word


def terms(text: str) -> list[str]:
    """Content words of ``text``, in order, crudely stemmed ("streams", "streaming" -> "stream")."""
    return [_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP and len(w) > 1]
