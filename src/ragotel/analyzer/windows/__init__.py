"""Windows: per-series statistics over the sliding window, and the signals computed from them."""

from ragotel.analyzer.windows.documents import Windows
from ragotel.analyzer.windows.store import OVERFLOW, PANES

__all__ = ["OVERFLOW", "PANES", "Windows"]
