"""Fuzz (issue 10, done when): thousands of hostile bodies over both transports never get a 5xx but 503, nor UNKNOWN.

Seeded and bounded: mutations of valid OTLP (bit flips, truncation, splices, field-type swaps, deep nesting,
huge and non-finite numbers, bad UTF-8, lone surrogates, gzip members, wrong content types) against one analyzer,
which must then still count valid traffic exactly.
"""

from __future__ import annotations

import copy
import gzip
import json
import random
import zlib
from collections import Counter
from collections.abc import Callable
from typing import Any

import grpc
import httpx
from tests.analyzer.analyzer_helpers import encoded_spans, gauge_request, log_request, stage_row

from ragotel.analyzer.server import Server

SEED = 20261205
HTTP_BODIES = 6000
GRPC_BODIES = 3000
GEN = {"ragotel.stage": "generation", "ragotel.component": "openai", "gen_ai.request.model": "m"}
METHODS = {
    "traces": "/opentelemetry.proto.collector.trace.v1.TraceService/Export",
    "metrics": "/opentelemetry.proto.collector.metrics.v1.MetricsService/Export",
    "logs": "/opentelemetry.proto.collector.logs.v1.LogsService/Export",
}
CONTENT_TYPES = [
    "application/x-protobuf",
    "application/json",
    "application/protobuf",
    "application/json; charset=utf-8",
    "text/plain",
    "",
    "application/x-protobuf; x=y",
    "application/JSON",
]
_HUGE = "<5,000 digits>"  # replaced in the JSON text: json.dumps refuses to write such an int
HOSTILE_VALUES: list[Any] = [
    _HUGE,
    1e308,
    -1,
    2**64,
    -(2**63) - 1,
    "NaN",
    "Infinity",
    "-Infinity",
    float("inf"),
    float("nan"),
    "\ud800",
    "zz",
    "",
    None,
    True,
    [],
    {},
    [[[[[]]]]],
    {"stringValue": "\udfff"},
    "STATUS_CODE_BOGUS",
]
_DEEP = "<deeply nested>"  # replaced in the JSON text: json.dumps itself refuses such depth


def _protobuf_seeds() -> dict[str, list[bytes]]:
    spans = [("chat", GEN, 0.1 * i) for i in range(1, 6)]
    points = [
        ("system.cpu.utilization", value, {"cpu": "0"}, 1.8e9)
        for value in (0.5, float("nan"), float("inf"), -float("inf"))
    ]
    return {
        "traces": [encoded_spans("fuzz-seed", spans, error_indexes=[1])],
        "metrics": [gauge_request("fuzz-seed", points, instance="i-1")],
        "logs": [log_request("fuzz-seed", [9, 17, 21])],
    }


def _json_seeds() -> dict[str, Any]:
    attrs = [{"key": "service.name", "value": {"stringValue": "fuzz-seed"}}]
    span = {
        "traceId": "5b8efff798038103d269b633813fc60c",
        "spanId": "eee19b7ec3c1b175",
        "parentSpanId": "eee19b7ec3c1b174",
        "name": "retrieve",
        "kind": 3,
        "startTimeUnixNano": "1544712660000000000",
        "endTimeUnixNano": "1544712660250000000",
        "attributes": [{"key": "ragotel.stage", "value": {"stringValue": "retrieval"}}],
        "status": {"code": "STATUS_CODE_ERROR", "message": "timeout"},
        "links": [{"traceId": "0af7651916cd43dd8448eb211c80319c", "spanId": "b7ad6b7169203331"}],
    }
    point = {
        "asDouble": "NaN",
        "timeUnixNano": "1544712660000000000",
        "attributes": [{"key": "cpu", "value": {"intValue": "1"}}],
        "exemplars": [{"asInt": "3", "traceId": "5b8efff798038103d269b633813fc60c", "spanId": "eee19b7ec3c1b175"}],
    }
    record = {"severityNumber": 17, "body": {"stringValue": "boom"}, "traceId": "5b8efff798038103d269b633813fc60c"}
    return {
        "traces": {"resourceSpans": [{"resource": {"attributes": attrs}, "scopeSpans": [{"spans": [span, span]}]}]},
        "metrics": {
            "resourceMetrics": [
                {
                    "resource": {"attributes": attrs},
                    "scopeMetrics": [
                        {
                            "metrics": [
                                {"name": "system.cpu.utilization", "gauge": {"dataPoints": [point]}},
                                {"name": "h", "histogram": {"dataPoints": [{"count": "2", "sum": 1e400}]}},
                            ]
                        }
                    ],
                }
            ]
        },
        "logs": {"resourceLogs": [{"resource": {"attributes": attrs}, "scopeLogs": [{"logRecords": [record]}]}]},
    }


