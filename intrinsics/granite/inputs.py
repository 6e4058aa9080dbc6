"""Input processing of a Granite intrinsic call, as granite-common and mellea do it.

From the conversation, its documents and the call's arguments, in this order:

1. ``sentence_boundaries``: sentences of the last turn (``last_message``), of the documents and
   of the earlier turns (``all_but_last_message``) get tags ``<tag0> ``, ``<tag1> `` ... The last
   turn is numbered from 0 on its own; documents, then earlier turns, share one numbering.
   Sentences are :func:`~alora_flows.sandbox.text.split_sentences` (Granite uses nltk's punkt;
   the two agree on ordinary prose and can differ on abbreviations such as "e.g. x").
2. ``docs_as_message``: documents become turns (``string``/``json``/``roles``) instead of
   chat-template input (:mod:`alora_flows.core.documents`).
3. ``instruction``: a user turn appended after the conversation; ``{last_message}`` is the last
   turn's (tagged) content, every other placeholder a call argument. A placeholder without a value
   is an :class:`~alora_flows.errors.IntrinsicInputError` naming the adapter and the placeholder.

The result, :class:`GraniteRequest`, is what :meth:`Session.invoke` sends (the conversation is
replaced for the call only when step 1 or 2 changed it) and what output processing reads back
(``decode_sentences`` maps sentence numbers to spans of the untagged text).
"""

from __future__ import annotations

import string
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from alora_flows.core.documents import Document, DocumentSet
from alora_flows.errors import IntrinsicInputError, IntrinsicSpecError
from alora_flows.sandbox.text import split_sentences
from intrinsics.granite.io_yaml import IoConfig

LAST_MESSAGE = "last_message"


def sentence_tag(tag: str, number: int) -> str:
    return f"<{tag}{number}> "


def tag_sentences(texts: Sequence[str], tag: str, start: int = 0) -> tuple[list[str], int]:
    """Tag the sentences of each text, numbering on from ``start``; returns (texts, next number)."""
    out = []
    number = start
    for text in texts:
        parts = []
        for sentence in split_sentences(text):
            parts.append(sentence_tag(tag, number) + sentence)
            number += 1
        out.append(" ".join(parts))
    return out, number


class Sentence(BaseModel):
    """One tagged sentence, located in the untagged text of where it came from."""

    model_config = ConfigDict(frozen=True)

    begin: int
    end: int
    text: str
    document_id: str | None = None
    message_index: int | None = None


def untag(tagged: str, tag: str, first: int) -> list[Sentence]:
    """Sentences of a tagged text, numbered from ``first``, with offsets in the untagged text.

    The untagged text is the tagged one without its tags (``"<i0> A. <i1> B."`` -> ``"A. B."``):
    each sentence keeps the separator that follows it, as granite-common counts them.
    """
    marker = sentence_tag(tag, first)
    at = tagged.find(marker)
    if at == -1:
        raise ValueError(f"sentence tag {marker.strip()!r} not found in {tagged[:80]!r}")
    out: list[Sentence] = []
    number, begin, pos = first, 0, at + len(marker)
    while True:
        nxt = tagged.find(sentence_tag(tag, number + 1), pos)
        piece = tagged[pos:] if nxt == -1 else tagged[pos:nxt]
        out.append(Sentence(begin=begin, end=begin + len(piece), text=piece))
        if nxt == -1:
            return out
        begin += len(piece)
        pos = nxt + len(sentence_tag(tag, number + 1))
        number += 1


# ---------------------------------------------------------------------------------- instruction
def instruction_template(instruction: str, adapter: str) -> tuple[str, tuple[str, ...]]:
    """Granite's ``str.format`` instruction as a sandboxed Jinja template, and its placeholders.

    Why convert: templates render only in the one Jinja sandbox; ``str.format`` itself would reach
    attributes (``{x.__class__}``). Placeholders must be plain names.
    """
    if "endraw" in instruction:
        raise IntrinsicSpecError(f"intrinsic '{adapter}': the instruction may not contain 'endraw'")
    parts, names = [], []
    try:
        parsed = list(string.Formatter().parse(instruction))
    except ValueError as exc:
        raise IntrinsicSpecError(
            f"intrinsic '{adapter}': instruction is not a valid format string: {exc}"
        ) from None
    for literal, field, spec, conversion in parsed:
        if literal:
            parts.append("{% raw %}" + literal + "{% endraw %}")
        if field is None:
            continue
        if not field.isidentifier() or spec or conversion:
            raise IntrinsicSpecError(
                f"intrinsic '{adapter}': instruction placeholder {{{field}{'!' + conversion if conversion else ''}"
                f"{':' + spec if spec else ''}}} is not a plain name"
            )
        parts.append("{{ " + field + " }}")
        names.append(field)
    return "".join(parts), tuple(dict.fromkeys(names))


