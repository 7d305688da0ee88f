"""OTLP/JSON decoding per the OTLP JSON mapping: hex trace/span ids, int64 as strings, enums by name or number.

``google.protobuf.json_format`` alone reads ``bytes`` fields as base64, which is wrong for the ids OTLP
writes as hex; the ids are rewritten to base64 first, then ``ParseDict`` (unknown fields ignored) does the rest.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterator
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message

__all__ = ["JsonDecodeError", "parse_otlp_json"]


class JsonDecodeError(ValueError):
    """The body is not valid OTLP/JSON; the message names the offending field."""


_ID_KEYS = (("traceId", "trace_id"), ("spanId", "span_id"), ("parentSpanId", "parent_span_id"))
_METRIC_DATA = ("gauge", "sum", "histogram", "exponentialHistogram", "exponential_histogram", "summary")


def _items(node: Any, *names: str) -> Iterator[tuple[str, Any]]:
    """Yield (path suffix, element) for the list under the first of ``names`` present in ``node``."""
    if not isinstance(node, dict):
        return
    for name in names:
        value = node.get(name)
        if isinstance(value, list):
            for i, item in enumerate(value):
                yield f"{name}[{i}]", item
            return


def _fix_ids(node: Any, path: str) -> None:
    if not isinstance(node, dict):
        return
    for keys in _ID_KEYS:
        for key in keys:
            value = node.get(key)
            if isinstance(value, str):
                try:
                    node[key] = base64.b64encode(bytes.fromhex(value)).decode()
                except ValueError:
                    raise JsonDecodeError(
                        f"{path}.{key}: expected an even number of hex digits, got {value!r}"
                    ) from None


def _walk_traces(doc: dict[str, Any]) -> None:
    for p1, rs in _items(doc, "resourceSpans", "resource_spans"):
        for p2, ss in _items(rs, "scopeSpans", "scope_spans"):
            for p3, span in _items(ss, "spans"):
                path = f"{p1}.{p2}.{p3}"
                _fix_ids(span, path)
                for p4, link in _items(span, "links"):
                    _fix_ids(link, f"{path}.{p4}")


def _walk_logs(doc: dict[str, Any]) -> None:
    for p1, rl in _items(doc, "resourceLogs", "resource_logs"):
        for p2, sl in _items(rl, "scopeLogs", "scope_logs"):
            for p3, record in _items(sl, "logRecords", "log_records"):
                _fix_ids(record, f"{p1}.{p2}.{p3}")


def _walk_metrics(doc: dict[str, Any]) -> None:
    for p1, rm in _items(doc, "resourceMetrics", "resource_metrics"):
        for p2, sm in _items(rm, "scopeMetrics", "scope_metrics"):
            for p3, metric in _items(sm, "metrics"):
                if not isinstance(metric, dict):
                    continue
                for kind in _METRIC_DATA:
                    for p4, point in _items(metric.get(kind), "dataPoints", "data_points"):
                        for p5, exemplar in _items(point, "exemplars"):
                            _fix_ids(exemplar, f"{p1}.{p2}.{p3}.{kind}.{p4}.{p5}")


_WALKERS: dict[str, Callable[[dict[str, Any]], None]] = {
    "traces": _walk_traces,
    "metrics": _walk_metrics,
    "logs": _walk_logs,
}


def _no_constant(name: str) -> Any:
    raise JsonDecodeError(f"invalid JSON: {name} is not a JSON number (the OTLP/JSON mapping writes it as a string)")


def parse_otlp_json(signal: str, body: bytes, message: Message) -> None:
    """Fill ``message`` (an empty Export*ServiceRequest) from an OTLP/JSON body.

    Raises JsonDecodeError, and nothing else, for any body: deep nesting, numbers too long, too large or
    non-finite where an integer or enum is expected, invalid UTF-8 or lone surrogates.
    """
    try:
        doc = json.loads(body, parse_constant=_no_constant)
    except JsonDecodeError:
        raise
    # ValueError covers JSONDecodeError, UnicodeDecodeError and the int-digit limit; RecursionError deep nesting.
    except (ValueError, RecursionError) as exc:
        raise JsonDecodeError(f"invalid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise JsonDecodeError(f"expected a JSON object at the top level, got {type(doc).__name__}")
    _WALKERS[signal](doc)
    try:
        json_format.ParseDict(doc, message, ignore_unknown_fields=True)
    except (
        json_format.ParseError,
        binascii.Error,
        TypeError,
        ValueError,
        OverflowError,  # 1e400 where an integer or enum is expected
        RecursionError,
        SystemError,  # upb's fields_by_name.get() on a key holding a lone surrogate (protobuf 5/6)
        AttributeError,
        KeyError,
        IndexError,
    ) as exc:
        raise JsonDecodeError(f"invalid OTLP/JSON: {exc}") from None
