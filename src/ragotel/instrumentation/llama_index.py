"""LlamaIndex: query engines, retrievers, LLMs and embeddings as pipeline/retrieval/generation/embedding spans.

Two hooks, each where it is cleanest:

* LlamaIndex's own instrumentation dispatcher for calls that return a value. LlamaIndex wraps every
  implementation of ``BaseLLM.chat/complete``, ``BaseEmbedding.get_*_embedding*``, ``BaseRetriever.retrieve`` and
  ``BaseQueryEngine.query`` (sync and async) — in every subclass, including integrations imported after
  ``instrument()`` — in a dispatcher span; one span handler on the root dispatcher maps them to operations:
  ``span_enter`` starts the operation and makes it current (a provider call inside, e.g. an instrumented OpenAI
  client, merges into it or nests under it), ``span_exit`` / ``span_drop`` end it (ERROR + ``error.type``).
* The stream methods (``stream_chat``, ``astream_chat``, ``stream_complete``, ``astream_complete``) are wrapped
  by the common wrapper on each ``BaseLLM`` subclass that defines them — those loaded at ``instrument()`` and,
  through ``BaseLLM.__init_subclass__``, those defined later — because their generator must be followed by a
  :class:`~ragotel.streams.StreamProxy`: a dispatcher handler cannot replace the result, and the
  generator's steps (where LlamaIndex calls the provider lazily) must run with the operation current so the
  provider call merges instead of making a second generation span. The proxy ends the span on every exit path.

A query engine's ``query`` is a ``pipeline`` span only when no ragotel operation is running already; an LLM or
embedding call made by another LlamaIndex LLM/embedding step (``CustomLLM.chat`` → ``complete``) is part of it,
not a second span. Handlers and wrappers never touch arguments or results and keep no state beyond the calls in
flight; the dispatcher isolates its handlers, and ours are guarded besides.
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import wrapt
from opentelemetry.instrumentation.utils import is_instrumentation_enabled

from ragotel import _guard
from ragotel import semconv as sc
from ragotel import telemetry as _telemetry
from ragotel.bounds import items
from ragotel.instrumentation._base import RagotelInstrumentor, Target, make_wrapper
from ragotel.telemetry import Operation

__all__ = ["LlamaIndexInstrumentor"]

COMPONENT: Final = "llama_index"
_UNKNOWN: Final = "unknown"  # LlamaIndex's placeholder model name: not worth recording

Args = Mapping[str, Any]


# -- request extractors: (instance, method, bound arguments) -> attributes ----------------------------------------
def _provider(cls: type) -> str:
    """``llama_index.llms.openai.base`` → ``openai``; classes of llama-index-core itself → ``llama_index``."""
    parts = cls.__module__.split(".")
    if len(parts) > 2 and parts[0] == "llama_index" and parts[1] in ("llms", "embeddings"):
        return parts[2]
    return COMPONENT


def _known(value: Any) -> str | None:
    return value if isinstance(value, str) and value and value != _UNKNOWN else None


def _llm_model(instance: Any) -> str | None:
    for field in ("model", "model_name"):
        name = _known(getattr(instance, field, None))
        if name is not None:
            return name
    return _known(getattr(getattr(instance, "metadata", None), "model_name", None))


def _first(args: Args, name: str) -> Any:
    """An argument by name, or the first positional one when LlamaIndex's callback wrapper took ``*args``."""
    if name in args:
        return args[name]
    positional = args.get("args") or ()
    if positional:
        return positional[0]
    return (args.get("kwargs") or {}).get(name)


def _generation_request(instance: Any, method: str, args: Args) -> dict[str, Any]:
    attrs: dict[str, Any] = {
        sc.GEN_AI_OPERATION_NAME: sc.OP_CHAT if "chat" in method else sc.OP_TEXT_COMPLETION,
        sc.GEN_AI_PROVIDER_NAME: _provider(type(instance)),
        sc.GEN_AI_REQUEST_MODEL: _llm_model(instance),
    }
    if method.startswith(("stream", "astream")):
        attrs[sc.GEN_AI_REQUEST_STREAM] = True
    temperature = getattr(instance, "temperature", None)
    if isinstance(temperature, int | float) and not isinstance(temperature, bool):
        attrs[sc.GEN_AI_REQUEST_TEMPERATURE] = float(temperature)
    max_tokens = getattr(instance, "max_tokens", None)
    if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
        attrs[sc.GEN_AI_REQUEST_MAX_TOKENS] = max_tokens
    return attrs


