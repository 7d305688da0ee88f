"""Ready-made client checks: Chroma heartbeat, Qdrant collections (both with index sizes), OpenAI model listing."""

from __future__ import annotations

import asyncio
import inspect
import weakref
from collections.abc import Callable, Iterable
from typing import Any, Final

from ragotel import semconv as sc
from ragotel.health.checks import CheckError, IndexSizes, time_left

__all__ = ["DEFAULT_MAX_COLLECTIONS", "chroma_check", "openai_check", "qdrant_check", "weak_client_check"]

DEFAULT_MAX_COLLECTIONS: Final = 20


def weak_client_check(kind: str, client: Any) -> Callable[[], Any]:
    """A check like ``chroma_check``/``qdrant_check``/``openai_check`` (``kind``) holding ``client`` weakly.

    For auto-registration: probing a client must not keep it alive after the app dropped it.
    """
    ref = weakref.ref(client)

    def deref() -> Any:
        obj = ref()
        if obj is None:
            raise CheckError("the client was garbage-collected")
        return obj

    if kind == "chroma":
        return _ChromaCheck(deref, None, DEFAULT_MAX_COLLECTIONS)
    if kind == "qdrant":
        return _QdrantCheck(deref, None, DEFAULT_MAX_COLLECTIONS)
    if kind == "openai":
        return _OpenAICheck(deref)
    raise ValueError(f"kind: expected 'chroma', 'qdrant' or 'openai', got {kind!r}")


def _collections_arg(collections: Iterable[str] | None) -> tuple[str, ...] | None:
    if collections is None:
        return None
    if isinstance(collections, str):
        raise ValueError(f"collections: expected a list of collection names, got the string {collections!r}")
    names = tuple(collections)
    if not all(isinstance(n, str) and n for n in names):
        raise ValueError(f"collections: expected non-empty collection names, got {names!r}")
    return names


def _max_arg(max_collections: int) -> int:
    if isinstance(max_collections, bool) or not isinstance(max_collections, int) or max_collections < 0:
        raise ValueError(f"max_collections: expected an integer >= 0, got {max_collections!r}")
    return max_collections


class _ChromaCheck:
    def __init__(self, client: Callable[[], Any], collections: tuple[str, ...] | None, limit: int) -> None:
        self.client = client
        self.collections = collections
        self.limit = limit

    def __repr__(self) -> str:
        return "chroma_check()"

    def __call__(self) -> IndexSizes:
        client = self.client()
        client.heartbeat()
        names = self.collections
        discovered = names is None
        if names is None:
            listed = client.list_collections(limit=self.limit) if self.limit else []
            # chromadb >= 0.6 lists Collection objects, older versions names.
            names = tuple(getattr(c, "name", c) for c in listed)
        counts: dict[str, int] = {}
        for name in names:
            try:
                counts[name] = int(client.get_collection(name).count())
            except Exception as exc:  # re-raised unless a listed collection was deleted since (below)
                if discovered and _vanished(exc):
                    continue  # the app dropped it between our list and count (re-indexing): not a store failure
                raise
        return IndexSizes(sc.DB_SYSTEM_CHROMA, counts)


def _vanished(exc: Exception) -> bool:
    """Chroma's "no such collection": ``NotFoundError`` (chromadb >= 0.6), a ``ValueError`` saying so before."""
    return type(exc).__name__ == "NotFoundError" or (isinstance(exc, ValueError) and "does not exist" in str(exc))


def chroma_check(
    client: Any,
    *,
    collections: Iterable[str] | None = None,
    max_collections: int = DEFAULT_MAX_COLLECTIONS,
) -> Callable[[], IndexSizes]:
    """Chroma ``heartbeat()``, then the document count of ``collections`` (default: up to ``max_collections``)."""
    if not callable(getattr(client, "heartbeat", None)):
        raise ValueError(f"client: expected a chromadb client (with heartbeat()), got {type(client).__name__}")
    if inspect.iscoroutinefunction(client.heartbeat):
        raise ValueError("client: an async Chroma client cannot be probed from a thread; pass a sync HttpClient")
    return _ChromaCheck(lambda: client, _collections_arg(collections), _max_arg(max_collections))


