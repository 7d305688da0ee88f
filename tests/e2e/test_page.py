"""The analyzer's web page in a real browser (Debian's Chromium driven by Playwright) against real analyzers.

The main flow runs the example RAG app, instrumented by ragotel, against an in-process analyzer, with the app's LLM
on the loopback OpenAI server; a slow-LLM fault must show on the chart and as an alert with its diagnosis, without a
reload. The other tests use a bare analyzer fed over OTLP. With ``RAGOTEL_SCREENSHOTS=DIR`` the tests save a PNG of
each view into DIR (``RAGOTEL_SCREENSHOTS=docs/img`` refreshes the documentation's).
"""

from __future__ import annotations

import contextlib
import os
import re
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from examples.langchain_app import AppConfig, RagApp
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from playwright.sync_api import Browser, ConsoleMessage, Page, Playwright, expect, sync_playwright
from tests.e2e.instrumented import instrumented
from tests.servers import HttpReceiver, RedisServer
from tests.servers.openai import FakeOpenAI

from ragotel import health
from ragotel.analyzer.config.loading import load_config
from ragotel.analyzer.server import Server
from ragotel.demo import analyzer_overrides
from ragotel.semconv import RAGOTEL_COMPONENT, RAGOTEL_STAGE

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

CHROMIUM = "/usr/bin/chromium"
SERVICE = "rag-page-test"
HOSTILE = '<script>window.__pwned=1</script><img src=x onerror="window.__pwned=1">'
SHOTS = os.environ.get("RAGOTEL_SCREENSHOTS")
_GRAPH = "/api/v1/dependencies"


