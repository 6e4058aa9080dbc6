"""Retrieval for the RAG example: BM25 (bm25s) over a folder of documents.

Documents are Markdown files with a small YAML header (id, title, license); only the body is
indexed and returned, so prompts look like the intrinsics' training data. The default folder is
the shipped synthetic corpus; ``docs_dir`` points at another (the realistic evaluation's corpus,
``python -m intrinsics.training.realistic.rag DIR``).
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

DOCS_DIR = Path(__file__).parent / "corpus"


def read_doc(path: Path) -> tuple[str, str]:
    """(id, body) of one document file."""
    text = path.read_text(encoding="utf-8")
    if text.startswith("---"):
        _, header, body = text.split("---", 2)
        doc_id = next(
            (line.split(":", 1)[1].strip() for line in header.splitlines() if line.startswith("id:")),
            path.stem,
        )
        return doc_id, body.strip()
    return path.stem, text.strip()


@lru_cache(maxsize=4)
def _index(docs_dir: str):
    import bm25s

    docs = [read_doc(p) for p in sorted(Path(docs_dir).glob("*.md"))]
    if not docs:
        raise FileNotFoundError(f"no documents (*.md) in {docs_dir}")
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize([body for _, body in docs], show_progress=False), show_progress=False)
    return retriever, docs


def search(query: str, k: int = 2, docs_dir: str | Path = DOCS_DIR) -> list[tuple[str, str, float]]:
    """The ``k`` best documents for ``query`` as (id, body, score), best first."""
    import bm25s

    retriever, docs = _index(str(docs_dir))
    k = max(1, min(k, len(docs)))
    results, scores = retriever.retrieve(
        bm25s.tokenize([query], show_progress=False), k=k, show_progress=False
    )
    return [(docs[i][0], docs[i][1], float(s)) for i, s in zip(results[0], scores[0]) if s > 0]


def retrieve(query: str, k: int = 2, docs_dir: str | None = None) -> list[str]:
    """Tool step: the bodies of the ``k`` best documents (possibly fewer if nothing matches) in
    ``docs_dir`` (default: the shipped corpus)."""
    return [body for _, body, _ in search(str(query), int(k), docs_dir or DOCS_DIR)]


def retrieve_ids(query: str, k: int = 2, docs_dir: str | None = None) -> list[str]:
    """The ids of the documents :func:`retrieve` returns, for traces and the demo panel."""
    return [doc_id for doc_id, _, _ in search(str(query), int(k), docs_dir or DOCS_DIR)]
