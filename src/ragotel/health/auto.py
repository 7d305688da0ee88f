"""Auto-registration: a health check for each Chroma / Qdrant client (and, opt-in, OpenAI client) the app creates."""

from __future__ import annotations

import functools
import importlib
import threading
import weakref
from collections.abc import Callable
from typing import Any, Final

from ragotel import _guard
from ragotel.config import Settings
from ragotel.health import checks
from ragotel.health.client_checks import weak_client_check
from ragotel.health.registry import HealthRegistry

__all__ = ["KIND_LLM", "KIND_VECTOR_DB", "AutoRegistration"]

KIND_VECTOR_DB: Final = "vector_db"
KIND_LLM: Final = "llm"

_CHROMA_FACTORIES: Final = ("Client", "EphemeralClient", "PersistentClient", "HttpClient", "CloudClient")
_QDRANT_CLASSES: Final = (
    ("qdrant_client.qdrant_client", "QdrantClient"),
    ("qdrant_client.async_qdrant_client", "AsyncQdrantClient"),
)
_OPENAI_CLASSES: Final = (("openai", "OpenAI"), ("openai", "AsyncOpenAI"))
# Each in-memory Qdrant client is a store of its own (unlike Chroma's ephemeral clients, which share one), so live
# ones get distinct names: qdrant:memory, qdrant:memory#2, ...
_MEMORY_QDRANT: Final = "qdrant:memory"


def _chroma_target(client: Any) -> tuple[str, str | None]:
    """(dependency name, persistent path or None) for a Chroma client."""
    settings = client.get_settings()
    impl = str(getattr(settings, "chroma_api_impl", "") or "").lower()
    host = getattr(settings, "chroma_server_host", None)
    if host and ("fastapi" in impl or "http" in impl or not getattr(settings, "is_persistent", False)):
        return f"chroma:{host}:{getattr(settings, 'chroma_server_http_port', '')}", None
    if getattr(settings, "is_persistent", False):
        path = str(getattr(settings, "persist_directory", ""))
        return f"chroma:{path}", path
    return "chroma:ephemeral", None


def _qdrant_target(client: Any) -> tuple[str, str | None]:
    """(dependency name, local storage path or None) for a Qdrant client."""
    options = dict(getattr(client, "_init_options", None) or {})
    if options.get("location") == ":memory:":
        return _MEMORY_QDRANT, None
    if options.get("path"):
        return f"qdrant:{options['path']}", str(options["path"])
    uri = getattr(getattr(client, "_client", None), "rest_uri", None) or options.get("url") or options.get("location")
    if not uri:
        uri = f"{options.get('host') or 'localhost'}:{options.get('port') or 6333}"
    return f"qdrant:{checks.redact(str(uri))}", None


