"""The ``likelihood`` rule's arithmetic: a categorical value -> its expected value under the
model's probabilities at the token where the value starts.

Granite adapters emit a label (``"yes"``, ``"8"``, ``true``) and io.yaml maps labels to numbers
(``categories_to_values``). The output is the probability-weighted mean of those numbers over the
alternatives the model weighed at the value's first token: the emitted token's probability for
its label, each other top token for the first category it begins (granite-common's rule), the
weights renormalised. Two refinements over granite-common, both for tokenizers that merge text
across the value's boundary: a token that begins before the value (``' "8'``) matches alternatives
that begin with the same text (``' "9'``), and an alternative may run past the value into the
closing quote (``'9"'``). A value with no category is an error, not a silent 0.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict

from intrinsics.granite.jsonpos import Literal


class TokenLogprob(BaseModel):
    """One emitted token: its text, log-probability and the top alternatives at its position."""

    model_config = ConfigDict(frozen=True)

    text: str
    logprob: float
    top: tuple[tuple[str, float], ...] = ()


def category_text(category: Any) -> str:
    """A category as it appears in JSON text (strings without their quotes)."""
    return category if isinstance(category, str) else json.dumps(category)


def token_starts(tokens: Sequence[TokenLogprob]) -> list[int]:
    starts, offset = [], 0
    for token in tokens:
        starts.append(offset)
        offset += len(token.text)
    return starts


def expected_value(
    literal: Literal, tokens: Sequence[TokenLogprob], categories: Mapping[Any, float]
) -> float:
    """Expected value of ``literal`` (found in the concatenated token texts) over ``categories``."""
    values = {category_text(k): float(v) for k, v in categories.items()}
    chosen = category_text(literal.value)
    if chosen not in values:
        raise ValueError(f"value {literal.value!r} is not one of the categories {sorted(values)}")
    start = literal.begin + (1 if isinstance(literal.value, str) else 0)
    starts = token_starts(tokens)
    index = next((i for i, (s, t) in enumerate(zip(starts, tokens)) if s <= start < s + len(t.text)), None)
    if index is None:
        raise ValueError(f"no emitted token covers offset {start} (the output and its tokens disagree)")
    token = tokens[index]
    prefix = token.text[: start - starts[index]]
    quote = '"' if isinstance(literal.value, str) else ""
    weights = [math.exp(token.logprob)]
    scores = [values[chosen]]
    for alt_text, alt_logprob in token.top:
        if alt_text == token.text or not alt_text.startswith(prefix):
            continue
        rest = alt_text[len(prefix) :]
        if not rest:
            continue
        for text, value in values.items():
            full = text + quote
            if full.startswith(rest) or _runs_past(rest, full, closed=bool(quote)):
                weights.append(math.exp(alt_logprob))
                scores.append(value)
                break
    total = sum(weights)
    if total <= 0:
        return scores[0]
    return sum(w * s for w, s in zip(weights, scores)) / total


def _runs_past(rest: str, full: str, *, closed: bool) -> bool:
    """``rest`` is ``full`` followed by more JSON: after a string's closing quote anything may
    follow; after a number or constant only a delimiter may (``"10"`` does not begin ``1``)."""
    if not rest.startswith(full) or rest == full:
        return rest == full
    return closed or rest[len(full)] in ",}] \t\r\n"
