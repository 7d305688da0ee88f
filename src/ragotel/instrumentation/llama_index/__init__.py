"""LlamaIndex: query engines, retrievers, rerankers, LLMs and embeddings as spans of their RAG stages.

Three hooks, each where it is cleanest:

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

* Node postprocessors that rerank (``SentenceTransformerRerank``, ``LLMRerank``, ``CohereRerank``, ...; see
  :func:`~ragotel.instrumentation._rerank.is_reranker`) through the common wrapper on ``BaseNodePostprocessor.
  postprocess_nodes`` / ``apostprocess_nodes``, where LlamaIndex defines them (the dispatcher does not see them):
  ``rerank`` spans; an instrumented cross-encoder inside merges into them, an LLM reranker's calls nest under them.

A query engine's ``query`` is a ``pipeline`` span only when no ragotel operation is running already; an LLM or
embedding call made by another LlamaIndex LLM/embedding step (``CustomLLM.chat`` → ``complete``) is part of it,
not a second span. Handlers and wrappers never touch arguments or results and keep no state beyond the calls in
flight; the dispatcher isolates its handlers, and ours are guarded besides.
"""

from __future__ import annotations

from typing import Any, ClassVar

from ragotel import semconv as sc
from ragotel.instrumentation._base import RagotelInstrumentor, Target
from ragotel.instrumentation.llama_index import extract as ex
from ragotel.instrumentation.llama_index.handler import Calls, span_handler_class
from ragotel.instrumentation.llama_index.streams import StreamPatcher

__all__ = ["LlamaIndexInstrumentor"]


class LlamaIndexInstrumentor(RagotelInstrumentor):
    """Traces LlamaIndex query engines, retrievers, rerankers, LLMs and embeddings (see the module docstring)."""

    library: ClassVar[str] = "llama_index"
    targets: ClassVar[tuple[Target, ...]] = tuple(
        Target("llama_index.core.postprocessor.types", f"BaseNodePostprocessor.{method}", sc.STAGE_RERANK,
               ex.COMPONENT, request=ex.rerank_request, response=ex.rerank_response,
               request_content=ex.rerank_content, response_content=ex.rerank_result_content)
        for method in ("postprocess_nodes", "apostprocess_nodes")
    )  # fmt: skip
    dependencies: ClassVar[tuple[str, ...]] = ("llama-index-core >= 0.10.41",)
    _ragotel_handler: Any = None
    _ragotel_streams: StreamPatcher | None = None

    def _instrument_extra(self, **kwargs: Any) -> None:
        from llama_index.core.base.llms.base import BaseLLM  # noqa: PLC0415 - optional library, imported only when instrumenting

        # Imported here, like every llama_index import: the library is optional.
        from llama_index.core.instrumentation import get_dispatcher  # type: ignore[attr-defined]  # noqa: PLC0415

        handler_cls = span_handler_class()
        root = get_dispatcher()
        if any(isinstance(h, handler_cls) for h in root.span_handlers):
            return  # already attached: never twice
        self._ragotel_handler = handler_cls(Calls())
        root.add_span_handler(self._ragotel_handler)
        self._ragotel_streams = StreamPatcher()
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
