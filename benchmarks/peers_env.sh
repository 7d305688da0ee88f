#!/usr/bin/env bash
# Create the virtualenv the peer benchmark runs in (never the main site-packages: the peers conflict with it,
# e.g. openlit 1.45 needs openai<3). Every configuration of benchmarks/peers.py -- uninstrumented, ragotel and
# each peer -- runs from this one venv, so all of them use the same library versions.
#
#   bash benchmarks/peers_env.sh            # creates /tmp/ragotel-peers-venv (override: RAGOTEL_PEERS_VENV=...)
set -euo pipefail

VENV="${RAGOTEL_PEERS_VENV:-/tmp/ragotel-peers-venv}"
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
# openlit pulls ~14 contrib instrumentations, each pinning one opentelemetry-instrumentation release; several
# exist only as 0.66b1, so the whole OTel family is pinned to that release train (pip otherwise backtracks for
# tens of minutes and fails).
SDK_VERSION="${RAGOTEL_PEERS_OTEL_SDK:-1.45.1}"
CONTRIB_VERSION="${RAGOTEL_PEERS_OTEL_CONTRIB:-0.66b1}"

if [ ! -x "$VENV/bin/python" ]; then
    "$PY" -m venv "$VENV"
fi
CONSTRAINTS="$VENV/peers-constraints.txt"
{
    for pkg in api sdk exporter-otlp exporter-otlp-proto-http exporter-otlp-proto-grpc exporter-otlp-proto-common proto; do
        echo "opentelemetry-$pkg==$SDK_VERSION"
    done
    for pkg in instrumentation semantic-conventions instrumentation-aiohttp-client instrumentation-asgi \
        instrumentation-django instrumentation-falcon instrumentation-fastapi instrumentation-flask \
        instrumentation-httpx instrumentation-pyramid instrumentation-requests instrumentation-starlette \
        instrumentation-tornado instrumentation-urllib instrumentation-urllib3 instrumentation-wsgi \
        instrumentation-dbapi util-http; do
        echo "opentelemetry-$pkg==$CONTRIB_VERSION"
    done
    # The libraries under test (openai<3 for openlit 1.45).
    echo "chromadb==1.5.9"
    echo "langchain-core==1.8.3"
    echo "openai>=2.8,<3"
    echo "cohere>=5.14,<6"  # OpenLLMetry 0.62.4 instruments cohere <6 only (it does nothing on 7.x)
} > "$CONSTRAINTS"
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check --progress-bar off -c "$CONSTRAINTS")

"${PIP[@]}" chromadb langchain-core openai anthropic cohere numpy psutil wrapt httpx typing-extensions \
    opentelemetry-api opentelemetry-sdk opentelemetry-instrumentation opentelemetry-semantic-conventions

# The peers. OpenInference's anthropic 2.x/3.x need anthropic>=1, which openlit 1.45 (anthropic<1) excludes:
# 1.1.2 is its newest release for the anthropic 0.x line installed here.
"${PIP[@]}" \
    "opentelemetry-instrumentation-openai==0.62.4" \
    "opentelemetry-instrumentation-langchain==0.62.4" \
    "opentelemetry-instrumentation-chromadb==0.62.4" \
    "opentelemetry-instrumentation-anthropic==0.62.4" \
    "openinference-instrumentation-anthropic==1.1.2" \
    "opentelemetry-instrumentation-cohere==0.62.4" \
    "openinference-instrumentation-openai" \
    "openinference-instrumentation-langchain" \
    "opentelemetry-instrumentation-openai-v2==2.4b0" \
    "opentelemetry-util-genai==1.1b0" \
    "openlit==1.45.0"

# ragotel itself, from this checkout, without letting pip touch the pinned versions above.
"$VENV/bin/python" -m pip install --disable-pip-version-check --quiet --no-deps -e "$ROOT"

"$VENV/bin/python" -m pip check || echo "peers_env: pip check reports conflicts (see above); continuing" >&2
"$VENV/bin/python" - <<'PY'
import importlib.metadata as md
for name in ("openai", "chromadb", "langchain-core", "opentelemetry-sdk", "opentelemetry-instrumentation",
             "opentelemetry-instrumentation-openai", "opentelemetry-instrumentation-langchain",
             "opentelemetry-instrumentation-chromadb", "openinference-instrumentation-openai",
             "openinference-instrumentation-langchain", "openlit", "opentelemetry-instrumentation-openai-v2",
             "opentelemetry-util-genai", "anthropic", "opentelemetry-instrumentation-anthropic",
             "openinference-instrumentation-anthropic", "cohere", "opentelemetry-instrumentation-cohere", "ragotel"):
    try:
        print(f"{name}=={md.version(name)}")
    except md.PackageNotFoundError:
        print(f"{name}: MISSING")
PY
echo "peers venv ready: $VENV"
