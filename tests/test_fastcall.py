"""The fast adapter forward (``core.lora_deltas``): PEFT's aLoRA arithmetic without PEFT's
per-forward set-up. Every check compares against PEFT's own path on the tiny model."""

from __future__ import annotations

import warnings

import pytest
import torch

from alora_flows.core.lora_deltas import supported
from alora_flows.core.session import Session

WORDS = "Velmora was founded in 1832 by the inventor Tarsk Olden on the river Quell. "
CONVERSATION = [
    {"role": "system", "content": "Answer only from the documents."},
    {"role": "user", "content": WORDS * 12 + "When was Velmora founded?"},
    {"role": "assistant", "content": "Velmora was founded in 1832."},
]


def peft_full_logits(backend, ids: list[int], adapter: str, offset: int) -> torch.Tensor:
    """No cache, PEFT's own forward with an explicit aLoRA offset: the reference arithmetic."""
    with backend.lock, torch.inference_mode():
        backend.select_adapter(adapter)
        out = backend.model(input_ids=torch.tensor([ids]), alora_offsets=[offset])
    return out.logits[0, -1]


class Recorder:
    """A logits processor that keeps the scores of every decoding step."""

    def __init__(self) -> None:
        self.scores: list[torch.Tensor] = []

    def __call__(self, tokens: list[int], scores: torch.Tensor) -> torch.Tensor:
        self.scores.append(scores.clone())
        return scores


def invoke(session: Session, adapter: str, *, fast: bool, **kwargs):
    backend = session.backend
    saved = dict(backend._fast)
    backend._fast[adapter] = fast
    try:
        return session.invoke(adapter, return_logits=True, **kwargs)
    finally:
        backend._fast = saved


def test_plain_alora_adapters_take_the_fast_path(backend):
    assert backend._fast["alpha"] and backend._fast["beta"]


@pytest.mark.parametrize("adapter", ["alpha", "beta"])
def test_fast_call_logits_equal_pefts_path(backend, adapter):
    session = Session(backend, messages=CONVERSATION)
    adapted = [5, 17, 33]
    fast = invoke(session, adapter, fast=True, adapted_input=adapted, max_new_tokens=1)
    peft = invoke(session, adapter, fast=False, adapted_input=adapted, max_new_tokens=1)
    info = backend.adapters[adapter]
    full = session.ids + info.invocation_tokens + adapted
    reference = peft_full_logits(backend, full, adapter, len(info.adapter_tokens) + len(adapted))
    assert (fast.logits - peft.logits).abs().max().item() <= 1e-5
    assert (fast.logits - reference).abs().max().item() <= 1e-4  # no cache vs cache: summation order
    assert fast.stats.prefill_tokens == len(info.invocation_tokens) + len(adapted)


def test_fast_decoding_matches_pefts_at_every_step(backend):
    """Several decoded tokens: the adapter stays on every generated token, as in PEFT's path."""
    session = Session(backend, messages=CONVERSATION)
    runs = {}
    for fast in (True, False):
        recorder = Recorder()
        result = invoke(session, "alpha", fast=fast, max_new_tokens=6, logits_processor=recorder)
        runs[fast] = (result.token_ids, recorder.scores)
    assert runs[True][0] == runs[False][0]
    assert len(runs[True][1]) == len(runs[True][0]) > 1
    for a, b in zip(runs[True][1], runs[False][1]):
        assert (a - b).abs().max().item() <= 1e-5


def test_fast_call_runs_no_peft_forward_set_up(backend, monkeypatch):
    """The point of the fast path: PEFT's per-forward hook registration never runs."""
    session = Session(backend, messages=CONVERSATION)
    expected = invoke(session, "beta", fast=True, max_new_tokens=3).logits

    def refuse(*args, **kwargs):
        raise AssertionError("PEFT's per-forward hooks were set up")

    monkeypatch.setattr(backend.model.base_model, "_enable_peft_forward_hooks", refuse)
    again = invoke(session, "beta", fast=True, max_new_tokens=3)
    assert torch.equal(again.logits, expected)
    with pytest.raises(AssertionError, match="per-forward hooks"):
        invoke(session, "beta", fast=False, max_new_tokens=1)


