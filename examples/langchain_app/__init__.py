"""A real LangChain RAG service over ragotel's own docs, instrumented by one ``ragotel.instrument()`` call.

Importable API: ``RagApp`` (build, ``ask``, health probes), ``AppConfig``, ``Faults`` (fault injection),
``ApiServer`` (HTTP API), ``main`` (the CLI behind ``python -m examples.langchain_app``).
"""

from __future__ import annotations

from .app import Answer, AppConfig, QuestionError, RagApp, StartupError, default_store_dir
from .faults import FAULTS, FaultError, Faults, LLMFaultError, StoreUnavailableError
from .server import ApiServer

__all__ = [
    "FAULTS",
    "Answer",
    "ApiServer",
    "AppConfig",
    "FaultError",
    "Faults",
    "LLMFaultError",
    "QuestionError",
    "RagApp",
    "StartupError",
    "StoreUnavailableError",
    "default_store_dir",
    "main",
]


def main(argv: list[str] | None = None) -> int:
    """Run the CLI (see ``python -m examples.langchain_app --help``)."""
    from .cli import main as cli_main

    return cli_main(argv)
