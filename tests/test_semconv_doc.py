"""docs/semantic-conventions.md and semconv.py list the same names."""

from __future__ import annotations

import re
from pathlib import Path

from ragotel import semconv as sc

DOC = Path(__file__).resolve().parents[1] / "docs" / "semantic-conventions.md"
_NAME = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+)+$")


def _semconv_names() -> set[str]:
    return {v for k, v in vars(sc).items() if k.isupper() and isinstance(v, str) and _NAME.match(v)}


def _first_column_names(text: str) -> set[str]:
    names = set()
    for line in text.splitlines():
        m = re.match(r"^\|\s*`([^`]+)`\s*\|", line)
        if m and _NAME.match(m.group(1)):
            names.add(m.group(1))
    return names


def test_every_semconv_name_is_documented() -> None:
    """Each attribute and metric name defined in semconv.py appears in the doc."""
    text = DOC.read_text(encoding="utf-8")
    missing = sorted(n for n in _semconv_names() if f"`{n}`" not in text)
    assert missing == [], f"add these to docs/semantic-conventions.md: {missing}"


def test_every_documented_name_exists() -> None:
    """Each name in the first column of a table in the doc is defined in semconv.py (no stale rows)."""
    stale = sorted(_first_column_names(DOC.read_text(encoding="utf-8")) - _semconv_names())
    assert stale == [], f"documented but not in semconv.py: {stale}"
