"""The one wrapper (sync, async, streams) and the instrumentor base every library module is a table for.

A library module declares :class:`Target` rows — where to hook and which pure extractors read the call — and a
:class:`RagotelInstrumentor` subclass listing them. The wrapper here follows CONVENTIONS.md exactly:

1. suppressed → call through;  2. start the operation (guarded);  3. call the wrapped function exactly once,
re-raising the caller's own exception with a bare ``raise``;  4. read the result (guarded) and return it
unchanged — or, for a stream, wrapped in :class:`ragotel.streams.StreamProxy`, which forwards every attribute.
"""

from __future__ import annotations

import functools
import importlib
import inspect
import sys
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap

from ragotel import _guard, coexistence
from ragotel import telemetry as _telemetry
from ragotel.streams import EnvelopeProxy, StreamReader, wrap_stream
from ragotel.telemetry import NOOP, Operation

__all__ = [
    "ENVELOPE_LAZY",
    "ENVELOPE_READY",
    "RagotelInstrumentor",
    "Target",
    "argument",
    "db_batch_size",
    "make_wrapper",
]

Attributes = dict[str, Any]
RequestExtractor = Callable[[Any, tuple[Any, ...], Mapping[str, Any]], Attributes | None]
ResponseExtractor = Callable[[Any, Any], Attributes | None]
ContentExtractor = Callable[[Any, tuple[Any, ...], Mapping[str, Any]], Attributes | None]


@dataclass(frozen=True, slots=True)
class Target:
    """One hook point: ``module`` + ``"Class.method"`` (or a function name) and the extractors that read it.

    ``request(instance, args, kwargs)`` returns the span attributes known before the call; returning None
    means "not ours, call through untraced". ``response(instance, result)`` returns attributes read from the
    result. ``request_content`` / ``response_content`` are called only when content capture is on and return
    content attributes (already in their final attribute form). ``stream(instance, args, kwargs, result)``
    returns a :class:`StreamReader` when the result is a stream to follow, else None. ``envelope(result)`` says
    whether the result is a raw-response envelope whose ``parse()`` yields the real result (openai's
    ``with_raw_response``): :data:`ENVELOPE_READY` (body in memory: parsed now, the envelope caches it),
    :data:`ENVELOPE_LAZY` (body not read: followed through :class:`~ragotel.streams.EnvelopeProxy`) or None.
    ``follow(result, op, reader)``, for results that hold their stream (botocore's response dicts), follows that
    stream in place and returns True when it now owns the operation; without it the result itself is the stream.
    """

    module: str
    method: str
    stage: str
    component: str
    request: RequestExtractor | None = None
    response: ResponseExtractor | None = None
    request_content: ContentExtractor | None = None
    response_content: ResponseExtractor | None = None
    stream: Callable[[Any, tuple[Any, ...], Mapping[str, Any], Any], StreamReader | None] | None = None
    is_async: bool | None = None  # None: decided from the original callable
    envelope: Callable[[Any], str | None] | None = None
    follow: Callable[[Any, Operation, StreamReader], bool] | None = None


_FAILED: Final[Operation | None] = NOOP  # an extractor failed before the call: traced by the no-op operation
ENVELOPE_READY: Final = "ready"
ENVELOPE_LAZY: Final = "lazy"


def argument(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str, default: Any = None) -> Any:
    """The argument a call passed as keyword ``name`` or at position ``index`` (``self`` not counted), else default."""
    if name in kwargs:
        return kwargs[name]
    return args[index] if index < len(args) else default


def db_batch_size(count: int | None) -> int | None:
    """``db.operation.batch_size`` for ``count`` records or queries: database semconv counts two or more as a batch."""
    return count if count is not None and count >= 2 else None


def _begin(target: Target, instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Operation | None:
    """Start the operation (instrumentation known not suppressed); None means call through untraced ("not ours").

    Raises what an extractor raises: the caller guards it (:func:`make_wrapper`).
    """
    attrs = target.request(instance, args, kwargs) if target.request is not None else {}
    if attrs is None:
        return None
    # Suppression checked by the wrapper; the wrapper's guard is the one around span creation (no second one).
    op = _telemetry.current()._operation(target.stage, target.component, attrs, None, True, None)
    if target.request_content is not None and op.capture_content:
        content = target.request_content(instance, args, kwargs)
        if content:
            for key, value in content.items():
                op.capture(key, value)
    return op


def _finish(
    op: Operation, target: Target, instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], result: Any
) -> Any:
    """Read the result into the operation and end it; returns ``result`` itself, or a proxy for a stream/envelope."""
    proxy = _guard.run(_labels(target)[1], None, _read, op, target, instance, args, kwargs, result)
    if proxy is not None:
        return proxy
    op.end()
    return result


