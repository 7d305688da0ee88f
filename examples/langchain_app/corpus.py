"""The corpus: the project's own Markdown docs, loaded as LangChain documents and split into chunks."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from langchain_core.documents import Document
from langchain_text_splitters import MarkdownHeaderTextSplitter, RecursiveCharacterTextSplitter

__all__ = ["Corpus", "CorpusError", "default_corpus_dir", "load_corpus"]

CHUNK_SIZE = 800
CHUNK_OVERLAP = 100
_HEADERS = [("#", "h1"), ("##", "h2"), ("###", "h3")]


class CorpusError(Exception):
    """The corpus directory is missing, unreadable or holds no Markdown file."""


@dataclass(frozen=True, slots=True)
class Corpus:
    """The split chunks and a fingerprint of the files and the splitting (a changed corpus is re-indexed)."""

    directory: Path
    files: tuple[Path, ...]
    chunks: tuple[Document, ...]
    fingerprint: str


def default_corpus_dir() -> Path:
    """``docs/`` of the checkout this example lives in, or the copy shipped beside it in the wheel."""
    here = Path(__file__).resolve().parent
    packaged = here / "docs"  # ragotel._example.docs: the wheel's copy of docs/*.md
    return packaged if packaged.is_dir() else here.parents[1] / "docs"


def load_corpus(directory: Path) -> Corpus:
    """Load every ``*.md`` file of ``directory`` and split it by heading, then by size; raise CorpusError if none."""
    if not directory.is_dir():
        raise CorpusError(f"corpus directory {directory} does not exist (expected a directory of *.md files)")
    files = tuple(sorted(p for p in directory.glob("*.md") if p.is_file()))
    if not files:
        raise CorpusError(f"corpus directory {directory} holds no *.md file")
    by_heading = MarkdownHeaderTextSplitter(headers_to_split_on=_HEADERS, strip_headers=False)
    by_size = RecursiveCharacterTextSplitter(chunk_size=CHUNK_SIZE, chunk_overlap=CHUNK_OVERLAP)
    digest = hashlib.sha256(f"{CHUNK_SIZE}/{CHUNK_OVERLAP}".encode())
    chunks: list[Document] = []
    for path in files:
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise CorpusError(f"cannot read corpus file {path}: {exc}") from exc
        digest.update(path.name.encode() + b"\0" + text.encode())
        sections = by_heading.split_text(text)
        for index, chunk in enumerate(by_size.split_documents(sections)):
            title = " / ".join(chunk.metadata[h] for _, h in _HEADERS if h in chunk.metadata)
            chunk_id = f"{path.stem}-{index:04d}"
            chunks.append(
                Document(
                    id=chunk_id,
                    page_content=chunk.page_content,
                    metadata={"source": path.name, "section": title or path.stem, "chunk": index},
                )
            )
    if not chunks:
        raise CorpusError(f"corpus directory {directory} holds only empty *.md files")
    return Corpus(directory, files, tuple(chunks), digest.hexdigest()[:16])
