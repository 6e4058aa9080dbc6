"""Sandboxed Jinja rendering for intrinsic input templates.

Why a sandbox and StrictUndefined: templates may come from YAML files that travel with adapters,
and they render flow state that holds user and document text. The sandbox blocks attribute tricks
(``__class__`` walks); StrictUndefined turns a typo in a field name into a clear error instead of
a silently empty turn that would quietly degrade the adapter's input.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, UndefinedError
from jinja2.sandbox import SandboxedEnvironment

from alora_flows.errors import FlowRuntimeError, UnsafeExpressionError

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=\S)")


def split_sentences(text: Any) -> list[str]:
    """Split an answer into sentences: the unit the hallucination intrinsic labels.

    Deliberately simple and deterministic (split on whitespace after ``.``/``!``/``?``): training
    data, parser and evaluation must agree on sentence indices, which matters more than linguistic
    perfection. Identical to ``intrinsics.data.text.split_sentences`` (the data builders), tested.
    """
    text = str(text or "").strip()
    return [s for s in _SENTENCE_END.split(text) if s] if text else []


def numbered(items: Any) -> str:
    """``["a", "b"]`` -> ``"0: a\n1: b"``: sentence ids as the hallucination intrinsic's ``r``."""
    return "\n".join(f"{i}: {item}" for i, item in enumerate(items or []))


@lru_cache(maxsize=1)
def environment() -> SandboxedEnvironment:
    env = SandboxedEnvironment(undefined=StrictUndefined, keep_trailing_newline=False, autoescape=False)
    env.filters["sentences"] = split_sentences
    env.filters["numbered"] = numbered
    return env


@lru_cache(maxsize=256)
def _compile(source: str):
    return environment().from_string(source)


def render_template(source: str, context: Mapping[str, Any], *, what: str = "template") -> str:
    """Render ``source`` with ``context``; errors name ``what`` and the missing variable."""
    try:
        template = _compile(source)
    except TemplateError as exc:
        raise UnsafeExpressionError(f"{what}: invalid template: {exc}") from exc
    try:
        return template.render(**context)
    except UndefinedError as exc:
        known = ", ".join(sorted(context)) or "none"
        raise FlowRuntimeError(f"{what}: {exc.message} (available: {known})") from exc
    except Exception as exc:  # SecurityError and friends
        if exc.__class__.__name__ == "SecurityError":
            raise UnsafeExpressionError(f"{what}: {exc}") from exc
        raise FlowRuntimeError(f"{what}: rendering failed: {exc}") from exc
