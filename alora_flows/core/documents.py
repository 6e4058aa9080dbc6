"""Documents as a first-class input of a conversation: what they are and how they are rendered.

Why apart from the messages: RAG models take retrieved documents as their own input, not as text
pasted into a user turn. Granite's chat templates render a ``documents=[{doc_id, text}]``
argument in a place and format the model was trained on, and Granite's intrinsics (granite-common,
mellea) pass documents that way. So a session keeps its documents beside its messages, and the
renderer hands them to the chat template.

Templates that do not take documents get one documented rendering instead
(:data:`DOCUMENTS_HEADER`): a user turn ``"You have access to the following documents:\\n\\n
[Document <id>]\\n<text>\\n\\n..."``, placed after any leading system turns. An intrinsic's
``io.yaml`` may ask for another form (``docs_as_message``: ``string`` — that same turn, first in
the conversation as Granite places it; ``json`` — a user turn holding the JSON list; ``roles`` —
one turn per document with role ``document <id>``): :class:`DocumentSet` carries that choice.
A fourth form, ``inline``, is the layout the embedded model's intrinsics were trained on: each
document belongs to the user turn it came with (:attr:`Document.turn`, set by the session), and
that turn renders as ``"<text>\n<text>\n\n<content>"``. So a flow that hands documents to the
session (``message`` with ``documents:`` and ``documents_as: inline``) gives the model exactly the
tokens of a flow that pasted them into the turn, while the session, and the hallucination
intrinsic's evidence check, know which text is documents and which is the question.

Everything here is pure: :func:`chat_inputs` turns messages + documents into the messages and
the chat-template keyword arguments that :class:`~alora_flows.core.chat.ChatRenderer` renders.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, field_validator

from alora_flows.errors import DocumentError

DocsAs = Literal["template", "string", "json", "roles", "inline"]
DOCUMENTS_HEADER = "You have access to the following documents:\n\n"
#: Between a user turn's inline documents and its own content (``inline`` rendering).
INLINE_SEPARATOR = "\n\n"


class Document(BaseModel):
    """One document: an id (as the model will cite it) and its text.

    ``turn`` (``inline`` rendering only) is the index of the message the document came with; the
    session sets it, so that a document stays with its question when later turns follow.
    """

    model_config = ConfigDict(frozen=True)

    doc_id: str
    text: str
    turn: int | None = None


class DocumentSet(BaseModel):
    """Documents with the way they are rendered. ``render_as=None``: by the chat template when it
    takes documents, else as the documented user turn (see the module docstring)."""

    model_config = ConfigDict(frozen=True)

    documents: tuple[Document, ...] = ()
    render_as: DocsAs | None = None

    @field_validator("documents", mode="before")
    @classmethod
    def _coerce(cls, value: Any) -> Any:
        """Plain strings and ``{doc_id, text}`` mappings as :func:`as_documents` reads them."""
        return tuple(as_documents(value)) if not isinstance(value, DocumentSet) else value.documents


DocumentsLike = DocumentSet | Iterable[Document | Mapping[str, Any] | str] | None


def as_documents(items: Iterable[Any] | None) -> list[Document]:
    """Documents from :class:`Document`, ``{"doc_id", "text"}`` mappings or plain strings.

    Plain strings get their position as id (``"0"``, ``"1"``, ... as mellea numbers them).
    """
    if items is None:
        return []
    if isinstance(items, DocumentSet):
        return list(items.documents)
    if isinstance(items, (str, Mapping)):
        items = [items]
    out = []
    for i, item in enumerate(items):
        if isinstance(item, Document):
            out.append(item)
        elif isinstance(item, str):
            out.append(Document(doc_id=str(i), text=item))
        elif isinstance(item, Mapping) and "text" in item:
            doc_id = item.get("doc_id", item.get("id", i))
            if not isinstance(item["text"], str) or doc_id is None:
                raise DocumentError(f"document {i}: 'text' must be a string and 'doc_id' must be set")
            out.append(Document(doc_id=str(doc_id), text=item["text"]))
        else:
            raise DocumentError(
                f"document {i}: expected a string or a mapping with 'doc_id' and 'text', got {item!r:.80}"
            )
    return out


def as_document_set(documents: DocumentsLike) -> DocumentSet:
    if isinstance(documents, DocumentSet):
        return documents
    return DocumentSet(documents=tuple(as_documents(documents)))


def template_takes_documents(tokenizer) -> bool:
    """Whether the tokenizer's chat template reads a ``documents`` variable."""
    template = getattr(tokenizer, "chat_template", None)
    if isinstance(template, dict):
        template = template.get("default") or next(iter(template.values()), None)
    return isinstance(template, str) and "documents" in template


