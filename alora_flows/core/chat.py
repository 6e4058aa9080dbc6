"""Render chat messages to token ids, safely and without re-tokenizing what is already known.

Two jobs:
- *Escaping.* Message content comes from users, documents and tools. If it contains a special
  token of the template (``<|im_start|>``), the tokenizer would turn it into a real control token
  and the text could forge a turn or fake an adapter's invocation sequence. We break every special
  token string in content with a zero-width space, so it tokenizes as plain text.
- *Incremental tokenization.* Sessions re-render the whole conversation on every call (that is
  what makes cache/rendering divergence detectable), but tokenizing 8k tokens on every intrinsic
  call would dominate its cost. When the new rendering extends the previous one at a special-token
  boundary, only the new suffix is tokenized; the result is identical to a full tokenization
  because tokenizers always split at special tokens.
"""

from __future__ import annotations

import re
import threading
import weakref
from collections.abc import Hashable
from typing import Any, Mapping, Sequence

from alora_flows.core.documents import DocumentsLike, chat_inputs

ZERO_WIDTH_SPACE = "\u200b"

Message = Mapping[str, str]

_PER_TOKENIZER: weakref.WeakKeyDictionary[Any, dict[Hashable, Any]] = weakref.WeakKeyDictionary()
_PER_TOKENIZER_LOCK = threading.Lock()


def tokenizer_cache(tokenizer: Any) -> dict[Hashable, Any]:
    """A dict that lives exactly as long as ``tokenizer``, for what is derived from it once
    (special-token escaping, an intrinsic's invocation ids and decoding plan).

    Keyed weakly on the tokenizer object (never on ``id()``, which is reused after it dies), so
    nothing here keeps a tokenizer alive. A tokenizer is taken as fixed once in use: sessions
    already assume so. One that cannot be weakly referenced gets a fresh dict (no caching).
    """
    with _PER_TOKENIZER_LOCK:
        try:
            return _PER_TOKENIZER.setdefault(tokenizer, {})
        except TypeError:
            return {}


def special_token_strings(tokenizer) -> list[str]:
    specials = set(tokenizer.all_special_tokens)
    decoder = getattr(tokenizer, "added_tokens_decoder", {}) or {}
    specials.update(tok.content for tok in decoder.values() if getattr(tok, "special", False))
    return sorted((s for s in specials if s), key=len, reverse=True)


class Escaper:
    """Breaks a tokenizer's special-token strings in text (see the module docstring)."""

    def __init__(self, tokenizer) -> None:
        self.specials = special_token_strings(tokenizer)
        self._pattern = re.compile("|".join(re.escape(s) for s in self.specials)) if self.specials else None

    def __call__(self, text: str) -> str:
        if self._pattern is None or not text:
            return text
        return self._pattern.sub(lambda m: m.group(0)[0] + ZERO_WIDTH_SPACE + m.group(0)[1:], text)


def escaper(tokenizer) -> Escaper:
    """The :class:`Escaper` of ``tokenizer``, built once per tokenizer."""
    cache = tokenizer_cache(tokenizer)
    found = cache.get(Escaper)
    if found is None:
        found = cache[Escaper] = Escaper(tokenizer)
    return found


class ChatRenderer:
    """Turns message lists into token ids with the tokenizer's chat template."""

    def __init__(self, tokenizer) -> None:
        self.tokenizer = tokenizer
        self._escaper = escaper(tokenizer)
        self._specials = self._escaper.specials
        self._recent: list[tuple[str, list[int]]] = []  # a few recent renderings, newest last

    def escape(self, text: str) -> str:
        """Break special-token strings in ``text`` so they tokenize as ordinary characters."""
        return self._escaper(text)

    def text(
        self,
        messages: Sequence[Message],
        *,
        add_generation_prompt: bool = False,
        documents: DocumentsLike = None,
    ) -> str:
        """The template's rendering; ``documents`` as :func:`~alora_flows.core.documents.chat_inputs` places them."""
        msgs, template_kwargs = chat_inputs(messages, documents, self.tokenizer, escape=self.escape)
        safe = [{"role": m["role"], "content": self.escape(m["content"])} for m in msgs]
        if not safe:
            return ""
        return self.tokenizer.apply_chat_template(
            safe, tokenize=False, add_generation_prompt=add_generation_prompt, **template_kwargs
        )

    def ids(
        self,
        messages: Sequence[Message],
        *,
        add_generation_prompt: bool = False,
        documents: DocumentsLike = None,
    ) -> list[int]:
        text = self.text(messages, add_generation_prompt=add_generation_prompt, documents=documents)
        prefixes = [
            (p, ids)
            for p, ids in self._recent
            if text.startswith(p) and self._starts_with_special(text[len(p) :])
        ]
        if prefixes:
            prev, prev_ids = max(prefixes, key=lambda item: len(item[0]))
            ids = prev_ids + self._encode(text[len(prev) :])
        else:
            ids = self._encode(text)
        self._recent = [r for r in self._recent if r[0] != text][-3:] + [(text, ids)]
        return list(ids)

    def copy(self) -> ChatRenderer:
        twin = ChatRenderer.__new__(ChatRenderer)
        twin.__dict__.update(self.__dict__)
        twin._recent = list(self._recent)
        return twin

    def encode_plain(self, text: str) -> list[int]:
        """Tokenize ``text`` as-is (special tokens allowed): for invocation strings we control."""
        return self._encode(text)

    def _encode(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"] if text else []

    def _starts_with_special(self, suffix: str) -> bool:
        return not suffix or any(suffix.startswith(s) for s in self._specials)
