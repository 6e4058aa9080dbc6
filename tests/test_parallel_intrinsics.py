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


def _no_fallback(monkeypatch):
    """Make the one-call-after-another fallback fail the test: the packed path must run."""
    from alora_flows.core import parallel as core_parallel

    def refuse(*args, **kwargs):
        raise AssertionError("invoke_parallel fell back to sequential calls")

    monkeypatch.setattr(core_parallel, "_sequential", refuse)


def test_a_session_with_inline_documents_packs(strong, monkeypatch):
    """``inline`` documents render inside their user turn: the rows must be rendered the way the
    session renders them, or no row shares the cached prefix and the call silently falls back."""
    from alora_flows.core.documents import DocumentSet

    def session() -> Session:
        s = Session(strong)
        docs = DocumentSet(documents=["Velmora was founded in 1832 by Tarsk Olden."], render_as="inline")
        s.extend([{"role": "user", "content": "When was Velmora founded?"}], documents=docs)
        s.extend([{"role": "assistant", "content": "Velmora was founded in 1832."}])
        return s

    calls = _calls(strong)
    reference = [_sequential(session(), call) for call in calls]
    packed_session = session()
    ids, cached = list(packed_session.ids), packed_session.cached_tokens
    _no_fallback(monkeypatch)
    packed = invoke_parallel(packed_session, calls)
    assert packed_session.ids == ids and packed_session._cache.get_seq_length() == cached
    for got, want in zip(packed, reference):
        assert got.token_ids == want.token_ids
        assert got.stats.reused_tokens == cached  # each row read the conversation from the cache
        assert max(abs(got.probs[t] - want.probs[t]) for t in want.probs) < 1e-4


ANSWER_TURN = [
    {
        "role": "user",
        "content": "Answer: The Quellmark river runs 412 km from the Orsk hills to the Tarven sea.",
    }
]


def test_rows_that_share_a_base_model_turn_run_it_once(strong, monkeypatch):
    """Three checks that re-read the same turn before their invocations: the turn runs once, in
    the shared prefix, and each row equals its own sequential call."""
    vocab = list(range(len(strong.tokenizer)))
    calls = [
        IntrinsicCall(
            name, messages=ANSWER_TURN, max_new_tokens=n, allowed_token_ids=vocab, return_probs=True
        )
        for name, n in (("alpha", 3), ("beta", 5), ("alpha", 1))
    ]
    session = Session(strong, messages=CONVERSATION)
    ids, cached = list(session.ids), session.cached_tokens
    turn = len(session._renderer.ids(CONVERSATION + ANSWER_TURN)) - len(ids)
    assert turn >= 24
    seen: list[int] = []
    original = session._cache.update

    def spy(key_states, value_states, layer_idx, *args, **kwargs):
        if layer_idx == 0:
            seen.append(key_states.shape[-2])
        return original(key_states, value_states, layer_idx, *args, **kwargs)

    session._cache.update = spy  # type: ignore[method-assign]
    _no_fallback(monkeypatch)
    try:
        packed = invoke_parallel(session, calls)
    finally:
        del session._cache.update
    invocation = len(strong.adapters["alpha"].invocation_tokens)
    # the first forward ran the turn once plus each row's invocation, not the turn three times
    assert seen[0] == turn + 2 * invocation + len(strong.adapters["beta"].invocation_tokens)
    # the conversation and its cache are exactly as before: the hoisted turn was cropped away
    assert session.ids == ids and session.cached_tokens == cached
    assert session._cache.get_seq_length() == cached and session._cached_ids == ids
    reference = [_sequential(Session(strong, messages=CONVERSATION), call) for call in calls]
    for got, want in zip(packed, reference):
        assert got.token_ids == want.token_ids
        assert max(abs(got.probs[t] - want.probs[t]) for t in want.probs) < 1e-4
    # the turn is counted once: prefilled by the first row, reused by the others
    assert [r.stats.prefill_tokens for r in packed] == [turn + invocation, 5, invocation]
    assert [r.stats.reused_tokens for r in packed] == [cached, cached + turn, cached + turn]
    assert sum(r.stats.prefill_tokens for r in packed) < sum(w.stats.prefill_tokens for w in reference)


