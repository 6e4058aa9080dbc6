"""Parsers (raw adapter output -> typed output) and formatters (typed output -> training target).

Each parser accepts what a small model actually emits: truncated JSON, extra text around it,
Granite variants (``"f": true``). A parser either returns a typed output — for rewrites possibly
the documented fallback (original question, ``fallback=True``) — or raises
:class:`IntrinsicOutputError`. Formatters write the one canonical target text the adapters are
trained on; ``parse(format(x)) == x`` is tested.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from alora_flows.errors import IntrinsicOutputError
from alora_flows.sandbox.text import split_sentences
from intrinsics.outputs import (
    AnswerabilityOutput,
    ChoiceOutput,
    HallucinationOutput,
    JsonOutput,
    RewriteOutput,
    SentenceLabel,
    TextOutput,
    UncertaintyOutput,
)
from intrinsics.spec import SOURCE_DOCUMENTS, RawOutput

DIGITS = tuple(str(d) for d in range(10))
FAITH_LABELS = ("faithful", "partial", "unfaithful")
# The hallucination evidence format: "documents: <value>; not stated" (one entry per fact).
EVIDENCE_PREFIX = "documents: "
NOT_STATED = "not stated"
ANSWERABILITY_LABELS = ("answerable", "unanswerable")


def _snippet(text: str) -> str:
    return repr(text[:80] + ("..." if len(text) > 80 else ""))


# ---------------------------------------------------------------------------------- JSON helpers
def extract_json(text: str, opener: str) -> Any:
    """The first complete JSON value starting with ``opener`` (``{`` or ``[``) in ``text``, or None."""
    decoder = json.JSONDecoder()
    start = text.find(opener)
    while start != -1:
        try:
            value, _ = decoder.raw_decode(text, start)
            return value
        except json.JSONDecodeError:
            start = text.find(opener, start + 1)
    return None


def _json_string(fragment: str) -> str | None:
    """Decode a JSON string body (without quotes), tolerating a truncated escape at the end."""
    for cut in (fragment, fragment[:-1]):
        try:
            return json.loads(f'"{cut}"')
        except json.JSONDecodeError:
            continue
    return None


# ---------------------------------------------------------------------------------- uncertainty
def certainty_from_digit(digit: int) -> float:
    """Granite's mapping 0.1 * d + 0.05, computed as (2d + 1) / 20 to avoid float noise."""
    return (2 * digit + 1) / 20


def parse_uncertainty(raw: RawOutput) -> UncertaintyOutput:
    """Digit probabilities -> expected certainty; without probabilities, the emitted digit."""
    if raw.label_probs:
        probs = {int(k): float(v) for k, v in raw.label_probs.items() if k in DIGITS}
        total = sum(probs.values())
        if total > 0:
            score = sum(p * certainty_from_digit(d) for d, p in probs.items()) / total
            digit = max(probs, key=lambda d: probs[d])
            return UncertaintyOutput(score=min(max(score, 0.0), 1.0), digit=digit)
    match = re.match(r"\s*([0-9])", raw.text)
    if not match:
        raise IntrinsicOutputError(f"uncertainty: expected a digit 0-9, got {_snippet(raw.text)}")
    digit = int(match.group(1))
    return UncertaintyOutput(score=certainty_from_digit(digit), digit=digit)


def format_uncertainty(out: UncertaintyOutput) -> str:
    return str(out.digit)


# ---------------------------------------------------------------------------------- hallucination
_OBJECT = re.compile(r"\{[^{}]*\}?")
_FIELD_R = re.compile(
    r'"r"\s*:\s*"?(\d+)(?=\s*[,}"])'
)  # a delimiter must follow: '"r": 1' may be a cut-off 10
_FIELD_F = re.compile(r'"f"\s*:\s*(?:"(faithful|partial|unfaithful)"|(true|false))', re.I)
_FIELD_E = re.compile(r'"e"\s*:\s*"((?:[^"\\]|\\.)*)"')


def _faith(value: Any) -> str | None:
    if isinstance(value, bool):  # Granite 3.3 hallucination io.yaml: "f" is "Is Faithful" (boolean)
        return "faithful" if value else "unfaithful"
    if isinstance(value, str) and value.strip().lower() in FAITH_LABELS:
        return value.strip().lower()
    return None


def _label_from_dict(item: Any) -> SentenceLabel | None:
    if not isinstance(item, dict):
        return None
    r, f = item.get("r"), _faith(item.get("f"))
    if isinstance(r, str) and r.strip().isdigit():
        r = int(r)
    if isinstance(r, bool) or not isinstance(r, int) or r < 0 or f is None:
        return None
    e = item.get("e", "")
    return SentenceLabel(r=r, e=e if isinstance(e, str) else str(e), f=f)


def _labels_by_regex(text: str) -> list[SentenceLabel]:
    """Salvage complete ``{"r":..,"f":..}`` objects from truncated or slightly broken JSON."""
    labels = []
    for obj in _OBJECT.findall(text):
        r, f = _FIELD_R.search(obj), _FIELD_F.search(obj)
        if not (r and f):
            continue
        faith = (
            f.group(1).lower()
            if f.group(1)
            else ("faithful" if f.group(2).lower() == "true" else "unfaithful")
        )
        e = _FIELD_E.search(obj)
        labels.append(
            SentenceLabel(r=int(r.group(1)), e=(_json_string(e.group(1)) or "") if e else "", f=faith)
        )
    return labels


def _evidence_source(context: dict[str, Any] | None) -> str | None:
    """What the evidence must quote: the conversation's documents, case-folded, and nothing else.

    Not the question, not an earlier assistant turn: a retry's failed first answer, or a question
    that names a value ("Is it 40 km long?"), must not "support" that value. The documents are
    the session's first-class documents (:data:`~intrinsics.spec.SOURCE_DOCUMENTS`, put in the
    context by :meth:`IntrinsicSpec.prepare <intrinsics.spec.IntrinsicSpec.prepare>`); a flow that
    pastes documents into a user turn gives the check no documents, so every quoted value is
    unverified. None when the context does not say (a parser called without a session): the
    adapter's labels are then kept.
    """
    if context is None or context.get(SOURCE_DOCUMENTS) is None:
        return None
    return "\n".join(str(d) for d in context[SOURCE_DOCUMENTS]).casefold()


def _states(folded_text: str, value: str) -> bool:
    """Whether the case-folded ``folded_text`` contains ``value`` as whole words, ignoring case
    ("5" is not in "1950")."""
    return re.search(rf"(?<!\w){re.escape(value.casefold())}(?!\w)", folded_text) is not None


def label_from_evidence(label: SentenceLabel, source: str | None) -> SentenceLabel:
    """The sentence's label, as its evidence says: a fact is supported when the value the adapter
    quotes for it is both in the documents and in the judged sentence.

    Why: the adapter writes, per fact, the documents' value (``"documents: 1843; not stated"``) and
    then its label, but on unseen wordings its label often disagrees with its own evidence (it
    quotes the documents' "olive green" and calls "The colour is orange." faithful), or it quotes
    the answer's own value, which the documents do not contain. Two string searches settle both:
    all facts supported -> ``faithful``, none -> ``unfaithful``, else ``partial``. Evidence that
    quotes no value ("not stated" only) keeps the adapter's label: that is ``unfaithful`` for a
    claim and ``faithful`` for a sentence that claims nothing ("The documents say nothing about
    ..."), which no string search can tell apart. ``source`` is the case-folded documents
    (:func:`_evidence_source`; ``""``: the conversation has none, so nothing is supported).
    Without evidence, a known source (``source`` None) or the sentence itself, the label is kept. Gold targets derive their own labels this
    way (tested); of the 6,589 gold sentences of the shipped adapter's splits, one does not: a
    "pale blue" logo in the answer, judged against the documents' "blue", which contains it.
    """
    if source is None or not label.e.startswith(EVIDENCE_PREFIX):
        return label
    values = [v.strip() for v in label.e[len(EVIDENCE_PREFIX) :].split(";") if v.strip()]
    quoted = [v for v in values if v.casefold() != NOT_STATED]
    missing = [v for v in quoted if not _states(source, v)]
    if not quoted or label.text is None:
        return label.model_copy(update={"unverified": missing})
    sentence = label.text.casefold()
    supported = [v in quoted and v not in missing and _states(sentence, v) for v in values]
    f = "faithful" if all(supported) else "partial" if any(supported) else "unfaithful"
    return label.model_copy(
        update={"unverified": missing, "f": f, "adapter_f": label.f if f != label.f else None}
    )


def parse_hallucination(raw: RawOutput) -> HallucinationOutput:
    """JSON list of ``{"r", "e", "f"}`` -> per-sentence labels (dedup by ``r``, sorted), each
    through :func:`label_from_evidence` against the conversation's documents."""
    value = extract_json(raw.text, "[")
    labels = [lab for lab in map(_label_from_dict, value) if lab] if isinstance(value, list) else []
    if not labels and value != []:
        labels = _labels_by_regex(raw.text)
    if not labels and value != []:  # an empty list is a valid answer for an empty response
        raise IntrinsicOutputError(
            f'hallucination: expected a JSON list like [{{"r": 0, "f": "faithful"}}], got {_snippet(raw.text)}'
        )
    sentences = split_sentences(raw.context.get("last_assistant", "")) if raw.context else []
    source = _evidence_source(raw.context)
    by_r: dict[int, SentenceLabel] = {}
    for lab in labels:
        if lab.r not in by_r:
            text = sentences[lab.r] if lab.r < len(sentences) else None
            by_r[lab.r] = label_from_evidence(lab.model_copy(update={"text": text}), source)
    ordered = [by_r[r] for r in sorted(by_r)]
    return HallucinationOutput(sentences=ordered, unfaithful=any(s.f == "unfaithful" for s in ordered))


def format_hallucination(out: HallucinationOutput) -> str:
    """Compact JSON; ``e`` omitted when empty, to keep targets short for a 135M model."""
    items = [{"r": s.r, **({"e": s.e} if s.e else {}), "f": s.f} for s in out.sentences]
    return json.dumps(items, ensure_ascii=False, separators=(",", ":"))


# ---------------------------------------------------------------------------------- rewrite
_REWRITE_FIELD = re.compile(r'"rewritten_question"\s*:\s*"((?:[^"\\]|\\.)*)', re.S)


def _original_question(context: dict[str, Any]) -> str | None:
    """The question the adapter was asked to rewrite. ``input`` first: it is the turn the adapter
    read (an ``input_override``, or a training/evaluation example's follow-up), while ``question``
    may be an earlier turn there (with no flow state, it defaults to the conversation's last user
    turn *before* the input)."""
    for key in ("input", "question", "last_user"):
        value = context.get(key)
        if value is not None and str(value).strip():
            return str(value)
    return None


def parse_rewrite(raw: RawOutput) -> RewriteOutput:
    """``{"rewritten_question": "..."}`` -> :class:`RewriteOutput`.

    Fallback (documented): if no non-empty question can be read, return the original question
    (the input turn the adapter read, else flow state ``question``, else the last user turn) with
    ``fallback=True``.
    Only when there is no original question either is :class:`IntrinsicOutputError` raised.
    """
    value = extract_json(raw.text, "{")
    question = value.get("rewritten_question") if isinstance(value, dict) else None
    if not isinstance(question, str):
        match = _REWRITE_FIELD.search(raw.text)
        question = _json_string(match.group(1)) if match else None
    if isinstance(question, str) and question.strip():
        return RewriteOutput(rewritten_question=question.strip())
    original = _original_question(raw.context)
    if original is None:
        raise IntrinsicOutputError(
            f"rewrite: no rewritten_question in {_snippet(raw.text)} and no original question to fall back on"
        )
    return RewriteOutput(rewritten_question=original, fallback=True)


def format_rewrite(out: RewriteOutput) -> str:
    return json.dumps({"rewritten_question": out.rewritten_question}, ensure_ascii=False)


# ---------------------------------------------------------------------------------- labels
def match_label(text: str, labels: Sequence[str]) -> str | None:
    """Exact (case-insensitive) label, else the longest label the text starts with."""
    norm = text.strip().strip('"').strip().lower()
    lowered = {label.lower(): label for label in labels}
    if norm in lowered:
        return lowered[norm]
    starts = [label for low, label in lowered.items() if norm.startswith(low)]
    return max(starts, key=len) if starts else None


def parse_answerability(raw: RawOutput) -> AnswerabilityOutput:
    label = match_label(raw.text, ANSWERABILITY_LABELS)
    if label is None and raw.label_probs:
        label = max(raw.label_probs, key=lambda label: raw.label_probs[label])  # type: ignore[index]
    if label not in ANSWERABILITY_LABELS:
        raise IntrinsicOutputError(
            f"answerability: expected answerable/unanswerable, got {_snippet(raw.text)}"
        )
    prob = None
    if raw.label_probs:
        total = sum(raw.label_probs.values())
        prob = raw.label_probs.get("answerable", 0.0) / total if total > 0 else None
    return AnswerabilityOutput(label=label, answerable=label == "answerable", probability=prob)


def format_label(out: Any) -> str:
    return str(out.label)


class ChoiceParser:
    """Parser for a custom fixed-label intrinsic (picklable, comparable, shown in reprs)."""

    def __init__(self, labels: Sequence[str]) -> None:
        self.labels = tuple(labels)

    def __call__(self, raw: RawOutput) -> ChoiceOutput:
        label = match_label(raw.text, self.labels)
        if label is None and raw.label_probs:
            label = max(raw.label_probs, key=lambda label: raw.label_probs[label])  # type: ignore[index]
        if label is None:
            raise IntrinsicOutputError(f"expected one of {list(self.labels)}, got {_snippet(raw.text)}")
        return ChoiceOutput(label=label, probs=raw.label_probs)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ChoiceParser) and other.labels == self.labels

    def __hash__(self) -> int:
        return hash(self.labels)

    def __repr__(self) -> str:
        return f"ChoiceParser({list(self.labels)})"


def parse_json(raw: RawOutput) -> JsonOutput:
    starts = [i for i in (raw.text.find("{"), raw.text.find("[")) if i != -1]
    value = extract_json(raw.text, raw.text[min(starts)]) if starts else None
    if value is None:
        raise IntrinsicOutputError(f"expected a JSON object or list, got {_snippet(raw.text)}")
    return JsonOutput(data=value)


def format_json(out: JsonOutput) -> str:
    return json.dumps(out.data, ensure_ascii=False)


def parse_text(raw: RawOutput) -> TextOutput:
    return TextOutput(text=raw.text.strip())


def format_text(out: TextOutput) -> str:
    return out.text
