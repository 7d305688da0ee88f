"""Check ragotel's OpenInference mapping against a real Phoenix, and take the screenshots in docs/img/phoenix-*.png.

``python benchmarks/phoenix_view.py`` (from the repository root, in the main environment; ~2 min the first time):

1. builds ``/tmp/ragotel-phoenix-venv`` with ``arize-phoenix`` (pinned below) unless it is there already: Phoenix
   pins versions that clash with the main environment, so it never goes there;
2. starts ``phoenix serve`` on 127.0.0.1 (free ports, a temporary working directory, telemetry off);
3. runs a small RAG app in a child process with ``RAGOTEL_OPENINFERENCE=true`` and content capture on, exporting
   OTLP/HTTP to Phoenix: custom ``ragotel.pipeline`` / ``retrieval`` / ``rerank`` stages, real Chroma (an ephemeral
   client), and the real ``openai`` client against the loopback FakeOpenAI (embeddings and chat);
4. reads the spans back through Phoenix's REST API (``GET /v1/projects/{project}/spans``) and fails unless every
   span has a known kind (none ``UNKNOWN``) and the kinds and the LLM columns are the expected ones;
5. screenshots the project's span table and one trace with Playwright and Debian's Chromium
   (``--chromium /usr/bin/chromium``) into ``docs/img/`` (``--no-screenshots`` skips it).

Prints the figures as JSON lines: venv build seconds, Phoenix start seconds, spans and kinds seen. Nothing leaves
127.0.0.1. Not run in CI: the venv build alone takes about a minute (see docs/sdk.md).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
VENV = Path("/tmp/ragotel-phoenix-venv")
PHOENIX = "arize-phoenix==20.26.1"
PROJECT = "ragotel-demo"
EXPECTED_KINDS = {"CHAIN", "RETRIEVER", "RERANKER", "EMBEDDING", "LLM"}
QUESTIONS = (
    "What is the capital of France?",
    "How does a vector database find the nearest documents?",
    "Why rerank retrieved passages before generation?",
)
CORPUS = (
    "Paris is the capital and largest city of France.",
    "Rome is the capital of Italy and was the centre of the Roman Empire.",
    "A vector database indexes embeddings for approximate nearest-neighbour search.",
    "Rerankers score query-passage pairs jointly and reorder a retriever's candidates.",
    "Retrieval-augmented generation grounds a model's answer in retrieved documents.",
    "HNSW builds a layered proximity graph over the vectors.",
)


def emit(**fields: Any) -> None:
    """One JSON line of figures on stdout."""
    print(json.dumps(fields), flush=True)


def free_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_venv() -> float:
    """Create the Phoenix virtualenv if missing; the seconds it took (0 when it was there)."""
    if (VENV / "bin" / "phoenix").exists():
        return 0.0
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "venv", str(VENV)], check=True)
    pip = [str(VENV / "bin" / "pip"), "install", "-q", "--disable-pip-version-check", PHOENIX]
    subprocess.run(pip, check=True)
    return time.perf_counter() - start


def get_json(url: str) -> Any:
    """GET ``url`` and decode its JSON body (loopback only)."""
    with urllib.request.urlopen(url, timeout=10) as response:  # an http://127.0.0.1 URL we built
        return json.load(response)


def start_phoenix(workdir: Path, port: int, grpc_port: int) -> tuple[subprocess.Popen[bytes], float]:
    """Start ``phoenix serve`` and wait for ``/healthz``; the process and the seconds it took to answer."""
    env = {
        **os.environ,
        "PHOENIX_WORKING_DIR": str(workdir),
        "PHOENIX_HOST": "127.0.0.1",
        "PHOENIX_PORT": str(port),
        "PHOENIX_GRPC_PORT": str(grpc_port),
        "PHOENIX_TELEMETRY_ENABLED": "false",
    }
    log = (workdir / "phoenix.log").open("wb")
    start = time.perf_counter()
    proc = subprocess.Popen([str(VENV / "bin" / "phoenix"), "serve"], env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"phoenix exited with {proc.returncode}; see {workdir / 'phoenix.log'}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=2):  # loopback
                return proc, time.perf_counter() - start
        except OSError:
            time.sleep(0.5)
    proc.terminate()
    raise SystemExit("phoenix did not answer /healthz within 120 s")


def run_app(port: int, project: str = PROJECT, *, openinference: bool = True) -> None:
    """Run :func:`app` in a fresh process (instrument() installs global providers) exporting to Phoenix."""
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "src"), str(ROOT), os.environ.get("PYTHONPATH", "")]),
        "RAGOTEL_OPENINFERENCE": str(openinference).lower(),
        "OTEL_INSTRUMENTATION_GENAI_CAPTURE_MESSAGE_CONTENT": "true",
        "OTEL_SERVICE_NAME": "rag-demo",
        "OTEL_RESOURCE_ATTRIBUTES": f"openinference.project.name={project}",
        "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT": f"http://127.0.0.1:{port}/v1/traces",
        "RAGOTEL_HOST_METRICS": "false",
        "RAGOTEL_APP_LOGS": "off",  # Phoenix takes traces only
        "RAGOTEL_HEALTH_AUTO_REGISTER": "false",
    }
    subprocess.run([sys.executable, __file__, "--app"], env=env, check=True, timeout=120)


def app() -> None:
    """The RAG app: index a small corpus, then answer each question through every stage."""
    import chromadb
    import openai
    from chromadb.config import Settings as ChromaSettings
    from opentelemetry.sdk.metrics import MeterProvider
    from tests.servers.openai import FakeOpenAI

    import ragotel

    # Phoenix takes traces only: a MeterProvider without readers keeps the metrics at home.
    handle = ragotel.instrument(meter_provider=MeterProvider())
    with FakeOpenAI(reply="Paris is the capital of France [1].") as llm:
        client = openai.OpenAI(api_key="sk-local", base_url=llm.base_url, max_retries=0)
        chroma = chromadb.EphemeralClient(settings=ChromaSettings(anonymized_telemetry=False))
        docs = chroma.create_collection("handbook", embedding_function=None)

        def embed(texts: list[str]) -> list[list[float]]:
            data = client.embeddings.create(model="text-embedding-3-small", input=texts, dimensions=64).data
            return [list(d.embedding) for d in data]

        docs.add(ids=[f"doc-{i}" for i in range(len(CORPUS))], documents=list(CORPUS), embeddings=embed(list(CORPUS)))
        for i, question in enumerate(QUESTIONS):
            with ragotel.pipeline("answer", session_id=f"session-{i % 2}", user_id="demo-user"):
                with ragotel.retrieval("handbook", top_k=4) as retrieved:
                    found = docs.query(query_embeddings=embed([question]), n_results=4)
                    ids, distances = found["ids"][0], (found["distances"] or [[]])[0]
                    retrieved.add_documents(list(zip(ids, [1.0 - d for d in distances], strict=True)))
                with ragotel.rerank("keyword-overlap", top_n=2) as ranked:
                    texts = (found["documents"] or [[]])[0]
                    words = set(question.lower().split())
                    scores = [len(words & set(t.lower().split())) / len(words) for t in texts]
                    best = sorted(zip(ids, scores, texts, strict=True), key=lambda x: -x[1])[:2]
                    ranked.add_documents([(doc_id, score) for doc_id, score, _ in best])
                context = "\n".join(text for _, _, text in best)
                client.chat.completions.create(
                    model="gpt-4o-mini",
                    messages=[
                        {"role": "system", "content": f"Answer from the context.\n{context}"},
                        {"role": "user", "content": question},
                    ],
                )
    if not handle.shutdown():
        raise SystemExit("the last export to Phoenix failed")


def spans(port: int, want: int, project: str = PROJECT) -> list[dict[str, Any]]:
    """The project's spans from Phoenix's REST API, waiting (up to 30 s) until at least ``want`` arrived."""
    deadline = time.monotonic() + 30
    found: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        try:
            found = get_json(f"http://127.0.0.1:{port}/v1/projects/{project}/spans?limit=1000")["data"]
        except OSError:
            found = []
        if len(found) >= want:
            break
        time.sleep(0.5)
    return found


def check(found: list[dict[str, Any]]) -> dict[str, int]:
    """Fail unless every span has a known kind and the LLM spans carry Phoenix's model and token columns."""
    kinds = collections.Counter(str(s["span_kind"]) for s in found)
    unknown = [s["name"] for s in found if s["span_kind"] == "UNKNOWN"]
    if unknown:
        raise SystemExit(f"spans of unknown kind in Phoenix: {unknown}")
    if set(kinds) != EXPECTED_KINDS:
        raise SystemExit(f"span kinds {sorted(kinds)}, expected {sorted(EXPECTED_KINDS)}")
    for span in found:
        if span["span_kind"] != "LLM":
            continue
        attrs = span["attributes"]  # flat dotted keys
        if not attrs.get("llm.model_name") or not attrs.get("llm.token_count.total"):
            raise SystemExit(f"LLM span without model or token count in Phoenix: {span['attributes']}")
    return dict(kinds)