def test_a_generated_turns_closing_tokens_run_once_and_stay_cached(strong, monkeypatch):
    """After ``generate`` the answer's closing tokens wait for the next call: the packed call runs
    them once for every row and keeps them, as a sequential invoke keeps them."""
    vocab = list(range(len(strong.tokenizer)))
    calls = [
        IntrinsicCall("alpha", max_new_tokens=2, allowed_token_ids=vocab, return_probs=True),
        IntrinsicCall(
            "beta", messages=ANSWER_TURN, max_new_tokens=2, allowed_token_ids=vocab, return_probs=True
        ),
    ]

    def answered() -> Session:
        s = Session(strong, messages=CONVERSATION[:1])
        s.generate(6)
        return s

    session = answered()
    pending = len(session.ids) - session.cached_tokens
    assert pending > 0
    _no_fallback(monkeypatch)
    packed = invoke_parallel(session, calls)
    seq = answered()
    reference = [_sequential(seq, call) for call in calls]
    assert session._cached_ids == seq._cached_ids == session.ids  # the closing tokens are kept
    assert session._cache.get_seq_length() == len(session.ids)
    for got, want in zip(packed, reference):
        assert got.token_ids == want.token_ids
        assert max(abs(got.probs[t] - want.probs[t]) for t in want.probs) < 1e-4
    assert packed[0].stats.prefill_tokens == reference[0].stats.prefill_tokens  # closing tokens + its own


def test_no_hoisted_token_is_an_adapted_one(strong, monkeypatch):
    """Rows of one adapter share their invocation (and here their adapted input's start), but
    those tokens run under the adapter: hoisting them into the base-model prefix would change
    the result. Equal to sequential calls only if the hoist stops before every adapted span."""
    from alora_flows.core.parallel import _Row, hoistable

    tok = strong.tokenizer
    vocab = list(range(len(tok)))
    answer = tok("Answer: Velmora was founded in 1832. Score:", add_special_tokens=False)["input_ids"]
    calls = [
        IntrinsicCall(
            "alpha", adapted_input=answer, max_new_tokens=3, allowed_token_ids=vocab, return_probs=True
        ),
        IntrinsicCall(
            "alpha", adapted_input=answer[:-2], max_new_tokens=3, allowed_token_ids=vocab, return_probs=True
        ),
    ]
    session = Session(strong, messages=CONVERSATION)
    _no_fallback(monkeypatch)
    packed = invoke_parallel(session, calls)
    reference = [_sequential(Session(strong, messages=CONVERSATION), call) for call in calls]
    for got, want in zip(packed, reference):
        assert got.token_ids == want.token_ids
        assert max(abs(got.probs[t] - want.probs[t]) for t in want.probs) < 1e-4
    assert [r.stats.reused_tokens for r in packed] == [session.cached_tokens] * 2  # nothing hoisted
    # the rule itself: identical rows still keep their whole adapted span (and one token) apart
    target = [1, 2, 3, 4, 5]
    rows = [_Row([], "alpha", 3, 1, lambda *_: 0), _Row([], "alpha", 3, 1, lambda *_: 0)]
    assert hoistable(1, [target, target], rows) == 1
    base_rows = [_Row([], None, 0, 1, lambda *_: 0), _Row([], None, 0, 1, lambda *_: 0)]
    assert hoistable(1, [target, target], base_rows) == 3


def test_stop_when_cancels_the_calls_still_running(strong):
    """A short call that finishes first can stop the long ones: the finished results equal their
    sequential calls, the stopped ones come back cancelled after fewer steps, the cache is as
    before, and without reuse the stopped calls never start."""
    backend = strong
    tok = backend.tokenizer
    vocab = list(range(len(tok)))
    short = IntrinsicCall("alpha", max_new_tokens=1, allowed_token_ids=vocab, return_probs=True)
    long = IntrinsicCall("beta", max_new_tokens=9, allowed_token_ids=vocab)
    seen: list[list[int]] = []

    def stop_when(finished):
        seen.append(sorted(finished))
        return 0 in finished

    session = Session(backend, messages=CONVERSATION)
    cached = session.cached_tokens
    first, second = invoke_parallel(session, [short, long], stop_when=stop_when)
    assert seen == [[0]]  # asked once, when the short call finished
    want = _sequential(Session(backend, messages=CONVERSATION), short)
    assert not first.cancelled and first.token_ids == want.token_ids
    assert second.cancelled and len(second.token_ids) == 1 < long.max_new_tokens
    assert session._cache.get_seq_length() == session.cached_tokens == cached
    # never asked to stop: both run to their end
    both = invoke_parallel(session, [short, long], stop_when=lambda finished: False)
    assert not any(r.cancelled for r in both) and len(both[1].token_ids) == 9
    # without reuse the calls run one after the other: the stopped one never starts
    no_reuse = Session(backend, messages=CONVERSATION, reuse=False)
    before = len(no_reuse.history)
    first, second = invoke_parallel(no_reuse, [short, long], stop_when=stop_when)
    assert first.token_ids == want.token_ids and second.cancelled and second.token_ids == []
    assert len(no_reuse.history) == before + 1
