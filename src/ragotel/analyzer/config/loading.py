"""Loading the analyzer configuration: the built-in YAML, file merging, validation and one-line-per-problem errors."""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, Union

import yaml
from pydantic import BaseModel, ValidationError

from ragotel.analyzer.config.builtin_rules import BUILTIN_RULES_YAML
from ragotel.analyzer.config.model import Config

__all__ = ["DEFAULT_CONFIG_YAML", "ConfigError", "check_config", "deep_merge", "load_config"]


DEFAULT_CONFIG_YAML = (
    """\
# ragotel-analyzer built-in configuration (what runs when no --config is given).
# Files given with --config deep-merge over this, later files win; command-line flags win over files.
# Durations: 250ms, 60s, 5m, 1h. Sizes: bytes, or 512KiB, 4MiB, 1GiB.

window: 60s                  # sliding window of the statistics (and of every rule signal)
evaluation_interval: 1s      # how often rules are evaluated
memory_fit_window: 90s       # least-squares fit of process memory behind memory_exhaustion_eta (memory_leak)

detection:                   # what adaptive rules (stage_latency, stage_errors, ...) judge: the newest spans
  horizon: 30s               # looked back at most this far; slower series than min_samples/horizon are not judged
  min_samples: 10            # newest spans judged together (a rule's own min_samples wins)
baseline:                    # what they compare with: each stage's own trailing behaviour (kept in the state file)
  horizon: 1h                # 10-second buckets over this long; buckets under an adaptive alert are left out
  min_samples: 30            # spans (in at least 3 buckets) before a baseline is used

receivers:
  grpc:
    enabled: true
    endpoint: 127.0.0.1:4317   # port 0 picks a free port; the bound address is logged
    max_message_size: 4MiB     # after decompression; larger -> RESOURCE_EXHAUSTED
    workers: 4
    max_concurrent_rpcs: 1000  # RPCs in progress (reading included); beyond -> RESOURCE_EXHAUSTED
    max_concurrent_streams: 100  # RPCs in progress on one connection
    handshake_timeout: 10s     # a connection must finish its TLS / HTTP/2 handshake within this
    max_connection_age: 60s    # connections are then asked to reconnect (GOAWAY) ...
    max_connection_age_grace: 10s  # ... and closed this much later: bounds a half-sent RPC holding a worker
  http:
    enabled: true
    endpoint: 127.0.0.1:4318   # /v1/traces, /v1/metrics, /v1/logs
    max_body_size: 20MiB       # after decompression; larger -> 413
    read_timeout: 10s          # headers, then the body, must each arrive within this; else closed / 408
    max_connections: 1000      # open connections; beyond, new ones are closed at once
  auth:                        # bearer token on both receivers; off while neither is set
    token_env: null            # name of an environment variable holding the token
    token_file: null           # or a file holding it (surrounding whitespace ignored)
  tls:                         # off while neither is set
    cert_file: null
    key_file: null

api:
  endpoint: 127.0.0.1:4319     # /api/v1/*, /metrics, /healthz, /readyz
  auth:
    token_env: null
    token_file: null
  tls:
    cert_file: null
    key_file: null

state:
  path: ragotel-analyzer.db    # SQLite file: alerts, cooldowns, notification outbox, recovery audit
  retention: 7d                # resolved alerts, sent notifications and audit records older than this are pruned

limits:
  max_series: 100000           # span + metric + log series; beyond it data goes to an overflow series
  ingest_queue_size: 256       # accepted requests waiting for the windows; full -> 503 / UNAVAILABLE
  ingest_queue_bytes: 256MiB
  memory_limit: 1GiB           # resident memory above which requests are refused (0 = no limit)
  retry_after: 1s              # Retry-After / RetryInfo sent with a refusal

passthrough:                   # forward everything accepted, unchanged, to a downstream OTLP endpoint
  endpoint: null               # e.g. http://127.0.0.1:14318 (http/protobuf) or http://127.0.0.1:14317 (grpc)
  protocol: http/protobuf      # http/protobuf | grpc
  headers: {}
  queue_size: 1000             # requests held for retry; beyond it the oldest are dropped and counted
  timeout: 10s
  max_elapsed: 60s             # give up retrying one request after this long
  signals: [traces, metrics, logs]  # what is forwarded; [traces] for a traces-only backend (Phoenix)

log:
  level: info                  # debug | info | warning | error
  format: text                 # text (logfmt) | json

channels: []                   # notification channels: log, webhook, slack, email, alertmanager (docs/analyzer.md)
recovery: []                   # recovery hooks: command, webhook, python, redis_flush (docs/analyzer.md)
rules:                         # alert rules: a configured rule replaces the built-in of the same name
"""
    + BUILTIN_RULES_YAML
)