def _read(
    op: Operation, target: Target, instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], result: Any
) -> Any:
    """Read the result into the operation; a proxy now following a stream or envelope (it ends the operation)."""
    op.detach()
    body = result
    if target.envelope is not None:
        kind = target.envelope(result)
        if kind == ENVELOPE_LAZY and op.recording:
            return EnvelopeProxy(result, op, lambda parsed: _finish(op, target, instance, args, kwargs, parsed))
        if kind == ENVELOPE_READY:
            body = result.parse()
    if target.stream is not None and body is result:
        reader = target.stream(instance, args, kwargs, result)
        if reader is not None and target.follow is None:
            return wrap_stream(result, op, reader)
        if reader is not None and target.follow is not None and target.follow(result, op, reader):
            return result
    if target.response is not None:
        attrs = target.response(instance, body)
        if attrs:
            op.set_attributes(attrs)
    if target.response_content is not None and op.capture_content:
        for key, value in (target.response_content(instance, body) or {}).items():
            op.capture(key, value)
    return None


_LABELS: Final[dict[int, tuple[Target, tuple[str, str]]]] = {}


def _labels(target: Target) -> tuple[str, str]:
    """How an extractor failure of ``target`` is reported (request side, response side); built once per target.

    Keyed by identity (a Target's own hash would hash every field, extractors included, on every call).
    """
    found = _LABELS.get(id(target))
    if found is not None and found[0] is target:
        return found[1]
    labels = (
        f"{target.component} request extractor ({target.method})",
        f"{target.component} response extractor ({target.method})",
    )
    if len(_LABELS) >= 4096:  # targets are module constants: few; bounded anyway
        _LABELS.clear()
    _LABELS[id(target)] = (target, labels)
    return labels


def make_wrapper(target: Target, original: Any) -> Callable[..., Any]:
    """Build the wrapt wrapper for ``target``: async when the original is a coroutine function."""
    is_async = target.is_async if target.is_async is not None else inspect.iscoroutinefunction(original)
    where = _labels(target)[0]

    if is_async:

        async def async_wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if not is_instrumentation_enabled():
                return await wrapped(*args, **kwargs)
            op = _guard.run(where, _FAILED, _begin, target, instance, args, kwargs)
            if op is None:
                return await wrapped(*args, **kwargs)
            try:
                result = await wrapped(*args, **kwargs)
            except BaseException as exc:
                op.fail(exc)
                raise
            return _finish(op, target, instance, args, kwargs, result)

        return async_wrapper

    def sync_wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if not is_instrumentation_enabled():
            return wrapped(*args, **kwargs)
        op = _guard.run(where, _FAILED, _begin, target, instance, args, kwargs)
        if op is None:
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            op.fail(exc)
            raise
        return _finish(op, target, instance, args, kwargs, result)

    return sync_wrapper


# -- instrumentor -----------------------------------------------------------------------------------------------
def _resolve(target: Target) -> tuple[Any, str] | None:
    """Find the object that DEFINES the target attribute (wrap once, where defined, never a subclass twice)."""
    try:
        module = importlib.import_module(target.module)
    except ImportError:
        return None
    owner: Any = module
    *path, name = target.method.split(".")
    for part in path:
        owner = getattr(owner, part, None)
        if owner is None:
            return None
    if inspect.isclass(owner):
        for klass in owner.__mro__:
            if name in vars(klass):
                return klass, name
        return None
    return (owner, name) if hasattr(owner, name) else None


def _library_module(library: str) -> str | None:
    """The module whose import enables ``library`` (the registry's), None for an unregistered one."""
    from ragotel.bootstrap import LIBRARIES  # noqa: PLC0415  bootstrap is the registry; imported late, no cycle

    lib = LIBRARIES.get(library)
    return lib.module if lib is not None else None


