"""The realistic evaluation cases: schema, loader and the prompts a flow would build from them.

The cases are hand-written YAML files in ``cases/``, one per domain, each holding that domain's
documents and its cases for the four built-in intrinsics. They were written by hand, not by the
training-data generators (``intrinsics/training/data``), so a score on them says how an adapter
does on text it was not shaped for. Never train on them.

Conventions (checked by :func:`load_cases`):

- A case's ``docs`` lists document ids; the **first** is the *key* document (the one the question
  is about, or the nearest miss for an unanswerable question), the others are distractors. The
  prompt shows them in a fixed order shuffled by the case id (:func:`presented_docs`), so the key
  document is not always first.
- A case's domain and writing style are its key document's; rewrite cases take the file's domain
  and the style ``conversation``.
- Uncertainty golds are minimal spans ("1,642", not "1,642 metres deep"): the judge
  (:mod:`intrinsics.training.realistic.judge`) counts an answer right when it contains the gold or
  one of its aliases after normalisation, so the gold (or an alias) must occur in the key document.
- Hallucination answers are lists of sentences that :func:`~alora_flows.sandbox.text.split_sentences`
  splits back exactly, each with its gold label and the kind of error (or faithful form) it has.
- Rewrite cases give the gold standalone question and the keywords that decide the metric: one of
  ``entity`` and one of ``attribute`` must appear in the rewrite, none of ``forbid`` (the entity of
  an earlier turn, for entity switches). The question alone must fail that check.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections import Counter
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from alora_flows.sandbox.text import split_sentences
from intrinsics.training.data_format import DataError

CASES_DIR = Path(__file__).resolve().parent / "cases"

Domain = Literal[
    "geography",
    "science",
    "medicine",
    "history",
    "biography",
    "companies",
    "sports",
    "law_policy",
    "manuals",
    "recipes",
]
DOMAINS: tuple[str, ...] = get_args(Domain)
Style = Literal[
    "encyclopedia",  # neutral reference prose
    "news",  # dated report, quotes, "said on Tuesday"
    "manual",  # numbered steps, warnings, settings
    "recipe",  # ingredients with quantities, method
    "faq",  # question and answer pairs
    "leaflet",  # patient information: dosage, side effects, warnings
    "legal",  # sections, conditions, exceptions
    "spec_sheet",  # product data: "Weight: 1.2 kg"
    "narrative",  # biography or history told as a story
]

#: Domains no training data may use: the realistic eval's held-out split (the issue's "domains
#: absent from training"). The data builders should import this and refuse these domains.
HELD_OUT_DOMAINS = ("law_policy", "recipes", "sports")

#: The RAG answer prompt of ``alora_flows/demo/flow.yaml`` (its ``answer`` node).
SYSTEM_PROMPT = "Answer only from the documents."


def rag_user_turn(documents: Sequence[str], question: str) -> str:
    """``{{ documents | join('\\n') }}\\n\\nQuestion: {{ question }}``, as the demo flow renders it."""
    return "\n".join(documents) + "\n\nQuestion: " + question


def rag_messages(documents: Sequence[str], question: str) -> list[dict[str, str]]:
    return [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": rag_user_turn(documents, question)},
    ]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)


class Document(_Strict):
    id: str
    title: str
    domain: Domain
    style: Style
    text: str = Field(min_length=80)


class _DocCase(_Strict):
    id: str
    docs: list[str] = Field(min_length=1, max_length=3)
    question: str = Field(min_length=8)

    @field_validator("docs")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a document is listed twice")
        return value


class UncertaintyCase(_DocCase):
    """A question whose gold answer is in the key document; the label comes from the base model's
    own answer (``base_answers.jsonl``) judged against ``gold``/``aliases``/``all_of``."""

    gold: str = Field(min_length=1)
    aliases: list[str] = Field(default_factory=list)
    all_of: list[str] = Field(default_factory=list)  # list answers: every item must be named


AnswerKind = Literal[
    "direct",  # the key document states it in the question's words
    "paraphrase",  # stated in other words, or needs one step (a sum, a comparison)
    "near_miss",  # unanswerable: the key document is about the entity but lacks that fact
    "other_entity",  # unanswerable: the fact is given for a similar entity, not the one asked about
    "absent",  # unanswerable: nothing about the entity at all
]


class AnswerabilityCase(_DocCase):
    label: Literal["answerable", "unanswerable"]
    kind: AnswerKind

    def model_post_init(self, _context: Any) -> None:
        unanswerable = self.kind in ("near_miss", "other_entity", "absent")
        if unanswerable != (self.label == "unanswerable"):
            raise ValueError(f"kind '{self.kind}' does not fit label '{self.label}'")


SentenceKind = Literal[
    "copied",  # faithful, close to the documents' words
    "paraphrase",  # faithful, in other words
    "changed_number",  # unfaithful: a number or date altered
    "swapped_entity",  # unfaithful: a name, place or thing replaced
    "wrong_document",  # unfaithful: a value from the distractor document
    "invented",  # unfaithful: a detail no document gives
    "overgeneralised",  # unfaithful or partial: a claim broader than the documents'
    "negation",  # unfaithful: the documents say the opposite
    "mixed",  # partial: one supported fact and one unsupported
]


class AnswerSentence(_Strict):
    s: str = Field(min_length=3)
    f: Literal["faithful", "partial", "unfaithful"]
    why: SentenceKind


class HallucinationCase(_DocCase):
    answer: list[AnswerSentence] = Field(min_length=1, max_length=4)

    @property
    def answer_text(self) -> str:
        return " ".join(s.s for s in self.answer)


class Turn(_Strict):
    role: Literal["user", "assistant"]
    content: str = Field(min_length=2)


RewriteKind = Literal["pronoun", "ellipsis", "switch", "reference"]


class RewriteCase(_Strict):
    id: str
    turns: list[Turn] = Field(min_length=2)
    question: str = Field(min_length=3)
    gold: str = Field(min_length=8)
    entity: list[str] = Field(min_length=1)
    attribute: list[str] = Field(min_length=1)
    forbid: list[str] = Field(default_factory=list)
    kind: RewriteKind


class CaseFile(_Strict):
    domain: Domain
    documents: list[Document] = Field(default_factory=list)
    uncertainty: list[UncertaintyCase] = Field(default_factory=list)
    answerability: list[AnswerabilityCase] = Field(default_factory=list)
    hallucination: list[HallucinationCase] = Field(default_factory=list)
    rewrite: list[RewriteCase] = Field(default_factory=list)


INTRINSICS = ("uncertainty", "hallucination", "answerability", "rewrite")


class Case(BaseModel):
    """One loaded case with what the report groups it by."""

    model_config = ConfigDict(frozen=True)

    intrinsic: str
    domain: str
    style: str
    kind: str
    data: UncertaintyCase | AnswerabilityCase | HallucinationCase | RewriteCase

    @property
    def id(self) -> str:
        return self.data.id

    @property
    def held_out(self) -> bool:
        return self.domain in HELD_OUT_DOMAINS

    def fingerprint(self) -> str:
        """Changes when the case's text changes (checkpoints keyed by it are then recomputed)."""
        return hashlib.sha256(self.data.model_dump_json().encode()).hexdigest()[:16]


