"""Other instrumentations of the libraries ragotel instruments: find them, warn once, act on RAGOTEL_COEXISTENCE.

Two instrumentations of one library make two spans per call (and count its metrics twice). A *peer* is another
``opentelemetry_instrumentor`` entry point instrumenting one of ragotel's libraries (OpenLLMetry, OpenInference,
the contrib ``openai-v2``; matched by its distribution name or its ``instruments`` requirements, read from package
metadata only), or any foreign wrapt wrapper already on a method ragotel wraps (OpenLIT's, or one of those).

The mode (``RAGOTEL_COEXISTENCE`` or ``instrument(coexistence=...)``):

- ``defer`` (default): when a peer is active on a library, ragotel leaves that library to it.
- ``exclusive``: ragotel only. Under ``opentelemetry-instrument`` the ragotel distro/configurator add the peers'
  entry-point names to ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` before the loader reads it (and put the variable
  back afterwards); a peer already active (another loader's choice, or its own ``instrument()`` call) cannot be
  undone: ragotel says so and instruments too.
- ``both``: both instrument (two spans per call).
"""

from __future__ import annotations

import functools
import importlib.metadata
import inspect
import logging
import os
import sys
import threading
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, Final

import wrapt
from packaging.requirements import InvalidRequirement, Requirement

from ragotel import _guard
from ragotel.config import ENV_COEXISTENCE, ENV_DISABLED, coexistence_mode

__all__ = [
    "Peer",
    "active_peers",
    "env_mode",
    "exclude_registered_peers",
    "instruments",
    "registered_peers",
    "restore_environment",
    "switch_off",
    "switch_off_loaded",
]

_log = logging.getLogger("ragotel")

# Known peers by distribution (the ragotel library each instruments); others are matched by their requirements.
KNOWN: Final[dict[str, str]] = {
    "opentelemetry-instrumentation-openai": "openai",  # OpenLLMetry (traceloop)
    "opentelemetry-instrumentation-openai-v2": "openai",  # contrib
    "opentelemetry-instrumentation-langchain": "langchain",
    "opentelemetry-instrumentation-chromadb": "chromadb",
    "opentelemetry-instrumentation-qdrant": "qdrant",
    "opentelemetry-instrumentation-llamaindex": "llama_index",
    "openinference-instrumentation-openai": "openai",
    "openinference-instrumentation-langchain": "langchain",
    "openinference-instrumentation-llama-index": "llama_index",
    "opentelemetry-instrumentation-anthropic": "anthropic",
    "openinference-instrumentation-anthropic": "anthropic",
    "opentelemetry-instrumentation-bedrock": "bedrock",
    "openinference-instrumentation-bedrock": "bedrock",
    "opentelemetry-instrumentation-google-genai": "google_genai",  # contrib
    "opentelemetry-instrumentation-google-generativeai": "google_genai",  # OpenLLMetry
    "openinference-instrumentation-google-genai": "google_genai",
    "opentelemetry-instrumentation-ollama": "ollama",
    "opentelemetry-instrumentation-cohere": "cohere",
    "opentelemetry-instrumentation-milvus": "milvus",
    "opentelemetry-instrumentation-lancedb": "lancedb",
    "opentelemetry-instrumentation-haystack": "haystack",  # OpenLLMetry
    "openinference-instrumentation-haystack": "haystack",
}
# What an instrumentation's `instruments` extra requires -> the ragotel library.
_REQUIREMENTS: Final[dict[str, str]] = {
    "openai": "openai",
    "langchain-core": "langchain",
    "langchain": "langchain",
    "chromadb": "chromadb",
    "qdrant-client": "qdrant",
    "sentence-transformers": "sentence_transformers",
    "llama-index-core": "llama_index",
    "llama-index": "llama_index",
    "anthropic": "anthropic",
    "google-genai": "google_genai",
    "ollama": "ollama",
    "cohere": "cohere",
    "pymilvus": "milvus",
    "lancedb": "lancedb",
    "faiss-cpu": "faiss",
    "haystack-ai": "haystack",
}


@dataclass(frozen=True, slots=True)
class Peer:
    """Another instrumentation of ``library``: its distribution and ``opentelemetry_instrumentor`` entry point."""

    library: str
    package: str
    entry_point: str | None = None
    target: str | None = None  # "module:Class" of its instrumentor


def env_mode() -> str:
    """The mode ``RAGOTEL_COEXISTENCE`` sets (default ``defer``); a bad value warns once."""
    return coexistence_mode(os.environ.get(ENV_COEXISTENCE), source=ENV_COEXISTENCE)


