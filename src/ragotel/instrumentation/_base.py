"""The one wrapper (sync, async, streams) and the instrumentor base every library module is a table for.

A library module declares :class:`Target` rows — where to hook and which pure extractors read the call — and a
:class:`RagotelInstrumentor` subclass listing them. The wrapper here follows CONVENTIONS.md exactly:

1. suppressed → call through;  2. start the operation (guarded);  3. call the wrapped function exactly once,
re-raising the caller's own exception with a bare ``raise``;  4. read the result (guarded) and return it
unchanged — or, for a stream, wrapped in :class:`StreamProxy`, which forwards every attribute.
"""

from __future__ import annotations

import importlib
import inspect
import weakref
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final, Protocol

import wrapt
from opentelemetry.instrumentation.instrumentor import BaseInstrumentor  # type: ignore[attr-defined]
from opentelemetry.instrumentation.utils import is_instrumentation_enabled, unwrap

from ragotel import _guard
from ragotel import telemetry as _telemetry
from ragotel.telemetry import NOOP, Operation

__all__ = [
    "ENVELOPE_LAZY",
    "ENVELOPE_READY",
    "EnvelopeProxy",
    "RagotelInstrumentor",
    "StreamProxy",
    "StreamReader",
    "Target",
    "argument",
    "end_stream",
    "wrap_stream",
]

Attributes = dict[str, Any]
RequestExtractor = Callable[[Any, tuple[Any, ...], Mapping[str, Any]], Attributes | None]
ResponseExtractor = Callable[[Any, Any], Attributes | None]
ContentExtractor = Callable[[Any, tuple[Any, ...], Mapping[str, Any]], Attributes | None]


class StreamReader(Protocol):
    """Reads a stream's chunks as they pass; must never consume, alter or hold up the stream."""

    def on_chunk(self, op: Operation, chunk: Any) -> None:
        """Called for every chunk the caller receives (after the first-chunk mark)."""

    def on_end(self, op: Operation) -> None:
        """Called once, before the operation ends, whatever way the stream ended."""


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
    :data:`ENVELOPE_LAZY` (body not read: followed through :class:`EnvelopeProxy`) or None (not an envelope).
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


ENVELOPE_READY: Final = "ready"
ENVELOPE_LAZY: Final = "lazy"


def argument(args: tuple[Any, ...], kwargs: Mapping[str, Any], index: int, name: str, default: Any = None) -> Any:
    """The argument a call passed as keyword ``name`` or at position ``index`` (``self`` not counted), else default."""
    if name in kwargs:
        return kwargs[name]
    return args[index] if index < len(args) else default


def _begin(target: Target, instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> Operation | None:
    """Start the operation (instrumentation known not suppressed); None means call through untraced ("not ours")."""
    try:
        attrs = target.request(instance, args, kwargs) if target.request is not None else {}
        if attrs is None:
            return None
        op = _telemetry.current()._open(target.stage, target.component, attrs)  # suppression checked
        if target.request_content is not None and op.capture_content:
            content = target.request_content(instance, args, kwargs)
            if content:
                for key, value in content.items():
                    op.capture(key, value)
        return op
    except Exception as exc:  # noqa: BLE001 - extractor failures must not reach the caller
        _guard.report(f"{target.component} request extractor ({target.method})", exc)
        return NOOP


def _finish(
    op: Operation, target: Target, instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], result: Any
) -> Any:
    """Read the result into the operation and end it; returns ``result`` itself, or a proxy for a stream/envelope."""
    try:
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
            if reader is not None:
                return wrap_stream(result, op, reader)
        if target.response is not None:
            op.set_attributes(target.response(instance, body) or {})
        if target.response_content is not None and op.capture_content:
            for key, value in (target.response_content(instance, body) or {}).items():
                op.capture(key, value)
    except Exception as exc:  # noqa: BLE001 - extractor failures must not reach the caller
        _guard.report(f"{target.component} response extractor ({target.method})", exc)
    op.end()
    return result


