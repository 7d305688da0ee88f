"""What the API and the diagnosis read from the windows: per-stage statistics, dependency health, series."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from ragotel.analyzer.vocabulary import SERVICE_INSTANCE_ID, iso_time
from ragotel.analyzer.windows.graph import (
    DEFAULT_LIMIT,
    EdgeFigures,
    GraphParts,
    build_graph,
    health_target,
    service_node,
    stage_node,
)
from ragotel.analyzer.windows.recent import RecentRing
from ragotel.analyzer.windows.records import Baseline, RecentStats, StageStats
from ragotel.analyzer.windows.signals import SignalWindows, window_slope
from ragotel.analyzer.windows.sketch import QuantileSketch
from ragotel.analyzer.windows.store import OVERFLOW, MetricKey, SpanKey, Summary
from ragotel.semconv import (
    M_DEPENDENCY_CHECK_DURATION,
    M_DEPENDENCY_HEALTH,
    RAGOTEL_DEPENDENCY_KIND,
    RAGOTEL_DEPENDENCY_NAME,
)

__all__ = ["Windows"]

_GRAPH_RECENT_SAMPLES = 10
"""Newest calls an edge's recent verdict (and so a node's health) is read from, as the adaptive rules judge."""


class Windows(SignalWindows):
    """Per-service, per-stage sliding-window statistics fed by the ingest worker: signals and the API documents.

    Thread-safety: every public method takes ``lock``; the ingest worker writes, rules and the API read.
    """

    # -- adaptive detection: recent panes and baselines ----------------------------------------------------------
    def stage_keys(self) -> list[tuple[str, str, str]]:
        """Every (service, stage, component) with a per-component series held."""
        with self.lock:
            return [k[:3] for k, series in self._coarse.items() if series.recent is not None and k[0] != OVERFLOW]

    def recent(
        self,
        service: str,
        stage: str,
        component: str,
        *,
        min_samples: int,
        horizon: float | None = None,
        now: float | None = None,
    ) -> RecentStats | None:
        """The newest spans of a series: panes newest-first until ``min_samples`` spans or the horizon (the
        detection horizon at most); None without any span in it."""
        now = self._clock() if now is None else now
        limit = self.detection_horizon if horizon is None else min(horizon, self.detection_horizon)
        with self.lock:
            series = self._coarse.get((service, stage, component, "", ""))
            if series is None or series.recent is None:
                return None
            return series.recent.read(now, stage=stage, min_samples=min_samples, horizon=limit)

    def baseline(self, service: str, stage: str, component: str) -> Baseline | None:
        """The trailing baseline of a series, None until it has enough samples."""
        with self.lock:
            return self.baselines.get((service, stage, component))

    def roll_baselines(self, now: float | None = None, *, hold: frozenset[str] = frozenset()) -> None:
        """Close the baseline buckets that ended, leaving out those of the services in ``hold`` (under alert), and
        the history points that ended (all of them: the charts show the fault the baselines leave out)."""
        now = self._clock() if now is None else now
        with self.lock:
            self.baselines.hold(hold, now)
            rings = [(k[:3], s.recent) for k, s in self._coarse.items() if s.recent is not None]
            self.baselines.roll(rings, now)
            self.history.roll([r for r in rings if r[0][0] != OVERFLOW], now)

    def history_keys(self) -> list[tuple[str, str]]:
        """Every (service, stage) with a history."""
        with self.lock:
            return self.history.keys()

    def history_points(self, service: str, stage: str, since: float, now: float | None = None) -> dict[str, Any]:
        """The downsampled history of one stage from ``since`` on: resolution (s) and points as dicts."""
        now = self._clock() if now is None else now
        with self.lock:
            points, resolution = self.history.points((service, stage), since, now)
        return {
            "resolution": resolution,
            "points": [
                {"time": p[0], "count": p[1], "errors": p[2], "empty": p[3], "p50": p[4], "p95": p[5]} for p in points
            ],
        }

    def dump_history(self) -> list[tuple[tuple[str, str], float, tuple[float, int, int, int, float, float]]]:
        """History points closed since the last dump, to persist."""
        with self.lock:
            return self.history.dump()

    def restore_history(self, rows: Iterable[tuple[tuple[str, str], float, Any]], now: float | None = None) -> int:
        """Load persisted history points; returns how many series were restored."""
        now = self._clock() if now is None else now
        with self.lock:
            return self.history.load(rows, now)

    def dump_baselines(self, *, dirty_only: bool = True) -> list[tuple[tuple[str, str, str], list[list[float]]]]:
        """Baseline buckets to persist (the series changed since the last dump, or all)."""
        with self.lock:
            return self.baselines.dump(dirty_only=dirty_only)

    def restore_baselines(self, rows: Iterable[tuple[tuple[str, str, str], Any]], now: float | None = None) -> int:
        """Load persisted baseline buckets; returns how many series were restored."""
        now = self._clock() if now is None else now
        with self.lock:
            return self.baselines.load(rows, now)

    def models(self, service: str, stage: str, component: str, *, now: float | None = None) -> list[str]:
        """Models seen in the window for a series, most spans first."""
        now = self._clock() if now is None else now
        with self.lock:
            rows = [
                (summary.count, key[3])
                for key, summary in self._span_rows(now, coarse=False, service=service, stages=frozenset({stage}))
                if key[2] == component and key[3]
            ]
        return [model for _, model in sorted(rows, reverse=True)]

    def stage_stats(self, service: str, *, now: float | None = None) -> list[dict[str, Any]]:
        """``stage_records`` as JSON rows."""
        return [r.to_dict() for r in self.stage_records(service, now=now)]

    def stage_records(self, service: str, *, now: float | None = None) -> list[StageStats]:
        """Per (stage, component) of ``service``: count, rate, error_rate, p50, p95, p99, avg, time_share."""
        now = self._clock() if now is None else now
        with self.lock:
            return self._stage_records(list(self._span_rows(now, coarse=True, service=service)), now)

    def _stage_records(self, rows: list[tuple[SpanKey, Summary]], now: float) -> list[StageStats]:
        pipeline = sum(s.duration_sum for k, s in rows if k[1] == "pipeline")
        return [
            StageStats(
                stage=key[1],
                component=key[2],
                time_share=summary.duration_sum / pipeline if pipeline > 0 else None,
                **self._row(summary, key[1], now),
            )
            for key, summary in sorted(rows, key=lambda r: r[0])
        ]

    def _row(self, s: Summary, stage: str, now: float) -> dict[str, Any]:
        p50, p95, p99 = s.sketch.quantiles((0.5, 0.95, 0.99))
        row: dict[str, Any] = {
            "count": s.count,
            "rate": s.count / self._covered(now),
            "error_rate": s.errors / s.count,
            "p50": p50,
            "p95": p95,
            "p99": p99,
            "avg": s.duration_sum / s.count,
        }
        if stage == "retrieval":
            row["empty_retrieval_rate"] = s.empty / s.count
        if stage == "pipeline":
            row["success_rate"] = 1.0 - s.errors / s.count
            row["users"] = s.users.estimate() if s.users is not None else 0
        return row

    def stats(
        self, *, service: str | None = None, stage: str | None = None, now: float | None = None
    ) -> dict[str, Any]:
        """The ``/api/v1/stats`` document: per service, per (stage, component), with finer model/collection rows."""
        now = self._clock() if now is None else now
        with self.lock:
            # time_share needs the pipeline rows even when another stage is asked for
            wanted = frozenset({stage, "pipeline"}) if stage is not None else None
            coarse: dict[str, list[tuple[SpanKey, Summary]]] = {}
            for key, summary in self._span_rows(now, coarse=True, service=service, stages=wanted):
                coarse.setdefault(key[0], []).append((key, summary))
            fine: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
            only = frozenset({stage}) if stage is not None else None
            for key, summary in self._span_rows(now, coarse=False, service=service, stages=only):
                row = {"model": key[3], "collection": key[4], **self._row(summary, key[1], now)}
                fine.setdefault(key[:3], []).append(row)
            names = set(coarse) | set(self._logs) | self._metric_services()
            resources = {
                signal: {v.labels["service"]: v.value for v in self._metric_signal(signal, now)}
                for signal in ("cpu_utilization", "memory_utilization", "disk_utilization", "memory_growth")
            }
            services = []
            for name in sorted(names if service is None else names & {service}):
                stages = [r.to_dict() for r in self._stage_records(coarse.get(name, []), now)]
                if stage is not None:
                    stages = [r for r in stages if r["stage"] == stage]
                for row in stages:
                    row["series"] = sorted(
                        fine.get((name, row["stage"], row["component"]), []),
                        key=lambda r: (r["model"], r["collection"]),
                    )
                services.append(
                    {
                        "service": name,
                        "stages": stages,
                        "logs": self._log_row(name, now),
                        "resources": {signal: values.get(name) for signal, values in resources.items()},
                    }
                )
            return {
                "window_seconds": self.window,
                "covered_seconds": self._covered(now),
                "time": now,
                "services": services,
                "totals": self.snapshot_counts(),
            }

    def _log_row(self, service: str, now: float) -> dict[str, Any]:
        first = self._first_pane(now)
        panes = [p for p in self._logs.get(service, ()) if p[0] >= first]
        records = sum(p[1] for p in panes)
        errors = sum(p[2] for p in panes)
        return {"count": records, "errors": errors, "error_rate": errors / self._covered(now)}

    def health(self, *, now: float | None = None) -> dict[str, Any]:
        """The ``/api/v1/health`` document: latest dependency health per service."""
        now = self._clock() if now is None else now
        with self.lock:
            durations = {
                _dependency_id(key): series.value for key, series in self._live(M_DEPENDENCY_CHECK_DURATION, now)
            }
            services: dict[str, list[dict[str, Any]]] = {}
            for key, series in self._live(M_DEPENDENCY_HEALTH, now):
                attrs = dict(key[2])
                services.setdefault(key[0], []).append(
                    {
                        "name": attrs.get(RAGOTEL_DEPENDENCY_NAME, ""),
                        "kind": attrs.get(RAGOTEL_DEPENDENCY_KIND, ""),
                        "instance": attrs.get(SERVICE_INSTANCE_ID, ""),
                        "healthy": series.value >= 1.0,
                        "value": series.value,
                        "check_duration": durations.get(_dependency_id(key)),
                        "last_seen": series.last_arrival,
                        "attributes": attrs,
                    }
                )
            return {
                "time": now,
                "services": [
                    {
                        "service": s,
                        "healthy": all(d["healthy"] for d in deps),
                        "dependencies": sorted(deps, key=lambda d: (d["name"], d["kind"], d["instance"])),
                    }
                    for s, deps in sorted(services.items())
                ],
            }

    # -- the dependency graph ------------------------------------------------------------------------------------
    def dependencies(
        self, *, service: str | None = None, limit: int = DEFAULT_LIMIT, now: float | None = None
    ) -> dict[str, Any]:
        """The ``/api/v1/dependencies`` document: services, stages and dependencies with the edges between them."""
        now = self._clock() if now is None else now
        with self.lock:
            parts = self._graph_parts(now)
            covered = self._covered(now)
        return build_graph(
            parts, covered=covered, window=self.window, limit=limit, service=service, generated_at=iso_time(now) or ""
        )

    def _graph_parts(self, now: float) -> GraphParts:
        parts = GraphParts()
        for (service, stage, component, _, _), series in self._coarse.items():
            if service == OVERFLOW:
                continue
            summary = self._summary((service, stage, component, "", ""), series, now)
            if summary.count:
                figures = self._figures(summary, series.recent, stage, now)
                parts.edge(service_node(service), stage_node(service, stage, component), figures)
        for edge, (source, target, series) in self._edges.items():
            summary = self._summary(edge, series, now)
            if summary.count:
                figures = self._figures(summary, series.recent, "edge", now)
                figures.via = "calls" if source.kind == "service" else "spans"
                parts.edge(source, target, figures)
        self._health_edges(parts, now)
        return parts

    def _figures(self, summary: Summary, recent: RecentRing | None, stage: str, now: float) -> EdgeFigures:
        newest = (
            recent.read(now, stage=stage, min_samples=_GRAPH_RECENT_SAMPLES, horizon=self.detection_horizon)
            if recent is not None
            else None
        )
        return EdgeFigures(
            summary.count,
            summary.errors,
            summary.sketch,
            newest.count if newest is not None else 0,
            newest.errors if newest is not None else 0,
        )

    def _health_edges(self, parts: GraphParts, now: float) -> None:
        """Service -> dependency edges of the health checks: health reports in the window (each exported point), the
        failed ones, check durations."""
        horizon = now - self.window
        durations: dict[tuple[str, str, str], list[float]] = {}
        for key, series in self._live(M_DEPENDENCY_CHECK_DURATION, now):
            durations[_dependency_id(key)] = [v for arrival, _, v in series.samples if arrival >= horizon]
        called = parts.called_dependencies()
        for key, series in self._live(M_DEPENDENCY_HEALTH, now):
            if key[0] == OVERFLOW:
                continue
            attrs = dict(key[2])
            name, kind = attrs.get(RAGOTEL_DEPENDENCY_NAME, ""), attrs.get(RAGOTEL_DEPENDENCY_KIND, "")
            target = health_target(called, key[0], name, kind)
            parts.gauge(parts.node(target), series.value, name)
            source = service_node(key[0])
            if parts.has_calls(source, target):
                continue  # the service's own calls to it are the edge; its health reports only set its health
            probes = [v for arrival, _, v in series.samples if arrival >= horizon] or [series.value]
            sketch = QuantileSketch()
            sketch.add_indices(QuantileSketch.indices(durations.get(_dependency_id(key), ())))
            failed = sum(1 for v in probes if v < 1.0)
            parts.edge(
                source,
                target,
                EdgeFigures(len(probes), failed, sketch, 1, int(series.value < 1.0), via="health_check"),
            )

    def metric_series(
        self, *, service: str | None = None, name: str | None = None, limit: int = 1000, now: float | None = None
    ) -> list[dict[str, Any]]:
        """Metric series with data in the window: latest value and the least-squares growth per second."""
        now = self._clock() if now is None else now
        out: list[dict[str, Any]] = []
        with self.lock:
            names = [name] if name is not None else sorted(self._metrics)
            for metric_name in names:
                for (svc, _, attributes), series in self._live(metric_name, now):
                    if service is not None and svc != service:
                        continue
                    out.append(
                        {
                            "service": svc,
                            "name": metric_name,
                            "attributes": dict(attributes),
                            "kind": series.kind,
                            "unit": series.unit,
                            "value": series.value,
                            "count": series.count,
                            "samples": len(series.samples),
                            "growth": window_slope(series.samples, now - self.window),
                            "last_seen": series.last_arrival,
                        }
                    )
                    if len(out) >= limit:
                        return out
        return out


def _dependency_id(key: MetricKey) -> tuple[str, str, str]:
    attrs = dict(key[2])
    return key[0], attrs.get(RAGOTEL_DEPENDENCY_NAME, ""), attrs.get(SERVICE_INSTANCE_ID, "")