class CaseSet(BaseModel):
    model_config = ConfigDict(frozen=True)

    documents: dict[str, Document]
    cases: dict[str, list[Case]]

    def doc_texts(self, case: Case) -> list[str]:
        """The case's documents as the prompt shows them (:func:`presented_docs` order)."""
        data = case.data
        if isinstance(data, RewriteCase):
            return []
        return [self.documents[d].text for d in presented_docs(data.id, data.docs)]

    def messages(self, case: Case) -> list[dict[str, str]]:
        """The conversation an intrinsic is invoked on, as a flow builds it.

        uncertainty: RAG prompt (the base answer is appended by the caller); hallucination: RAG
        prompt + the hand-written answer; answerability: RAG prompt; rewrite: the earlier turns
        (the question itself goes to the intrinsic as flow state ``question``).
        """
        data = case.data
        if isinstance(data, RewriteCase):
            return [t.model_dump() for t in data.turns]
        messages = rag_messages(self.doc_texts(case), data.question)
        if isinstance(data, HallucinationCase):
            messages.append({"role": "assistant", "content": data.answer_text})
        return messages


def presented_docs(case_id: str, docs: Sequence[str]) -> list[str]:
    """``docs`` in the order the prompt shows them: shuffled with a seed derived from the case id,
    so the key document (listed first in the files) lands anywhere, the same way every run."""
    order = list(docs)
    seed = int(hashlib.sha256(case_id.encode()).hexdigest()[:8], 16)
    random.Random(seed).shuffle(order)
    return order


def _read_yaml(path: Path) -> Any:
    """Safe YAML load. PyYAML's C loader (installed with transformers, through huggingface_hub)
    reads the case files about six times faster than ruamel's; ruamel is the fallback."""
    text = path.read_text(encoding="utf-8")
    try:
        import yaml
    except ImportError:  # pragma: no cover - transformers brings PyYAML
        yaml = None
    if yaml is not None:
        try:
            return yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
        except yaml.YAMLError as exc:
            raise DataError(f"{path.name}: not valid YAML: {exc}") from exc
    from ruamel.yaml import YAML, YAMLError

    try:
        return YAML(typ="safe").load(text)
    except YAMLError as exc:
        raise DataError(f"{path.name}: not valid YAML: {exc}") from exc