def _embedding_request(instance: Any, method: str, args: Args) -> dict[str, Any]:
    texts = args.get("texts")
    return {
        sc.GEN_AI_OPERATION_NAME: sc.OP_EMBEDDINGS,
        sc.GEN_AI_PROVIDER_NAME: _provider(type(instance)),
        sc.GEN_AI_REQUEST_MODEL: _known(getattr(instance, "model_name", None)),
        sc.RAGOTEL_EMBEDDING_BATCH_SIZE: len(texts) if isinstance(texts, list | tuple) else 1,
    }


def _retrieval_request(instance: Any, method: str, args: Args) -> dict[str, Any]:
    store = getattr(instance, "_vector_store", None)
    top_k = getattr(instance, "_similarity_top_k", None)
    return {
        sc.GEN_AI_OPERATION_NAME: sc.OP_RETRIEVAL,
        # A class name, not an index id: span names must stay low-cardinality.
        sc.GEN_AI_DATA_SOURCE_ID: type(store).__name__ if store is not None else type(instance).__name__,
        sc.GEN_AI_RETRIEVAL_TOP_K: top_k if isinstance(top_k, int) and not isinstance(top_k, bool) else None,
    }


def _pipeline_request(instance: Any, method: str, args: Args) -> dict[str, Any]:
    return {sc.RAGOTEL_PIPELINE_NAME: type(instance).__name__}


# -- response extractors: (instance, result) -> attributes -------------------------------------------------------
def _field(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, Mapping) else getattr(obj, name, None)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _generation_response(instance: Any, result: Any) -> dict[str, Any] | None:
    """Usage, response model and finish reasons from a ChatResponse/CompletionResponse's provider ``raw`` payload."""
    if result is None:
        return None
    raw = getattr(result, "raw", None)
    extra = getattr(result, "additional_kwargs", None) or {}
    usage = _field(raw, "usage") if raw is not None else None
    attrs: dict[str, Any] = {
        sc.GEN_AI_USAGE_INPUT_TOKENS: _int(_field(usage, "prompt_tokens")) or _int(_field(usage, "input_tokens")),
        sc.GEN_AI_USAGE_OUTPUT_TOKENS: _int(_field(usage, "completion_tokens")) or _int(_field(usage, "output_tokens")),
    }
    if attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] is None and isinstance(extra, Mapping):
        attrs[sc.GEN_AI_USAGE_INPUT_TOKENS] = _int(extra.get("prompt_tokens"))
        attrs[sc.GEN_AI_USAGE_OUTPUT_TOKENS] = _int(extra.get("completion_tokens"))
    if raw is not None:
        model = _field(raw, "model")
        attrs[sc.GEN_AI_RESPONSE_MODEL] = model if isinstance(model, str) else None
        choices = _field(raw, "choices")
        if isinstance(choices, list):
            reasons = [r for r in (_field(c, "finish_reason") for c in items(choices)) if isinstance(r, str)]
            attrs[sc.GEN_AI_RESPONSE_FINISH_REASONS] = reasons or None
    return attrs


def _embedding_response(instance: Any, result: Any) -> dict[str, Any] | None:
    vector = result[0] if isinstance(result, list) and result and isinstance(result[0], list) else result
    return {sc.GEN_AI_EMBEDDINGS_DIMENSION_COUNT: len(vector)} if isinstance(vector, list) and vector else None


def _scored(result: Any) -> list[tuple[str, float | None]]:
    return [(str(n.node.node_id), n.score) for n in items(result)] if isinstance(result, list) else []


