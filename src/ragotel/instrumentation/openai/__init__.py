"""OpenAI client instrumentation: chat completions, completions, embeddings and responses — sync, async, streams, raw.

Hooks the resource methods where they are defined (``Completions.create``/``parse`` and their async twins, ...), so
``client.chat.completions.stream(...)``, ``with_raw_response`` and ``with_streaming_response`` all pass through the
same hooks once. Only request parameters the caller actually passed are recorded (the client's ``omit``/``NOT_GIVEN``
placeholders and its internal defaults never are). Prompts and completions are read only with content capture on.
"""

from __future__ import annotations

import functools
from typing import Any, ClassVar, Final

import wrapt
from opentelemetry.instrumentation.utils import unwrap

from ragotel import _guard
from ragotel import semconv as sc
from ragotel.instrumentation._base import RagotelInstrumentor, Target
from ragotel.instrumentation._genai import envelope
from ragotel.instrumentation.openai import content as c
from ragotel.instrumentation.openai import extract as x
from ragotel.instrumentation.openai import streams as st
from ragotel.streams import end_stream

__all__ = ["OpenAIInstrumentor"]

_CHAT: Final = "openai.resources.chat.completions.completions"
_COMPLETIONS: Final = "openai.resources.completions"
_EMBEDDINGS: Final = "openai.resources.embeddings"
_RESPONSES: Final = "openai.resources.responses.responses"


def _targets() -> tuple[Target, ...]:
    gen, emb = sc.STAGE_GENERATION, sc.STAGE_EMBEDDING
    rows: list[Target] = []
    # (module, class, methods, request, response, request content, response content, stream, stage)
    table = (
        (_CHAT, "Completions", ("create", "parse"), x.chat_request, x.chat_response,
         c.chat_request_content, c.chat_response_content, st.chat_stream, gen),
        (_COMPLETIONS, "Completions", ("create",), x.completion_request, x.chat_response,
         c.completion_request_content, c.completion_response_content, st.completion_stream, gen),
        (_EMBEDDINGS, "Embeddings", ("create",), x.embeddings_request, x.embeddings_response,
         c.embeddings_request_content, None, None, emb),
        (_RESPONSES, "Responses", ("create", "parse"), x.responses_request, x.responses_response,
         c.responses_request_content, c.responses_response_content, st.responses_stream, gen),
    )  # fmt: skip
    for module, cls, methods, request, response, req_content, resp_content, stream, stage in table:
        for prefix, is_async in (("", False), ("Async", True)):
            for method in methods:
                rows.append(
                    Target(
                        module,
                        f"{prefix}{cls}.{method}",
                        stage,
                        x.COMPONENT,
                        request=request,
                        response=response,
                        request_content=req_content,
                        response_content=resp_content,
                        stream=stream,
                        # the async `create`s are sync functions (a decorator) returning a coroutine
                        is_async=is_async,
                        envelope=envelope,
                    )
                )
    return tuple(rows)


# The `.stream()` helpers wrap our stream in their own object and close only the HTTP response on exit:
# closing that object must also end the span (otherwise it would last until garbage collection).
_HELPER_STREAMS: Final = (
    ("openai.lib.streaming.chat._completions", "ChatCompletionStream", False),
    ("openai.lib.streaming.chat._completions", "AsyncChatCompletionStream", True),
    ("openai.lib.streaming.responses._responses", "ResponseStream", False),
    ("openai.lib.streaming.responses._responses", "AsyncResponseStream", True),
)


def _close_helper_sync(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return wrapped(*args, **kwargs)
    finally:
        raw = getattr(instance, "_raw_stream", None)
        _guard.call("ending the followed stream", lambda: end_stream(raw), None)


async def _close_helper_async(wrapped: Any, instance: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
    try:
        return await wrapped(*args, **kwargs)
    finally:
        raw = getattr(instance, "_raw_stream", None)
        _guard.call("ending the followed stream", lambda: end_stream(raw), None)


class OpenAIInstrumentor(RagotelInstrumentor):
    """Spans and metrics for the ``openai`` client (``OpenAI``, ``AsyncOpenAI``, Azure variants)."""

    library: ClassVar[str] = "openai"
    targets: ClassVar[tuple[Target, ...]] = _targets()
    dependencies: ClassVar[tuple[str, ...]] = ("openai >= 1.40",)

    def _instrument_extra(self, **kwargs: Any) -> None:
        self._ragotel_helpers: list[tuple[Any, str]] = []
        for module_name, class_name, is_async in _HELPER_STREAMS:
            # a helper missing in this version must not stop the rest
            wrap = functools.partial(self._wrap_helper, module_name, class_name, is_async)
            _guard.call(f"openai: stream helper {module_name}.{class_name}", wrap, None)

    def _wrap_helper(self, module_name: str, class_name: str, is_async: bool) -> None:
        module = __import__(module_name, fromlist=[class_name])
        owner = getattr(module, class_name)
        if "close" not in vars(owner):
            return
        wrapt.wrap_function_wrapper(owner, "close", _close_helper_async if is_async else _close_helper_sync)
        self._ragotel_helpers.append((owner, "close"))

    def _uninstrument_extra(self, **kwargs: Any) -> None:
        for owner, name in getattr(self, "_ragotel_helpers", []):
            _guard.call(f"unwrapping {owner!r}.{name}", functools.partial(unwrap, owner, name), None)
        self._ragotel_helpers = []
