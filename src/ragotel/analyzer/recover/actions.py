"""Recovery actions: ``command`` (argv, never a shell), ``webhook``, ``python`` (``module:function``), ``redis_flush``.

Telemetry is untrusted: only the labels service, stage, component, rule and severity can reach an action, through
``{name}`` placeholders, and only when the value matches ``LABEL_VALUE_RE``. Each action returns an ActionResult;
``run`` blocks (the manager calls it on its pool) and reports a failure as its result.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import IO, Any, Final, Protocol

import httpx

from ragotel.analyzer.config.hooks import (
    CommandActionSpec,
    PythonActionSpec,
    RecoverySpec,
    RedisFlushActionSpec,
    WebhookActionSpec,
)
from ragotel.analyzer.config.specs import LABEL_VALUE_RE, SUBSTITUTABLE_LABELS
from ragotel.analyzer.vocabulary import url_without_credentials

__all__ = [
    "ActionResult",
    "CommandAction",
    "PythonAction",
    "RecoveryAction",
    "RedisFlushAction",
    "UnsafeLabelError",
    "WebhookAction",
    "build_action",
    "render",
]

_TAIL: Final = 2000
_BASE_ENV: Final = ("PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR")


class UnsafeLabelError(ValueError):
    """A placeholder's label is missing or its value is not safe to pass to an action."""


def render(template: str, labels: Mapping[str, str], *, argv: bool = False) -> str:
    """Replace ``{service}``-style placeholders with validated label values; raise UnsafeLabelError otherwise.

    A value must match ``LABEL_VALUE_RE`` whole; in an ``argv`` element it must not start with ``-`` either (most
    programs would read it as an option).
    """
    out = template
    for name in SUBSTITUTABLE_LABELS:
        token = "{" + name + "}"
        if token not in out:
            continue
        value = labels.get(name)
        if value is None:
            raise UnsafeLabelError(f"label {name!r} is missing from the alert")
        if not LABEL_VALUE_RE.fullmatch(value):
            raise UnsafeLabelError(f"label {name}={value[:64]!r} does not match {LABEL_VALUE_RE.pattern}")
        if argv and value.startswith("-"):
            raise UnsafeLabelError(f"label {name}={value[:64]!r} starts with '-', which a command reads as an option")
        out = out.replace(token, value)
    return out


@dataclass(frozen=True, slots=True)
class ActionResult:
    """``status``: succeeded | failed | timeout; ``detail``: exit code, output tails, keys deleted, error."""

    status: str
    detail: Mapping[str, Any] = field(default_factory=dict)


class RecoveryAction(Protocol):
    """One kind of action. ``describe`` says what would run (for the audit and dry-run) and may raise
    UnsafeLabelError; ``run`` does it within ``timeout`` seconds and reports, raising nothing it can catch."""

    type: str

    def describe(self, labels: Mapping[str, str]) -> dict[str, Any]: ...

    def run(self, labels: Mapping[str, str], alert: Mapping[str, Any], timeout: float) -> ActionResult: ...


class CommandAction:
    """A program started without a shell, in its own process group (killed whole on timeout), with a minimal
    environment (PATH, HOME, LANG, LC_ALL, TZ, TMPDIR, the variables named in ``inherit_env``, then ``env``)."""

    type = "command"

    def __init__(self, spec: CommandActionSpec) -> None:
        self._spec = spec

    def describe(self, labels: Mapping[str, str]) -> dict[str, Any]:
        return {"argv": [render(arg, labels, argv=True) for arg in self._spec.argv], "cwd": self._spec.cwd}

    def run(self, labels: Mapping[str, str], alert: Mapping[str, Any], timeout: float) -> ActionResult:
        argv = self.describe(labels)["argv"]
        # The analyzer's environment holds secrets (SMTP, tokens): a command gets only what it is given.
        inherited = {k: os.environ[k] for k in (*_BASE_ENV, *self._spec.inherit_env) if k in os.environ}
        env = {**inherited, **self._spec.env}
        # Output goes to files, not pipes: a restart script that starts a daemon leaves it holding the
        # descriptors, and reading a pipe to EOF would then wait for the daemon to exit.
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            try:
                proc = subprocess.Popen(  # noqa: S603  argv list from the configuration, labels validated, no shell
                    argv,
                    cwd=self._spec.cwd,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=err,
                    start_new_session=True,
                )
            except OSError as exc:
                return ActionResult("failed", {"error": f"{type(exc).__name__}: {exc}"})
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
                return ActionResult("timeout", {"pid": proc.pid, "stderr": _tail(err)})
            detail = {"exit_code": proc.returncode, "stdout": _tail(out), "stderr": _tail(err)}
        return ActionResult("succeeded" if proc.returncode == 0 else "failed", detail)


def _tail(f: IO[bytes]) -> str:
    f.seek(0, os.SEEK_END)
    f.seek(max(0, f.tell() - _TAIL))
    return f.read().decode(errors="replace")


