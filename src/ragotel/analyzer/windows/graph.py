"""The dependency graph: its nodes (services, stages, dependencies), the pairing of cross-service calls, the document.

Nodes and edges come from what the windows already hold: a stage node per (service, stage, component) series, a
dependency node per LLM provider (``gen_ai.provider.name`` + ``server.address``) and database or vector database
(``db.system.name`` + ``server.address``) the spans call, and per dependency a health check reports
(``ragotel.dependency.health``, with its ``ragotel.dependency.kind``). A CLIENT span of service A whose child SERVER
span (same trace, parent span id = the client's span id) belongs to service B is an edge A -> B; ``CallPairs`` keeps
the unpaired halves for a short while, whichever half arrives first. ``build_graph`` turns the figures into the
``/api/v1/dependencies`` document, folding the least busy nodes into one aggregate node per kind past ``limit``.
Everything here is called under the window lock; nothing is thread-safe on its own.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Final

from ragotel.analyzer.windows.records import CallSpan
from ragotel.analyzer.windows.sketch import QuantileSketch

__all__ = [
    "DEFAULT_LIMIT",
    "DEPENDENCY_TYPES",
    "CallPairs",
    "EdgeFigures",
    "Node",
    "build_graph",
    "dependency_node",
    "downstream",
    "health_node",
    "health_of",
    "peer_node",
    "service_node",
    "stage_node",
]

DEFAULT_LIMIT: Final = 1000
"""Nodes a graph document holds by default; past it the least busy nodes are folded into aggregate nodes."""
DEPENDENCY_TYPES: Final = frozenset({"llm", "vector_db", "database", "cache", "http", "service", "other"})
_VECTOR_DBS: Final = frozenset(
    {"chroma", "qdrant", "pinecone", "weaviate", "milvus", "lancedb", "faiss", "pgvector", "elasticsearch"}
)
_CACHES: Final = frozenset({"redis", "valkey", "memcached"})
# Kinds a health check may give (free text) -> dependency type.
_KIND_TYPES: Final = {"vectordb": "vector_db", "db": "database", "sql": "database", "redis": "cache", "api": "http"}
_DOWN_RATIO: Final = 0.5
_DOWN_ERRORS: Final = 3
_DEGRADED_RATIO: Final = 0.05
_HEALTH_ORDER: Final = {"unknown": 0, "up": 1, "degraded": 2, "down": 3}


@dataclass(frozen=True, slots=True)
class Node:
    """One node of the graph; ``attributes`` are (name, value) pairs carried to the document as they came."""

    id: str
    kind: str  # service | stage | dependency
    name: str
    service: str | None = None
    type: str | None = None
    attributes: tuple[tuple[str, str], ...] = ()

    def to_dict(self, health: str) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "name": self.name,
            "service": self.service,
            "type": self.type,
            "health": health,
            "attributes": dict(self.attributes),
        }


def service_node(service: str) -> Node:
    return Node(f"service:{service}", "service", service, service)


def stage_node(service: str, stage: str, component: str) -> Node:
    attributes = (("component", component),) if component else ()
    return Node(f"stage:{service}/{stage}/{component}", "stage", stage, service, stage, attributes)


def dependency_node(stage: str, provider: str, db_system: str, server: str) -> Node | None:
    """The dependency a span calls: an LLM provider or a (vector) database, at its server when known."""
    if provider:
        kind, system, key = "llm", provider, "provider"
    elif db_system:
        system, key = db_system, "db.system.name"
        if db_system in _CACHES:
            kind = "cache"
        elif db_system in _VECTOR_DBS or stage == "vector_db":
            kind = "vector_db"
        else:
            kind = "database"
    else:
        return None
    attributes = ((key, system), ("server.address", server)) if server else ((key, system),)
    name = f"{system} @ {server}" if server else system
    return Node(f"dependency:{kind}/{system}/{server}", "dependency", name, None, kind, attributes)


def peer_node(address: str) -> Node:
    """The HTTP dependency at ``address`` that CLIENT spans call and that sends no spans of its own."""
    return Node(f"dependency:http/{address}", "dependency", address, None, "http", (("server.address", address),))


def health_node(name: str, kind: str) -> Node:
    """The dependency a health check probes, when no span-derived node stands for it."""
    dep_type = kind if kind in DEPENDENCY_TYPES else _KIND_TYPES.get(kind.lower(), "other")
    return Node(
        f"dependency:{dep_type}/{name}", "dependency", name, None, dep_type, (("health_check", name), ("kind", kind))
    )


@dataclass(slots=True)
class EdgeFigures:
    """Calls along one edge over the window (``count``, ``errors``, durations in ``sketch``) and over the newest
    calls (``recent_count``, ``recent_errors``: what a node's health follows, so it turns within seconds)."""

    count: int = 0
    errors: int = 0
    sketch: QuantileSketch | None = None
    recent_count: int = 0
    recent_errors: int = 0
    via: str = "spans"  # spans | health_check | calls

    def merge(self, other: EdgeFigures) -> None:
        self.count += other.count
        self.errors += other.errors
        self.recent_count += other.recent_count
        self.recent_errors += other.recent_errors
        if other.sketch is not None:
            if self.sketch is None:
                self.sketch = QuantileSketch()
            self.sketch.merge(other.sketch)


def health_of(count: int, errors: int) -> str:
    """up, degraded (>= 5% failed) or down (>= half failed and at least 3); unknown without calls."""
    if count <= 0:
        return "unknown"
    ratio = errors / count
    if ratio >= _DOWN_RATIO and errors >= _DOWN_ERRORS:
        return "down"
    return "degraded" if ratio >= _DEGRADED_RATIO else "up"


class CallPairs:
    """Pairs CLIENT spans with their child SERVER spans in another service; bounded in entries and in time.

    Either half waits up to ``ttl`` seconds (of arrival) for the other, in a map of at most ``capacity`` entries
    per kind (the oldest is dropped first, and counted). A SERVER span usually arrives first: it ends first.
    """

    def __init__(self, *, ttl: float = 30.0, capacity: int = 10_000) -> None:
        self.ttl = ttl
        self.capacity = capacity
        self._clients: OrderedDict[tuple[bytes, bytes], tuple[float, CallSpan]] = OrderedDict()
        self._servers: OrderedDict[tuple[bytes, bytes], tuple[float, CallSpan]] = OrderedDict()
        self.counts = {"paired": 0, "expired": 0, "dropped": 0}

    def __len__(self) -> int:
        return len(self._clients) + len(self._servers)

    def add(self, calls: Iterable[CallSpan], now: float) -> list[tuple[CallSpan, CallSpan]]:
        """Take a batch's CLIENT and SERVER spans; return the (client, server) pairs they complete."""
        pairs = []
        for call in calls:
            if call.client:
                key = (call.trace_id, call.span_id)
                waiting = self._servers.pop(key, None)
                if waiting is not None:
                    pairs.append((call, waiting[1]))
                else:
                    self._put(self._clients, key, call, now)
            elif call.parent_span_id:
                key = (call.trace_id, call.parent_span_id)
                client = self._clients.pop(key, None)
                if client is not None:
                    pairs.append((client[1], call))
                else:
                    self._put(self._servers, key, call, now)
        self.counts["paired"] += len(pairs)
        return [(c, s) for c, s in pairs if c.service != s.service]

    def _put(
        self,
        waiting: OrderedDict[tuple[bytes, bytes], tuple[float, CallSpan]],
        key: tuple[bytes, bytes],
        call: CallSpan,
        now: float,
    ) -> None:
        if len(waiting) >= self.capacity:
            waiting.popitem(last=False)
            self.counts["dropped"] += 1
        waiting[key] = (now, call)

    def expire(self, now: float) -> list[CallSpan]:
        """Forget the halves that waited longer than ``ttl``; return the CLIENT ones that name their peer (a
        ``server.address``): calls into something that sends no spans, an HTTP dependency."""
        horizon = now - self.ttl
        unanswered = []
        for waiting in (self._clients, self._servers):
            while waiting:
                key, (arrival, call) = next(iter(waiting.items()))
                if arrival >= horizon:
                    break
                del waiting[key]
                self.counts["expired"] += 1
                if call.client and call.peer:
                    unanswered.append(call)
        return unanswered


@dataclass(slots=True)
class _GraphInput:
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: dict[tuple[str, str], EdgeFigures] = field(default_factory=dict)
    gauges: dict[str, list[float]] = field(default_factory=dict)  # node id -> the health values reporting on it
    checks: dict[str, dict[str, float]] = field(default_factory=dict)  # node id -> health check -> worst report


class GraphParts:
    """What ``build_graph`` needs, gathered by the windows: nodes, edge figures, and health gauges per node."""

    def __init__(self) -> None:
        self._input = _GraphInput()

    def node(self, node: Node) -> str:
        self._input.nodes.setdefault(node.id, node)
        return node.id

    def edge(self, source: Node, target: Node, figures: EdgeFigures) -> None:
        """Add an edge's figures (merged into a new record when the edge is there already: a figure's sketch may be
        the windows' own, which must not change)."""
        key = (self.node(source), self.node(target))
        known = self._input.edges.get(key)
        if known is None:
            self._input.edges[key] = figures
        else:
            merged = self._input.edges[key] = EdgeFigures(via=known.via)
            merged.merge(known)
            merged.merge(figures)

    def has_calls(self, source: Node, target: Node) -> bool:
        """Whether calls (spans, not health reports) already make the edge ``source -> target``."""
        known = self._input.edges.get((source.id, target.id))
        return known is not None and known.via != "health_check"

    def gauge(self, node_id: str, value: float, check: str) -> None:
        """A health report of ``check`` on a node (several instances of one check keep the worst)."""
        self._input.gauges.setdefault(node_id, []).append(value)
        checks = self._input.checks.setdefault(node_id, {})
        checks[check] = min(value, checks.get(check, value))

    def called_dependencies(self) -> dict[tuple[str, str], list[Node]]:
        """(service, dependency type) -> the dependency nodes that service (or its stages) calls, one entry each."""
        nodes = self._input.nodes
        out: dict[tuple[str, str], dict[str, Node]] = {}
        for source, target in self._input.edges:
            node, caller = nodes[target], nodes[source]
            if node.kind == "dependency" and caller.service is not None:
                out.setdefault((caller.service, node.type or "other"), {})[node.id] = node
        return {key: list(found.values()) for key, found in out.items()}

    @property
    def parts(self) -> _GraphInput:
        return self._input


def health_target(called: Mapping[tuple[str, str], Sequence[Node]], service: str, name: str, kind: str) -> Node:
    """The node a health check of ``service`` reports on: the one span-derived dependency of its type that the
    service calls (``called``, from ``GraphParts.called_dependencies``), or the one whose system or server the
    check's name mentions, else a node of its own."""
    own = health_node(name, kind)
    candidates = list(called.get((service, own.type or "other"), ()))
    if len(candidates) > 1:
        lowered = name.lower()
        candidates = [n for n in candidates if any(v and v.lower() in lowered for _, v in n.attributes)]
    return candidates[0] if len(candidates) == 1 else own


def downstream(starts: Iterable[str], below: Mapping[str, Sequence[str]]) -> list[str]:
    """``starts`` and every node reachable from them along ``below`` (source -> targets), nearest first."""
    seen = dict.fromkeys(starts)
    queue = deque(seen)
    while queue:
        for target in below.get(queue.popleft(), ()):
            if target not in seen:
                seen[target] = None
                queue.append(target)
    return list(seen)


def _node_health(node: Node, inbound: Sequence[EdgeFigures], gauges: Sequence[float]) -> str:
    if gauges and min(gauges) < 1.0:
        return "down" if all(v < 1.0 for v in gauges) or node.kind == "dependency" else "degraded"
    verdicts = [
        health_of(e.recent_count, e.recent_errors) if e.recent_count else health_of(e.count, e.errors)
        for e in inbound
        if e.via != "health_check"
    ]
    worst = max(verdicts, key=_HEALTH_ORDER.__getitem__, default="unknown")
    if worst == "unknown" and (gauges or any(e.count for e in inbound)):
        return "up"
    return worst


def build_graph(
    parts: GraphParts,
    *,
    covered: float,
    window: float,
    limit: int,
    service: str | None,
    generated_at: str,
) -> dict[str, Any]:
    """The ``/api/v1/dependencies`` document (see docs/analyzer.md); ``service`` keeps that service's nodes, the
    nodes they reach and the services calling it."""
    data = parts.parts
    nodes, edges = data.nodes, data.edges
    if service is not None:
        below: dict[str, list[str]] = {}
        for source, target in edges:
            below.setdefault(source, []).append(target)
        keep = set(downstream([i for i, n in nodes.items() if n.service == service], below))
        keep |= {s for s, t in edges if t == f"service:{service}"}
        edges = {k: v for k, v in edges.items() if k[0] in keep and k[1] in keep}
        nodes = {i: n for i, n in nodes.items() if i in keep}
    inbound: dict[str, list[EdgeFigures]] = {}
    for (_, target), figures in edges.items():
        inbound.setdefault(target, []).append(figures)
    health = {i: _node_health(n, inbound.get(i, ()), data.gauges.get(i, ())) for i, n in nodes.items()}
    for node_id, node in nodes.items():
        if node.kind == "service" and node_id not in inbound:
            # Nobody calls it (that we see): it is as healthy as its pipeline.
            pipelines = [health[t] for (s, t) in edges if s == node_id and nodes[t].type == "pipeline"]
            health[node_id] = max(pipelines, key=_HEALTH_ORDER.__getitem__, default="up")
    truncated = len(nodes) > limit
    if truncated:
        nodes, edges, health = _aggregate(nodes, edges, health, limit)
    out_nodes = []
    for node_id in sorted(nodes, key=lambda i: (nodes[i].kind, i)):
        row = nodes[node_id].to_dict(health[node_id])
        if nodes[node_id].kind == "dependency":
            checks = data.checks.get(node_id, {})
            row["health_checks"] = sorted(checks)
            row["failing_checks"] = sorted(name for name, value in checks.items() if value < 1.0)
        out_nodes.append(row)
    out_edges = []
    for (source, target), e in sorted(edges.items()):
        out_edges.append(
            {
                "source": source,
                "target": target,
                "requests": e.count,
                "request_rate": e.count / covered if covered > 0 else 0.0,
                "error_rate": e.errors / e.count if e.count else 0.0,
                "p95": e.sketch.quantile(0.95) if e.sketch is not None and e.sketch.count else None,
                "via": e.via,
            }
        )
    return {
        "window_seconds": window,
        "generated_at": generated_at,
        "truncated": truncated,
        "limit": limit,
        "nodes": out_nodes,
        "edges": out_edges,
    }


def _aggregate(
    nodes: dict[str, Node], edges: dict[tuple[str, str], EdgeFigures], health: dict[str, str], limit: int
) -> tuple[dict[str, Node], dict[tuple[str, str], EdgeFigures], dict[str, str]]:
    """Keep the busiest nodes (failing ones first) and fold the others into one aggregate node per kind."""
    traffic: dict[str, int] = dict.fromkeys(nodes, 0)
    for (source, target), e in edges.items():
        traffic[source] += e.count
        traffic[target] += e.count
    kinds = sorted({n.kind for n in nodes.values()})
    room = max(1, limit - len(kinds))
    ranked = sorted(nodes, key=lambda i: (-_HEALTH_ORDER[health[i]], -traffic[i], i))
    kept = set(ranked[:room])
    folded: dict[str, list[str]] = {}
    for node_id in ranked[room:]:
        folded.setdefault(nodes[node_id].kind, []).append(node_id)
    target_of = {i: i for i in kept}
    out_nodes = {i: nodes[i] for i in kept}
    out_health = {i: health[i] for i in kept}
    for kind, members in folded.items():
        agg = Node(
            f"aggregate:{kind}",
            kind,
            f"{len(members)} more {kind} nodes",
            None,
            None,
            (("aggregated", str(len(members))),),
        )
        out_nodes[agg.id] = agg
        out_health[agg.id] = max((health[m] for m in members), key=_HEALTH_ORDER.__getitem__)
        for member in members:
            target_of[member] = agg.id
    out_edges: dict[tuple[str, str], EdgeFigures] = {}
    for (source, target), e in edges.items():
        key = (target_of[source], target_of[target])
        merged = out_edges.get(key)
        if merged is None:
            merged = out_edges[key] = EdgeFigures(via=e.via)
        merged.merge(e)
    return out_nodes, out_edges, out_health
