"""Telemetry: opens operations for the instrumentations and the stage API, and which Telemetry is current.

:class:`Telemetry` is the :class:`~ragotel.instruments.Instruments` of one provider pair plus ``start()``;
``current()`` is the one wrappers and stages report to (a ``testing.capture()`` in progress, else
``instrument()``'s, else one on the global providers). The operation itself lives in :mod:`ragotel.operation`.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics, trace
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from ragotel import _guard
from ragotel import semconv as sc
from ragotel.config import (
    DEFAULT_CAPTURE_MAX_LENGTH,
    ENV_CAPTURE,
    ENV_CAPTURE_MAX_LENGTH,
    ENV_OPENINFERENCE,
    env_bool,
    env_int,
)
from ragotel.instruments import VERSION, Instruments
from ragotel.operation import NOOP, OP_KEY, VECTOR_DB_WATCH_KEY, MergedOperation, Operation, Started

__all__ = [
    "NOOP",
    "VERSION",
    "Operation",
    "Telemetry",
    "current",
    "current_operation",
    "pop",
    "push",
    "set_default",
    "use_providers",
]


class Telemetry(Instruments):
    """The instruments of one tracer/meter provider pair, and the operations opened on them (see Instruments)."""

    def start(
        self,
        stage: str,
        component: str,
        attributes: dict[str, Any] | None = None,
        *,
        name: str | None = None,
        attach: bool = True,
    ) -> Operation:
        """Start an operation for one step; returns :data:`NOOP` when instrumentation is suppressed.

        A step of the same stage directly inside a running one (a framework calling a provider) merges into it:
        one span, counted once in every metric, carrying the inner step's more precise attributes.
        Never raises.
        """
        if not is_instrumentation_enabled():
            return NOOP
        return self._open(stage, component, attributes, name, attach)

    def _open(
        self,
        stage: str,
        component: str,
        attributes: dict[str, Any] | None,
        name: str | None = None,
        attach: bool = True,
        started: Started | None = None,
    ) -> Operation:
        """:meth:`start` for callers that have just checked instrumentation is not suppressed (the wrappers).

        ``started`` backdates the span and timer of a step recorded only after it ran (see
        :data:`~ragotel.operation.VECTOR_DB_WATCH_KEY`).
        """
        # The single guard around span creation: a failure gives the no-op operation.
        return _guard.run("Telemetry.start", NOOP, self._operation, stage, component, attributes, name, attach, started)

    def _operation(
        self,
        stage: str,
        component: str,
        attributes: dict[str, Any] | None,
        name: str | None,
        attach: bool,
        started: Started | None,
    ) -> Operation:
        ctx = otel_context.get_current()
        parent = otel_context.get_value(OP_KEY, ctx)
        if stage == sc.STAGE_VECTOR_DB:
            watch = otel_context.get_value(VECTOR_DB_WATCH_KEY, ctx)
            if callable(watch):
                watch()
        if (
            isinstance(parent, Operation)
            and parent.stage == stage
            and not parent.ended
            and trace.get_current_span(ctx) is parent.span
        ):
            return MergedOperation(parent, attributes, name, attach)
        return Operation(self, stage, component, attributes, name, attach, ctx, started)


# -- the current Telemetry ------------------------------------------------------------------------------------------
_lock = threading.Lock()
_default: Telemetry | None = None
_stack: list[Telemetry] = []


def current() -> Telemetry:
    """The Telemetry wrappers and stages report to: a capture() in progress, else instrument()'s, else the globals."""
    if _stack:
        return _stack[-1]
    tel = _default
    if tel is None:
        with _lock:
            if _default is None:
                # No instrument() call (e.g. `opentelemetry-instrument python app.py` loaded the instrumentors):
                # the content switches still come from the standard environment variables.
                env = os.environ
                set_default(
                    Telemetry(
                        capture_content=env_bool(env, ENV_CAPTURE, False),
                        capture_max_length=env_int(env, ENV_CAPTURE_MAX_LENGTH, DEFAULT_CAPTURE_MAX_LENGTH, minimum=1),
                        openinference=env_bool(env, ENV_OPENINFERENCE, False),
                    )
                )
            tel = _default
    assert tel is not None
    return tel


def current_operation() -> Operation | None:
    """The ragotel operation current in this context (still running), if any."""
    op = otel_context.get_value(OP_KEY)
    return op if isinstance(op, Operation) and not op.ended else None


def set_default(tel: Telemetry | None) -> None:
    """Replace the process-wide Telemetry (instrument() does this; None falls back to the global providers)."""
    global _default
    _default = tel


def use_providers(tracer_provider: trace.TracerProvider | None, meter_provider: metrics.MeterProvider | None) -> None:
    """Report to these providers from now on, unless the default Telemetry already uses them (keeps its settings)."""
    if tracer_provider is None and meter_provider is None:
        return
    with _lock:
        tel = _default
        if (
            tel is not None
            and (tracer_provider is None or tracer_provider is tel.tracer_provider)
            and (meter_provider is None or meter_provider is tel.meter_provider)
        ):
            return
    set_default(Telemetry(tracer_provider, meter_provider))


def push(tel: Telemetry) -> None:
    """Make ``tel`` current until :func:`pop` (used by ``ragotel.testing.capture``)."""
    with _lock:
        _stack.append(tel)


def pop(tel: Telemetry) -> None:
    """Undo :func:`push` of ``tel``."""
    with _lock:
        if tel in _stack:
            _stack.remove(tel)