class WebhookAction:
    """POST ``{"hook", "alert"}`` as JSON; 2xx is success."""

    type = "webhook"

    def __init__(self, spec: WebhookActionSpec, hook: str) -> None:
        self._spec = spec
        self._hook = hook

    def describe(self, labels: Mapping[str, str]) -> dict[str, Any]:
        return {"url": self._spec.url}

    def run(self, labels: Mapping[str, str], alert: Mapping[str, Any], timeout: float) -> ActionResult:
        headers = dict(self._spec.headers)
        for header, var in self._spec.headers_env.items():
            value = os.environ.get(var)
            if value is None:
                return ActionResult("failed", {"error": f"environment variable {var} is not set"})
            headers[header] = value
        body = {"hook": self._hook, "labels": dict(labels), "alert": dict(alert)}
        try:
            resp = httpx.post(self._spec.url, json=body, headers=headers, timeout=timeout)
        except httpx.TimeoutException as exc:
            return ActionResult("timeout", {"error": f"{type(exc).__name__}: {exc}"})
        except httpx.HTTPError as exc:
            return ActionResult("failed", {"error": f"{type(exc).__name__}: {exc}"})
        detail = {"status_code": resp.status_code, "body": resp.text[:_TAIL]}
        return ActionResult("succeeded" if 200 <= resp.status_code < 300 else "failed", detail)


class PythonAction:
    """Call ``module:function(alert=..., **kwargs)`` on its own daemon thread; past ``timeout`` it is abandoned."""

    type = "python"

    def __init__(self, spec: PythonActionSpec) -> None:
        self._spec = spec
        self._function: Callable[..., Any] | None = None

    def describe(self, labels: Mapping[str, str]) -> dict[str, Any]:
        return {"target": self._spec.target, "kwargs": dict(self._spec.kwargs)}

    def resolve(self) -> Callable[..., Any]:
        """Import the target (raises ImportError/AttributeError/TypeError with the reason)."""
        if self._function is None:
            module_name, _, attr = self._spec.target.partition(":")
            function = getattr(importlib.import_module(module_name), attr)
            if not callable(function):
                raise TypeError(f"{self._spec.target} is not callable")
            self._function = function
        return self._function

    def run(self, labels: Mapping[str, str], alert: Mapping[str, Any], timeout: float) -> ActionResult:
        outcome: dict[str, Any] = {}

        def call() -> None:
            try:
                outcome["return"] = self.resolve()(alert=dict(alert), **self._spec.kwargs)
            except BaseException as exc:  # noqa: BLE001  user code: any failure is the action's result
                outcome["error"] = f"{type(exc).__name__}: {exc}"

        thread = threading.Thread(target=call, name=f"ragotel-recovery-{self._spec.target}", daemon=True)
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            return ActionResult("timeout", {"error": f"still running after {timeout:g}s (abandoned)"})
        if "error" in outcome:
            return ActionResult("failed", {"error": outcome["error"]})
        return ActionResult("succeeded", {"return": repr(outcome.get("return"))[:_TAIL]})


class RedisFlushAction:
    """Delete keys matching a pattern with SCAN + UNLINK (non-blocking for Redis); ``*`` alone is FLUSHDB ASYNC."""

    type = "redis_flush"

    def __init__(self, spec: RedisFlushActionSpec) -> None:
        self._spec = spec

    def _url(self) -> str:
        if self._spec.url is not None:
            return self._spec.url
        value = os.environ.get(str(self._spec.url_env))
        if value is None:
            raise UnsafeLabelError(f"environment variable {self._spec.url_env} is not set")
        return value

    def describe(self, labels: Mapping[str, str]) -> dict[str, Any]:
        return {
            "pattern": render(self._spec.pattern, labels),
            "url": url_without_credentials(self._spec.url) if self._spec.url else None,
        }

    def run(self, labels: Mapping[str, str], alert: Mapping[str, Any], timeout: float) -> ActionResult:
        import redis  # noqa: PLC0415  optional dependency, only needed when such a hook is configured

        pattern = render(self._spec.pattern, labels)
        deadline = time.monotonic() + timeout
        deleted = 0
        try:
            client = redis.Redis.from_url(self._url(), socket_timeout=timeout, socket_connect_timeout=timeout)
            with client:
                if pattern == "*" and self._spec.allow_flush_all:
                    client.flushdb(asynchronous=True)
                    return ActionResult("succeeded", {"flushed": "database"})
                batch: list[Any] = []
                for key in client.scan_iter(match=pattern, count=self._spec.batch):
                    batch.append(key)
                    if len(batch) >= self._spec.batch:
                        deleted += int(client.unlink(*batch))
                        batch.clear()
                    if time.monotonic() > deadline:
                        return ActionResult("timeout", {"deleted": deleted, "pattern": pattern})
                if batch:
                    deleted += int(client.unlink(*batch))
        except redis.RedisError as exc:
            return ActionResult("failed", {"error": f"{type(exc).__name__}: {exc}", "deleted": deleted})
        return ActionResult("succeeded", {"deleted": deleted, "pattern": pattern})


def build_action(spec: RecoverySpec) -> RecoveryAction:
    """The action of a validated hook."""
    action = spec.action
    if isinstance(action, CommandActionSpec):
        return CommandAction(action)
    if isinstance(action, WebhookActionSpec):
        return WebhookAction(action, spec.name)
    if isinstance(action, PythonActionSpec):
        return PythonAction(action)
    return RedisFlushAction(action)