def _case_meta(
    intrinsic: str, data: Any, domain: str, documents: dict[str, Document]
) -> tuple[str, str, str]:
    if isinstance(data, RewriteCase):
        return domain, "conversation", data.kind
    key = documents[data.docs[0]]
    kind: str
    if isinstance(data, AnswerabilityCase):
        kind = data.kind
    elif isinstance(data, HallucinationCase):
        kind = "has_unfaithful" if any(s.f == "unfaithful" for s in data.answer) else "no_unfaithful"
    else:
        kind = "list" if data.all_of else "value"
    return key.domain, key.style, kind


def _check_case(intrinsic: str, data: Any, documents: dict[str, Document]) -> None:
    from intrinsics.training.realistic.judge import contains, rewrite_check

    if not isinstance(data, RewriteCase):
        missing = [d for d in data.docs if d not in documents]
        if missing:
            raise ValueError(f"unknown documents {missing}")
    if isinstance(data, UncertaintyCase):
        key = documents[data.docs[0]].text
        needles = data.all_of or [data.gold, *data.aliases]
        found = [n for n in needles if contains(key, n)]
        if (data.all_of and len(found) != len(needles)) or not found:
            raise ValueError(f"gold {needles} not found in the key document '{data.docs[0]}'")
    elif isinstance(data, HallucinationCase):
        sentences = [s.s for s in data.answer]
        if split_sentences(" ".join(sentences)) != sentences:
            raise ValueError(f"answer sentences do not split back as written: {sentences}")
    elif isinstance(data, RewriteCase):
        if not rewrite_check(data.gold, data):
            raise ValueError("the gold rewrite fails its own entity/attribute check")
        if rewrite_check(data.question, data):
            raise ValueError("the question already passes the check: it needs no context")
        if data.turns[-1].role != "assistant":
            raise ValueError("the earlier turns must end with an assistant turn")


MODELS = {
    "uncertainty": UncertaintyCase,
    "answerability": AnswerabilityCase,
    "hallucination": HallucinationCase,
    "rewrite": RewriteCase,
}


@lru_cache(maxsize=4)
def load_cases(root: str | Path = CASES_DIR) -> CaseSet:
    """Every ``*.yaml`` under ``root``, validated (schema, references, golds, sentence splits,
    unique ids). Raises :class:`DataError` naming the file and case."""
    root = Path(root)
    files = sorted(root.glob("*.yaml"))
    if not files:
        raise DataError(f"no case files (*.yaml) in {root}")
    parsed: list[tuple[Path, CaseFile]] = []
    documents: dict[str, Document] = {}
    for path in files:
        try:
            case_file = CaseFile.model_validate(_read_yaml(path))
        except ValidationError as exc:
            raise DataError(f"{path.name}: {exc}") from exc
        for doc in case_file.documents:
            if doc.id in documents:
                raise DataError(f"{path.name}: document id '{doc.id}' is used twice")
            documents[doc.id] = doc
        parsed.append((path, case_file))
    cases: dict[str, list[Case]] = {name: [] for name in INTRINSICS}
    seen: Counter[str] = Counter()
    for path, case_file in parsed:
        for intrinsic in INTRINSICS:
            for data in getattr(case_file, intrinsic):
                seen[data.id] += 1
                if seen[data.id] > 1:
                    raise DataError(f"{path.name}: case id '{data.id}' is used twice")
                try:
                    _check_case(intrinsic, data, documents)
                except ValueError as exc:
                    raise DataError(f"{path.name}: {intrinsic} case '{data.id}': {exc}") from exc
                domain, style, kind = _case_meta(intrinsic, data, case_file.domain, documents)
                cases[intrinsic].append(
                    Case(intrinsic=intrinsic, domain=domain, style=style, kind=kind, data=data)
                )
    return CaseSet(documents=documents, cases=cases)


def case_summary(case_set: CaseSet) -> dict[str, Any]:
    """Counts per intrinsic, domain and label: what the report and the tests print."""
    out: dict[str, Any] = {"documents": len(case_set.documents)}
    for name, cases in case_set.cases.items():
        out[name] = {
            "n": len(cases),
            "domains": dict(Counter(c.domain for c in cases)),
            "kinds": dict(Counter(c.kind for c in cases)),
        }
    return out


if __name__ == "__main__":
    print(json.dumps(case_summary(load_cases()), indent=2))