def make_wrapper(target: Target, original: Any) -> Callable[..., Any]:
    """Build the wrapt wrapper for ``target``: async when the original is a coroutine function."""
    is_async = target.is_async if target.is_async is not None else inspect.iscoroutinefunction(original)

    if is_async:

        async def async_wrapper(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
            if not is_instrumentation_enabled():
                return await wrapped(*args, **kwargs)
            op = _begin(target, instance, args, kwargs)
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
        op = _begin(target, instance, args, kwargs)
        if op is None:
            return wrapped(*args, **kwargs)
        try:
            result = wrapped(*args, **kwargs)
        except BaseException as exc:
            op.fail(exc)
            raise
        return _finish(op, target, instance, args, kwargs, result)

    return sync_wrapper


# -- streams ----------------------------------------------------------------------------------------------------
def _end_stream_op(
    op: Operation, reader: StreamReader | None, exc: BaseException | None = None, early: bool = True
) -> None:
    """Let the reader finish, then end the operation; with the defaults, the finalizer of a proxy collected early."""
    if reader is not None:
        _guard.call("stream reader on_end", lambda: reader.on_end(op), None)
    op.end(exc, ended_early=early)


class StreamProxy(wrapt.ObjectProxy):  # type: ignore[type-arg]  # generic only in wrapt's stubs, not at runtime
    """Follows a sync or async stream (iterator, generator, SDK stream object) and ends its span exactly once.

    Exhausted → ended normally; ``close()``/``aclose()``/context exit before the end, or the proxy dropped and
    collected → ended early (marked ``ragotel.stream.ended_early``); an exception from the stream → ERROR.
    Every other attribute and method (``response``, ``headers``, ``parse`` ...) is forwarded to the stream.
    Each step runs with the operation's span current, so work done lazily inside the stream nests under it.
    """

    def __init__(self, wrapped: Any, op: Operation, reader: StreamReader | None) -> None:
        super().__init__(wrapped)
        self._self_op = op
        self._self_reader = reader
        self._self_seen = False
        self._self_finalizer = weakref.finalize(self, _end_stream_op, op, reader)

    # -- ending ----------------------------------------------------------------------------------------------------
    def _self_end(self, exc: BaseException | None = None, *, early: bool = False) -> None:
        finalizer = self._self_finalizer
        if not finalizer.alive:
            return
        finalizer.detach()
        _end_stream_op(self._self_op, self._self_reader, exc, early)

    def _self_stopped(self, exc: BaseException, done: type[BaseException]) -> None:
        """End on an exception out of a step: ``done`` (the stream's end) normally, ``GeneratorExit`` early."""
        if isinstance(exc, done):
            self._self_end()
        elif isinstance(exc, GeneratorExit):
            self._self_end(early=True)
        else:
            self._self_end(exc)

    def _self_exited(self, exc: BaseException | None) -> None:
        """End on context exit: early without an exception, failed with one (not on KeyboardInterrupt & co)."""
        self._self_end(exc if isinstance(exc, Exception) else None, early=exc is None)

    def _self_chunk(self, chunk: Any) -> None:
        op = self._self_op
        if not self._self_seen:
            self._self_seen = True
            op.first_chunk()
        reader = self._self_reader
        if reader is not None:
            try:
                reader.on_chunk(op, chunk)
            except Exception as exc:  # noqa: BLE001 - a chunk the reader cannot parse must not break the stream
                _guard.report("stream reader on_chunk", exc)

    # -- sync ------------------------------------------------------------------------------------------------------
    def __iter__(self) -> StreamProxy:
        return self

    def __next__(self) -> Any:
        return self._self_step(lambda: next(self.__wrapped__))

    def send(self, value: Any) -> Any:
        """Forward ``send`` to a wrapped generator, following it like ``__next__``."""
        return self._self_step(lambda: self.__wrapped__.send(value))

    def throw(self, *args: Any) -> Any:
        """Forward ``throw`` to a wrapped generator."""
        return self._self_step(lambda: self.__wrapped__.throw(*args))

    def _self_step(self, step: Callable[[], Any]) -> Any:
        with self._self_op.activated():
            try:
                chunk = step()
            except BaseException as exc:
                self._self_stopped(exc, StopIteration)
                raise
        self._self_chunk(chunk)
        return chunk

    def close(self) -> Any:
        """Close the underlying stream; a stream closed before its end is marked as ended early."""
        try:
            closer = getattr(self.__wrapped__, "close", None)
            return closer() if closer is not None else None
        finally:
            self._self_end(early=True)

    def __enter__(self) -> StreamProxy:
        enter = getattr(self.__wrapped__, "__enter__", None)
        if enter is not None:
            enter()
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            exit_ = getattr(self.__wrapped__, "__exit__", None)
            return exit_(exc_type, exc, tb) if exit_ is not None else None
        finally:
            self._self_exited(exc)

    # -- async -----------------------------------------------------------------------------------------------------
    def __aiter__(self) -> StreamProxy:
        return self

    async def __anext__(self) -> Any:
        return await self._self_astep(self.__wrapped__.__anext__)

    async def asend(self, value: Any) -> Any:
        """Forward ``asend`` to a wrapped async generator."""
        return await self._self_astep(lambda: self.__wrapped__.asend(value))

    async def athrow(self, *args: Any) -> Any:
        """Forward ``athrow`` to a wrapped async generator."""
        return await self._self_astep(lambda: self.__wrapped__.athrow(*args))

    async def _self_astep(self, step: Callable[[], Any]) -> Any:
        with self._self_op.activated():
            try:
                chunk = await step()
            except BaseException as exc:
                self._self_stopped(exc, StopAsyncIteration)
                raise
        self._self_chunk(chunk)
        return chunk

    async def aclose(self) -> Any:
        """Close the underlying async stream (``aclose`` or ``close``); marked as ended early if not finished."""
        try:
            closer = getattr(self.__wrapped__, "aclose", None) or getattr(self.__wrapped__, "close", None)
            if closer is None:
                return None
            result = closer()
            return await result if inspect.isawaitable(result) else result
        finally:
            self._self_end(early=True)

    async def __aenter__(self) -> StreamProxy:
        enter = getattr(self.__wrapped__, "__aenter__", None)
        if enter is not None:
            await enter()
        return self

    async def __aexit__(self, exc_type: Any, exc: Any, tb: Any) -> Any:
        try:
            exit_ = getattr(self.__wrapped__, "__aexit__", None)
            return await exit_(exc_type, exc, tb) if exit_ is not None else None
        finally:
            self._self_exited(exc)


def end_stream(proxy: Any, *, early: bool = True) -> None:
    """End the operation of a followed stream now, if ``proxy`` is one (for helpers closing the response directly)."""
    if isinstance(proxy, StreamProxy):
        proxy._self_end(early=early)


def wrap_stream(stream: Any, op: Operation, reader: StreamReader | None = None) -> Any:
    """Return ``stream`` followed by ``op``: the span ends exactly once, whichever way the stream ends."""
    if not op.recording:
        return stream
    return StreamProxy(stream, op, reader)


class EnvelopeProxy(wrapt.ObjectProxy):  # type: ignore[type-arg]  # generic only in wrapt's stubs, not at runtime
    """A raw-response envelope (openai ``with_raw_response`` / ``with_streaming_response``) whose body is not read yet.

    The operation stays open until the caller's first ``parse()`` (sync, or awaitable on async clients): its result
    goes through the target's stream/response handling — a stream it returns is followed by a :class:`StreamProxy`,
    which then owns the operation — and repeated parses return that same object. ``close()`` first, or the envelope
    collected unparsed, ends the operation marked as ended early; a failing ``parse()`` marks it failed. Every other
    attribute (``headers``, ``http_response``, ``request_id`` ...) is forwarded untouched.
    """

    def __init__(self, wrapped: Any, op: Operation, finish: Callable[[Any], Any]) -> None:
        super().__init__(wrapped)
        self._self_op = op
        self._self_finish = finish
        self._self_parsed: Any = None
        self._self_result: Callable[[], Any] | None = None
        self._self_finalizer = weakref.finalize(self, _end_stream_op, op, None)

    def parse(self, *args: Any, **kwargs: Any) -> Any:
        """Forward ``parse()``; the first result is followed as the call's real result."""
        try:
            parsed = self.__wrapped__.parse(*args, **kwargs)
        except BaseException as exc:
            self._self_end(exc)
            raise
        if inspect.isawaitable(parsed):
            return self._self_await(parsed)
        return self._self_take(parsed)

    async def _self_await(self, awaitable: Any) -> Any:
        try:
            parsed = await awaitable
        except BaseException as exc:
            self._self_end(exc)
            raise
        return self._self_take(parsed)

    def _self_take(self, parsed: Any) -> Any:
        ref = self._self_result
        if ref is not None and parsed is self._self_parsed:
            out = ref()
            return parsed if out is None else out
        finalizer = self._self_finalizer
        if not finalizer.alive:
            return parsed  # already ended (closed, failed) or another `to=` type: not ours to follow
        finalizer.detach()
        out = self._self_finish(parsed)
        self._self_parsed = parsed
        # Weakly held: a stream proxy the caller dropped must still be collected (and end its span).
        self._self_result = (
            (lambda: parsed) if out is parsed else _guard.call("weakref", lambda: weakref.ref(out), None)
        )
        return out

    def _self_end(self, exc: BaseException | None = None, *, early: bool = False) -> None:
        finalizer = self._self_finalizer
        if finalizer.alive:
            finalizer.detach()
            self._self_op.end(exc, ended_early=early)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_self_"):
            raise AttributeError(name)
        attr = getattr(self.__wrapped__, name)
        if name != "close":
            return attr

        def close(*args: Any, **kwargs: Any) -> Any:
            try:
                return attr(*args, **kwargs)
            finally:
                self._self_end(early=True)

        return close


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

    def instrumentation_dependencies(self) -> Collection[str]:
        """Requirement strings checked by ``BaseInstrumentor.instrument``."""
        return self.dependencies

    def _instrument(self, **kwargs: Any) -> None:
        tracer_provider = kwargs.get("tracer_provider")
        meter_provider = kwargs.get("meter_provider")
        _telemetry.use_providers(tracer_provider, meter_provider)
        self._ragotel_wrapped: list[tuple[Any, str]] = []
        seen: set[tuple[int, str]] = set()
        for target in self.targets:
            try:
                resolved = _resolve(target)
                if resolved is None:
                    _guard.report(f"{self.library}: target {target.module}.{target.method} not found", LookupError())
                    continue
                owner, name = resolved
                if (id(owner), name) in seen:
                    continue
                seen.add((id(owner), name))
                original = inspect.getattr_static(owner, name)
                func = getattr(original, "__func__", original)
                wrapt.wrap_function_wrapper(owner, name, make_wrapper(target, func))
                self._ragotel_wrapped.append((owner, name))
            except Exception as exc:  # noqa: BLE001 - one bad target must not stop the others
                _guard.warn(f"instrumenting {target.module}.{target.method}", exc)
        self._instrument_extra(**kwargs)

    def _instrument_extra(self, **kwargs: Any) -> None:
        """Hook for library-specific patches beyond the target table (override when needed)."""

    def _uninstrument_extra(self, **kwargs: Any) -> None:
        """Undo :meth:`_instrument_extra`."""

    def _uninstrument(self, **kwargs: Any) -> None:
        for owner, name in reversed(getattr(self, "_ragotel_wrapped", [])):
            try:
                unwrap(owner, name)
            except Exception as exc:  # noqa: BLE001 - restore as much as possible
                _guard.warn(f"uninstrumenting {owner!r}.{name}", exc)
        self._ragotel_wrapped = []
        self._uninstrument_extra(**kwargs)