def _retrieval_response(instance: Any, result: Any) -> dict[str, Any] | None:
    found = _scored(result)
    scores = [float(s) for _, s in found if isinstance(s, int | float)]
    return {
        sc.RAGOTEL_RETRIEVAL_DOCUMENT_COUNT: len(result) if isinstance(result, list) else 0,
        sc.RAGOTEL_RETRIEVAL_TOP_SCORE: max(scores) if scores else None,
    }


# -- content (only with content capture on) ---------------------------------------------------------------------
def _query_text(args: Args) -> str | None:
    query = _first(args, "str_or_query_bundle")
    text = getattr(query, "query_str", query)
    return text if isinstance(text, str) else None


def _message(message: Any) -> dict[str, Any]:
    role = getattr(message, "role", None)
    return {"role": str(getattr(role, "value", role)), "content": getattr(message, "content", None)}


def _generation_content(instance: Any, method: str, args: Args) -> dict[str, Any] | None:
    if "chat" in method:
        messages = _first(args, "messages")
        return {sc.GEN_AI_INPUT_MESSAGES: [_message(m) for m in items(messages)]}
    prompt = _first(args, "prompt")
    return {sc.GEN_AI_INPUT_MESSAGES: [{"role": "user", "content": prompt}]} if isinstance(prompt, str) else None


def _generation_result_content(instance: Any, result: Any) -> dict[str, Any] | None:
    message = getattr(result, "message", None)
    if message is not None:
        return {sc.GEN_AI_OUTPUT_MESSAGES: [_message(message)]}
    text = getattr(result, "text", None)
    return {sc.GEN_AI_OUTPUT_MESSAGES: [{"role": "assistant", "content": text}]} if isinstance(text, str) else None


def _embedding_content(instance: Any, method: str, args: Args) -> dict[str, Any] | None:
    texts = args.get("texts")
    if texts is None:
        texts = [args.get("query", args.get("text"))]
    return {sc.RAGOTEL_INPUT: [t for t in items(texts) if isinstance(t, str)]}


def _retrieval_content(instance: Any, method: str, args: Args) -> dict[str, Any] | None:
    text = _query_text(args)
    return {sc.GEN_AI_RETRIEVAL_QUERY_TEXT: text} if text is not None else None


def _retrieval_result_content(instance: Any, result: Any) -> dict[str, Any] | None:
    if not isinstance(result, list):
        return None
    documents = [{"id": str(n.node.node_id), "score": n.score, "content": n.node.get_content()} for n in items(result)]
    return {sc.RAGOTEL_RETRIEVAL_DOCUMENT_IDS: [d["id"] for d in documents], sc.GEN_AI_RETRIEVAL_DOCUMENTS: documents}


def _pipeline_content(instance: Any, method: str, args: Args) -> dict[str, Any] | None:
    text = _query_text(args)
    return {sc.RAGOTEL_INPUT: text} if text is not None else None


def _pipeline_result_content(instance: Any, result: Any) -> dict[str, Any] | None:
    text = getattr(result, "response", None)
    return {sc.RAGOTEL_OUTPUT: text} if isinstance(text, str) else None


# -- the method table --------------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class _Step:
    """How one kind of LlamaIndex call maps to an operation."""

    stage: str
    request: Callable[[Any, str, Args], dict[str, Any]]
    response: Callable[[Any, Any], dict[str, Any] | None] | None = None
    request_content: Callable[[Any, str, Args], dict[str, Any] | None] | None = None
    response_content: Callable[[Any, Any], dict[str, Any] | None] | None = None


_GENERATION: Final = _Step(
    sc.STAGE_GENERATION, _generation_request, _generation_response, _generation_content, _generation_result_content
)
_EMBEDDING: Final = _Step(sc.STAGE_EMBEDDING, _embedding_request, _embedding_response, _embedding_content)
_RETRIEVAL: Final = _Step(
    sc.STAGE_RETRIEVAL, _retrieval_request, _retrieval_response, _retrieval_content, _retrieval_result_content
)
_PIPELINE: Final = _Step(sc.STAGE_PIPELINE, _pipeline_request, None, _pipeline_content, _pipeline_result_content)

