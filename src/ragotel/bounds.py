"""Bounded reading of whatever shape a library hands us: at most so many items, characters and levels.

Extractors read provider answers and framework results that may be malformed (a string where a list belongs,
millions of elements, nesting thousands deep). Every loop over such a value goes through :func:`items`, and every
value captured as content through :func:`prune`, so the cost of telemetry is bounded by these limits and by the
configured capture length, never by the size of what the library returned. Pure functions; none raises on odd
shapes (they yield nothing instead).
"""

from __future__ import annotations

from collections.abc import Mapping
from itertools import islice
from typing import Any, Final

__all__ = ["MAX_DEPTH", "MAX_ITEMS", "MAX_TEXT", "TextBuffer", "clip", "items", "prune"]

MAX_ITEMS: Final = 1000
"""Most elements an extractor reads from one list (choices, documents, messages, rows, parts)."""

MAX_DEPTH: Final = 32
"""Deepest nesting kept in captured content; deeper containers are replaced by ``"…"``."""

MAX_TEXT: Final = 4096
"""Longest string kept in a non-content attribute (an id, a model name a provider returned); longer ones are cut."""

_NOT_LISTS: Final = (str, bytes, bytearray, memoryview, Mapping)
_SCALARS: Final = (str, int, float, bool, type(None))
_CUT: Final = "…"


def items(value: Any, limit: int = MAX_ITEMS) -> list[Any]:
    """The first ``limit`` elements of a list-like ``value``; ``[]`` for anything else.

    List-like: a list, a tuple, or a sized, indexable container that is neither text nor a mapping (numpy arrays,
    pydantic's sequences). Strings, bytes, mappings, scalars and one-shot iterators (a caller's generator is never
    consumed) yield ``[]``, so a string where a list was expected costs nothing.
    """
    if isinstance(value, list | tuple):
        return list(value[:limit])
    if value is None or isinstance(value, _NOT_LISTS) or not hasattr(value, "__len__"):
        return []
    if not hasattr(value, "__getitem__"):
        return []
    return list(islice(iter(value), limit))


def clip(value: Any) -> Any:
    """``value``, with a string longer than :data:`MAX_TEXT` cut to it (and marked ``…``)."""
    if isinstance(value, str) and len(value) > MAX_TEXT:
        return value[:MAX_TEXT] + _CUT
    return value


def prune(value: Any, limit: int) -> Any:
    """A copy of ``value`` whose JSON text (``json.dumps(..., default=str)``) starts like the original's and is cut
    soon after ``limit`` characters; built in time proportional to ``limit``, whatever the size of ``value``.

    Strings are cut, lists/tuples/mappings lose the elements that would come after the first ``limit`` characters,
    objects JSON cannot encode become their ``str()`` (cut), and containers nested deeper than :data:`MAX_DEPTH`
    become ``"…"``. When anything was cut the pruned text is longer than ``limit``, so truncating it to ``limit``
    gives the same characters as truncating the original's.
    """
    budget = [limit + 1]
    return _prune(value, budget, 0)


def _prune(value: Any, budget: list[int], depth: int) -> Any:
    # Each kept node costs at least the characters it adds to the JSON text (one for a container or a number), so
    # once the budget is spent everything left out lies beyond the first `limit` characters of the original's text.
    if isinstance(value, str):
        kept = value[: max(budget[0], 0)]
        budget[0] -= len(kept) + 2
        return kept
    if isinstance(value, _SCALARS):
        budget[0] -= 1
        return value
    if depth >= MAX_DEPTH:
        budget[0] -= 1
        return _CUT
    if isinstance(value, Mapping):
        budget[0] -= 1
        out: dict[Any, Any] = {}
        for key, item in islice(value.items(), max(budget[0], 0)):
            if budget[0] <= 0:
                break
            kept_key = key if isinstance(key, _SCALARS) else str(key)
            budget[0] -= len(kept_key) if isinstance(kept_key, str) else 1
            out[kept_key] = _prune(item, budget, depth + 1)
        return out
    if isinstance(value, list | tuple):
        budget[0] -= 1
        kept_items: list[Any] = []
        for item in islice(value, max(budget[0], 0)):
            if budget[0] <= 0:
                break
            kept_items.append(_prune(item, budget, depth + 1))
        return kept_items
    return _prune(str(value), budget, depth)


class TextBuffer:
    """Streamed text accumulated up to a limit (kept one character past it, so truncation still marks the cut)."""

    __slots__ = ("_parts", "_size")

    def __init__(self) -> None:
        self._parts: list[str] = []
        self._size = 0

    def add(self, text: str, limit: int) -> None:
        """Append ``text``, or the part of it that fits in ``limit`` characters overall."""
        room = limit + 1 - self._size
        if room > 0 and text:
            piece = text[:room]
            self._parts.append(piece)
            self._size += len(piece)

    def text(self) -> str:
        """Everything kept so far."""
        return "".join(self._parts)

    def __bool__(self) -> bool:
        return self._size > 0
