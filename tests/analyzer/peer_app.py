"""A small RAG app instrumented ONLY by one peer library (no ragotel), for the dialect tests; runs in the peers venv.

    <peers venv>/bin/python tests/analyzer/peer_app.py DIALECT LLM_BASE_URL OTLP_HTTP_BASE SERVICE

Dialects: openlit, openllmetry, openinference, openai-v2. Each request embeds a question (openai), queries an
embedded Chroma collection and asks the chat model; openllmetry and openinference run it as a LangChain chain
with a retriever (their wrapper spans). Chat failures are caught: the loop goes on until stdin closes.
Prints ``ready`` once the first request is done.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from typing import Any


def _providers(service: str, otlp: str) -> Any:
    from opentelemetry import trace
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    exporter = OTLPSpanExporter(endpoint=f"{otlp}/v1/traces")
    provider.add_span_processor(BatchSpanProcessor(exporter, schedule_delay_millis=200))
    trace.set_tracer_provider(provider)
    return provider


def _instrument(dialect: str, service: str, otlp: str, pricing: str) -> Any:
    if dialect == "openlit":
        import openlit

        # OpenLIT builds its own providers; a local pricing file keeps init() off the network.
        openlit.init(
            application_name=service,
            otlp_endpoint=otlp,
            disable_metrics=True,
            capture_message_content=False,
            pricing_json=pricing,
        )
        from opentelemetry import trace

        return trace.get_tracer_provider()
    provider = _providers(service, otlp)
    if dialect == "openllmetry":
        from opentelemetry.instrumentation.chromadb import ChromaInstrumentor
        from opentelemetry.instrumentation.langchain import LangchainInstrumentor
        from opentelemetry.instrumentation.openai import OpenAIInstrumentor

        OpenAIInstrumentor().instrument()
        ChromaInstrumentor().instrument()
        LangchainInstrumentor().instrument()
    elif dialect == "openinference":
        from openinference.instrumentation.langchain import LangChainInstrumentor
        from openinference.instrumentation.openai import OpenAIInstrumentor as OIOpenAIInstrumentor

        OIOpenAIInstrumentor().instrument()
        LangChainInstrumentor().instrument()
    elif dialect == "openai-v2":
        from opentelemetry.instrumentation.openai_v2 import OpenAIInstrumentor as V2Instrumentor

        V2Instrumentor().instrument()
    else:
        raise SystemExit(f"unknown dialect {dialect!r}")
    return provider


def main() -> int:
    dialect, base_url, otlp, service, pricing = sys.argv[1:6]
    provider = _instrument(dialect, service, otlp, pricing)

    import chromadb
    import openai

    client = openai.OpenAI(base_url=base_url, api_key="sk-test", max_retries=0, timeout=10)
    collection = chromadb.EphemeralClient().get_or_create_collection("docs")
    texts = ["chroma stores vectors", "otel exports spans", "the analyzer raises alerts"]
    vectors = [d.embedding for d in client.embeddings.create(model="text-embedding-3-small", input=texts).data]
    collection.add(ids=["d1", "d2", "d3"], embeddings=vectors, documents=texts)

    def search(question: str) -> list[str]:
        vector = client.embeddings.create(model="text-embedding-3-small", input=[question]).data[0].embedding
        found = collection.query(query_embeddings=[vector], n_results=2)
        return list((found["documents"] or [[]])[0])

    def answer(question: str, context: list[str]) -> str:
        reply = client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"{' '.join(context)} {question}"}],
        )
        return reply.choices[0].message.content or ""

    if dialect in ("openllmetry", "openinference"):
        from langchain_core.callbacks import CallbackManagerForRetrieverRun
        from langchain_core.documents import Document
        from langchain_core.retrievers import BaseRetriever
        from langchain_core.runnables import RunnableLambda, RunnablePassthrough

        class ChromaRetriever(BaseRetriever):
            def _get_relevant_documents(
                self, query: str, *, run_manager: CallbackManagerForRetrieverRun
            ) -> list[Document]:
                return [Document(page_content=text) for text in search(query)]

        chain = {"docs": ChromaRetriever(), "question": RunnablePassthrough()} | RunnableLambda(
            lambda x: answer(x["question"], [d.page_content for d in x["docs"]])
        )

        def request(question: str) -> None:
            chain.invoke(question)

    else:

        def request(question: str) -> None:
            answer(question, search(question))

    stop = threading.Event()
    threading.Thread(target=lambda: (sys.stdin.read(), stop.set()), daemon=True).start()
    done = failed = 0
    while not stop.is_set():
        try:
            request(f"question {done}")
        except openai.APIError:
            failed += 1
        done += 1
        if done == 1:
            print("ready", flush=True)
        time.sleep(0.02)
    provider.force_flush()
    provider.shutdown()
    print(json.dumps({"requests": done, "failed": failed}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
