"""Several intrinsic calls over one cached conversation in one packed forward per step: each row
equals its sequential call, and the conversation and cache are untouched afterwards."""

from __future__ import annotations

import pytest
import torch

from alora_flows.core.parallel import IntrinsicCall, invoke_parallel
from alora_flows.core.session import Session
from alora_flows.errors import AdapterError

CONVERSATION = [
    {"role": "user", "content": "Velmora was founded in 1832 by Tarsk Olden. When was Velmora founded?"},
    {"role": "assistant", "content": "Velmora was founded in 1832."},
]


@pytest.fixture(scope="module")
def strong(tmp_path_factory):
    """A tiny backend whose random adapters change the output a lot (the default random LoRA
    weights move probabilities by ~1e-5, too little to tell a wrong packing from a right one)."""
    from peft.tuners.lora import LoraLayer

    from alora_flows.testing import tiny_backend

    backend = tiny_backend(
        tmp_path_factory.mktemp("strong"),
        {"alpha": "<|im_start|>certainty\n", "beta": "<|im_start|>rewrite\n"},
    )
    with torch.no_grad():
        for module in backend.model.modules():
            if isinstance(module, LoraLayer):
                for name in module.lora_B:
                    module.lora_B[name].weight.mul_(300.0)
    return backend


def _sequential(session: Session, call: IntrinsicCall):
    return session.invoke(
        call.adapter,
        messages=call.messages,
        adapted_input=call.adapted_input,
        max_new_tokens=call.max_new_tokens,
        allowed_token_ids=call.allowed_token_ids,
        return_probs=call.return_probs,
    )


def _calls(backend) -> list[IntrinsicCall]:
    tok = backend.tokenizer
    answer_ids = tok("Answer: Velmora was founded in 1832.", add_special_tokens=False)["input_ids"]
    vocab = list(range(len(tok)))
    return [
        IntrinsicCall("alpha", max_new_tokens=6, allowed_token_ids=vocab, return_probs=True),
        IntrinsicCall(
            "beta", adapted_input=answer_ids, max_new_tokens=9, allowed_token_ids=vocab, return_probs=True
        ),
        IntrinsicCall(
            "alpha",
            messages=[{"role": "user", "content": "Is it right?"}],
            max_new_tokens=4,
            allowed_token_ids=vocab,
            return_probs=True,
        ),
        IntrinsicCall("beta", max_new_tokens=1, allowed_token_ids=vocab, return_probs=True),
    ]


def test_each_packed_row_equals_its_sequential_call(strong):
    backend = strong
    session = Session(backend, messages=CONVERSATION)
    ids, cached = list(session.ids), session.cached_tokens
    calls = _calls(backend)
    packed = invoke_parallel(session, calls)
    # the conversation and its cache are exactly as before
    assert session.ids == ids and session.cached_tokens == cached
    assert session._cache.get_seq_length() == cached
    reference = [_sequential(Session(backend, messages=CONVERSATION), call) for call in calls]
    for got, want, call in zip(packed, reference, calls):
        assert got.token_ids == want.token_ids, call
        assert got.text == want.text
        assert got.stats.reused_tokens == want.stats.reused_tokens == cached
        assert got.stats.prefill_tokens == want.stats.prefill_tokens
        assert got.stats.generated_tokens == len(got.token_ids)
    # full-vocabulary distributions at the first output position agree to 1e-4 ...
    for got, want in zip(packed, reference):
        assert got.probs is not None and want.probs is not None
        assert max(abs(got.probs[t] - want.probs[t]) for t in want.probs) < 1e-4
    # ... while the adapters really move them (so a wrong mask or adapter span would show)
    alpha, beta = reference[0].probs, reference[3].probs
    assert max(abs(alpha[t] - beta[t]) for t in alpha) > 0.01
    assert len({tuple(r.token_ids) for r in reference}) > 1
    # a base-model step afterwards still reuses the whole conversation
    session.extend([{"role": "user", "content": "Thanks."}])
    assert session.history[-1].reused_tokens == cached


def test_packing_is_not_a_copy_of_the_prefix_per_row(backend):
    """Four rows over the conversation add only their own tokens' KV, never the prefix again."""
    session = Session(backend, messages=CONVERSATION * 8)
    prefix = session.cached_tokens
    seen: list[int] = []
    calls = _calls(backend)
    original = session._cache.update

    def spy(key_states, value_states, layer_idx, *args, **kwargs):
        if layer_idx == 0:
            seen.append(key_states.shape[-2])
        assert key_states.shape[0] == 1  # one row: the prefix is shared, not batched
        return original(key_states, value_states, layer_idx, *args, **kwargs)

    session._cache.update = spy  # type: ignore[method-assign]
    try:
        invoke_parallel(session, calls)
    finally:
        del session._cache.update
    assert seen[0] < prefix  # the first forward ran only the rows' own segments, not the conversation
    assert session.cached_tokens == prefix


def test_unknown_adapter_and_no_reuse(backend):
    session = Session(backend, messages=CONVERSATION)
    with pytest.raises(AdapterError, match="no adapter named 'nope'"):
        invoke_parallel(session, [IntrinsicCall("nope")])
    cold = Session(backend, reuse=False, messages=CONVERSATION)
    calls = _calls(backend)[:2]
    got = invoke_parallel(cold, calls)
    want = [_sequential(Session(backend, messages=CONVERSATION), c) for c in calls]
    assert [g.token_ids for g in got] == [w.token_ids for w in want]


def test_base_forwards_are_unchanged_after_packing(backend):
    """The hooks add nothing when no plan is active: base logits are bit-identical."""
    session = Session(backend, messages=CONVERSATION)
    before = backend.forward(session.ids, backend.new_cache())
    invoke_parallel(session, _calls(backend))
    after = backend.forward(session.ids, backend.new_cache())
    assert torch.equal(before, after)
