"""Windows: per-series statistics over the sliding window, and the signals computed from them."""
