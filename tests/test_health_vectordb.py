"""Chroma and Qdrant in process: heartbeat / collections checks, index sizes, auto-registration of new clients."""

from __future__ import annotations

import gc
import os
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import chromadb
import openai
import pytest
import qdrant_client
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from qdrant_client import AsyncQdrantClient, QdrantClient
from qdrant_client.models import Distance, PointStruct, VectorParams
from tests.health_support import metric_points, wait_until
from tests.servers import FakeOpenAI

from ragotel import health, host
from ragotel import semconv as sc
from ragotel.config import Settings
from ragotel.health import HealthRegistry, IndexSizes, chroma_check, qdrant_check
from ragotel.health.gauges import bind

pytestmark = pytest.mark.timeout(90)

FAST = Settings(health_interval_s=0.2, health_timeout_s=5.0)


@pytest.fixture
def provider() -> Iterator[tuple[MeterProvider, InMemoryMetricReader]]:
    rd = InMemoryMetricReader()
    mp = MeterProvider(metric_readers=[rd])
    yield mp, rd
    mp.shutdown()


@pytest.fixture
def reader(reg: HealthRegistry, provider: tuple[MeterProvider, InMemoryMetricReader]) -> Iterator[InMemoryMetricReader]:
    binding = bind(reg, provider[0])
    yield provider[1]
    binding.stop()


def points(rd: InMemoryMetricReader, metric: str) -> list[tuple[dict[str, Any], float]]:
    return [(attrs, float(value)) for attrs, value in metric_points(rd, metric)]


def index_docs(rd: InMemoryMetricReader) -> dict[tuple[str, str, str], float]:
    """{(dependency, db.system.name, collection): documents}."""
    return {
        (a[sc.RAGOTEL_DEPENDENCY_NAME], a[sc.DB_SYSTEM_NAME], a[sc.DB_COLLECTION_NAME]): v
        for a, v in points(rd, sc.M_INDEX_DOCUMENTS)
    }


def health_of(rd: InMemoryMetricReader) -> dict[str, float]:
    return {a[sc.RAGOTEL_DEPENDENCY_NAME]: v for a, v in points(rd, sc.M_DEPENDENCY_HEALTH)}


def is_up(reg: HealthRegistry, name: str) -> bool:
    dep = reg.status().dependency(name)
    return dep is not None and dep.healthy is True


def chroma_collection(client: Any, n: int) -> str:
    name = f"docs-{uuid.uuid4().hex[:8]}"
    col = client.create_collection(name)
    if n:
        col.add(
            ids=[f"d{i}" for i in range(n)],
            embeddings=[[float(i), 1.0, 0.0] for i in range(n)],
            documents=[f"document {i}" for i in range(n)],
        )
    return name


def qdrant_collection(client: QdrantClient, n: int) -> str:
    name = f"docs-{uuid.uuid4().hex[:8]}"
    client.create_collection(name, vectors_config=VectorParams(size=3, distance=Distance.COSINE))
    if n:
        client.upsert(name, points=[PointStruct(id=i, vector=[1.0, 0.5, 0.1 * i]) for i in range(n)])
    return name


# --- ready-made checks -----------------------------------------------------------------------------------------------


def test_chroma_check_heartbeat_and_index_size(reg: HealthRegistry, reader: InMemoryMetricReader) -> None:
    """chroma_check: heartbeat healthy and ragotel.index.documents per collection, updated on the next probe."""
    client = chromadb.EphemeralClient()
    name = chroma_collection(client, 3)
    check = chroma_check(client, collections=[name])
    result = check()
    assert result == IndexSizes("chroma", {name: 3})
    reg.register("chroma", check, kind="vector_db", interval=0.2, timeout=5)
    wait_until(lambda: index_docs(reader).get(("chroma", "chroma", name)) == 3, 10, "index size 3")
    assert health_of(reader)["chroma"] == 1
    client.get_collection(name).add(ids=["extra"], embeddings=[[9.0, 9.0, 9.0]], documents=["more"])
    wait_until(lambda: index_docs(reader).get(("chroma", "chroma", name)) == 4, 10, "index size 4")


def test_chroma_check_lists_collections_up_to_a_cap() -> None:
    """Without collections=, the first max_collections collections are counted (bounded cardinality)."""
    client = chromadb.EphemeralClient()
    for _ in range(3):
        chroma_collection(client, 1)
    assert len(chroma_check(client, max_collections=2)().counts) == 2
    everything = chroma_check(client, max_collections=1000)().counts
    assert len(everything) >= 3
    assert chroma_check(client, max_collections=0)().counts == {}