def test_adapter_delta_stays_inside_the_call(backend):
    """After an adapter call, base forwards and the cache are exactly the base model's."""
    session = Session(backend, messages=CONVERSATION)
    ids = session.ids
    with torch.inference_mode(), backend.model.disable_adapter():
        base = backend.model(input_ids=torch.tensor([ids])).logits[0, -1]
    adapted = invoke(session, "alpha", fast=True, max_new_tokens=2).logits
    assert (adapted - base).abs().max().item() > 1e-2  # the adapter really acted
    fresh = Session(backend)
    _, logits = fresh._feed(fresh._cache, [], ids, adapter=None, adapted=0)
    assert (logits - base).abs().max().item() <= 1e-5
    assert backend._deltas.plan == []


def test_adapters_that_are_not_plain_alora_keep_pefts_path(fresh_backend, tmp_path):
    """A plain LoRA injected through PEFT directly is not something the hook reproduces."""
    from peft import LoraConfig

    from alora_flows.testing import save_random_alora

    backend = fresh_backend
    path = save_random_alora(backend.base_model, backend.tokenizer, "<|im_start|>x\n", tmp_path / "a")
    backend.add_adapter("alpha", path)
    assert backend._fast["alpha"] is True
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        backend.model.add_adapter("plain", LoraConfig(r=4, target_modules=["q_proj"]))
    from peft.tuners.lora import LoraLayer

    layers = [m for m in backend.base_model.modules() if isinstance(m, LoraLayer)]
    assert supported(layers, "alpha") and not supported(layers, "plain")
    assert not supported(layers, "missing")


# --------------------------------------------------------------------- in-place KV appends
def arena_ptrs(session: Session) -> list[int]:
    return [layer.arena.keys.data_ptr() for layer in session._cache.layers]


def test_in_place_cache_equals_concatenation(backend):
    """Appending into spare capacity gives the logits of transformers' concatenating cache."""
    from transformers import DynamicCache

    session = Session(backend, messages=CONVERSATION)
    assert type(session._cache) is not DynamicCache and session._cache.layers[0].arena is not None
    backend.kv_in_place = False
    try:
        plain = Session(backend, messages=CONVERSATION)
        assert type(plain._cache) is DynamicCache
        expected = plain.invoke("alpha", max_new_tokens=4, return_logits=True)
    finally:
        backend.kv_in_place = True
    got = session.invoke("alpha", max_new_tokens=4, return_logits=True)
    assert got.token_ids == expected.token_ids
    assert (got.logits - expected.logits).abs().max().item() <= 1e-5


def test_in_place_cache_appends_in_place_after_calls(backend):
    """Intrinsic calls write their tokens into the spare capacity and roll back; the next turn
    then appends in place too (no copy of the conversation's KV), and everything stays exact."""
    session = Session(backend, messages=CONVERSATION)
    ptrs = arena_ptrs(session)
    for adapter in ("alpha", "beta", "alpha"):
        session.invoke(adapter, max_new_tokens=3)
    turn = [{"role": "user", "content": "And who founded it?"}]
    session.extend(turn)
    assert arena_ptrs(session) == ptrs
    last = session.invoke("beta", max_new_tokens=1, return_logits=True).logits
    cold = Session(backend, reuse=False, messages=CONVERSATION + turn)
    assert (
        last - cold.invoke("beta", max_new_tokens=1, return_logits=True).logits
    ).abs().max().item() <= 1e-4


def test_in_place_cache_forks_copy_on_write(backend):
    """A fork shares the parent's arena; whichever appends second moves to its own, so neither
    ever sees the other's tokens."""
    parent = Session(backend, messages=CONVERSATION)
    twin = parent.fork()
    assert arena_ptrs(twin) == arena_ptrs(parent)
    a = [{"role": "user", "content": "Who founded it?"}]
    b = [{"role": "user", "content": "Where is the river Quell?"}]
    parent.extend(a)
    twin.extend(b)
    assert arena_ptrs(twin) != arena_ptrs(parent)
    for session, turn in ((parent, a), (twin, b)):
        got = session.generate(5)
        cold = Session(backend, reuse=False, messages=CONVERSATION + turn).generate(5)
        assert got.token_ids == cold.token_ids
        # the cache still holds exactly this branch's conversation (but the answer's closing
        # tokens, which wait for the next call)
        assert session._cache.get_seq_length() == session.cached_tokens
        assert session.ids[: session.cached_tokens] == session._cached_ids
        assert 0 < len(session.ids) - session.cached_tokens <= 3
        got = session.invoke("alpha", max_new_tokens=1, return_logits=True).logits
        cold = Session(backend, reuse=False, messages=session.messages).invoke(
            "alpha", max_new_tokens=1, return_logits=True
        )
        assert (got - cold.logits).abs().max().item() <= 1e-4