def screenshots(port: int, found: list[dict[str, Any]], chromium: str) -> list[str]:
    """The span table and one trace of the project, as PNG files under docs/img/."""
    from playwright.sync_api import sync_playwright

    project = next(p for p in get_json(f"http://127.0.0.1:{port}/v1/projects")["data"] if p["name"] == PROJECT)
    llm = next(s for s in found if s["span_kind"] == "LLM")
    base = f"http://127.0.0.1:{port}/projects/{project['id']}"
    # (file, page, text that shows the page has rendered its data)
    pages = (
        ("phoenix-spans.png", f"{base}/spans", "pipeline answer"),
        ("phoenix-trace.png", f"{base}/traces/{llm['context']['trace_id']}?selectedSpanNodeId={llm['id']}", "Output"),
    )
    written = []
    out = ROOT / "docs" / "img"
    out.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 900})
        for name, url, marker in pages:
            page.goto(url, wait_until="networkidle")
            page.get_by_text(marker).first.wait_for(timeout=30_000)
            if name == "phoenix-spans.png":  # every span, not only the roots the table opens with
                page.locator(".cm-content").first.click()
                page.keyboard.press("Control+A")
                page.keyboard.press("Backspace")
                page.keyboard.press("Enter")
                page.get_by_text("chat gpt-4o-mini").first.wait_for(timeout=30_000)
                page.keyboard.press("Escape")  # close the filter's suggestions
                page.evaluate("document.activeElement && document.activeElement.blur()")
            page.wait_for_timeout(2000)  # charts and the details pane fill in after the first rows
            page.screenshot(path=str(out / name))
            written.append(str((out / name).relative_to(ROOT)))
        browser.close()
    return written


