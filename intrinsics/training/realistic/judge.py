"""The documented rules that turn free text into labels: is a base answer right, is a rewrite
standalone with the right entity and attribute.

Both compare *normalised token sequences*: lower-cased; thousands separators dropped ("1,642" ->
"1642"); "%" read as "percent"; number words up to twenty and the tens written as digits ("eight" -> "8"); articles
dropped; a crude plural strip on longer words ("metres" ~ "metre", "countries" ~ "country"); then a needle counts as
contained when its tokens occur contiguously in the haystack's. So the gold "1,642" is found in
"It is 1642 m deep." but not in "16,420"; "Marie Curie" is found in "marie curie's", and the
gold "8" in "eight planets". What the rule cannot see (a synonym, a unit conversion) is what the
manual ``aliases`` of a case are for.
"""

from __future__ import annotations

import re
from typing import Any

_NUMBER_WORDS = {
    w: str(i)
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen "
        "fifteen sixteen seventeen eighteen nineteen twenty".split()
    )
}
_NUMBER_WORDS.update(
    {w: str(10 * i) for i, w in enumerate("thirty forty fifty sixty seventy eighty ninety".split(), 3)}
)
_ARTICLES = {"a", "an", "the"}
_THOUSANDS = re.compile(r"(?<=\d),(?=\d{3}\b)")
_TOKEN = re.compile(r"\d+(?:\.\d+)?|[a-z]+")


def _stem(token: str) -> str:
    if len(token) > 4 and token.endswith("ies"):
        return token[:-3] + "y"
    if len(token) > 3 and token.endswith("ie"):  # "cookie" ~ "cookies" ~ "cooky"
        return token[:-2] + "y"
    if len(token) > 4 and token.endswith("oes"):
        return token[:-2]
    if len(token) > 3 and token.endswith("s") and not token.endswith(("ss", "us", "is")):
        return token[:-1]
    return token


def tokens(text: Any) -> list[str]:
    """The normalised tokens of ``text`` (see the module docstring)."""
    text = str(text or "").lower().replace("\u2019", "'").replace("%", " percent ")
    while True:  # "1,234,567": each pass removes the separators that are now followed by 3 digits
        stripped = _THOUSANDS.sub("", text)
        if stripped == text:
            break
        text = stripped
    out = []
    for tok in _TOKEN.findall(text):
        tok = _NUMBER_WORDS.get(tok, tok)
        if tok in _ARTICLES:
            continue
        out.append(_stem(tok))
    return out


def contains(haystack: Any, needle: Any) -> bool:
    """Whether ``needle``'s normalised tokens occur contiguously in ``haystack``'s."""
    hay, ned = tokens(haystack), tokens(needle)
    if not ned:
        return False
    n = len(ned)
    return any(hay[i : i + n] == ned for i in range(len(hay) - n + 1))


def answer_correct(answer: str, case: Any) -> bool:
    """The uncertainty label: the base answer contains the gold or one of its aliases (for list
    questions, every item of ``all_of``)."""
    if case.all_of:
        return all(contains(answer, item) for item in case.all_of)
    return any(contains(answer, value) for value in (case.gold, *case.aliases))


def rewrite_check(text: str, case: Any) -> bool:
    """The rewrite metric: ``text`` is a question (ends with "?"), one of the case's ``entity``
    and one of its ``attribute`` keywords appear in it, and none of ``forbid`` (an earlier
    turn's entity after a switch). The "?" rules out fragments that happen to contain both
    keywords ("Where in Michelin's Michelin's")."""
    return (
        str(text).strip().endswith("?")
        and any(contains(text, e) for e in case.entity)
        and any(contains(text, a) for a in case.attribute)
        and not any(contains(text, f) for f in case.forbid)
    )
