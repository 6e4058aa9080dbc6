"""The one decode loop and the one list of end-of-turn tokens.

Why one loop: evaluation compares an aLoRA served by :class:`~alora_flows.core.session.Session`
with a LoRA twin decoded by plain transformers/PEFT. When the two paths had loops of their own,
they stopped on different token sets, and the comparison measured the loops as much as the
adapters. Both now hand :func:`decode` a ``step`` (feed one token, return the next logits) and
get the same constraints, stop rule, sampling and streaming.

Why one stop list: the token an adapter is *trained* to end its output with
(:func:`end_of_turn_id`) must be one the session *stops* on (:func:`stop_token_ids`); both read
:data:`END_OF_TURN_TOKENS`.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Sequence
from typing import Any, NamedTuple

import torch

#: End-of-turn tokens of the chat templates we know (ChatML, Granite, Llama 3, GPT-style), in the
#: order :func:`end_of_turn_id` prefers them.
END_OF_TURN_TOKENS = ("<|im_end|>", "<|end_of_text|>", "<|eot_id|>", "<|endoftext|>")


def _token_id(tokenizer: Any, token: str) -> int | None:
    """The id of ``token`` when the tokenizer really has it (not mapped to the unknown token)."""
    tid = tokenizer.convert_tokens_to_ids(token)
    if not isinstance(tid, int) or tid == tokenizer.unk_token_id:
        return None
    return tid


def end_of_turn_id(tokenizer: Any) -> int | None:
    """The token an intrinsic's output ends with: the first of :data:`END_OF_TURN_TOKENS` the
    tokenizer has, else its EOS; ``None`` when it has neither."""
    for token in END_OF_TURN_TOKENS:
        tid = _token_id(tokenizer, token)
        if tid is not None:
            return tid
    eos = tokenizer.eos_token_id
    return None if eos is None else int(eos)


def stop_token_ids(tokenizer: Any, generation_config: Any = None) -> frozenset[int]:
    """Tokens that end a generation: the tokenizer's EOS, the generation config's EOS ids and every
    end-of-turn token the tokenizer has (so :func:`end_of_turn_id` is always among them)."""
    ids: set[int | None] = {tokenizer.eos_token_id}
    eos = getattr(generation_config, "eos_token_id", None)
    ids.update(eos if isinstance(eos, (list, tuple)) else [eos])
    ids.update(_token_id(tokenizer, token) for token in END_OF_TURN_TOKENS)
    return frozenset(int(t) for t in ids if t is not None)


def detokenize(tokenizer: Any, tokens: Sequence[int], stop: Collection[int]) -> str:
    """The text of ``tokens`` without stop tokens (other special tokens are kept: they are content)."""
    return tokenizer.decode([t for t in tokens if t not in stop], skip_special_tokens=False)


def sampling_generator(temperature: float, seed: int | None, device: torch.device) -> torch.Generator | None:
    """The random generator for sampling: ``None`` for greedy decoding; seeded with ``seed`` when
    given (reproducible), otherwise from the operating system's entropy, so that two unseeded
    sampled generations differ."""
    if temperature <= 0:
        return None
    generator = torch.Generator(device=device)
    if seed is None:
        generator.seed()  # non-deterministic: std::random_device
    else:
        generator.manual_seed(seed)
    return generator


class Decoded(NamedTuple):
    """What :func:`decode` produced.

    ``tokens``: every chosen token (a final stop token included); ``fed``: those fed back to the
    model (all but the last), i.e. what the cache now holds beyond the prompt; ``probs``: at the
    first position, the distribution over the allowed tokens (renormalised) or, unconstrained, the
    ten most likely tokens; ``None`` unless asked for.
    """

    tokens: list[int]
    fed: list[int]
    probs: dict[int, float] | None


def decode(
    step: Callable[[int], torch.Tensor],
    logits: torch.Tensor,
    *,
    stop: Collection[int],
    max_new_tokens: int,
    allowed: Sequence[int] | None = None,
    temperature: float = 0.0,
    seed: int | None = None,
    want_probs: bool = False,
    on_token: Callable[[int], None] | None = None,
    processor: Callable[[list[int], torch.Tensor], torch.Tensor] | None = None,
) -> Decoded:
    """Greedy (``temperature=0``) or sampled decoding from ``logits`` (the prompt's last position).

    ``step(token)`` feeds one token to the model and returns the logits after it. With ``allowed``,
    the first token is chosen among ``allowed`` and later ones among ``allowed`` plus ``stop``.
    Decoding ends after a stop token or ``max_new_tokens`` tokens; the last token is never fed.
    ``on_token`` is called with each chosen token that is not a stop token (for streaming).
    ``processor(tokens so far, scores)`` sees the scores first at every step and returns them,
    masked or not (a JSON-schema constraint, a log-probability recorder).
    """
    device = logits.device
    allowed_idx = torch.tensor(sorted(set(allowed)), device=device) if allowed else None
    # After the first token, the stop tokens are allowed too (computed once, not per token).
    later_idx = (
        None
        if allowed_idx is None
        else torch.cat([allowed_idx, torch.tensor(sorted(stop), dtype=torch.long, device=device)])
    )
    generator = sampling_generator(temperature, seed, device)
    tokens: list[int] = []
    fed: list[int] = []
    probs = None
    for position in range(max_new_tokens):
        scores = logits.float()
        if processor is not None:
            scores = processor(tokens, scores)
        if allowed_idx is not None and later_idx is not None:
            keep = allowed_idx if position == 0 else later_idx
            masked = torch.full_like(scores, float("-inf"))
            masked[keep] = scores[keep]
            if position == 0 and want_probs:
                p = torch.softmax(scores[allowed_idx], dim=-1)
                probs = {int(t): float(v) for t, v in zip(allowed_idx.tolist(), p.tolist())}
            scores = masked
        elif position == 0 and want_probs:
            p = torch.softmax(scores, dim=-1)
            top = torch.topk(p, k=min(10, p.numel()))
            probs = {int(t): float(v) for t, v in zip(top.indices.tolist(), top.values.tolist())}
        if generator is not None:
            dist = torch.softmax(scores / temperature, dim=-1)
            token = int(torch.multinomial(dist, 1, generator=generator))
        else:
            token = int(torch.argmax(scores))
        tokens.append(token)
        if token in stop:
            break
        if on_token is not None:
            on_token(token)
        if position == max_new_tokens - 1:
            break
        logits = step(token)
        fed.append(token)
    return Decoded(tokens, fed, probs)


class TextStream:
    """Turns decoded tokens into text deltas for a streaming callback.

    Holds a delta back while the text ends in an incomplete UTF-8 sequence (a byte-level token
    can be half a character), so the callback only ever sees whole characters.
    """

    def __init__(self, tokenizer: Any, stop: Collection[int], emit: Callable[[str], None]) -> None:
        self.tokenizer, self.stop, self.emit = tokenizer, stop, emit
        self.tokens: list[int] = []
        self.emitted = ""

    def __call__(self, token: int) -> None:
        self.tokens.append(token)
        text = detokenize(self.tokenizer, self.tokens, self.stop)
        if len(text) > len(self.emitted) and not text.endswith("\ufffd"):
            self.emit(text[len(self.emitted) :])
            self.emitted = text