def test_chroma_collection_deleted_between_list_and_count_is_not_a_failure() -> None:
    """A listed collection the app deletes before the probe counts it (re-indexing) is skipped; a named one fails."""
    client = chromadb.EphemeralClient()
    kept = chroma_collection(client, 2)
    doomed = chroma_collection(client, 1)
    listing = client.list_collections()
    real_list = client.list_collections

    def list_then_delete(*args: object, **kwargs: object) -> object:
        real_list(*args, **kwargs)
        client.delete_collection(doomed)  # the app re-indexing while the probe runs
        return listing

    client.list_collections = list_then_delete  # type: ignore[method-assign]
    counts = chroma_check(client, max_collections=1000)().counts
    assert counts[kept] == 2
    assert doomed not in counts
    with pytest.raises(Exception, match="does not exist"):
        chroma_check(client, collections=[doomed])()


def test_qdrant_check_collections_and_index_size(reg: HealthRegistry, reader: InMemoryMetricReader) -> None:
    """qdrant_check on :memory:: get_collections healthy, point counts per collection as ragotel.index.documents."""
    client = QdrantClient(":memory:")
    a, b = qdrant_collection(client, 5), qdrant_collection(client, 0)
    assert qdrant_check(client)() == IndexSizes("qdrant", {a: 5, b: 0} if a < b else {b: 0, a: 5})
    reg.register("qdrant", qdrant_check(client), kind="vector_db", interval=0.2, timeout=5)
    wait_until(lambda: index_docs(reader).get(("qdrant", "qdrant", a)) == 5, 10, "index size")
    assert index_docs(reader)[("qdrant", "qdrant", b)] == 0
    assert health_of(reader)["qdrant"] == 1