def _mutate_bytes(rng: random.Random, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        choice = rng.randrange(6)
        if not out:
            out += rng.randbytes(rng.randint(1, 16))
        elif choice == 0:  # bit flips
            for _ in range(rng.randint(1, 8)):
                out[rng.randrange(len(out))] ^= 1 << rng.randrange(8)
        elif choice == 1:  # truncation
            del out[rng.randrange(len(out)) :]
        elif choice == 2:  # random bytes in place
            at = rng.randrange(len(out))
            out[at : at + 4] = rng.randbytes(rng.randint(1, 8))
        elif choice == 3:  # splice a chunk of the message into itself
            a, b = sorted(rng.randrange(len(out) + 1) for _ in range(2))
            at = rng.randrange(len(out) + 1)
            out[at:at] = out[a:b]
        elif choice == 4:  # bad UTF-8 / lone surrogate bytes
            at = rng.randrange(len(out) + 1)
            out[at:at] = rng.choice([b"\xed\xa0\x80", b"\xff\xfe", b"\xc0\xaf", b"\x80"])
        else:  # a huge length prefix or varint
            at = rng.randrange(len(out) + 1)
            out[at:at] = rng.choice([b"\xff\xff\xff\xff\x0f", b"\x80" * 11, b"\x0a\xff\xff\xff\xff\x07"])
    return bytes(out)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix]
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*prefix, i))
    return found


def _mutate_json(rng: random.Random, doc: Any) -> bytes:
    doc = json.loads(json.dumps(doc))
    for _ in range(rng.randint(1, 3)):
        path = rng.choice(_paths(doc)[1:])
        parent = doc
        for step in path[:-1]:
            parent = parent[step]
        choice = rng.randrange(4)
        if choice == 0:  # field-type swap or hostile number / string
            parent[path[-1]] = copy.deepcopy(rng.choice(HOSTILE_VALUES))
        elif choice == 1:  # deep nesting in place of a value
            parent[path[-1]] = _DEEP
        elif choice == 2 and isinstance(parent, dict):  # a key with a lone surrogate or a snake_case twin
            value = parent.pop(path[-1])
            parent[rng.choice([f"{path[-1]}\ud800", "resource_spans", "span_id", "trace_id"])] = value
        elif isinstance(parent, list):
            parent.append(copy.deepcopy(rng.choice(HOSTILE_VALUES)))
    text = json.dumps(doc, allow_nan=True)
    depth = rng.choice([50, 500, 5000])
    if rng.random() < 0.5:
        nested = '{"kvlistValue": {"values": [{"key": "k", "value": ' * depth + '"leaf"' + "}]}}" * depth
    else:
        nested = "[" * depth + '"leaf"' + "]" * depth
    text = text.replace(f'"{_DEEP}"', nested).replace(f'"{_HUGE}"', "7" * 5000)
    if rng.random() < 0.05:  # deep raw nesting that json.loads itself refuses
        text = '{"resourceSpans": ' + "[" * 100_000 + "]" * 100_000 + "}"
    body = text.encode("utf-8", "surrogatepass")
    return _mutate_bytes(rng, body) if rng.random() < 0.3 else body