class RagotelInstrumentor(BaseInstrumentor):  # type: ignore[misc]  # the contrib base class is untyped
    """Base for every library instrumentor: wraps each :class:`Target` where it is defined, and unwraps it.

    Subclasses set ``library`` (the registry name, e.g. ``"openai"``), ``targets`` and ``dependencies``
    (requirement strings for ``instrumentation_dependencies``). ``tracer_provider`` / ``meter_provider`` passed
    to ``instrument()`` make ragotel report to those providers (otherwise: ``ragotel.instrument()``'s, or the
    global ones). A target missing in the installed version is skipped; one that fails to patch is logged.
    """

    library: ClassVar[str] = ""
    targets: ClassVar[tuple[Target, ...]] = ()
    dependencies: ClassVar[tuple[str, ...]] = ()
    _ragotel_pending: object | None = None  # the token of the post-import hook still waiting, if any

    def instrumentation_dependencies(self) -> Collection[str]:
        """Requirement strings checked by ``BaseInstrumentor.instrument``."""
        return self.dependencies

    def _instrument(self, **kwargs: Any) -> None:
        """Patch now if the app already imported the library, else the moment it does (post-import hook).

        Deferring keeps ``opentelemetry-instrument`` start-up cheap: an installed but unused library is never
        imported by ragotel (torch behind sentence-transformers takes seconds), exactly as ``ragotel.instrument()``.
        """
        _telemetry.use_providers(kwargs.get("tracer_provider"), kwargs.get("meter_provider"))
        self._ragotel_wrapped: list[tuple[Any, str]] = []
        module = _library_module(self.library)
        if module is None or module in sys.modules:
            self._ragotel_pending = None
            self._patch(**kwargs)
            return
        token = self._ragotel_pending = object()
        wrapt.register_post_import_hook(functools.partial(self._on_import, token, kwargs), module)

    def _on_import(self, token: object, kwargs: dict[str, Any], _module: Any) -> None:
        """Post-import hook: patch unless uninstrumented (or instrumented again) meanwhile. Never raises."""
        if getattr(self, "_ragotel_pending", None) is not token:
            return
        self._ragotel_pending = None
        _guard.call(f"instrumenting {self.library}", functools.partial(self._patch, **kwargs), None)

    @property
    def waiting(self) -> bool:
        """True while instrumented but waiting for the app to import the library."""
        return getattr(self, "_ragotel_pending", None) is not None

    def _patch(self, **kwargs: Any) -> None:
        """Wrap every target, unless another instrumentation of the library is active and the mode says defer."""
        mode = kwargs.get("coexistence") or coexistence.env_mode()
        found = [
            _guard.call(f"resolving {t.module}.{t.method}", functools.partial(_resolve, t), None) for t in self.targets
        ]
        none: list[coexistence.Peer] = []
        detect = functools.partial(coexistence.active_peers, self.library, [r for r in found if r is not None])
        peers = _guard.call("detecting other instrumentations", detect, none)
        if peers and mode == "exclusive":
            _guard.call("switching off other instrumentations", functools.partial(coexistence.switch_off, peers), None)
            peers = _guard.call("detecting other instrumentations", detect, none)
        if not coexistence.instruments(self.library, mode, peers):
            return  # left to the other instrumentation (warned once)
        seen: set[tuple[int, str]] = set()
        for target in self.targets:
            where = f"instrumenting {target.module}.{target.method}"
            _guard.warned(where, functools.partial(self._wrap_target, target, seen), None)
        self._instrument_extra(**kwargs)

    def _wrap_target(self, target: Target, seen: set[tuple[int, str]]) -> None:
        """Wrap ``target`` where it is defined, unless missing in this version or already wrapped through a sibling."""
        resolved = _resolve(target)
        if resolved is None:
            _guard.report(f"{self.library}: target {target.module}.{target.method} not found", LookupError())
            return
        owner, name = resolved
        if (id(owner), name) in seen:
            return
        seen.add((id(owner), name))
        original = inspect.getattr_static(owner, name)
        func = getattr(original, "__func__", original)
        wrapt.wrap_function_wrapper(owner, name, make_wrapper(target, func))
        self._ragotel_wrapped.append((owner, name))

    def _instrument_extra(self, **kwargs: Any) -> None:
        """Hook for library-specific patches beyond the target table (override when needed)."""

    def _uninstrument_extra(self, **kwargs: Any) -> None:
        """Undo :meth:`_instrument_extra`."""

    def _uninstrument(self, **kwargs: Any) -> None:
        if self.waiting:  # never patched: the pending hook becomes a no-op
            self._ragotel_pending = None
            return
        for owner, name in reversed(getattr(self, "_ragotel_wrapped", [])):
            # restore as much as possible: one failure is logged and the others go on
            _guard.warned(f"uninstrumenting {owner!r}.{name}", functools.partial(unwrap, owner, name), None)
        self._ragotel_wrapped = []
        self._uninstrument_extra(**kwargs)