# (base class path, step, methods): a method counts when the instance is a subclass of the base.
_TABLE: Final = (
    ("llama_index.core.base.llms.base.BaseLLM", _GENERATION, ("chat", "achat", "complete", "acomplete")),
    (
        "llama_index.core.base.embeddings.base.BaseEmbedding",
        _EMBEDDING,
        (
            "get_query_embedding",
            "aget_query_embedding",
            "get_text_embedding",
            "aget_text_embedding",
            "get_text_embedding_batch",
            "aget_text_embedding_batch",
        ),
    ),
    ("llama_index.core.base.base_retriever.BaseRetriever", _RETRIEVAL, ("retrieve", "aretrieve")),
    ("llama_index.core.base.base_query_engine.BaseQueryEngine", _PIPELINE, ("query", "aquery")),
)
_METHODS: Final = frozenset(m for _, _, methods in _TABLE for m in methods)
_STREAM_METHODS: Final = ("stream_chat", "astream_chat", "stream_complete", "astream_complete")


@functools.lru_cache(maxsize=1)
def _bases() -> tuple[tuple[type, _Step, frozenset[str]], ...]:
    found = []
    for path, step, methods in _TABLE:
        module, _, name = path.rpartition(".")
        found.append((getattr(importlib.import_module(module), name), step, frozenset(methods)))
    return tuple(found)


_classified: dict[tuple[type, str], _Step | None] = {}


def _classify(cls: type, method: str) -> _Step | None:
    key = (cls, method)
    try:
        return _classified[key]
    except KeyError:
        pass
    found = None
    for base, step, methods in _bases():
        if method in methods and issubclass(cls, base):
            found = step
            break
    if len(_classified) > 4096:  # bounded: classes are few, but never grow without limit
        _classified.clear()
    _classified[key] = found
    return found


def _inside_llama_step(stage: str) -> bool:
    """True when a LlamaIndex step of ``stage`` is already current: LlamaIndex calling itself within one step."""
    current = _telemetry.current_operation()
    return current is not None and current.stage == stage and current.component == COMPONENT


class _Calls:
    """The operations of the dispatcher spans in flight, keyed by span id (``Class.method-<uuid4>``)."""

    def __init__(self) -> None:
        self.ops: dict[str, tuple[Operation, _Step]] = {}

    def enter(self, id_: str, bound_args: inspect.BoundArguments, instance: Any) -> None:
        if instance is None or not is_instrumentation_enabled():
            return
        method = id_.partition("-")[0].rpartition(".")[2]
        if method not in _METHODS:
            return
        step = _classify(type(instance), method)
        if step is None:
            return
        if step.stage == sc.STAGE_PIPELINE and _telemetry.current_operation() is not None:
            return  # a query engine inside a running step (a user pipeline, a router engine, an agent tool)
        if _inside_llama_step(step.stage):
            return
        args = bound_args.arguments
        op = _telemetry.current()._open(step.stage, COMPONENT, step.request(instance, method, args))
        if not op.recording:
            return
        if step.request_content is not None and op.capture_content:
            for key, value in (step.request_content(instance, method, args) or {}).items():
                op.capture(key, value)
        self.ops[id_] = (op, step)

    def exit(self, id_: str, instance: Any, result: Any) -> None:
        entry = self.ops.pop(id_, None)
        if entry is None:
            return
        op, step = entry
        try:
            op.detach()
            if step.response is not None:
                op.set_attributes(step.response(instance, result) or {})
            if step.response_content is not None and op.capture_content:
                for key, value in (step.response_content(instance, result) or {}).items():
                    op.capture(key, value)
        except Exception as exc:  # noqa: BLE001 - a result of an unexpected shape must not reach the caller
            _guard.report("llama_index response extractor", exc)
        op.end()

    def drop(self, id_: str, err: BaseException | None) -> None:
        entry = self.ops.pop(id_, None)
        if entry is not None:
            entry[0].end(err)


