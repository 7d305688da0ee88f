"""The RAG service: corpus -> chunks -> embeddings -> persistent Chroma -> retriever -> prompt -> LLM, in LangChain.

Nothing here calls ragotel except the health probes: the spans come from ``ragotel.instrument()``, which the CLI
and ``serve()`` call before building the app.
"""

from __future__ import annotations

import contextvars
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import chromadb
from chromadb.config import Settings as ChromaSettings
from langchain_chroma import Chroma
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import Runnable, RunnableParallel, RunnablePassthrough
from opentelemetry import trace

from .corpus import Corpus, CorpusError, default_corpus_dir, load_corpus
from .embeddings import choose_embeddings
from .faults import Faults
from .llm import ExtractiveChatModel, choose_llm

__all__ = ["Answer", "AppConfig", "QuestionError", "RagApp", "StartupError", "default_store_dir"]

_log = logging.getLogger("examples.langchain_app")

SYSTEM_PROMPT = (
    "You answer questions about ragotel using only the numbered context blocks. "
    "Cite the sources you used. If the context does not contain the answer, say so."
)
_trace_ids: contextvars.ContextVar[list[str] | None] = contextvars.ContextVar("ragapp_trace_ids", default=None)


class StartupError(Exception):
    """The app cannot start: missing corpus, unusable store path, bad configuration. The message says which."""


class QuestionError(ValueError):
    """A question the API refuses (empty, too long, not a string); the message says what was expected."""


def default_store_dir() -> Path:
    """Where the Chroma store persists by default (``RAGAPP_STORE_DIR`` overrides)."""
    return Path(tempfile.gettempdir()) / "ragotel-example" / "chroma"


