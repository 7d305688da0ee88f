"""``python -m examples.langchain_app``: serve the RAG API, ask one question, or describe the app."""

from __future__ import annotations

import sys

from .cli import main

if __name__ == "__main__":
    sys.exit(main())
