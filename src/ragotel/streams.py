"""Stream and raw-response proxies: follow what a traced call returns lazily and end its operation exactly once.

Used by the instrumentation wrapper (``instrumentation/_base.py``) and by the stage API for generator functions
(``stages.py``). A :class:`StreamProxy` ends its operation on every exit path — exhausted, ``break``, ``close()``,
exception, context exit, garbage collection — and forwards every other attribute to the wrapped stream.
"""

from __future__ import annotations

import functools
import inspect
import weakref
from collections.abc import Callable
from typing import Any, Protocol

import wrapt

from ragotel import _guard
from ragotel.telemetry import Operation

__all__ = ["EnvelopeProxy", "StreamProxy", "StreamReader", "end_stream", "wrap_stream"]


class StreamReader(Protocol):
    """Reads a stream's chunks as they pass; must never consume, alter or hold up the stream."""

    def on_chunk(self, op: Operation, chunk: Any) -> None:
        """Called for every chunk the caller receives (after the first-chunk mark)."""

    def on_end(self, op: Operation) -> None:
        """Called once, before the operation ends, whatever way the stream ended."""


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
        if reader is not None:  # a chunk the reader cannot parse must not break the stream
            _guard.call("stream reader on_chunk", functools.partial(reader.on_chunk, op, chunk), None)

    # -- sync ------------------------------------------------------------------------------------------------------
    def __iter__(self) -> StreamProxy:
        return self

    def __next__(self) -> Any:
        return self._self_step(self.__wrapped__.__next__)

    def send(self, value: Any) -> Any:
        """Forward ``send`` to a wrapped generator, following it like ``__next__``."""
        return self._self_step(lambda: self.__wrapped__.send(value))

    def throw(self, *args: Any) -> Any:
        """Forward ``throw`` to a wrapped generator."""
        return self._self_step(lambda: self.__wrapped__.throw(*args))

    def _self_step(self, step: Callable[[], Any]) -> Any:
        op = self._self_op
        token = op.enter_step()
        try:
            chunk = step()
        except BaseException as exc:
            op.exit_step(token)
            self._self_stopped(exc, StopIteration)
            raise
        op.exit_step(token)
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
        op = self._self_op
        token = op.enter_step()
        try:
            chunk = await step()
        except BaseException as exc:
            op.exit_step(token)
            self._self_stopped(exc, StopAsyncIteration)
            raise
        op.exit_step(token)
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