@functools.lru_cache(maxsize=1)
def _span_handler_class() -> type:
    """The dispatcher span handler class (defined lazily: it subclasses LlamaIndex's pydantic base)."""
    from llama_index.core.instrumentation.span_handlers import BaseSpanHandler  # noqa: PLC0415 - optional library, imported only when instrumenting
    from pydantic import PrivateAttr  # noqa: PLC0415 - optional library, imported only when instrumenting

    class RagotelSpanHandler(BaseSpanHandler[Any]):
        """Maps LlamaIndex dispatcher spans to ragotel operations (never raises)."""

        _calls: _Calls = PrivateAttr()

        def __init__(self, calls: _Calls) -> None:
            super().__init__()
            self._calls = calls

        @classmethod
        def class_name(cls) -> str:
            return "RagotelSpanHandler"

        def span_enter(
            self,
            id_: str,
            bound_args: inspect.BoundArguments,
            instance: Any = None,
            parent_id: str | None = None,
            tags: dict[str, Any] | None = None,
            **kwargs: Any,
        ) -> None:
            _guard.call("llama_index span_enter", lambda: self._calls.enter(id_, bound_args, instance), None)

        def span_exit(
            self,
            id_: str,
            bound_args: inspect.BoundArguments,
            instance: Any = None,
            result: Any = None,
            **kwargs: Any,
        ) -> None:
            _guard.call("llama_index span_exit", lambda: self._calls.exit(id_, instance, result), None)

        def span_drop(
            self,
            id_: str,
            bound_args: inspect.BoundArguments,
            instance: Any = None,
            err: BaseException | None = None,
            **kwargs: Any,
        ) -> None:
            _guard.call("llama_index span_drop", lambda: self._calls.drop(id_, err), None)

        # Required by the base class; unused because the three methods above are overridden.
        def new_span(self, *args: Any, **kwargs: Any) -> None:
            return None

        def prepare_to_exit_span(self, *args: Any, **kwargs: Any) -> None:
            return None

        def prepare_to_drop_span(self, *args: Any, **kwargs: Any) -> None:
            return None

    return RagotelSpanHandler


# -- streamed LLM calls ------------------------------------------------------------------------------------------
def _stream_request(
    method: str, patcher: _StreamPatcher
) -> Callable[[Any, tuple[Any, ...], Mapping[str, Any]], dict[str, Any] | None]:
    def request(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
        if not patcher.active:
            return None  # uninstrumented, but our wrapper is still inside someone else's: call through
        if _inside_llama_step(sc.STAGE_GENERATION):
            return None  # e.g. CustomLLM.stream_chat -> stream_complete, or an override calling super()
        return _generation_request(instance, method, kwargs)

    return request


def _stream_content(method: str) -> Callable[[Any, tuple[Any, ...], Mapping[str, Any]], dict[str, Any] | None]:
    def request_content(instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any]) -> dict[str, Any] | None:
        return _generation_content(instance, method, {"args": args, "kwargs": kwargs})

    return request_content


class _StreamReader:
    """Keeps the last chunk: LlamaIndex's final chunk carries the whole text and the provider's usage."""

    __slots__ = ("last",)

    def __init__(self) -> None:
        self.last: Any = None

    def on_chunk(self, op: Operation, chunk: Any) -> None:
        self.last = chunk

    def on_end(self, op: Operation) -> None:
        if self.last is None:
            return
        op.set_attributes(_generation_response(None, self.last) or {})
        if op.capture_content:
            for key, value in (_generation_result_content(None, self.last) or {}).items():
                op.capture(key, value)


def _stream_reader(
    instance: Any, args: tuple[Any, ...], kwargs: Mapping[str, Any], result: Any
) -> _StreamReader | None:
    return _StreamReader() if inspect.isgenerator(result) or inspect.isasyncgen(result) else None


