"""Small text utilities of the data builders.

The hallucination labels index answer sentences (``"r": i``), so the builders split answers with
the runtime's :func:`~alora_flows.sandbox.text.split_sentences` (re-exported here). The prompt
layout (:func:`docs_prompt`) matches the RAG flow's answer template
(``"{{ documents | join('\\n') }}\\n\\nQuestion: {{ question }}"``), so training inputs look like
what the flow produces.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from pathlib import Path

from alora_flows.sandbox.text import split_sentences as split_sentences

SYSTEM_DOCS = "Answer only from the documents."

_SPACES = re.compile(r"\s+")


def normalize_question(question: str) -> str:
    """Canonical surface form of a question: single spaces, first letter upper-case, exactly one
    trailing ``?``. Rewrite targets are always in this form, so exact match is meaningful."""
    q = _SPACES.sub(" ", question).strip()
    q = q.rstrip(" ?.!")
    return (q[:1].upper() + q[1:] + "?") if q else q


def docs_prompt(documents: Iterable[str], question: str) -> str:
    """The user turn of a document-grounded question, as the RAG flow renders it."""
    return "\n".join(documents) + "\n\nQuestion: " + question


def doc_messages(documents: Iterable[str], question: str, *, system: bool = True) -> list[dict]:
    msgs = [{"role": "system", "content": SYSTEM_DOCS}] if system else []
    msgs.append({"role": "user", "content": docs_prompt(documents, question)})
    return msgs


def estimate_tokens(messages: list[dict], output: str = "") -> int:
    """Rough token count without loading a tokenizer: chars/3.5 (invented names split into more
    pieces than English, so chars/4 undercounts by ~20% on this data, measured with the SmolLM2
    tokenizer) plus ~5 ChatML tokens a turn and ~6 for invocation and end tokens. Tests use it
    to keep sequences well under the 350-token budget."""
    chars = sum(len(m["content"]) for m in messages) + len(output)
    return chars * 2 // 7 + 5 * len(messages) + 6


def compact_json(obj: object) -> str:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False)


def write_jsonl(path: str | Path, rows: Iterable[dict]) -> int:
    """Writes one JSON object a line; returns the number written."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    n = 0
    with path.open("w", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
            n += 1
    return n


def read_jsonl(path: str | Path) -> list[dict]:
    with Path(path).open(encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]
