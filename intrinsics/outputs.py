"""Typed outputs of the intrinsics, with Granite-compatible shapes (DESIGN §4).

Flows branch on these (``certainty.score < 0.4``) and templates render them (``{{ query }}`` on a
:class:`RewriteOutput` gives the question), so they stay small, flat and JSON-friendly.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

FaithLabel = Literal["faithful", "partial", "unfaithful"]


class UncertaintyOutput(BaseModel):
    """Certainty that the last answer is correct. ``score`` = probability-weighted mean of
    ``0.1 * d + 0.05`` over the digit tokens; ``digit`` = the most likely digit (Granite)."""

    score: float = Field(ge=0.0, le=1.0)
    digit: int = Field(ge=0, le=9)

    def __float__(self) -> float:
        return self.score


class SentenceLabel(BaseModel):
    """One answer sentence: index ``r``, explanation ``e`` (may be empty), faithfulness ``f``.

    ``unverified``: evidence values the adapter quoted that the documents do not contain;
    ``adapter_f`` is the adapter's own label when :func:`intrinsics.parsers.label_from_evidence`
    (the label its evidence implies) changed ``f``.
    """

    r: int = Field(ge=0)
    e: str = ""
    f: FaithLabel
    text: str | None = None  # the sentence itself, when the answer was known at parse time
    unverified: list[str] = Field(default_factory=list)
    adapter_f: FaithLabel | None = None


class HallucinationOutput(BaseModel):
    """Per-sentence faithfulness of the last answer; ``unfaithful`` if any sentence is."""

    sentences: list[SentenceLabel]
    unfaithful: bool

    @property
    def partial(self) -> bool:
        return any(s.f == "partial" for s in self.sentences)


class RewriteOutput(BaseModel):
    """A standalone version of the last question. ``str(x)`` is the question, so templates can use
    it directly. ``fallback=True`` means the adapter's output was unusable and this is the original
    question, unchanged (a flow keeps working, just without the rewrite)."""

    rewritten_question: str
    fallback: bool = False

    def __str__(self) -> str:
        return self.rewritten_question


class AnswerabilityOutput(BaseModel):
    """Whether the documents in the conversation answer the last question."""

    label: Literal["answerable", "unanswerable"]
    answerable: bool
    probability: float | None = None  # P(answerable) when decoding gave label probabilities

    def __str__(self) -> str:
        return self.label


class ChoiceOutput(BaseModel):
    """A label out of a fixed set (custom classifier intrinsics)."""

    label: str
    probs: dict[str, float] | None = None

    def __str__(self) -> str:
        return self.label


class JsonOutput(BaseModel):
    """A free JSON value (custom structured intrinsics)."""

    data: Any

    def __getitem__(self, key: Any) -> Any:
        return self.data[key]


class TextOutput(BaseModel):
    """Free text (custom generative intrinsics)."""

    text: str

    def __str__(self) -> str:
        return self.text
