"""String heuristics that every intrinsic must beat on the realistic cases.

They are what a developer could write in ten minutes without a model, so an adapter that does no
better than them adds nothing but cost. Each one is fixed in advance (no threshold is fitted on the
cases it is scored on):

- uncertainty: the share of the answer's content words that occur in the documents;
- hallucination: a sentence is ``unfaithful`` when one of its numbers or capitalised words does not
  occur in the documents, else ``faithful``;
- answerability: the majority label, and "answerable" when at least
  :data:`ANSWERABLE_OVERLAP` of the question's content words occur in the documents;
- rewrite: the question unchanged.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from alora_flows.sandbox.text import split_sentences
from intrinsics.training.realistic.judge import tokens

_FUNCTION_WORDS = """a an the and or but if then of in on at to for from by with without about as into over under
    is are was were be been being am do does did done have has had having it its it's this that these
    those there here their they them he she his her him you your i me my we our us not no yes so such
    than too very can could will would shall should may might must also just only more most much many
    some any each every all both either neither what which who whom whose when where why how
    answer question documents document""".split()

#: Words that carry no content, normalised like the text they are removed from: the uncertainty
#: and answerability overlaps ignore them.
STOPWORDS = frozenset(t for w in _FUNCTION_WORDS for t in tokens(w))

#: Answerability heuristic: answerable when this share of the question's content words occur in
#: the documents. Fixed before looking at any result (most questions in the cases reuse the
#: documents' words, so a lower bar would call nearly everything answerable).
ANSWERABLE_OVERLAP = 0.75

# Capitalised words that start sentences or questions and say nothing about the facts.
_FUNCTION_CAPITALS = frozenset(w.capitalize() for w in _FUNCTION_WORDS) | {"Yes", "No", "I"}
_NUMBER = re.compile(r"\d+(?:[.,:]\d+)*")
_CAPITALISED = re.compile(r"\b[A-Z][A-Za-z'\-]*")


def content_words(text: str) -> list[str]:
    """Normalised tokens (:func:`judge.tokens`) minus :data:`STOPWORDS`."""
    return [t for t in tokens(text) if t not in STOPWORDS]


def _overlap(words: Sequence[str], documents: Sequence[str]) -> float | None:
    if not words:
        return None
    vocabulary = set(tokens(" ".join(documents)))
    return sum(w in vocabulary for w in words) / len(words)


def overlap_certainty(answer: str, documents: Sequence[str]) -> float:
    """Uncertainty heuristic: share of the answer's content words found in the documents (0 for an
    answer with no content words: it says nothing checkable)."""
    share = _overlap(content_words(answer), documents)
    return 0.0 if share is None else share


def _in_documents(value: str, haystack_tokens: set[str], numbers: set[str]) -> bool:
    if value[0].isdigit():
        return value.replace(",", "") in numbers
    return all(t in haystack_tokens for t in tokens(value))


def unsupported_values(sentence: str, documents: Sequence[str]) -> list[str]:
    """Numbers and capitalised words of ``sentence`` that no document contains."""
    text = " ".join(documents)
    numbers = {n.replace(",", "") for n in _NUMBER.findall(text)}
    vocabulary = set(tokens(text))
    values = [n.rstrip(".,:") for n in _NUMBER.findall(sentence)]
    values += [w for w in _CAPITALISED.findall(sentence) if w not in _FUNCTION_CAPITALS]
    return [v for v in values if v and not _in_documents(v, vocabulary, numbers)]


def hallucination_labels(answer: str, documents: Sequence[str]) -> dict[int, str]:
    """Hallucination heuristic: sentence index -> ``unfaithful`` when it has an unsupported number
    or name, else ``faithful`` (it never says ``partial``)."""
    return {
        i: "unfaithful" if unsupported_values(s, documents) else "faithful"
        for i, s in enumerate(split_sentences(answer))
    }


def question_overlap(question: str, documents: Sequence[str]) -> float:
    """Share of the question's content words found in the documents (1.0 if it has none)."""
    share = _overlap(content_words(question), documents)
    return 1.0 if share is None else share


def overlap_answerable(question: str, documents: Sequence[str]) -> bool:
    """Answerability heuristic: see :data:`ANSWERABLE_OVERLAP`."""
    return question_overlap(question, documents) >= ANSWERABLE_OVERLAP


def echo_rewrite(question: str) -> str:
    """Rewrite heuristic: the question as the user asked it."""
    return question