class _QdrantCheck:
    def __init__(self, client: Callable[[], Any], collections: tuple[str, ...] | None, limit: int) -> None:
        self.client = client
        self.collections = collections
        self.limit = limit

    def __repr__(self) -> str:
        return "qdrant_check()"

    def __call__(self) -> IndexSizes:
        client = self.client()
        if inspect.iscoroutinefunction(getattr(client, "get_collections", None)):
            return self._probe_async(client)
        return self._probe(client)

    def _probe(self, client: Any) -> IndexSizes:
        listed = [c.name for c in client.get_collections().collections]
        names = self.collections if self.collections is not None else tuple(sorted(listed)[: self.limit])
        # exact=False: Qdrant's cheap estimate; a health probe must not scan a large collection.
        counts = {name: int(client.count(name, exact=False).count) for name in names}
        return IndexSizes(sc.DB_SYSTEM_QDRANT, counts)

    def _probe_async(self, client: Any) -> IndexSizes:
        options = dict(getattr(client, "_init_options", None) or {})
        local = options.get("location") == ":memory:" or options.get("path") is not None
        if local:
            # The local async client has no loop-bound resources: run it on a private loop in this worker thread.
            async def probe() -> IndexSizes:
                listed = [c.name for c in (await client.get_collections()).collections]
                names = self.collections if self.collections is not None else tuple(sorted(listed)[: self.limit])
                counts = {n: int((await client.count(n, exact=False)).count) for n in names}
                return IndexSizes(sc.DB_SYSTEM_QDRANT, counts)

            return asyncio.run(probe())
        # A remote async client's connections belong to the app's event loop: probe with a sync twin instead.
        from qdrant_client import QdrantClient  # noqa: PLC0415 - only for async clients

        known = set(inspect.signature(QdrantClient.__init__).parameters)
        kwargs = {k: v for k, v in options.items() if k in known}
        kwargs["check_compatibility"] = False
        kwargs["timeout"] = max(1, int(time_left()))
        twin = QdrantClient(**kwargs)
        try:
            return self._probe(twin)
        finally:
            twin.close()


def qdrant_check(
    client: Any,
    *,
    collections: Iterable[str] | None = None,
    max_collections: int = DEFAULT_MAX_COLLECTIONS,
) -> Callable[[], IndexSizes]:
    """Qdrant ``get_collections()``, then estimated point counts of ``collections`` (default: the first few).

    Works with ``QdrantClient`` and ``AsyncQdrantClient`` (probed through a sync twin built from its options).
    """
    if not callable(getattr(client, "get_collections", None)) or not callable(getattr(client, "count", None)):
        raise ValueError(f"client: expected a QdrantClient or AsyncQdrantClient, got {type(client).__name__}")
    return _QdrantCheck(lambda: client, _collections_arg(collections), _max_arg(max_collections))


# --- LLM endpoints (opt-in: a probe may cost money on some providers) ------------------------------------------------


class _OpenAICheck:
    def __init__(self, client: Callable[[], Any]) -> None:
        self.client = client

    def __repr__(self) -> str:
        return "openai_check()"

    def __call__(self) -> None:
        client = self.client()
        timeout = time_left()
        if inspect.iscoroutinefunction(getattr(client, "close", None)):
            import openai  # noqa: PLC0415 - only for async clients

            # The async client's connections belong to the app's loop: list models through a sync twin.
            twin = openai.OpenAI(
                api_key=client.api_key,
                organization=client.organization,
                base_url=client.base_url,
                timeout=timeout,
                max_retries=0,
            )
            try:
                twin.models.list()
            finally:
                twin.close()
            return
        client.with_options(timeout=timeout, max_retries=0).models.list()


def openai_check(client: Any) -> Callable[[], None]:
    """List models (``GET {base_url}/models``) through an ``openai.OpenAI`` / ``AsyncOpenAI`` client, no retries."""
    if not hasattr(client, "models") or not hasattr(client, "base_url"):
        raise ValueError(f"client: expected an openai.OpenAI or AsyncOpenAI client, got {type(client).__name__}")
    return _OpenAICheck(lambda: client)