def _normalized(name: str) -> str:
    return name.lower().replace("_", "-").replace(".", "-")


def _library_of(dist: importlib.metadata.Distribution | None) -> str | None:
    if dist is None:
        return None
    name = _normalized(dist.name or "")
    if name in KNOWN:
        return KNOWN[name]
    for line in dist.requires or ():
        try:
            requirement = Requirement(line)
        except InvalidRequirement:
            continue
        marker = requirement.marker
        if marker is None or not any(marker.evaluate({"extra": extra}) for extra in ("instruments", "instruments-any")):
            continue
        if _normalized(requirement.name) in _REQUIREMENTS:
            return _REQUIREMENTS[_normalized(requirement.name)]
    return None


@functools.lru_cache(maxsize=1)
def registered_peers() -> tuple[Peer, ...]:
    """Every installed peer entry point (package metadata only: nothing is imported). Cached for the process."""
    peers = []
    for entry_point in importlib.metadata.entry_points(group="opentelemetry_instrumentor"):
        if entry_point.name.startswith("ragotel_"):
            continue
        dist = getattr(entry_point, "dist", None)
        library = _library_of(dist)
        if library is not None and dist is not None:
            package = dist.name or entry_point.name
            peers.append(Peer(library, package, entry_point.name, entry_point.value))
    return tuple(peers)


def _disabled(environ: dict[str, str] | os._Environ[str]) -> list[str]:
    return [name.strip() for name in environ.get(ENV_DISABLED, "").split(",") if name.strip()]


# wrapt 2's FunctionWrapper is a BaseObjectProxy and not a wrapt.ObjectProxy (which adds the operators); wrapt 1 has
# only ObjectProxy.
_PROXY: Final[type] = getattr(wrapt, "BaseObjectProxy", wrapt.ObjectProxy)
_LOADER: Final = "opentelemetry.instrumentation.auto_instrumentation._load"
_lock = threading.Lock()
_original_disabled: list[str | None] = []  # the variable's value before exclude_registered_peers changed it
_warned: set[tuple[str, str, str]] = set()


def exclude_registered_peers() -> None:
    """Before ``opentelemetry-instrument`` loads the entry points: in ``exclusive`` mode, disable the peers'.

    Called by the ragotel distro and configurator (whichever the loader picked; idempotent). Never raises.
    """
    if env_mode() != "exclusive":
        return
    with _lock:
        disabled = _disabled(os.environ)
        names = [
            p.entry_point
            for p in registered_peers()
            if p.entry_point and p.entry_point not in disabled and f"ragotel_{p.library}" not in disabled
        ]
        if not names or "*" in disabled:
            return
        if not _original_disabled:
            _original_disabled.append(os.environ.get(ENV_DISABLED))
        os.environ[ENV_DISABLED] = ",".join([*disabled, *dict.fromkeys(names)])
    for peer in registered_peers():
        if peer.entry_point in names:
            _log.info(
                "ragotel: %s=exclusive: %s (entry point %r) switched off for opentelemetry-instrument; ragotel "
                "instruments %s",
                ENV_COEXISTENCE,
                peer.package,
                peer.entry_point,
                peer.library,
            )


def restore_environment() -> None:
    """Put back the ``OTEL_PYTHON_DISABLED_INSTRUMENTATIONS`` the app started with (child processes inherit it)."""
    with _lock:
        if not _original_disabled:
            return
        original = _original_disabled.pop()
    if original is None:
        os.environ.pop(ENV_DISABLED, None)
    else:
        os.environ[ENV_DISABLED] = original


def _active_instrumentor(target: str | None) -> bool:
    """Whether the instrumentor class ``module:Class`` is loaded and instrumented (it is a singleton)."""
    if not target:
        return False
    module_name, _, class_name = target.partition(":")
    cls = getattr(sys.modules.get(module_name), class_name, None)
    instance = getattr(cls, "_instance", None)
    return bool(getattr(instance, "_is_instrumented_by_opentelemetry", False))


def _wrapper_peer(library: str, owner: Any, name: str) -> Peer | None:
    """The peer whose wrapt wrapper is already on ``owner.name``, if a foreign one is."""
    attribute = inspect.getattr_static(owner, name, None)
    if not isinstance(attribute, _PROXY):
        return None
    wrapper = getattr(attribute, "_self_wrapper", None)
    module = str(getattr(wrapper, "__module__", None) or type(wrapper).__module__ or "")
    if module.startswith("ragotel.") or module == "ragotel":
        return None
    for peer in registered_peers():
        package = (peer.target or "").partition(":")[0].rsplit(".", 1)[0]
        if package and module.startswith(package):
            return peer
    top = module.partition(".")[0]
    dists = importlib.metadata.packages_distributions().get(top, [])
    return Peer(library, dists[0] if len(dists) == 1 else module)


