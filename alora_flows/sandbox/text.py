"""Text helpers that templates use as filters and intrinsic parsers use directly.

``split_sentences`` defines the unit the hallucination intrinsic labels. It is deliberately simple
and deterministic (split on whitespace after ``.``/``!``/``?``): training data, parser and
evaluation must agree on sentence indices, which matters more than linguistic perfection, so
every one of them calls this function.
"""

from __future__ import annotations

import re
from typing import Any

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


def split_sentences(text: Any) -> list[str]:
    """``"A. B!"`` -> ``["A.", "B!"]``; empty or blank text -> ``[]``."""
    text = str(text or "").strip()
    return [s for s in _SENTENCE_END.split(text) if s] if text else []


def numbered(items: Any) -> str:
    """``["a", "b"]`` -> ``"0: a\n1: b"``: sentence ids as the hallucination intrinsic's ``r``."""
    return "\n".join(f"{i}: {item}" for i, item in enumerate(items or []))
