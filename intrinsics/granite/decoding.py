"""Decoding an intrinsic as io.yaml asks: ``response_format`` as a constraint, log-probabilities
for ``likelihood``, and the sampling ``parameters``.

Constraint library: **llguidance** (guidance-ai; PyPI ``llguidance``). Why this one: it compiles a
JSON schema to a grammar and gives, per step, the mask of allowed tokens for *our* decode loop
(``LLMatcher.consume_token`` / ``fill_next_token_bitmask``) with no generate() of its own to fit
around; it works from any Hugging Face fast tokenizer (``llguidance.hf.from_tokenizer``); it ships
one abi3 wheel with no dependencies that installs on this CPU machine; it is maintained (monthly
releases) and is the library vLLM, SGLang and llama.cpp use for structured outputs — and the one
mellea itself uses for Granite intrinsics, so our masks are the ones IBM's adapters were served
with. (outlines-core needs its own index per vocabulary and handles JSON-schema features through
regexes; xgrammar targets batched GPU masks; lm-format-enforcer is slower and less active.)

Whitespace between JSON tokens is limited to 20 characters, as mellea does, so a small or
untrained adapter cannot loop on blanks.

Everything is one callable, :class:`DecodeProcessor`, which ``Session.invoke(logits_processor=)``
calls at every step with the tokens so far and the next token's scores.
"""

from __future__ import annotations

import math
import threading
import weakref
from collections.abc import Iterable, Sequence
from typing import Any

import torch

from alora_flows.errors import IntrinsicSpecError
from intrinsics.granite.likelihood import TokenLogprob

WHITESPACE = r"[\x20\x0A\x0D\x09]{0,20}"
TOP_LOGPROBS = 10  # as granite-common and mellea request

_LOCK = threading.Lock()
_LL_TOKENIZERS: weakref.WeakKeyDictionary[Any, dict[tuple[int, ...], Any]] = weakref.WeakKeyDictionary()


def _llguidance():
    try:
        import llguidance
        import llguidance.hf
    except ImportError as exc:  # pragma: no cover - a declared dependency
        raise IntrinsicSpecError(
            "response_format needs the 'llguidance' package (pip install llguidance)"
        ) from exc
    return llguidance


def ll_tokenizer(tokenizer, stop_ids: Iterable[int]) -> Any:
    """llguidance's view of ``tokenizer`` with ``stop_ids`` as end tokens (built once, ~1 s for a
    large vocabulary, cached per tokenizer)."""
    llg = _llguidance()
    stops = tuple(sorted(int(t) for t in stop_ids))
    with _LOCK:
        per = _LL_TOKENIZERS.setdefault(tokenizer, {})
        if stops not in per:
            per[stops] = llg.hf.from_tokenizer(tokenizer, n_vocab=len(tokenizer), eos_token=list(stops))
        return per[stops]


def compile_schema(schema: dict[str, Any], *, adapter: str) -> str:
    """The llguidance grammar of a JSON schema; a schema it cannot compile is a typed error."""
    llg = _llguidance()
    try:
        grammar = llg.LLMatcher.grammar_from_json_schema(schema, overrides={"whitespace_pattern": WHITESPACE})
    except Exception as exc:
        raise IntrinsicSpecError(f"intrinsic '{adapter}': response_format cannot be compiled: {exc}") from exc
    is_error, messages = llg.LLMatcher.validate_grammar_with_warnings(grammar)
    if is_error:
        raise IntrinsicSpecError(
            f"intrinsic '{adapter}': response_format is not a usable grammar: {'; '.join(messages)}"
        )
    return grammar