def test_index_size_is_read_by_the_probe_not_the_metrics_callback(
    reg: HealthRegistry, reader: InMemoryMetricReader, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Collecting metrics never calls the vector database: counts come from the probe's last result."""
    client = QdrantClient(":memory:")
    name = qdrant_collection(client, 2)
    reg.register("q", qdrant_check(client, collections=[name]), kind="vector_db", interval=30, timeout=5)
    wait_until(lambda: index_docs(reader).get(("q", "qdrant", name)) == 2, 10, "first probe")
    calls = {"n": 0}
    original = client.count

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls["n"] += 1
        return original(*args, **kwargs)

    monkeypatch.setattr(client, "count", counting)
    for _ in range(5):
        assert index_docs(reader)[("q", "qdrant", name)] == 2
    assert calls["n"] == 0


def test_failed_vector_probe_drops_index_points(reg: HealthRegistry, reader: InMemoryMetricReader) -> None:
    """A vector-DB probe that fails reports health 0 and no stale index size."""
    client = QdrantClient(":memory:")
    name = qdrant_collection(client, 1)
    reg.register("q", qdrant_check(client, collections=[name]), kind="vector_db", interval=0.1, timeout=5)
    wait_until(lambda: index_docs(reader).get(("q", "qdrant", name)) == 1, 10, "first probe")
    client.delete_collection(name)  # counting a missing collection now fails
    wait_until(lambda: health_of(reader).get("q") == 0, 10, "unhealthy")
    assert ("q", "qdrant", name) not in index_docs(reader)


# --- auto-registration -----------------------------------------------------------------------------------------------


def test_new_chroma_and_qdrant_clients_are_probed_automatically(
    reg: HealthRegistry, provider: tuple[MeterProvider, InMemoryMetricReader]
) -> None:
    """After install(), constructing Chroma or Qdrant clients registers probes reporting health and index size."""
    mp, rd = provider
    original_ephemeral = chromadb.EphemeralClient
    original_init = QdrantClient.__init__
    installation = health.install(mp, FAST, registry=reg)
    try:
        assert chromadb.EphemeralClient is not original_ephemeral
        chroma = chromadb.EphemeralClient()
        assert isinstance(chroma, chromadb.api.ClientAPI)
        qdrant = QdrantClient(":memory:")
        q_name = qdrant_collection(qdrant, 4)
        wait_until(lambda: {"chroma:ephemeral", "qdrant:memory"} <= set(reg.names()), 5, "registration")
        wait_until(lambda: health_of(rd).get("chroma:ephemeral") == 1, 10, "chroma healthy")
        wait_until(lambda: index_docs(rd).get(("qdrant:memory", "qdrant", q_name)) == 4, 10, "qdrant index size")
        kinds = {
            a[sc.RAGOTEL_DEPENDENCY_NAME]: a[sc.RAGOTEL_DEPENDENCY_KIND] for a, _ in points(rd, sc.M_DEPENDENCY_HEALTH)
        }
        assert kinds["qdrant:memory"] == kinds["chroma:ephemeral"] == "vector_db"
    finally:
        installation.stop()
    assert chromadb.EphemeralClient is original_ephemeral
    assert QdrantClient.__init__ is original_init
    assert reg.names() == ()
    assert not reg.running
    QdrantClient(":memory:")
    assert reg.names() == ()


def test_second_in_memory_qdrant_gets_its_own_name_and_a_dropped_client_is_forgotten(reg: HealthRegistry) -> None:
    """Each live :memory: Qdrant client is a separate dependency; a client the app drops is unregistered."""
    installation = health.install(None, FAST, registry=reg)
    try:
        first = QdrantClient(":memory:")
        second = QdrantClient(":memory:")
        assert set(reg.names()) == {"qdrant:memory", "qdrant:memory#2"}
        del second
        gc.collect()
        wait_until(lambda: set(reg.names()) == {"qdrant:memory"}, 5, "dropped client unregistered")
        assert first is not None
    finally:
        installation.stop()


def test_async_qdrant_client_is_probed(
    reg: HealthRegistry, provider: tuple[MeterProvider, InMemoryMetricReader]
) -> None:
    """An AsyncQdrantClient created after install() is probed from ragotel's thread without the app's loop."""
    mp, rd = provider
    installation = health.install(mp, FAST, registry=reg)
    try:
        client = AsyncQdrantClient(":memory:")
        assert "qdrant:memory" in reg.names()
        wait_until(lambda: health_of(rd).get("qdrant:memory") == 1, 10, "async client healthy")
        assert client is not None
    finally:
        installation.stop()


def test_persistent_chroma_is_named_by_path_and_its_filesystem_watched(reg: HealthRegistry, tmp_path: Path) -> None:
    """A PersistentClient registers as chroma:<path> and adds that path to the host filesystem gauges."""
    installation = health.install(None, FAST, registry=reg)
    try:
        client = chromadb.PersistentClient(path=str(tmp_path))
        name = f"chroma:{tmp_path}"
        assert name in reg.names()
        wait_until(lambda: is_up(reg, name), 10, "up")
        assert os.path.realpath(tmp_path) in host._watched_paths
        assert client is not None
    finally:
        installation.stop()


def test_auto_registration_opt_out(reg: HealthRegistry) -> None:
    """RAGOTEL_HEALTH_AUTO_REGISTER=false leaves constructors untouched and registers nothing."""
    settings = Settings.from_env({"RAGOTEL_HEALTH_AUTO_REGISTER": "false"})
    assert settings.health_auto_register is False
    original = chromadb.EphemeralClient
    installation = health.install(None, settings, registry=reg)
    try:
        assert chromadb.EphemeralClient is original
        chromadb.EphemeralClient()
        QdrantClient(":memory:")
        assert reg.names() == ()
    finally:
        installation.stop()


def test_llm_probing_is_opt_in(reg: HealthRegistry, fake_openai: FakeOpenAI) -> None:
    """OpenAI clients are not probed by default; with RAGOTEL_HEALTH_PROBE_LLM=true they are, as kind llm."""
    installation = health.install(None, FAST, registry=reg)
    try:
        client = openai.OpenAI(base_url=fake_openai.base_url, api_key="sk-test")
        assert reg.names() == ()
        client.close()
    finally:
        installation.stop()
    settings = Settings.from_env({"RAGOTEL_HEALTH_PROBE_LLM": "true", "RAGOTEL_HEALTH_INTERVAL": "0.2"})
    assert settings.health_probe_llm is True
    assert settings.health_interval_s == 0.2
    installation = health.install(None, settings, registry=reg)
    try:
        client = openai.OpenAI(base_url=fake_openai.base_url, api_key="sk-test")
        name = f"llm:{fake_openai.base_url.rstrip('/')}"
        assert reg.names() == (name,)
        wait_until(lambda: is_up(reg, name), 10, "up")
        dep = reg.status().dependency(name)
        assert dep is not None
        assert dep.kind == "llm"
        assert ("GET", "/v1/models") in {(r.method, r.path) for r in fake_openai.requests}
        client.close()
    finally:
        installation.stop()


def test_registration_failure_never_breaks_client_construction(
    reg: HealthRegistry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If registering a new client fails inside ragotel, the constructor still returns the client unharmed."""
    installation = health.install(None, FAST, registry=reg)

    def broken(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("registry exploded")

    monkeypatch.setattr(reg, "register", broken)
    try:
        client = QdrantClient(":memory:")
        name = qdrant_collection(client, 1)
        assert client.count(name).count == 1
        assert reg.names() == ()
    finally:
        installation.stop()
    assert qdrant_client.QdrantClient is QdrantClient