def documents_as_text(documents: Sequence[Document]) -> str:
    """The documented rendering of documents as one turn's content."""
    body = "\n\n".join(f"[Document {d.doc_id}]\n{d.text}" for d in documents)
    return DOCUMENTS_HEADER + body


def documents_as_messages(documents: Sequence[Document], how: DocsAs) -> list[dict[str, str]]:
    """Granite's ``docs_as_message`` forms: ``string``, ``json`` or ``roles``."""
    if how == "string":
        return [{"role": "user", "content": documents_as_text(documents)}]
    if how == "json":
        payload = [{"text": d.text, "doc_id": d.doc_id} for d in documents]
        return [{"role": "user", "content": json.dumps(payload, ensure_ascii=False)}]
    if how == "roles":
        return [{"role": f"document {d.doc_id}", "content": d.text} for d in documents]
    raise DocumentError(f"unknown document rendering {how!r} (string, json, roles, inline or template)")


def inline_messages(
    messages: Sequence[Mapping[str, str]], documents: Sequence[Document]
) -> list[dict[str, str]]:
    """The ``inline`` rendering: each document's text goes in front of the user turn it belongs to.

    A document belongs to the first user turn at or after its :attr:`Document.turn` (no turn: the
    first user turn). Texts are joined with a newline and separated from the turn's content by a
    blank line (:data:`INLINE_SEPARATOR`). Documents with no user turn to join (handed over before
    their question) form a user turn of their own at the end.
    """
    msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
    attached: dict[int, list[str]] = {}
    trailing: list[str] = []
    for doc in documents:
        start = 0 if doc.turn is None else doc.turn
        target = next((i for i in range(start, len(msgs)) if msgs[i]["role"] == "user"), None)
        if target is None:
            trailing.append(doc.text)
        else:
            attached.setdefault(target, []).append(doc.text)
    for i, texts in attached.items():
        msgs[i]["content"] = "\n".join(texts) + INLINE_SEPARATOR + msgs[i]["content"]
    if trailing:
        msgs.append({"role": "user", "content": "\n".join(trailing)})
    return msgs


def split_inline(content: str, marker: str = "Question: ") -> tuple[str, str] | None:
    """``(documents text, rest)`` of a user turn in the inline layout whose own content starts
    with ``marker``, or None.

    Only for data files (training and evaluation JSONL) that hold the *rendered* conversation of
    the embedded model's RAG layout (``"<documents>\n\nQuestion: <question>"``): there the
    documents are marked by that layout. A live session never guesses: it knows its documents.
    """
    head, sep, tail = content.rpartition(INLINE_SEPARATOR + marker)
    if not sep or not head.strip():
        return None
    return head, marker + tail


def chat_inputs(
    messages: Sequence[Mapping[str, str]],
    documents: DocumentsLike,
    tokenizer,
    *,
    escape: Callable[[str], str] = lambda text: text,
) -> tuple[list[dict[str, str]], dict[str, Any]]:
    """The messages and chat-template keyword arguments that render ``messages`` with ``documents``.

    ``escape`` is applied to document texts passed to the template (messages are escaped by the
    renderer, like any other turn).
    """
    msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
    docs = as_document_set(documents)
    if not docs.documents:
        return msgs, {}
    how = docs.render_as
    if how is None:
        how = "template" if template_takes_documents(tokenizer) else None
    if how == "template":
        return msgs, {"documents": [{"doc_id": d.doc_id, "text": escape(d.text)} for d in docs.documents]}
    if how == "inline":
        return inline_messages(msgs, docs.documents), {}
    if how is None:  # our documented rendering: after the leading system turns
        lead = next((i for i, m in enumerate(msgs) if m["role"] != "system"), len(msgs))
        return msgs[:lead] + documents_as_messages(docs.documents, "string") + msgs[lead:], {}
    return documents_as_messages(docs.documents, how) + msgs, {}