def _encode(rng: random.Random, body: bytes) -> tuple[bytes, str | None]:
    choice = rng.randrange(10)
    if choice < 6:
        return body, None
    if choice == 6:
        return gzip.compress(body), "gzip"
    if choice == 7:  # several members, some of them corrupted or trailing junk
        second = gzip.compress(body[: len(body) // 2])
        return gzip.compress(body) + (_mutate_bytes(rng, second) if rng.random() < 0.5 else second), "gzip"
    if choice == 8:
        return _mutate_bytes(rng, gzip.compress(body)), "gzip"
    return zlib.compress(body), rng.choice(["deflate", "br", "gzip"])


def test_a_storm_of_hostile_bodies_gets_no_5xx_and_valid_traffic_is_still_counted_exactly(
    make_analyzer: Callable[..., Server],
) -> None:
    """6,000 hostile HTTP and 3,000 hostile gRPC bodies: no 5xx but 503, no UNKNOWN/INTERNAL; then exact counts."""
    server = make_analyzer({"receivers": {"http": {"max_body_size": "4MiB"}}})
    rng = random.Random(SEED)
    protobuf, documents = _protobuf_seeds(), _json_seeds()
    signals = list(METHODS)
    http_seen: Counter[int] = Counter()
    with httpx.Client(base_url=f"http://{server.http_address}", timeout=30) as client:
        for _ in range(HTTP_BODIES):
            signal = rng.choice(signals)
            as_json = rng.random() < 0.5
            body = _mutate_json(rng, documents[signal]) if as_json else _mutate_bytes(rng, protobuf[signal][0])
            content_type = CONTENT_TYPES[1 if as_json else 0] if rng.random() < 0.8 else rng.choice(CONTENT_TYPES)
            body, encoding = _encode(rng, body)
            headers = {"Content-Type": content_type} | ({"Content-Encoding": encoding} if encoding else {})
            response = client.post(f"/v1/{signal}", content=body, headers=headers)
            http_seen[response.status_code] += 1
            assert response.status_code < 500 or response.status_code == 503, (signal, headers, body[:200])
    grpc_seen: Counter[str] = Counter()
    server_errors: list[tuple[str, str, bytes]] = []
    with grpc.insecure_channel(server.grpc_address) as channel:
        calls = {signal: channel.unary_unary(method) for signal, method in METHODS.items()}
        for _ in range(GRPC_BODIES):
            signal = rng.choice(signals)
            body = _mutate_bytes(rng, protobuf[signal][0])
            try:
                compression = grpc.Compression.Gzip if rng.random() < 0.3 else grpc.Compression.NoCompression
                calls[signal](body, timeout=30, compression=compression)
                grpc_seen["OK"] += 1
            except grpc.RpcError as error:
                grpc_seen[error.code().name] += 1
                if error.code() in (grpc.StatusCode.UNKNOWN, grpc.StatusCode.INTERNAL):
                    server_errors.append((signal, error.code().name, body[:200]))
    print(f"fuzz: HTTP {sorted(http_seen.items())}, gRPC {sorted(grpc_seen.items())}")
    assert sum(http_seen.values()) == HTTP_BODIES
    assert not server_errors
    assert {200, 400} <= set(http_seen)  # the storm exercised both acceptances and refusals
    assert {"OK", "INVALID_ARGUMENT"} <= set(grpc_seen)

    valid = encoded_spans("after-storm", [("chat", GEN, 0.05)] * 7)
    assert httpx.post(
        f"http://{server.http_address}/v1/traces", content=valid, headers={"Content-Type": CONTENT_TYPES[0]}, timeout=10
    ).is_success
    with grpc.insecure_channel(server.grpc_address) as channel:
        channel.unary_unary(METHODS["traces"])(valid, timeout=10)
    assert stage_row(server, "after-storm", "generation")["count"] == 14