class ConfigError(Exception):
    """Invalid configuration; ``problems`` holds one ``source: key.path: expected ...`` line each."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def deep_merge(base: Mapping[str, Any], overlay: Mapping[str, Any]) -> dict[str, Any]:
    """Merge ``overlay`` over ``base``: mappings recursively; lists of named mappings by ``name``; else replace."""
    out = dict(base)
    for key, value in overlay.items():
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            out[key] = deep_merge(old, value)
        elif isinstance(old, list) and _named_list(old) and _named_list(value):
            merged = {item["name"]: item for item in old}
            merged.update({item["name"]: item for item in value})
            out[key] = list(merged.values())
        else:
            out[key] = value
    return out


def _named_list(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(i, Mapping) and "name" in i for i in value)


_Source = tuple[str, Mapping[str, Any]]


def _read(path: str | Path) -> tuple[dict[str, Any], list[str]]:
    name = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        return {}, [f"{name}: cannot read: {getattr(exc, 'strerror', None) or exc}"]
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1} column {mark.column + 1}: " if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc)
        return {}, [f"{name}: {where}invalid YAML: {problem}"]
    if data is None:
        return {}, []
    if not isinstance(data, dict):
        return {}, [f"{name}: top level: expected a mapping of keys, got {type(data).__name__}"]
    return data, []


def _defaults() -> dict[str, Any]:
    data = yaml.safe_load(DEFAULT_CONFIG_YAML)
    assert isinstance(data, dict)
    return data


def _validate(sources: Sequence[_Source]) -> tuple[Config | None, list[str]]:
    merged: dict[str, Any] = {}
    for _, data in sources:
        merged = deep_merge(merged, data)
    try:
        return Config.model_validate(merged), []
    except ValidationError as exc:
        return None, [_describe({**e, "loc": _written_loc(e["loc"], merged, sources)}, sources) for e in exc.errors()]


def _written_loc(loc: Sequence[Any], merged: Mapping[str, Any], sources: Sequence[_Source]) -> tuple[Any, ...]:
    """Map a location in the merged data back to what a file wrote.

    Items of a top-level named list (rules, channels, recovery) get their index in the last source that names
    them, and a tagged union's tag (the item's ``type``) is dropped: ``channels[2].webhook.url`` (merged) becomes
    ``channels[0].url`` (as written).
    """
    out: list[Any] = []
    node: Any = merged
    for part in loc:
        if isinstance(node, Mapping) and isinstance(part, str) and part not in node and node.get("type") == part:
            continue
        if len(out) == 1 and isinstance(node, list) and isinstance(part, int) and part < len(node):
            item = node[part]
            name = item.get("name") if isinstance(item, Mapping) else None
            written = part
            for _, data in reversed(sources):
                items = data.get(out[0]) if isinstance(data, Mapping) else None
                found = [i for i, x in enumerate(items or []) if isinstance(x, Mapping) and x.get("name") == name]
                if name is not None and found:
                    written = found[-1]
                    break
            out.append(written)
            node = item
            continue
        out.append(part)
        if isinstance(node, Mapping) and isinstance(part, str):
            node = node.get(part)
        elif isinstance(node, list) and isinstance(part, int) and part < len(node):
            node = node[part]
        else:
            node = None
    return tuple(out)


def load_config(paths: Sequence[str | Path] = (), overrides: Mapping[str, Any] | None = None) -> Config:
    """Build the configuration: defaults, then each file in order, then ``overrides`` (from flags).

    Raises ConfigError listing every problem found; nothing is partially applied.
    """
    sources: list[_Source] = [("defaults", _defaults())]
    problems: list[str] = []
    for path in paths:
        data, errors = _read(path)
        problems += errors
        sources.append((str(path), data))
    if overrides:
        sources.append(("command line", overrides))
    if problems:
        raise ConfigError(problems)
    config, problems = _validate(sources)
    if config is None:
        raise ConfigError(problems)
    return config


def check_config(paths: Sequence[str | Path], startup: Callable[[Config], object] | None = None) -> list[str]:
    """Validate each file over the defaults, then all of them merged; return the problems (empty when valid).

    ``startup`` is what start-up checks beyond the schema (token sources, TLS files: ``load_credentials``); it runs
    on the merged configuration, and each ``key.path: ...`` problem it raises as ConfigError is prefixed with the
    file that set the key.
    """
    defaults: _Source = ("defaults", _defaults())
    problems: list[str] = []
    sources: list[_Source] = [defaults]
    for path in paths:
        data, errors = _read(path)
        if not errors:
            errors = _validate([defaults, (str(path), data)])[1]
        problems += errors
        sources.append((str(path), data))
    if problems:
        return problems
    config, problems = _validate(sources)
    if config is not None and startup is not None:
        try:
            startup(config)
        except ConfigError as exc:
            for problem in exc.problems:
                key = problem.split(":", 1)[0]
                problems.append(f"{_source_of(tuple(key.split('.')), sources)}: {problem}")
    return problems


# --- error rendering -------------------------------------------------------------------------------------------

_EXPECTED = {
    "int_type": "expected an integer",
    "int_parsing": "expected an integer",
    "int_from_float": "expected an integer",
    "float_type": "expected a number",
    "float_parsing": "expected a number",
    "bool_type": "expected true or false",
    "bool_parsing": "expected true or false",
    "string_type": "expected a string",
    "dict_type": "expected a mapping",
    "model_type": "expected a mapping",
    "model_attributes_type": "expected a mapping",
    "list_type": "expected a list",
    "missing": "required key is missing",
}


def _describe(error: Mapping[str, Any], sources: Sequence[_Source]) -> str:
    loc = tuple(part for part in error["loc"] if not (isinstance(part, str) and ("[" in part or "-" in part)))
    path = _render_loc(loc) or "top level"
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        allowed = _allowed_keys(loc[:-1])
        message = "unknown key" + (f" (expected one of: {', '.join(allowed)})" if allowed else "")
    elif kind == "union_tag_invalid":
        path = f"{path}.{str(ctx.get('discriminator', 'type')).strip(chr(39))}"
        message = f"expected one of {ctx.get('expected_tags', '')} (got {ctx.get('tag')!r})"
    elif kind == "literal_error":
        message = f"expected one of {ctx.get('expected', '')}"
    elif kind in {"greater_than", "greater_than_equal", "less_than", "less_than_equal"}:
        op = {"greater_than": ">", "greater_than_equal": ">=", "less_than": "<", "less_than_equal": "<="}[kind]
        bound = next(iter(ctx.values()), "")
        message = f"expected a value {op} {bound}"
    elif kind in _EXPECTED:
        message = _EXPECTED[kind]
    else:
        message = str(error["msg"]).removeprefix("Value error, ")
        if not message.startswith("expected"):
            message = f"expected a valid value: {message}"
    got = error.get("input")
    if kind not in {"missing", "extra_forbidden"} and isinstance(got, str | int | float | bool) and len(str(got)) < 80:
        message += f" (got {got!r})"
    return f"{_source_of(loc, sources)}: {path}: {message}"


def _render_loc(loc: Sequence[Any]) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _source_of(loc: Sequence[Any], sources: Sequence[_Source]) -> str:
    """Name the last source that set the deepest prefix of ``loc``."""
    best, best_depth = sources[-1][0], -1
    for name, data in sources:
        node: Any = data
        depth = 0
        for part in loc:
            in_list = isinstance(node, list) and isinstance(part, int) and part < len(node)
            if in_list or (isinstance(node, Mapping) and part in node):
                node = node[part]
            else:
                break
            depth += 1
        if depth >= best_depth and (depth > 0 or not loc):
            best, best_depth = name, depth
    return best


def _allowed_keys(loc: Sequence[Any]) -> list[str]:
    """Field names of the model found at ``loc`` (empty if ``loc`` is not a model)."""
    current: Any = Config
    for part in loc:
        current = _unwrap(current)
        if isinstance(current, type) and issubclass(current, BaseModel) and isinstance(part, str):
            field = current.model_fields.get(part)
            if field is None:
                return []
            current = field.annotation
        else:
            args = typing.get_args(current)
            if typing.get_origin(current) in (list, dict) and args:
                current = args[-1]
            else:
                return []
    current = _unwrap(current)
    if isinstance(current, type) and issubclass(current, BaseModel):
        return list(current.model_fields)
    return []


def _unwrap(annotation: Any) -> Any:
    while True:
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            annotation = typing.get_args(annotation)[0]
        elif origin in (Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) != 1:
                return annotation
            annotation = members[0]
        else:
            return annotation
