"""ragotel.bounds: readers whose cost is set by the limits, never by the shape or size of what they are handed."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

import ragotel
from ragotel import bounds
from ragotel import semconv as sc
from ragotel.testing import capture


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit] + "…"


@pytest.mark.parametrize(
    "value",
    [
        {"a": [1, 2.5, None, True], "b": "text", 3: {"nested": ["x" * 50]}},
        [{"role": "user", "parts": [{"type": "text", "content": "word " * 200}]}] * 30,
        list(range(5000)),
        ["é" * 10, '\n"quoted"', object],
        ("tuple", ("inner",)),
    ],
    ids=["small", "messages", "numbers", "escapes", "tuples"],
)
@pytest.mark.parametrize("limit", [1, 7, 64, 4096])
def test_pruned_json_starts_like_the_original(value: Any, limit: int) -> None:
    """Cut to the limit, the pruned value's JSON text is the original's JSON text cut to the limit."""
    original = json.dumps(value, default=str, ensure_ascii=False)
    pruned = json.dumps(bounds.prune(value, limit), default=str, ensure_ascii=False)
    assert _cut(pruned, limit) == _cut(original, limit)


def test_prune_is_bounded_by_the_limit_for_huge_and_deep_values() -> None:
    """Ten million elements or 100,000 levels of nesting are pruned in milliseconds, to a few limits' worth of text."""
    deep: Any = "leaf"
    for _ in range(100_000):
        deep = [deep]
    huge = list(range(10_000_000))
    start = time.perf_counter()
    for value in (deep, huge, {"k": huge}, "s" * 10_000_000):
        text = json.dumps(bounds.prune(value, 100), default=str, ensure_ascii=False)
        assert len(text) < 1000
    assert time.perf_counter() - start < 0.5


def test_items_never_walks_text_mappings_or_iterators() -> None:
    """Strings, bytes, mappings and a caller's generator yield nothing; lists are cut to the limit."""
    gen = (i for i in range(3))
    for value in ("x" * 1000, b"bytes", {"a": 1}, gen, None, 42):
        assert bounds.items(value) == []
    assert next(gen) == 0  # not consumed
    assert bounds.items(list(range(5000))) == list(range(bounds.MAX_ITEMS))
    assert bounds.items(range(3)) == [0, 1, 2]


def test_stage_capture_of_a_deep_value_is_cut_not_dropped() -> None:
    """Content too deep for json.dumps is still captured (cut at MAX_DEPTH and at the length limit)."""
    deep: Any = "leaf"
    for _ in range(50_000):
        deep = [deep]
    with capture(capture_content=True, capture_max_length=200) as cap:
        with ragotel.generation("m") as op:
            op.capture(sc.GEN_AI_INPUT_MESSAGES, deep)
            op.add_documents([(f"d{i}", i / 1e6) for i in range(100_000)])
    attrs = dict(cap.spans()[0].attributes or {})
    captured = attrs[sc.GEN_AI_INPUT_MESSAGES]
    assert isinstance(captured, str)
    assert captured.startswith("[[[[")
    assert len(captured) <= 201
    assert attrs[sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT] == 100_000
    assert len(attrs[sc.RAGOTEL_RETRIEVAL_DOCUMENT_SCORES]) == bounds.MAX_ITEMS  # type: ignore[arg-type]