def main() -> None:
    """Build, start, export, check, screenshot; the figures on stdout."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--app", action="store_true", help=argparse.SUPPRESS)  # the child process
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--no-screenshots", action="store_true")
    parser.add_argument("--compare-off", action="store_true", help="also show what Phoenix sees with the setting off")
    args = parser.parse_args()
    if args.app:
        app()
        return
    emit(step="venv", seconds=round(build_venv(), 1), path=str(VENV), package=PHOENIX)
    workdir = Path(tempfile.mkdtemp(prefix="ragotel-phoenix-"))
    port, grpc_port = free_port(), free_port()
    proc, started = start_phoenix(workdir, port, grpc_port)
    try:
        emit(step="phoenix", seconds=round(started, 1), url=f"http://127.0.0.1:{port}")
        run_app(port)
        # index: 1 embedding + 1 add; each question: pipeline, retrieval, embedding, query, rerank, chat
        want = 2 + 6 * len(QUESTIONS)
        found = spans(port, want)
        kinds = check(found)
        emit(step="spans", count=len(found), kinds=kinds, unknown=0)
        if not args.no_screenshots:
            emit(step="screenshots", files=screenshots(port, found, args.chromium))
        if args.compare_off:
            run_app(port, f"{PROJECT}-off", openinference=False)
            off = collections.Counter(str(s["span_kind"]) for s in spans(port, want, f"{PROJECT}-off"))
            emit(step="spans with RAGOTEL_OPENINFERENCE=false", count=sum(off.values()), kinds=dict(off))
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
