"""The built-in rules: the seed cases plus RAG-specific ones; a configured rule of the same name replaces one.

They are YAML text so that ``ragotel-analyzer --print-default-config`` shows exactly what runs, with comments.
"""

from __future__ import annotations

from typing import Final

import yaml

from ragotel.analyzer.config.specs import RuleSpec

__all__ = ["BUILTIN_RULES_YAML", "builtin_rules"]

BUILTIN_RULES_YAML: Final = """\
  # Signals: latency_p50|latency_p95|latency_p99|latency_avg (s), error_rate, request_rate (/s),
  # empty_retrieval_rate, dependency_health (1/0), cpu_utilization, memory_utilization, disk_utilization,
  # memory_growth (bytes/s), memory_exhaustion_eta (s). Conditions: greater_than|less_than|equals|not_equals.
  # A rule fires after its condition held for `for` (span signals: over the window and over the last `recent`
  # seconds), stays firing `keep_firing_for` after it stops holding, notifies again after `repeat_interval`, and
  # never sends two firing notifications for one series within `cooldown`. The static rules below are the
  # absolute layer (the seed's SLOs); docs/analyzer.md gives the reasoning behind each default.
  - name: high_response_time        # the SLO: p95 of the whole RAG request under 2 s, sustained for 30 s
    signal: latency_p95
    match: {stage: pipeline}
    condition: greater_than
    threshold: 2.0
    for: 30s
    keep_firing_for: 15s
    min_requests: 10
    severity: critical
    summary: "p95 latency of {stage}/{component} in {service} is {value} (threshold {threshold})"
  - name: high_error_rate           # the SLO: under 1% failed RAG requests, with at least 10 requests and 3 errors
    signal: error_rate
    match: {stage: pipeline}
    condition: greater_than
    threshold: 0.01
    for: 15s
    keep_firing_for: 15s
    min_requests: 10
    min_errors: 3
    severity: critical
    summary: "{stage}/{component} in {service} fails {value} of requests (threshold {threshold})"
  - name: database_connection       # vector database / database client calls failing
    signal: error_rate
    match: {stage: vector_db}
    condition: greater_than
    threshold: 0.1
    for: 10s
    keep_firing_for: 10s
    min_requests: 10
    min_errors: 3
    severity: critical
    summary: "{component} client calls in {service} fail: error rate {value} (threshold {threshold})"
  - name: service_unavailable       # a dependency health check (ragotel.health) reports 0: at once
    signal: dependency_health
    condition: less_than
    threshold: 1
    for: 0s
    keep_firing_for: 10s
    severity: critical
    summary: "dependency {dependency} ({kind}) of {service} is unhealthy"
  - name: memory_leak               # process memory fitted over 90 s (R^2 >= 0.9) reaches its limit within 1h
    signal: memory_exhaustion_eta
    condition: less_than
    threshold: 3600
    for: 0s
    keep_firing_for: 30s
    severity: warning
    summary: "process memory of {service} grows steadily: its limit is reached in {value} (alert within {threshold})"
  - name: cpu_saturation            # warning within 1.2x of the threshold (from 0.67), critical from 0.8, for 30 s
    signal: cpu_utilization
    condition: greater_than
    threshold: 0.8
    warning_ratio: 1.2
    for: 30s
    keep_firing_for: 15s
    severity: critical
    summary: "CPU utilization of {service} is {value} (critical from {threshold})"
  - name: memory_saturation         # warning from 0.71, critical from 0.85, for 30 s
    signal: memory_utilization
    condition: greater_than
    threshold: 0.85
    warning_ratio: 1.2
    for: 30s
    keep_firing_for: 15s
    severity: critical
    summary: "memory utilization of {service} is {value} (critical from {threshold})"
  - name: disk_saturation           # warning from 0.75, critical from 0.9, for 30 s
    signal: disk_utilization
    condition: greater_than
    threshold: 0.9
    warning_ratio: 1.2
    for: 30s
    keep_firing_for: 15s
    severity: critical
    summary: "disk utilization of {service} is {value} (critical from {threshold})"
  - name: empty_retrieval_rate      # retrievals returning no document
    signal: empty_retrieval_rate
    condition: greater_than
    threshold: 0.2
    for: 5m
    min_requests: 10
    severity: warning
    summary: "{value} of retrievals by {component} in {service} return no document (threshold {threshold})"
  - name: availability_burn_rate    # SRE workbook multiwindow, multi-burn-rate alert on the pipeline error ratio
    type: burn_rate
    match: {stage: pipeline}
    objective: 0.99
    burn_windows:                   # 2% of a 30-day budget in 1h or 5% in 6h page; 10% in 1d or 3d warn
      - {long: 1h, short: 5m, factor: 14.4, severity: critical}
      - {long: 6h, short: 30m, factor: 6, severity: critical}
      - {long: 1d, short: 2h, factor: 3, severity: warning}
      - {long: 3d, short: 6h, factor: 1, severity: warning}
    resolve_window: 30s             # departure from the workbook: the last 30 s decide, so it resolves in < 60 s
    keep_firing_for: 10s
    min_request_rate: 0.01
    severity: critical
    summary: "{service} burns its {objective} availability budget {value}x too fast (limit {threshold}x)"
  - name: latency_regression        # p95 over twice its own trailing 1h median (and 250 ms more)
    type: regression
    signal: latency_p95
    match: {stage: pipeline}
    factor: 2.0
    min_delta: 0.25
    baseline: 1h
    min_history: 10m
    for: 5m
    severity: warning
    summary: "p95 latency of {stage}/{component} in {service} is {value}, over {factor}x its usual {threshold}"
  # Adaptive rules (type: adaptive): every stage against its own trailing baseline (baseline.horizon, 1h),
  # judged on its newest detection.min_samples (10) spans; cold series (baseline not ready) and series slower
  # than min_samples per detection.horizon are not judged. A `threshold` set here replaces the adaptive one.
  # Leaf first: a parent stage whose excess a child stage carries stays quiet. See docs/analyzer.md.
  - name: stage_latency             # median of the newest spans >= 2x the stage's usual p95 and 50 ms more:
    type: adaptive                  # the median ignores single outliers, the usual p95 ignores jitter
    signal: latency
    factor: 2.0
    min_delta: 0.05
    keep_firing_for: 10s
    severity: warning
    summary: "{stage}/{component} in {service}: p50 of the newest calls is {value} (threshold {threshold})"
  - name: stage_errors              # >= 3 errors, and so many in the newest calls that their binomial tail
    type: adaptive                  # under the usual error rate (at least 0.5%) is below 1e-4
    signal: error_rate
    keep_firing_for: 10s
    severity: critical
    summary: "{stage}/{component} in {service} fails {value} of its newest calls (threshold {threshold})"
  - name: empty_retrievals          # half of the newest retrievals (and 30 points over usual) return nothing
    type: adaptive
    signal: empty_retrieval_rate
    min_delta: 0.3
    keep_firing_for: 10s
    severity: warning
    summary: "{value} of the newest retrievals by {component} in {service} return no document (threshold {threshold})"
  - name: token_spike               # tokens per call >= 3x usual and 100 tokens more: a prompt or loop gone wrong
    type: adaptive
    signal: tokens_per_call
    factor: 3.0
    min_delta: 100
    keep_firing_for: 10s
    severity: warning
    summary: "{stage}/{component} in {service} uses {value} tokens per call (threshold {threshold})"
"""


def builtin_rules() -> list[RuleSpec]:
    """The built-in rules, validated (what ``Config().rules`` holds)."""
    raw = yaml.safe_load("rules:\n" + BUILTIN_RULES_YAML)["rules"]
    return [RuleSpec.model_validate(item) for item in raw]
