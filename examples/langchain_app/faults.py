"""Fault injection switches: slow retrieval, LLM errors, vector store unavailable, memory growth.

Each switch can be set from the environment (``RAGAPP_FAULT_*``), the CLI (``--fault name[=value]``) or the HTTP
API (``POST /faults``). All methods are thread-safe.
"""

from __future__ import annotations

import math
import random
import threading
import time
from collections.abc import Mapping
from typing import Any, Final

__all__ = ["FAULTS", "FaultError", "Faults", "LLMFaultError", "StoreUnavailableError"]

# name -> (environment variable, default value when switched on without a value, meaning of the value)
FAULTS: Final[dict[str, tuple[str, float, str]]] = {
    "slow-retrieval": ("RAGAPP_FAULT_SLOW_RETRIEVAL", 1.5, "seconds added to every retrieval"),
    "llm-errors": ("RAGAPP_FAULT_LLM_ERRORS", 1.0, "fraction of LLM calls that fail (0..1)"),
    "store-unavailable": ("RAGAPP_FAULT_STORE_UNAVAILABLE", 1.0, "1: every vector store call fails"),
    "memory-growth": ("RAGAPP_FAULT_MEMORY_GROWTH", 20.0, "MiB of memory leaked per second"),
}
MEMORY_GROWTH_CAP_MIB: Final = 512.0  # the leak stops growing here, so a forgotten switch cannot take the host down


class FaultError(ValueError):
    """A fault name or value that is not understood."""


class StoreUnavailableError(ConnectionError):
    """Injected: the vector store does not answer."""


class LLMFaultError(RuntimeError):
    """Injected: the LLM endpoint answered with an error."""


class Faults:
    """The current switches; 0 means off. ``memory-growth`` runs a leaking thread while it is on."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._values: dict[str, float] = dict.fromkeys(FAULTS, 0.0)
        self._leak: list[bytes] = []
        self._leak_stop = threading.Event()
        self._leak_thread: threading.Thread | None = None
        self._random = random.Random(0)  # noqa: S311  fault sampling, not cryptography

    # -- setting --------------------------------------------------------------------------------------------------
    @staticmethod
    def parse(name: str, value: Any = None) -> tuple[str, float]:
        """Validate one switch: a known name and a non-negative number (None, True, "on" = its default)."""
        key = name.strip().lower().replace("_", "-")
        if key not in FAULTS:
            raise FaultError(f"unknown fault {name!r}; expected one of {', '.join(FAULTS)}")
        default = FAULTS[key][1]
        if value is None or value is True or (isinstance(value, str) and value.strip().lower() in ("on", "true")):
            return key, default
        if value is False or (isinstance(value, str) and value.strip().lower() in ("off", "false", "")):
            return key, 0.0
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise FaultError(f"fault {key}: expected a number ({FAULTS[key][2]}), got {value!r}") from None
        if number < 0 or math.isnan(number):
            raise FaultError(f"fault {key}: expected a number >= 0 ({FAULTS[key][2]}), got {value!r}")
        if key == "llm-errors" and number > 1:
            raise FaultError(f"fault {key}: expected a fraction from 0 to 1, got {value!r}")
        return key, number

    def set(self, name: str, value: Any = None) -> float:
        """Set one switch (see :meth:`parse`); return the value now in force."""
        key, number = self.parse(name, value)
        with self._lock:
            self._values[key] = number
        if key == "memory-growth":
            self._update_leak(number)
        return number

    def update(self, switches: Mapping[str, Any]) -> dict[str, float]:
        """Set several switches atomically with respect to validation: all are checked before any is applied."""
        parsed = [self.parse(name, value) for name, value in switches.items()]
        for key, number in parsed:
            self.set(key, number)
        return self.snapshot()

    def clear(self) -> None:
        """Switch every fault off and free the leaked memory."""
        for key in FAULTS:
            self.set(key, 0.0)

    def load_env(self, env: Mapping[str, str]) -> None:
        """Apply the ``RAGAPP_FAULT_*`` variables that are set."""
        for key, (variable, _, _) in FAULTS.items():
            if env.get(variable, "").strip():
                try:
                    self.set(key, env[variable])
                except FaultError as exc:
                    raise FaultError(f"{variable}: {exc}") from None

    def snapshot(self) -> dict[str, float]:
        """The current switches."""
        with self._lock:
            return dict(self._values)

    def value(self, name: str) -> float:
        """One switch's value."""
        with self._lock:
            return self._values[name]

    @property
    def leaked_bytes(self) -> int:
        """How much memory the memory-growth fault holds now."""
        return sum(len(b) for b in list(self._leak))

    # -- effects (called by the app) -------------------------------------------------------------------------------
    def before_retrieval(self) -> None:
        """Sleep for slow-retrieval, raise StoreUnavailableError for store-unavailable."""
        self.check_store()
        delay = self.value("slow-retrieval")
        if delay > 0:
            time.sleep(delay)

    def check_store(self) -> None:
        """Raise StoreUnavailableError while the store-unavailable switch is on."""
        if self.value("store-unavailable") > 0:
            raise StoreUnavailableError("vector store unavailable (injected fault store-unavailable)")

    def before_llm_call(self) -> None:
        """Raise LLMFaultError for the configured fraction of calls."""
        rate = self.value("llm-errors")
        if rate > 0:
            with self._lock:
                draw = self._random.random()
            if draw < rate:
                raise LLMFaultError("LLM endpoint returned HTTP 500 (injected fault llm-errors)")

    # -- memory growth -----------------------------------------------------------------------------------------------
    def _update_leak(self, mib_per_s: float) -> None:
        with self._lock:
            thread = self._leak_thread
            if mib_per_s > 0 and thread is None:
                self._leak_stop.clear()
                thread = threading.Thread(target=self._leak_loop, name="ragapp-memory-growth", daemon=True)
                self._leak_thread = thread
                thread.start()
                return
            if mib_per_s > 0 or thread is None:
                return
            self._leak_stop.set()
            self._leak_thread = None
        thread.join(timeout=5)
        self._leak.clear()

    def _leak_loop(self) -> None:
        tick = 0.1
        while not self._leak_stop.wait(tick):
            rate = self.value("memory-growth")
            if rate <= 0 or self.leaked_bytes >= MEMORY_GROWTH_CAP_MIB * 1024 * 1024:
                continue
            # b"x" * n writes every page, so the growth is resident memory, not just reserved address space.
            self._leak.append(b"x" * int(rate * tick * 1024 * 1024))