@dataclass(frozen=True, slots=True)
class AppConfig:
    """Everything the app is built from; ``from_env`` reads the ``RAGAPP_*`` variables."""

    corpus_dir: Path = field(default_factory=default_corpus_dir)
    store_dir: Path = field(default_factory=default_store_dir)
    embedding: str = "auto"  # auto | sentence-transformers | hash
    top_k: int = 4
    collection: str = "ragotel-docs"
    max_question_chars: int = 2000
    service_name: str = "ragotel-example-rag"
    health_interval: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None, **overrides: Any) -> AppConfig:
        """Defaults, then ``RAGAPP_CORPUS_DIR``, ``RAGAPP_STORE_DIR``, ``RAGAPP_EMBEDDING``, then ``overrides``."""
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        if env.get("RAGAPP_CORPUS_DIR"):
            values["corpus_dir"] = Path(env["RAGAPP_CORPUS_DIR"])
        if env.get("RAGAPP_STORE_DIR"):
            values["store_dir"] = Path(env["RAGAPP_STORE_DIR"])
        if env.get("RAGAPP_EMBEDDING"):
            values["embedding"] = env["RAGAPP_EMBEDDING"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Answer:
    """What ``/ask`` returns."""

    answer: str
    sources: list[dict[str, Any]]
    trace_id: str | None

    def to_json(self) -> dict[str, Any]:
        """The JSON body of a ``/ask`` response."""
        return {"answer": self.answer, "sources": self.sources, "trace_id": self.trace_id}


class DocsRetriever(BaseRetriever):
    """Top-k chunks from the Chroma store, each with its cosine similarity in ``metadata['score']``."""

    vectorstore: Any  # named like LangChain's VectorStoreRetriever's, so instrumentation finds the data source
    faults: Any
    search_kwargs: dict[str, Any] = {"k": 4}

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[Document]:
        sink = _trace_ids.get()
        context = trace.get_current_span().get_span_context()
        if sink is not None and context.is_valid:
            sink.append(format(context.trace_id, "032x"))
        self.faults.before_retrieval()
        pairs = self.vectorstore.similarity_search_with_score(query, **self.search_kwargs)
        return [
            Document(id=doc.id, page_content=doc.page_content, metadata={**doc.metadata, "score": round(1.0 - d, 4)})
            for doc, d in pairs
        ]


def _format_context(docs: list[Document]) -> str:
    return "\n\n".join(
        f"[{i}] ({d.metadata.get('source')} § {d.metadata.get('section')})\n{d.page_content}"
        for i, d in enumerate(docs, 1)
    )


def _open_store(path: Path) -> Any:
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".ragapp-write-test"
        probe.write_text("ok", encoding="utf-8")
        probe.unlink()
    except OSError as exc:
        raise StartupError(
            f"vector store path {path} is not a writable directory ({exc.strerror or exc}); "
            "set --store / RAGAPP_STORE_DIR to a directory you can write"
        ) from exc
    return chromadb.PersistentClient(path=str(path), settings=ChromaSettings(anonymized_telemetry=False))


class RagApp:
    """One RAG service instance. ``ask`` is thread-safe; ``close`` releases the health probes."""

    def __init__(
        self, config: AppConfig | None = None, *, faults: Faults | None = None, env: Mapping[str, str] | None = None
    ) -> None:
        self.config = config or AppConfig.from_env(env)
        self.faults = faults or Faults()
        try:
            self.corpus: Corpus = load_corpus(self.config.corpus_dir)
        except CorpusError as exc:
            raise StartupError(str(exc)) from exc
        try:
            self.embeddings, self.embedding_description = choose_embeddings(self.config.embedding)
        except ValueError as exc:
            raise StartupError(str(exc)) from exc
        self.client = _open_store(self.config.store_dir)
        self.collection_name = f"{self.config.collection}-{getattr(self.embeddings, 'model_name', 'custom')}"
        self.store = Chroma(
            client=self.client,
            collection_name=self.collection_name,
            embedding_function=self.embeddings,
            collection_configuration={"hnsw": {"space": "cosine"}},
        )
        self.indexed = self._index()
        llm = choose_llm(self.faults, env)
        self.llm, self.llm_description = llm.model, llm.description
        self._llm_health_url, self._llm_health_headers = llm.health_url, llm.health_headers
        self.retriever = DocsRetriever(
            vectorstore=self.store, faults=self.faults, search_kwargs={"k": self.config.top_k}
        )
        self.chain = self._build_chain()
        self._health_names: list[str] = []

    # -- building ------------------------------------------------------------------------------------------------
    def _index(self) -> int:
        """(Re)index the corpus when the persisted collection does not match it; return how many chunks were added."""
        collection = self.client.get_or_create_collection(
            self.collection_name, configuration={"hnsw": {"space": "cosine"}}
        )
        chunks = self.corpus.chunks
        metadata = collection.metadata or {}
        if metadata.get("fingerprint") == self.corpus.fingerprint and collection.count() == len(chunks):
            return 0
        self.store.reset_collection()
        self.store.add_documents(list(chunks), ids=[str(c.id) for c in chunks])
        self.client.get_collection(self.collection_name).modify(metadata={"fingerprint": self.corpus.fingerprint})
        return len(chunks)

    def _build_chain(self) -> Runnable[str, dict[str, Any]]:
        prompt = ChatPromptTemplate.from_messages(
            [("system", SYSTEM_PROMPT), ("human", "Context:\n{context}\n\nQuestion: {question}")]
        )
        generate = (
            RunnablePassthrough.assign(context=lambda x: _format_context(x["docs"]))
            | prompt
            | self.llm
            | StrOutputParser()
        )
        chain = RunnableParallel(docs=self.retriever, question=RunnablePassthrough()) | RunnablePassthrough.assign(
            answer=generate
        )
        return chain.with_config(run_name="rag_pipeline")

    # -- serving -------------------------------------------------------------------------------------------------
    def validate(self, question: Any) -> str:
        """Return the question stripped, or raise QuestionError saying what is wrong with it."""
        if not isinstance(question, str):
            raise QuestionError(f"'question' must be a string, got {type(question).__name__}")
        text = question.strip()
        if not text:
            raise QuestionError("'question' is empty; expected a non-empty string")
        if len(text) > self.config.max_question_chars:
            raise QuestionError(
                f"'question' is {len(text)} characters long; expected at most {self.config.max_question_chars}"
            )
        return text

    def ask(self, question: Any) -> Answer:
        """Answer one question through the chain; QuestionError for bad input, the chain's own errors otherwise."""
        text = self.validate(question)
        sink: list[str] = []
        token = _trace_ids.set(sink)
        try:
            result = self.chain.invoke(text)
        finally:
            _trace_ids.reset(token)
        sources = [
            {"source": d.metadata.get("source"), "section": d.metadata.get("section"), "score": d.metadata.get("score")}
            for d in result["docs"]
        ]
        return Answer(str(result["answer"]), sources, sink[0] if sink else None)

    # -- health --------------------------------------------------------------------------------------------------
    def register_health(self, interval: float | None = None) -> list[str]:
        """Probe the Chroma store and the LLM endpoint with ``ragotel.health``; return the dependency names."""
        from ragotel import health

        every = self.config.health_interval if interval is None else interval
        faults = self.faults
        store_probe = health.chroma_check(self.client, collections=[self.collection_name])

        def chroma_store() -> Any:
            faults.check_store()
            return store_probe()

        # The name ragotel's auto-registration gives this client: registering it replaces that probe with one that
        # also honours the store-unavailable switch.
        store_name = f"chroma:{self.client.get_settings().persist_directory}"
        health.register(store_name, chroma_store, kind=health.KIND_VECTOR_DB, interval=every, timeout=2.0)
        if self._llm_health_url is not None:
            llm_name = f"llm:{self._llm_health_url.removesuffix('/models')}"
            check = health.http_check(self._llm_health_url, headers=self._llm_health_headers)
            health.register(llm_name, check, kind=health.KIND_LLM, interval=every, timeout=5.0)
        else:
            llm_name = "llm:local-extractive"
            llm = self.llm
            assert isinstance(llm, ExtractiveChatModel)
            health.register(llm_name, llm.health, kind=health.KIND_LLM, interval=every, timeout=2.0)
        self._health_names = [store_name, llm_name]
        return list(self._health_names)

    def describe(self) -> dict[str, Any]:
        """What the app runs on: corpus, store, embedding, LLM, faults."""
        return {
            "service": self.config.service_name,
            "corpus": {"directory": str(self.corpus.directory), "files": len(self.corpus.files)},
            "chunks": len(self.corpus.chunks),
            "store": {"path": str(self.config.store_dir), "collection": self.collection_name},
            "embedding": self.embedding_description,
            "llm": self.llm_description,
            "faults": self.faults.snapshot(),
        }

    def close(self) -> None:
        """Stop the fault threads and unregister the health probes this app registered."""
        self.faults.clear()
        if self._health_names:
            from ragotel import health

            for name in self._health_names:
                health.unregister(name)
            self._health_names = []
