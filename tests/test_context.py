"""Parentage across asyncio tasks and threads inside a pipeline (docs/concepts.md explains the rules)."""

from __future__ import annotations

import asyncio
import contextvars
import gc
import threading
import weakref
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

import ragotel
from ragotel import telemetry
from ragotel.testing import Capture, capture


@pytest.fixture
def cap() -> Iterator[Capture]:
    with capture() as c:
        yield c


def _parent_id(cap: Capture, name: str) -> int | None:
    span = cap.span(name)
    return span.parent.span_id if span.parent is not None else None


async def test_asyncio_tasks_inherit_the_pipeline(cap: Capture) -> None:
    """Tasks created inside a pipeline (gather, create_task) copy the context, so their stages are children."""

    async def retrieve(source: str) -> None:
        async with ragotel.retrieval(source):
            await asyncio.sleep(0)

    @ragotel.pipeline("fanout")
    async def run() -> None:
        await asyncio.gather(retrieve("a"), retrieve("b"))
        await asyncio.create_task(retrieve("c"))

    await run()
    root = cap.span("pipeline fanout").context.span_id
    assert {_parent_id(cap, f"retrieval {s}") for s in "abc"} == {root}


def test_thread_pool_with_copied_context_is_parented(cap: Capture) -> None:
    """A ThreadPoolExecutor job submitted through contextvars.copy_context().run is a child of the pipeline."""

    def retrieve() -> None:
        with ragotel.retrieval("pooled"):
            pass

    with ragotel.pipeline("threads"), ThreadPoolExecutor(max_workers=2) as pool:
        ctx = contextvars.copy_context()
        pool.submit(ctx.run, retrieve).result()
    assert _parent_id(cap, "retrieval pooled") == cap.span("pipeline threads").context.span_id


async def test_run_in_executor_via_to_thread_is_parented(cap: Capture) -> None:
    """asyncio.to_thread copies the context itself, so the thread's stage is a child."""

    def retrieve() -> None:
        with ragotel.retrieval("to_thread"):
            pass

    async with ragotel.pipeline("async-threads"):
        await asyncio.to_thread(retrieve)
    assert _parent_id(cap, "retrieval to_thread") == cap.span("pipeline async-threads").context.span_id


def test_plain_thread_without_copy_starts_a_new_trace(cap: Capture) -> None:
    """A bare threading.Thread does not inherit the context (documented): its stage is a root span."""

    def retrieve() -> None:
        with ragotel.retrieval("bare"):
            pass

    with ragotel.pipeline("bare-thread"):
        t = threading.Thread(target=retrieve)
        t.start()
        t.join()
    assert _parent_id(cap, "retrieval bare") is None


def test_an_ended_step_leaves_no_reference_cycle(cap: Capture) -> None:
    """Once a step has ended, its context (which holds the operation) is freed by reference counting, not by the GC."""

    gc.collect()
    gc.disable()
    try:
        op = telemetry.current().start("retrieval", "custom", {"gen_ai.data_source.id": "cycle"})
        context = weakref.ref(op._ctx)
        op.end()
        del op
        freed = context() is None
    finally:
        gc.enable()
    assert freed
    assert cap.span("retrieval cycle")