class _StreamPatcher:
    """Wraps the stream methods each ``BaseLLM`` subclass defines, now and in classes defined later; undoes it."""

    def __init__(self) -> None:
        self.wrapped: list[tuple[type, str, Any, Any]] = []  # (class, name, original, our wrapper)
        self.seen: set[int] = set()
        self.base: type | None = None
        self.active = True

    def patch_class(self, cls: type) -> None:
        if id(cls) in self.seen:
            return
        self.seen.add(id(cls))
        for name in _STREAM_METHODS:
            original = vars(cls).get(name)
            if original is None or not callable(original) or getattr(original, "__isabstractmethod__", False):
                continue
            target = Target(
                cls.__module__,
                f"{cls.__qualname__}.{name}",
                sc.STAGE_GENERATION,
                COMPONENT,
                request=_stream_request(name, self),
                request_content=_stream_content(name),
                stream=_stream_reader,
            )
            try:
                wrapper = wrapt.FunctionWrapper(original, make_wrapper(target, getattr(original, "__func__", original)))
                type.__setattr__(cls, name, wrapper)
                self.wrapped.append((cls, name, original, wrapper))
            except Exception as exc:  # noqa: BLE001 - one class that cannot be patched must not stop the others
                _guard.report(f"llama_index: wrapping {cls.__qualname__}.{name}", exc)

    def install(self, base: type) -> None:
        pending = [base]
        while pending:
            cls = pending.pop()
            self.patch_class(cls)
            pending.extend(cls.__subclasses__())
        if "__init_subclass__" in vars(base):
            return  # LlamaIndex defines its own one day: classes defined later then go untraced, nothing breaks
        patcher = self
        above: Any = base  # the next __init_subclass__ after `base` in each new class's MRO (DispatcherSpanMixin's)

        def __init_subclass__(cls: Any, /, **kwargs: Any) -> None:
            super(above, cls).__init_subclass__(**kwargs)
            _guard.call("llama_index: new LLM class", lambda: patcher.patch_class(cls), None)

        type.__setattr__(base, "__init_subclass__", classmethod(__init_subclass__))
        self.base = base

    def uninstall(self) -> None:
        self.active = False
        base, self.base = self.base, None
        if base is not None and "__init_subclass__" in vars(base):
            type.__delattr__(base, "__init_subclass__")
        for cls, name, original, wrapper in reversed(self.wrapped):
            # The exact original object goes back (LlamaIndex's own dispatcher wrapper), unless someone wrapped
            # ours meanwhile: then it stays, and our wrapper inside it only calls through (``active`` is False).
            if vars(cls).get(name) is wrapper:
                type.__setattr__(cls, name, original)
        self.wrapped.clear()
        self.seen.clear()


class LlamaIndexInstrumentor(RagotelInstrumentor):
    """Traces LlamaIndex query engines, retrievers, LLMs and embeddings (see the module docstring for how)."""

    library: ClassVar[str] = "llama_index"
    targets: ClassVar[tuple[Target, ...]] = ()
    dependencies: ClassVar[tuple[str, ...]] = ("llama-index-core >= 0.10.41",)
    _ragotel_handler: Any = None
    _ragotel_streams: _StreamPatcher | None = None

    def _instrument_extra(self, **kwargs: Any) -> None:
        from llama_index.core.base.llms.base import BaseLLM  # noqa: PLC0415 - optional library, imported only when instrumenting

        # Imported here, like every llama_index import: the library is optional.
        from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]  # noqa: PLC0415

        handler_cls = _span_handler_class()
        root = get_dispatcher()
        if any(isinstance(h, handler_cls) for h in root.span_handlers):
            return  # already attached: never twice
        self._ragotel_handler = handler_cls(_Calls())
        root.add_span_handler(self._ragotel_handler)
        self._ragotel_streams = _StreamPatcher()
        self._ragotel_streams.install(BaseLLM)

    def _uninstrument_extra(self, **kwargs: Any) -> None:
        # Imported here, like every llama_index import: the library is optional.
        from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]  # noqa: PLC0415

        handler, self._ragotel_handler = self._ragotel_handler, None
        if handler is not None:
            root = get_dispatcher()
            root.span_handlers = [h for h in root.span_handlers if h is not handler]
        streams, self._ragotel_streams = self._ragotel_streams, None
        if streams is not None:
            streams.uninstall()
