"""Zero-code: the ``opentelemetry-instrument`` distro, configurator and post-instrument hook that make it ragotel.

``opentelemetry-instrument python app.py`` runs, in this order: the distro's ``configure()``, the configurator
(SDK providers and exporters from the ``OTEL_*`` variables), every ``opentelemetry_instrumentor`` entry point (the
``ragotel_*`` ones defer their patches to the app's import of the library), then the ``opentelemetry_post_instrument``
entry points. :func:`start`, the last, is ``ragotel.instrument()`` over the providers the configurator installed:
it adopts the entry-point instrumentors and starts the host gauges and health probes, so a zero-code process emits
what an ``instrument()`` call does, and a later ``ragotel.instrument()`` in the app returns that same handle.

Whichever distro and configurator the loader picks (``opentelemetry-distro``'s, when installed, may come first),
:func:`start` runs: only the exporter defaults differ (ours: OTLP ``http/protobuf``, as ``ragotel.instrument()``).
"""

from __future__ import annotations

import os
from typing import Any

from opentelemetry.instrumentation.distro import BaseDistro  # type: ignore[attr-defined]
from opentelemetry.sdk._configuration import _OTelSDKConfigurator

from ragotel import _guard, coexistence
from ragotel.bootstrap import instrument
from ragotel.config import ENV_LOG_AUTO_INSTRUMENTATION

__all__ = ["RagotelConfigurator", "RagotelDistro", "start"]

_DEFAULTS = {
    "OTEL_TRACES_EXPORTER": "otlp",
    "OTEL_METRICS_EXPORTER": "otlp",
    "OTEL_LOGS_EXPORTER": "otlp",
    "OTEL_EXPORTER_OTLP_PROTOCOL": "http/protobuf",  # ragotel's default; opentelemetry-distro's is grpc
}


_set_by_us: list[str] = []  # variables set here for the instrumentors only, removed again by start()


def _leave_app_logs_to_ragotel() -> None:
    """Keep opentelemetry-instrumentation-logging from adding its handler: start() adds ragotel's, filtered, at the
    configured level (see ragotel.applogs). The instrumentation's trace-context injection still runs. An explicit
    OTEL_PYTHON_LOG_AUTO_INSTRUMENTATION is left alone (and read by ragotel too)."""
    if ENV_LOG_AUTO_INSTRUMENTATION not in os.environ:
        os.environ[ENV_LOG_AUTO_INSTRUMENTATION] = "false"
        _set_by_us.append(ENV_LOG_AUTO_INSTRUMENTATION)


def _restore_environment() -> None:
    while _set_by_us:
        os.environ.pop(_set_by_us.pop(), None)


class RagotelDistro(BaseDistro):  # type: ignore[misc]  # the contrib base class is untyped
    """``OTEL_PYTHON_DISTRO=ragotel``: OTLP exporters for every signal unless the ``OTEL_*`` variables say otherwise."""

    def _configure(self, **kwargs: Any) -> None:
        for name, value in _DEFAULTS.items():
            os.environ.setdefault(name, value)
        _leave_app_logs_to_ragotel()
        _guard.call("RAGOTEL_COEXISTENCE", coexistence.exclude_registered_peers, None)


class RagotelConfigurator(_OTelSDKConfigurator):
    """``OTEL_PYTHON_CONFIGURATOR=ragotel``: the OTel SDK's own configuration from the ``OTEL_*`` variables."""

    def _configure(self, **kwargs: Any) -> None:
        super()._configure(**kwargs)  # type: ignore[no-untyped-call]  # the SDK's configurator is untyped
        if not _set_by_us:
            _leave_app_logs_to_ragotel()
        # before the loader reads OTEL_PYTHON_DISABLED_INSTRUMENTATIONS (also done by the distro, when it is ours)
        _guard.call("RAGOTEL_COEXISTENCE", coexistence.exclude_registered_peers, None)


def start() -> None:
    """``opentelemetry_post_instrument`` hook: ``ragotel.instrument()`` over the configured providers. Never raises."""
    _guard.call("restoring OTEL_PYTHON_DISABLED_INSTRUMENTATIONS", coexistence.restore_environment, None)
    _restore_environment()  # before instrument() reads the settings: the variable was ours, not the user's
    _guard.call("RAGOTEL_COEXISTENCE", coexistence.switch_off_loaded, None)
    _guard.call("starting ragotel (zero-code)", instrument, None)