def _shot(page: Page, name: str, selector: str | None = None) -> None:
    if not SHOTS:
        return
    Path(SHOTS).mkdir(parents=True, exist_ok=True)
    target = page.locator(selector) if selector else page
    target.screenshot(path=str(Path(SHOTS) / f"page-{name}.png"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium (Playwright's own browser download cannot work offline)."""
    with sync_playwright() as playwright:
        yield _launch(playwright)


def _launch(playwright: Playwright) -> Browser:
    return playwright.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])


@pytest.fixture
def pages(browser: Browser) -> Iterator[Callable[..., Page]]:
    """New pages (``viewport`` optional) in a fresh browser context, closed before the analyzers stop."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})

    def make(**viewport: int) -> Page:
        page = context.new_page()
        if viewport:
            page.set_viewport_size({"width": viewport["width"], "height": viewport["height"]})
        return page

    yield make
    context.close()


@dataclass
class Console:
    """Console errors and uncaught exceptions of a page. Against an analyzer without the dependency graph
    (``Console.for_server``), Chromium's log line for that endpoint's 404 is the one error tolerated: the page
    handles the 404 by saying the graph is unavailable."""

    errors: list[str] = field(default_factory=list)
    tolerated: str | None = None

    @classmethod
    def for_server(cls, server: Server, token: str | None = None) -> Console:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        request = urllib.request.Request(f"http://{server.api_address}{_GRAPH}", headers=headers)
        try:
            urllib.request.urlopen(request, timeout=5).close()
        except urllib.error.HTTPError as exc:
            return cls(tolerated=_GRAPH if exc.code == 404 else None)
        return cls()

    def watch(self, page: Page) -> Page:
        def on_console(message: ConsoleMessage) -> None:
            url = message.location.get("url", "")
            if message.type == "error" and not (self.tolerated and url.endswith(self.tolerated)):
                self.errors.append(f"{message.text} at {message.location}")

        page.on("console", on_console)
        page.on("pageerror", lambda exc: self.errors.append(f"uncaught: {exc}"))
        return page


def _analyzer(tmp_path: Path, webhook: str, **extra: Any) -> Server:
    overrides = analyzer_overrides(tmp_path / "analyzer.db", webhook)
    overrides.update(extra)
    server = Server(load_config([], overrides))
    server.start()
    return server


# --- the main flow: a real instrumented app, a slow-LLM fault --------------------------------------------------------
SLOW_GENERATION = {
    "name": "slow_generation",
    "signal": "latency_p95",
    "match": {"stage": "generation"},
    "condition": "greater_than",
    "threshold": 0.8,
    "for": "0s",
    "severity": "critical",
    "cooldown": "300s",
}


@dataclass
class Live:
    server: Server
    app: RagApp
    llm: FakeOpenAI
    redis: RedisServer
    stop: threading.Event

    @property
    def url(self) -> str:
        return f"http://{self.server.api_address}/"


@pytest.fixture
def live(tmp_path: Path, http_receiver: HttpReceiver, redis_server: RedisServer) -> Iterator[Live]:
    """An analyzer, the example app exporting to it (LLM on the loopback OpenAI server, a Redis dependency probed),
    and two threads asking questions until the test ends."""
    flush = {"type": "redis_flush", "url": redis_server.url, "pattern": "answers:{service}:*"}
    recovery = [
        {"name": "clear-answer-cache", "on": ["slow_generation"], "dry_run": True, "cooldown": "5s", "action": flush}
    ]
    server = _analyzer(tmp_path, f"{http_receiver.url}/hook", rules=[SLOW_GENERATION], recovery=recovery)
    stop = threading.Event()
    threads: list[threading.Thread] = []
    try:
        with instrumented(server, SERVICE), FakeOpenAI() as llm:
            env = {"OPENAI_BASE_URL": llm.base_url, "OPENAI_API_KEY": "test"}
            config = AppConfig(store_dir=tmp_path / "store", embedding="hash", service_name=SERVICE)
            app = RagApp(config, env=env)
            try:
                app.register_health(interval=0.3)
                health.register("redis:answers", health.redis_check(redis_server.url), kind="cache", interval=0.3)
                threads = [threading.Thread(target=_ask, args=(app, stop), daemon=True) for _ in range(2)]
                for thread in threads:
                    thread.start()
                yield Live(server, app, llm, redis_server, stop)
            finally:
                stop.set()
                for thread in threads:
                    thread.join(timeout=15)
                health.unregister("redis:answers")
                app.close()
    finally:
        server.stop()


def _ask(app: RagApp, stop: threading.Event) -> None:
    questions = ("How is content capture turned on?", "What does the analyzer do?", "Which stages are recorded?")
    i = 0
    while not stop.is_set():
        with contextlib.suppress(Exception):  # faults and a stopping app; the page is what is under test
            app.ask(questions[i % len(questions)])
        i += 1
        stop.wait(0.05)


def _p95(page: Page, stage: str) -> float:
    raw = page.locator(f'figure.chart[data-kind="latency"][data-stage="{stage}"]').get_attribute("data-p95")
    return float(raw) if raw else 0.0


def _wait(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(0.25)
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


def test_slow_llm_shows_on_the_chart_and_as_a_diagnosed_alert_without_reload(
    live: Live, pages: Callable[..., Page]
) -> None:
    """With the app running, the page loads with no console error; a slow LLM raises the generation chart's p95 and
    its alert appears with causes, confidence, stage attribution and actions, all without a reload; keyboard and a
    375 px viewport work."""
    console = Console.for_server(live.server)
    page = console.watch(pages())
    page.goto(f"{live.url}?poll=1000")
    expect(page.locator(f'#service-list li[data-service="{SERVICE}"]')).to_be_visible(timeout=15_000)
    page.select_option("#chart-range", "15m")
    chart = page.locator('figure.chart[data-kind="latency"][data-stage="generation"]')
    expect(chart).to_have_attribute("data-p95", re.compile(r"\d"), timeout=25_000)  # the first 10-second point
    before = _p95(page, "generation")
    assert before < 0.5, before
    _shot(page, "overview")

    live.llm.delay = 1.2  # the fault: every LLM call now takes 1.2 s longer
    navigations: list[str] = []
    page.on("framenavigated", lambda frame: navigations.append(frame.url))
    alert = page.locator('#alert-list li.alert[data-rule="slow_generation"]')
    expect(alert).to_be_visible(timeout=30_000)
    _wait(lambda: _p95(page, "generation") > 1.0, 30, "the generation p95 on the chart to pass 1 s")
    assert navigations == [], "the page reloaded"
    after = _p95(page, "generation")
    assert after > 3 * max(before, 0.05), (before, after)
    _shot(page, "charts", "#charts")

    # keyboard: Tab from the alerts heading reaches the alert's button; Enter expands its diagnosis
    page.locator("#alerts-title").evaluate("h => { h.tabIndex = -1; h.focus(); }")
    button = alert.locator("> button")
    for _ in range(10):
        page.keyboard.press("Tab")
        if button.evaluate("b => b === document.activeElement"):
            break
    assert button.evaluate("b => b === document.activeElement"), "Tab did not reach the alert"
    page.keyboard.press("Enter")
    expect(button).to_have_attribute("aria-expanded", "true")
    page.wait_for_timeout(1200)  # a poll re-renders the list: the focus stays on the alert
    assert page.evaluate("() => document.activeElement.closest('li.alert')?.dataset.rule") == "slow_generation"
    diagnosis = alert.locator(".diagnosis")
    expect(diagnosis).to_contain_text("primary cause")
    expect(diagnosis).to_contain_text("confidence")
    expect(diagnosis.locator(".causes li").first).to_be_visible()
    expect(diagnosis.locator("table.bars tr[data-status]").first).to_be_visible()  # the stage attribution
    expect(diagnosis.locator(".actions li").first).to_be_visible()
    assert diagnosis.locator('table.bars tr[data-status="slow"]').count() >= 1
    expect(page.locator("#recovery-table tbody")).to_contain_text("clear-answer-cache", timeout=15_000)
    _shot(page, "alerts", "#alerts")
    _shot(page, "recoveries", "#recoveries")

    page.set_viewport_size({"width": 375, "height": 800})
    page.wait_for_timeout(1500)  # two polls at the narrow width
    overflow = page.evaluate("() => document.documentElement.scrollWidth - document.documentElement.clientWidth")
    assert overflow <= 0, f"horizontal scrolling at 375 px: {overflow} px"
    for selector in (f'#service-list li[data-service="{SERVICE}"]', "#chart-list figure.chart", "#alert-list li.alert"):
        box = page.evaluate(
            "s => { const r = document.querySelector(s).getBoundingClientRect(); return [r.left, r.right]; }", selector
        )
        assert 0 <= box[0] <= box[1] <= 375, (selector, box)
    page.evaluate("() => window.scrollTo(0, 0)")
    expect(page.locator(f'#service-list li[data-service="{SERVICE}"]')).to_be_in_viewport()
    _shot(page, "mobile")
    assert console.errors == [], console.errors


def test_dependency_turns_red_when_its_redis_is_killed(live: Live, pages: Callable[..., Page]) -> None:
    """(Needs /api/v1/dependencies.) The graph draws the app's Redis dependency green, then red once Redis is
    killed, without a reload."""
    console = Console()
    page = console.watch(pages())
    page.goto(f"{live.url}?poll=1000")
    redis = page.locator("#dependency-list li", has_text="redis")
    expect(redis.first).to_have_attribute("data-health", "up", timeout=20_000)
    node_id = redis.first.get_attribute("data-node")
    live.redis.kill()
    expect(page.locator(f'#dependency-list li[data-node="{node_id}"]')).to_have_attribute(
        "data-health", "down", timeout=20_000
    )
    colour = page.evaluate("id => window.ragotelPage.cy.getElementById(id).style('background-color')", node_id)
    assert colour.replace(" ", "") in ("rgb(198,40,40)", "#c62828"), colour
    _shot(page, "graph", "#graph-section")
    assert console.errors == [], console.errors


# --- a bare analyzer: escaping, auth, big graphs ----------------------------------------------------------------------
@pytest.fixture
def bare(tmp_path: Path, http_receiver: HttpReceiver) -> Iterator[Server]:
    """An analyzer without an app; tests feed it over OTLP/HTTP."""
    server = _analyzer(tmp_path, f"{http_receiver.url}/hook")
    yield server
    server.stop()


def _send_spans(server: Server, service: str, name: str, component: str) -> None:
    """Three retrieval spans of ``service`` over real OTLP/HTTP."""
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(
        SimpleSpanProcessor(OTLPSpanExporter(endpoint=f"http://{server.http_address}/v1/traces"))
    )
    tracer = provider.get_tracer("page-test")
    for _ in range(3):
        with tracer.start_as_current_span(name, attributes={RAGOTEL_STAGE: "retrieval", RAGOTEL_COMPONENT: component}):
            pass
    provider.shutdown()


def _graph(n_services: int, n_dependencies: int, *, name: str = "dep {i}") -> dict[str, Any]:
    """A /api/v1/dependencies document of the agreed shape (docs/analyzer.md) with one dependency down."""
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    for s in range(n_services):
        nodes.append({"id": f"service:svc-{s}", "kind": "service", "name": f"svc-{s}", "service": f"svc-{s}",
                      "type": None, "health": "up", "attributes": {}})  # fmt: skip
    for i in range(n_dependencies):
        dep_id = f"dependency:cache/redis/{i}"
        nodes.append({"id": dep_id, "kind": "dependency", "name": name.format(i=i), "service": None, "type": "cache",
                      "health": "down" if i == 0 else "up", "attributes": {}})  # fmt: skip
        edges.append({"source": f"service:svc-{i % n_services}", "target": dep_id, "requests": 10,
                      "request_rate": 1.0, "error_rate": 1.0 if i == 0 else 0.0, "p95": 0.01})  # fmt: skip
    return {"window_seconds": 60.0, "generated_at": "2026-12-05T18:00:00Z", "truncated": False, "limit": 1000,
            "nodes": nodes, "edges": edges}  # fmt: skip


def test_telemetry_strings_render_as_text(bare: Server, pages: Callable[..., Page]) -> None:
    """A service, span and component named with markup, and graph nodes named so, show as text and run nothing."""
    _send_spans(bare, HOSTILE, "<script>span</script>", "<b>component</b>")
    console = Console()
    page = console.watch(pages())
    graph = _graph(2, 3, name=HOSTILE + " {i}")
    page.route("**/api/v1/dependencies", lambda route: route.fulfill(json=graph))
    page.goto(f"http://{bare.api_address}/?poll=1000")
    card = page.locator("#service-list li.card").first
    expect(card.locator(".name")).to_have_text(HOSTILE, timeout=15_000)
    expect(page.locator("#dependency-list li").first).to_contain_text(HOSTILE)
    page.wait_for_timeout(1200)
    assert page.evaluate("() => window.__pwned") is None
    assert page.locator("main script, main img").count() == 0
    assert console.errors == [], console.errors


def test_with_auth_on_no_data_without_the_token(
    tmp_path: Path, http_receiver: HttpReceiver, pages: Callable[..., Page]
) -> None:
    """With an API token, the shell and its files carry no data, the API answers 401 without the token, and the page
    shows data only once the token is given."""
    os.environ["RAGOTEL_PAGE_TEST_TOKEN"] = "s3cret-page-token"
    server = _analyzer(tmp_path, f"{http_receiver.url}/hook", api={"endpoint": "127.0.0.1:0",
                       "auth": {"token_env": "RAGOTEL_PAGE_TEST_TOKEN"}})  # fmt: skip
    try:
        _send_spans(server, "secret-service", "retrieve", "custom")
        base = f"http://{server.api_address}"
        for path in ("/", "/static/app.js", "/static/app.css"):
            with urllib.request.urlopen(base + path) as response:
                assert response.status == 200
                assert b"secret-service" not in response.read()
        for path in ("/api/v1/stats", "/api/v1/history", "/api/v1/alerts", "/api/v1/health"):
            with pytest.raises(urllib.error.HTTPError) as refused:
                urllib.request.urlopen(base + path)
            assert refused.value.code == 401
            assert b"secret-service" not in refused.value.read()

        console = Console.for_server(server, "s3cret-page-token")
        page = console.watch(pages())
        page.goto(f"{base}/?poll=1000")
        expect(page.locator("#login")).to_be_visible()
        expect(page.locator("#content")).to_be_hidden()
        assert "secret-service" not in page.content()
        _shot(page, "login")
        page.fill("#token", "s3cret-page-token")
        page.keyboard.press("Enter")
        expect(page.locator('#service-list li[data-service="secret-service"]')).to_be_visible(timeout=10_000)
        assert page.evaluate("() => sessionStorage.getItem('ragotel.token')") == "s3cret-page-token"
        # 401s before sign-in are the expected answers, not errors of the page
        assert all("401" in e for e in console.errors), console.errors
        page.close()
    finally:
        server.stop()
        del os.environ["RAGOTEL_PAGE_TEST_TOKEN"]


def test_a_graph_of_1000_nodes_stays_usable_and_more_are_aggregated(bare: Server, pages: Callable[..., Page]) -> None:
    """1,000 nodes are drawn one by one within seconds and the page still answers; 3,000 are folded to at most
    1,000 drawn nodes, keeping the one that is down."""
    console = Console()
    page = console.watch(pages())
    documents = {"doc": _graph(10, 990)}
    page.route("**/api/v1/dependencies", lambda route: route.fulfill(json=documents["doc"]))
    started = time.monotonic()
    page.goto(f"http://{bare.api_address}/?poll=1000")
    page.wait_for_function(
        "() => window.ragotelPage.cy && window.ragotelPage.cy.nodes().length === 1000", timeout=20_000
    )
    drawn = time.monotonic() - started
    assert drawn < 15, drawn
    page.wait_for_timeout(300)  # the first frame
    _shot(page, "graph-1000", "#graph")
    # still usable: zooming answers, and the node list (down first) is a keyboard stop
    assert page.evaluate("() => { const cy = window.ragotelPage.cy; cy.zoom(2); return cy.zoom(); }") == 2
    page.focus("#dependency-list")
    assert page.evaluate("() => document.activeElement.id") == "dependency-list"
    expect(page.locator("#dependency-list li").first).to_have_attribute("data-health", "down")
    expect(page.locator('#dependency-list li[data-health="down"]')).to_have_count(1)

    # a node turning down is recoloured in place (no new layout)
    positions = page.evaluate("() => window.ragotelPage.cy.getElementById('dependency:cache/redis/1').position()")
    turned = _graph(10, 990)
    turned["nodes"][11]["health"] = "down"
    documents["doc"] = turned
    colour = "() => window.ragotelPage.cy.getElementById('dependency:cache/redis/1').style('background-color')"
    page.wait_for_function(f"() => ({colour})() === 'rgb(198,40,40)'", timeout=5_000)
    assert (
        page.evaluate("() => window.ragotelPage.cy.getElementById('dependency:cache/redis/1').position()") == positions
    )

    documents["doc"] = _graph(10, 2990)
    page.wait_for_function("() => window.ragotelPage.cy.nodes().length < 1000", timeout=20_000)
    assert page.evaluate("() => window.ragotelPage.cy.getElementById('dependency:cache/redis/0').length") == 1
    expect(page.locator("#graph-note")).to_contain_text("folded")
    assert console.errors == [], console.errors
