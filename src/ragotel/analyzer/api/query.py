"""Query parameters of the API: one parser per kind; a bad value raises BadQuery naming the parameter (a 400)."""

from __future__ import annotations

import math
from collections.abc import Collection, Mapping

from ragotel.analyzer.vocabulary import parse_duration

__all__ = ["BadQuery", "choice_param", "choices_param", "duration_param", "int_param"]

_MAX_DIGITS = 18  # int() of thousands of digits is slow and, past 4300, a ValueError of its own


class BadQuery(ValueError):
    """A malformed query parameter; the message names it and what was expected. The router answers 400."""

    def __init__(self, name: str, expected: str, raw: str) -> None:
        super().__init__(f"query parameter {name}: expected {expected}, got {raw[:64]!r}")


def int_param(
    query: Mapping[str, str], name: str, default: int, *, minimum: int = 0, maximum: int | None = None
) -> int:
    """``name`` as a decimal integer within [minimum, maximum] (ASCII digits only), or ``default`` when absent."""
    raw = query.get(name)
    if raw is None:
        return default
    ok = raw.isascii() and raw.isdigit() and len(raw) <= _MAX_DIGITS
    value = int(raw) if ok else -1
    if not ok or value < minimum or (maximum is not None and value > maximum):
        if maximum is not None:
            expected = f"an integer from {minimum} to {maximum}"
        else:
            expected = "a non-negative integer" if minimum == 0 else f"an integer of at least {minimum}"
        raise BadQuery(name, expected, raw)
    return value


def duration_param(query: Mapping[str, str], name: str, default: str) -> float:
    """``name`` as a duration in seconds (``30m``, ``24h``, ``7d``), or ``default`` when absent."""
    raw = query.get(name, default)
    try:
        seconds = parse_duration(raw)
    except ValueError:
        seconds = math.nan
    if not math.isfinite(seconds):
        raise BadQuery(name, "a duration such as 30m, 24h or 7d", raw)
    return seconds


def choice_param(
    query: Mapping[str, str], name: str, choices: Collection[str], *, required: bool = False
) -> str | None:
    """``name`` when it is one of ``choices``; None when absent (BadQuery if ``required``)."""
    raw = query.get(name)
    if (raw is None and required) or (raw is not None and raw not in choices):
        raise BadQuery(name, _one_of(choices), raw or "")
    return raw


def choices_param(query: Mapping[str, str], name: str, choices: Collection[str]) -> list[str]:
    """``name`` as a comma-separated list of ``choices`` (empty when absent)."""
    values = [v for v in query.get(name, "").split(",") if v]
    for value in values:
        if value not in choices:
            raise BadQuery(name, _one_of(choices), value)
    return values


def _one_of(choices: Collection[str]) -> str:
    names = list(choices)
    return ", ".join(names[:-1]) + f" or {names[-1]}" if len(names) > 1 else names[0]