class GraniteRequest(BaseModel):
    """One Granite intrinsic call, ready for :meth:`Session.invoke` and for output processing."""

    model_config = ConfigDict(frozen=True)

    #: The conversation as sent (tagged, documents as turns); None when it is the session's own.
    conversation: tuple[dict[str, str], ...] | None = None
    #: The full conversation as sent, for output processing (equal to the session's when unchanged).
    sent: tuple[dict[str, str], ...] = ()
    #: Turns appended after the conversation (the instruction).
    extra: tuple[dict[str, str], ...] = ()
    #: Documents as sent (tagged); None when they are the session's own.
    documents: DocumentSet | None = None
    #: Tagged documents (or the plain ones), for ``decode_sentences``.
    sent_documents: tuple[Document, ...] = ()


def build_request(
    io: IoConfig,
    conversation: Sequence[Mapping[str, str]],
    documents: Sequence[Document],
    arguments: Mapping[str, Any],
    *,
    adapter: str,
    documents_overridden: bool = False,
    input_override: str | Sequence[Mapping[str, str]] | None = None,
    instruction: tuple[str, tuple[str, ...]] | None = None,
) -> GraniteRequest:
    """Steps 1-3 of the module docstring. ``documents_overridden``: the documents are the call's
    own (not the session's), so they must be sent even if untagged."""
    msgs = [{"role": m["role"], "content": m["content"]} for m in conversation]
    docs = list(documents)
    bounds = io.sentence_boundaries or {}
    changed = False
    if bounds.get("last_message"):
        if not msgs:
            raise IntrinsicInputError(
                f"intrinsic '{adapter}' tags the sentences of the last turn, but the conversation is empty"
            )
        tagged, _ = tag_sentences([msgs[-1]["content"]], bounds["last_message"])
        msgs[-1] = {**msgs[-1], "content": tagged[0]}
        changed = True
    number = 0
    if bounds.get("documents") and docs:
        texts, number = tag_sentences([d.text for d in docs], bounds["documents"], number)
        docs = [Document(doc_id=d.doc_id, text=t) for d, t in zip(docs, texts)]
        documents_overridden = True
    if bounds.get("all_but_last_message") and len(msgs) > 1:
        for i, message in enumerate(msgs[:-1]):
            texts, number = tag_sentences([message["content"]], bounds["all_but_last_message"], number)
            msgs[i] = {**message, "content": texts[0]}
        changed = True
    doc_set: DocumentSet | None = None
    if io.docs_as_message:
        doc_set = DocumentSet(documents=tuple(docs), render_as=io.docs_as_message)
    elif documents_overridden:
        doc_set = DocumentSet(documents=tuple(docs))
    extra: list[dict[str, str]] = []
    if input_override is not None:
        if isinstance(input_override, str):
            extra = [{"role": "user", "content": input_override}]
        else:
            extra = [{"role": m["role"], "content": m["content"]} for m in input_override]
    elif instruction is not None:
        template, names = instruction
        context = {k: v for k, v in arguments.items() if v is not None}
        if msgs:
            context[LAST_MESSAGE] = msgs[-1]["content"]
        missing = [n for n in names if n not in context]
        if missing:
            raise IntrinsicInputError(
                f"intrinsic '{adapter}': instruction placeholder '{missing[0]}' has no value: "
                f"pass '{missing[0]}' as an argument of the call (a flow state value)"
            )
        from alora_flows.sandbox.templates import render_template

        extra = [
            {
                "role": "user",
                "content": render_template(template, context, what=f"intrinsic '{adapter}' instruction"),
            }
        ]
    return GraniteRequest(
        conversation=tuple(msgs) if changed else None,
        sent=tuple(msgs),
        extra=tuple(extra),
        documents=doc_set,
        sent_documents=tuple(docs),
    )