class AutoRegistration:
    """Registers a health check for every Chroma/Qdrant client (and, opt-in, OpenAI client) created while active.

    Patches the clients' constructors when their library is imported (now or later, via a post-import hook), so
    ragotel never imports a library the app does not use. The checks hold clients weakly: a client the app drops
    is unregistered when it is collected.
    """

    def __init__(self, registry: HealthRegistry, settings: Settings) -> None:
        self.registry = registry
        self.settings = settings
        self.active = False
        self._patched: list[tuple[Any, str, Any]] = []
        self._owned: dict[str, Callable[[], Any]] = {}
        self._clients: dict[str, weakref.ref[Any]] = {}
        self._seen: weakref.WeakSet[Any] = weakref.WeakSet()
        self._lock = threading.Lock()

    def start(self) -> None:
        import wrapt  # noqa: PLC0415 - keep import time of ragotel.health small

        self.active = True
        if self.settings.health_auto_register:
            wrapt.register_post_import_hook(self._patch_chroma, "chromadb")
            wrapt.register_post_import_hook(self._patch_qdrant, "qdrant_client")
        if self.settings.health_probe_llm:
            wrapt.register_post_import_hook(self._patch_openai, "openai")

    def stop(self) -> None:
        """Restore the constructors and unregister the dependencies registered here. Never raises."""
        self.active = False
        with self._lock:
            patched, self._patched = self._patched, []
            owned, self._owned = self._owned, {}
            self._clients.clear()
        for owner, attribute, original in reversed(patched):
            _guard.call(f"restoring {attribute}", functools.partial(setattr, owner, attribute, original), None)
        for name, check in owned.items():
            self.registry.unregister_check(name, check)

    # --- patching (post-import hooks; guarded: a library change must not break its import) ------------------
    def _wrap(self, owner: Any, attribute: str, wrapper: Callable[..., Any]) -> None:
        import wrapt  # noqa: PLC0415

        original = owner.__dict__.get(attribute) if isinstance(owner, type) else getattr(owner, attribute, None)
        if original is None or isinstance(original, wrapt.ObjectProxy):
            return
        setattr(owner, attribute, wrapt.FunctionWrapper(original, wrapper))
        self._patched.append((owner, attribute, original))

    def _patch_chroma(self, module: Any) -> None:
        if not self.active:
            return
        with self._lock:
            for factory in _CHROMA_FACTORIES:
                _guard.call(
                    f"patching chromadb.{factory}", functools.partial(self._wrap, module, factory, self._created), None
                )

    def _patch_qdrant(self, module: Any) -> None:
        if not self.active:
            return
        with self._lock:
            for module_name, class_name in _QDRANT_CLASSES:
                defining = _guard.call(
                    f"importing {module_name}", functools.partial(importlib.import_module, module_name), None
                )
                owner = getattr(defining, class_name, None)
                if owner is not None:
                    _guard.call(
                        f"patching {class_name}", functools.partial(self._wrap, owner, "__init__", self._init), None
                    )

    def _patch_openai(self, module: Any) -> None:
        if not self.active:
            return
        with self._lock:
            for _, class_name in _OPENAI_CLASSES:
                owner = getattr(module, class_name, None)
                if owner is not None:
                    _guard.call(
                        f"patching {class_name}", functools.partial(self._wrap, owner, "__init__", self._init), None
                    )

    # --- wrappers: call through exactly once, register afterwards (guarded), return the result unchanged -----
    def _created(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        client = wrapped(*args, **kwargs)
        _guard.call("health auto-registration", functools.partial(self._add, client), None)
        return client

    def _init(self, wrapped: Callable[..., Any], instance: Any, args: Any, kwargs: Any) -> Any:
        result = wrapped(*args, **kwargs)
        _guard.call("health auto-registration", functools.partial(self._add, instance), None)
        return result

    def _add(self, client: Any) -> None:
        if not self.active or client is None or client in self._seen:
            return
        if checks.probe_deadline.get() is not None:
            return  # made by a probe itself (openai's with_options copy, a sync twin of an async client)
        module = type(client).__module__
        path: str | None = None
        if module.startswith("chromadb"):
            system, kind = "chroma", KIND_VECTOR_DB
            name, path = _chroma_target(client)
        elif module.startswith("qdrant_client"):
            system, kind = "qdrant", KIND_VECTOR_DB
            name, path = _qdrant_target(client)
        elif module.startswith("openai"):
            system, kind = "openai", KIND_LLM
            name = f"llm:{checks.redact(str(client.base_url)).rstrip('/')}"
        else:
            return
        self._seen.add(client)
        check = weak_client_check(system, client)
        with self._lock:
            if name == _MEMORY_QDRANT:
                base, n = name, 1
                while (ref := self._clients.get(name)) is not None and ref() is not None:
                    n += 1
                    name = f"{base}#{n}"
            self._owned[name] = check
            self._clients[name] = weakref.ref(client)
        self.registry.register(
            name, check, kind=kind, interval=self.settings.health_interval_s, timeout=self.settings.health_timeout_s
        )
        weakref.finalize(client, self._forget, name, check)
        if path:
            from ragotel import host  # noqa: PLC0415 - host gauges are optional

            host.watch_filesystem(path)

    def _forget(self, name: str, check: Callable[[], Any]) -> None:
        with self._lock:
            if self._owned.get(name) is check:
                del self._owned[name]
                self._clients.pop(name, None)
        self.registry.unregister_check(name, check)
