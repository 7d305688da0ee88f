"""Wrapping methods that each integration class defines itself (no single definition to wrap), once per class.

LangChain's ``Embeddings.embed_*``, ``VectorStore.similarity_search*`` and ``BaseDocumentCompressor.
compress_documents`` are abstract (or overridable) on a base and defined by each integration class; Haystack's
components share no base at all, only a metaclass. :class:`PerClassWrapper` wraps methods where each class defines
them, once, and unwraps them all; :class:`SubclassHook` drives it for every subclass of a base — those that exist
at instrument time, and any later one when its first instance is created (a ``__new__`` on the base;
``__init_subclass__`` would miss pydantic-based classes, whose ``BaseModel.__init_subclass__`` does not chain up).
"""

from __future__ import annotations

import functools
import threading
import weakref
from collections.abc import Callable, Mapping
from typing import Any, Final

import wrapt
from opentelemetry.instrumentation.utils import unwrap

from ragotel import _guard
from ragotel.coexistence import _PROXY  # what a wrapt wrapper is, in wrapt 1 and 2

__all__ = ["PerClassWrapper", "SubclassHook", "WrapperFactory"]

# Wrapper factory for one method name: (the original function) -> the wrapt wrapper.
WrapperFactory = Callable[[Any], Callable[..., Any]]
_ACTIVE: Final[dict[type, SubclassHook]] = {}  # base class -> the hook its installed __new__ reports to


class PerClassWrapper:
    """Wraps, in each class it is shown, the methods ``factories_for(klass)`` names, where that class defines them.

    Idempotent per class and thread-safe; a method already wrapped (by us, or another tool) is never wrapped again;
    one class failing to wrap does not stop the others.
    """

    def __init__(self, factories_for: Callable[[type], Mapping[str, WrapperFactory]], label: str) -> None:
        self.factories_for = factories_for
        self.label = label
        self.wrapped: list[tuple[weakref.ref[type], str]] = []
        self.seen: weakref.WeakSet[type] = weakref.WeakSet()
        self.lock = threading.Lock()

    def wrap_class(self, cls: type) -> None:
        """Wrap ``cls`` and the classes in its MRO."""
        with self.lock:
            for klass in cls.__mro__:
                if klass in self.seen:
                    continue
                self.seen.add(klass)
                for name, factory in self.factories_for(klass).items():
                    func = vars(klass).get(name)
                    if func is None or getattr(func, "__isabstractmethod__", False) or not callable(func):
                        continue
                    if isinstance(func, _PROXY):
                        continue  # wrapped already (by us earlier, or another tool): never twice
                    wrap = functools.partial(self._wrap, klass, name, factory, func)
                    _guard.call(f"{self.label}: wrapping {klass.__qualname__}.{name}", wrap, None)

    def _wrap(self, klass: type, name: str, factory: WrapperFactory, func: Any) -> None:
        wrapt.wrap_function_wrapper(klass, name, factory(func))
        self.wrapped.append((weakref.ref(klass), name))

    def remove(self) -> None:
        """Unwrap every wrapped method (each failure logged, the others still unwrapped)."""
        with self.lock:
            for ref, name in reversed(self.wrapped):
                klass = ref()
                if klass is not None:
                    _guard.call(f"unwrapping {klass.__qualname__}.{name}", functools.partial(unwrap, klass, name), None)
            self.wrapped.clear()
            self.seen = weakref.WeakSet()


class SubclassHook(PerClassWrapper):
    """Wraps ``methods`` of ``base`` and its subclasses where each class defines them, once per class.

    The ``__new__`` hook is installed once per base and stays: after ``remove()`` it only passes through. CPython
    cannot give a class back its C-level constructor slot once a Python ``__new__`` was set on a base — deleting it
    makes every subclass reject constructor arguments (``object.__new__() takes exactly one argument``) — so an
    inert pass-through is the transparent way to uninstrument. Never raises from ``__new__``.
    """

    def __init__(self, base: type, methods: Mapping[str, WrapperFactory]) -> None:
        found = dict(methods)
        super().__init__(lambda klass: found if issubclass(klass, base) else {}, f"instrumenting {base.__name__}")
        self.base = base

    def install(self) -> None:
        """Wrap every existing subclass, and any later one at its first instantiation."""
        pending = [self.base]
        while pending:
            cls = pending.pop()
            self.wrap_class(cls)
            pending.extend(cls.__subclasses__())
        base = self.base
        _ACTIVE[base] = self
        current = vars(base).get("__new__")
        if getattr(getattr(current, "__func__", current), "__ragotel__", False):
            return  # installed by an earlier instrument(): it now reports to this hook
        if current is not None:
            raise TypeError(f"{base.__qualname__} defines __new__ itself; not hooking it")

        def __new__(cls: type, *args: Any, **kwargs: Any) -> Any:
            hook = _ACTIVE.get(base)
            if hook is not None and cls not in hook.seen:
                _guard.call(f"wrapping a new {base.__name__} class", lambda: hook.wrap_class(cls), None)
            following = super(base, cls).__new__  # type: ignore[arg-type]  # the next __new__ after the base
            return following(cls) if following is object.__new__ else following(cls, *args, **kwargs)

        __new__.__ragotel__ = True  # type: ignore[attr-defined]
        base.__new__ = staticmethod(__new__)  # type: ignore[assignment,method-assign]

    def remove(self) -> None:
        """Unwrap every wrapped method; the ``__new__`` hook turns into a pass-through (see the class docstring)."""
        if _ACTIVE.get(self.base) is self:
            del _ACTIVE[self.base]
        super().remove()