class DecodeProcessor:
    """Per-step processing of an intrinsic's scores: the JSON-schema mask, ``top_k``/``top_p``
    (only when sampling), and a record of the top log-probabilities (after the mask, as the
    served adapters' canned outputs show them) for the ``likelihood`` rule."""

    def __init__(
        self,
        tokenizer,
        *,
        stop_ids: Iterable[int],
        grammar: str | None = None,
        record_logprobs: bool = False,
        temperature: float = 0.0,
        top_k: int | None = None,
        top_p: float | None = None,
        adapter: str = "",
    ) -> None:
        self.tokenizer = tokenizer
        self.adapter = adapter
        self.stop_ids = frozenset(int(t) for t in stop_ids)
        self.matcher = None
        if grammar is not None:
            llg = _llguidance()
            lltok = ll_tokenizer(tokenizer, self.stop_ids)
            self.matcher = llg.LLMatcher(lltok, grammar)
        self.record = record_logprobs
        self.temperature = temperature
        self.top_k = top_k
        self.top_p = top_p
        self._consumed = 0
        self._tops: list[tuple[tuple[int, float], ...]] = []
        self._chosen: list[float] = []
        self._last_row: torch.Tensor | None = None

    # ------------------------------------------------------------------ the hook
    def __call__(self, tokens: list[int], scores: torch.Tensor) -> torch.Tensor:
        if self.record and self._last_row is not None and len(tokens) == len(self._tops):
            self._chosen.append(float(self._last_row[tokens[-1]]))
        if self.matcher is not None:
            scores = self._constrain(tokens, scores)
        if self.temperature > 0:
            scores = self._warp(scores)
        if self.record:
            row = torch.log_softmax(scores.float(), dim=-1)
            finite = torch.isfinite(row)
            k = min(TOP_LOGPROBS, int(finite.sum()))
            top = torch.topk(row, k=k)
            self._tops.append(tuple(zip(top.indices.tolist(), top.values.tolist())))
            self._last_row = row
        return scores

    def _constrain(self, tokens: list[int], scores: torch.Tensor) -> torch.Tensor:
        assert self.matcher is not None
        for token in tokens[self._consumed :]:
            if not self.matcher.consume_token(token):
                raise IntrinsicSpecError(
                    f"intrinsic '{self.adapter}': token {token} broke the response_format grammar "
                    f"({self.matcher.get_error()})"
                )
        self._consumed = len(tokens)
        # one byte per token id (0: not allowed); llguidance.torch's kernel would torch.compile
        allowed = torch.frombuffer(bytearray(self.matcher.compute_logit_bias()), dtype=torch.uint8)
        keep = torch.zeros(scores.shape[-1], dtype=torch.bool, device=scores.device)
        width = min(allowed.numel(), keep.numel())
        keep[:width] = allowed[:width].to(scores.device) > 0
        return scores.masked_fill(~keep, float("-inf"))

    def _warp(self, scores: torch.Tensor) -> torch.Tensor:
        scores = scores.clone()
        if self.top_k:
            k = min(int(self.top_k), scores.shape[-1])
            kth = torch.topk(scores, k).values[-1]
            scores[scores < kth] = float("-inf")
        if self.top_p is not None and 0 < self.top_p < 1:
            probs = torch.softmax(scores / self.temperature, dim=-1)
            ordered, order = torch.sort(probs, descending=True)
            cumulative = torch.cumsum(ordered, dim=-1)
            drop = cumulative - ordered > self.top_p  # keep the smallest set reaching top_p
            scores[order[drop]] = float("-inf")
        return scores

    # ------------------------------------------------------------------ results
    def logprobs(self, token_ids: Sequence[int]) -> list[TokenLogprob]:
        """The recorded log-probabilities of the emitted tokens (stop tokens left out), each with
        its text as it appears in the decoded output and its top alternatives."""
        if not self.record:
            raise IntrinsicSpecError("log-probabilities were not recorded for this call")
        chosen = list(self._chosen)
        if len(chosen) < len(token_ids) and self._last_row is not None:
            chosen.append(float(self._last_row[token_ids[len(chosen)]]))
        out: list[TokenLogprob] = []
        kept: list[int] = []
        previous = ""
        for token, logprob, top in zip(token_ids, chosen, self._tops):
            if token in self.stop_ids:
                continue
            kept.append(token)
            text = self.tokenizer.decode(kept, skip_special_tokens=False)
            alternatives = tuple(
                (self.tokenizer.decode([alt], skip_special_tokens=False), lp)
                for alt, lp in top
                if math.isfinite(lp) and alt not in self.stop_ids
            )
            out.append(TokenLogprob(text=text[len(previous) :], logprob=logprob, top=alternatives))
            previous = text
        return out