def _inside_loader() -> bool:
    """Whether ``opentelemetry-instrument``'s loader is on the stack (a peer's entry point importing the library)."""
    frame = sys._getframe(1)
    while frame is not None:
        if frame.f_globals.get("__name__") == _LOADER:
            return True
        frame = frame.f_back  # type: ignore[assignment]
    return False


def active_peers(library: str, targets: Iterable[tuple[Any, str]]) -> list[Peer]:
    """Peers instrumenting ``library`` now: an instrumented peer instrumentor, or a foreign wrapper on a target.

    Inside the loader (a peer's entry point imported the library before wrapping it), the registered peers it has
    yet to skip or load count too.
    """
    loading = _inside_loader()
    disabled = _disabled(os.environ) if loading else []
    peers = [
        p
        for p in registered_peers()
        if p.library == library
        and (_active_instrumentor(p.target) or (loading and p.entry_point not in disabled and "*" not in disabled))
    ]
    for owner, name in targets:
        peer = _wrapper_peer(library, owner, name)
        if peer is not None and all(p.package != peer.package for p in peers):
            peers.append(peer)
    return peers


def switch_off(peers: list[Peer]) -> None:
    """``exclusive``: uninstrument the peers that are OTel instrumentors (their own ``uninstrument()``). Never raises.

    A foreign wrapper that is not an instrumentor's (OpenLIT's) stays: :func:`instruments` then says so.
    """
    for peer in peers:
        module_name, _, class_name = (peer.target or "").partition(":")
        instance = getattr(getattr(sys.modules.get(module_name), class_name, None), "_instance", None)
        if instance is None or not _active_instrumentor(peer.target):
            continue
        _, exc = _guard.caught(instance.uninstrument)
        if exc is not None:  # the peer's own failure: reported, ragotel goes on
            _log.warning("ragotel: could not uninstrument %s: %r", peer.package, exc)
            continue
        _log.info("ragotel: %s=exclusive: uninstrumented %s; ragotel instruments %s", ENV_COEXISTENCE, peer.package,
                  peer.library)  # fmt: skip


def switch_off_loaded() -> None:
    """After ``opentelemetry-instrument`` loaded the entry points: in ``exclusive`` mode, switch off the peers it
    loaded (another distro or configurator than ragotel's chose the entry points). Never raises."""
    if env_mode() == "exclusive":
        switch_off([p for p in registered_peers() if _active_instrumentor(p.target)])


def _setting(peer: Peer) -> str:
    disable = f"OTEL_PYTHON_DISABLED_INSTRUMENTATIONS={peer.entry_point}" if peer.entry_point else None
    return f"{disable} (zero-code) or " if disable else ""


def instruments(library: str, mode: str, peers: list[Peer]) -> bool:
    """Whether ragotel instruments ``library`` alongside ``peers`` in ``mode``; warns once per library and peer."""
    if not peers:
        return True
    peer = peers[0]
    key = (library, peer.package, mode)
    with _lock:
        first = key not in _warned
        _warned.add(key)
    names = ", ".join(p.package for p in peers)
    if mode == "both":
        if first:
            _log.info("ragotel: %s is instrumented by ragotel and by %s (%s=both): two spans per call", library,
                      names, ENV_COEXISTENCE)  # fmt: skip
        return True
    if mode == "exclusive":
        if _inside_loader():  # a peer entry point still loading: the post-instrument hook switches it off after
            peers = [p for p in peers if not p.entry_point]
        if peers and first:
            _log.warning(
                "ragotel: %s=exclusive cannot switch off %s, already active on %s: both instrument it now (two "
                "spans per call). Disable it with %sby removing its instrument() call; or let ragotel step aside "
                "with %s=defer",
                ENV_COEXISTENCE, names, library, _setting(peer), ENV_COEXISTENCE,
            )  # fmt: skip
        return True
    if first:
        _log.warning(
            "ragotel: %s is already instrumented by %s; ragotel leaves %s to it so that each call makes one span "
            "(%s=defer, the default). To use ragotel's instead set %s=exclusive (switches off %s under "
            "opentelemetry-instrument) or %sremove its instrument() call; %s=both keeps both",
            library, names, library, ENV_COEXISTENCE, ENV_COEXISTENCE,
            repr(peer.entry_point) if peer.entry_point else "it", _setting(peer), ENV_COEXISTENCE,
        )  # fmt: skip
    return False
