"""A tiny BERT cross-encoder the tests build from a config and a vocabulary (no download): real weights, real code."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # everything is local: never reach for the hub
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import pytest

NAME = "tiny-cross-encoder"  # the model directory's basename: how a local model is named on spans
_WORDS = [
    "[PAD]",
    "[UNK]",
    "[CLS]",
    "[SEP]",
    "[MASK]",
    "the",
    "a",
    "cat",
    "dog",
    "bird",
    "fish",
    "about",
    "on",
    "of",
    "is",
    "question",
    "answer",
    "document",
    "passage",
    "kiwi",
    "plum",
    "otter",
    "mango",
    "walrus",
    "subject",
    "topic",
]


def build(directory: Path, vocabulary: Sequence[str] = ()) -> str:
    """Write a randomly initialised (seeded) one-layer BERT sequence classifier with one label, with ``vocabulary``
    (special tokens first) or this module's; its path."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification, BertTokenizerFast

    path = directory / NAME
    path.mkdir(parents=True, exist_ok=True)
    words = list(vocabulary) or _WORDS
    vocab = path / "vocab.txt"
    vocab.write_text("\n".join(words) + "\n", encoding="utf-8")
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=len(words),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=32,
        max_position_embeddings=64,
        num_labels=1,
    )
    BertForSequenceClassification(config).save_pretrained(path)
    BertTokenizerFast(vocab_file=str(vocab)).save_pretrained(path)
    return str(path)


@pytest.fixture(scope="session")
def cross_encoder_path(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The tiny cross-encoder's directory, built once per session."""
    return build(tmp_path_factory.mktemp("models"))
