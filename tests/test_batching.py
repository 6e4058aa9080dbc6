"""Continuous batching across sessions (``core.batching``): a batched forward equals the lone
forwards it replaces (logits within 1e-4, the same caches afterwards), and sessions running in
threads on a batching backend give exactly their sequential outputs."""

from __future__ import annotations

import threading

import pytest
import torch

from alora_flows.core.backend import Backend
from alora_flows.core.batching import (
    BatchedBackend,
    ForwardRequest,
    ForwardScheduler,
    forward_batch,
    run_batch,
)
from alora_flows.core.session import Session
from alora_flows.errors import AdapterError, AloraFlowsError


@pytest.fixture(scope="module")
def strong(tmp_path_factory):
    """A tiny backend whose random adapters change the output a lot, so that an adapter applied
    on the wrong tokens (or not at all) shows in the logits (see test_parallel_intrinsics)."""
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


def _ids(backend, text: str) -> list[int]:
    return backend.tokenizer(text, add_special_tokens=False)["input_ids"]


def _prefilled(backend, text: str):
    cache = backend.new_cache()
    backend.forward(_ids(backend, text), cache)
    return cache


def _kv(cache) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys.clone(), layer.values.clone()) for layer in cache.layers]


def _requests(backend) -> list[tuple[str, list[int], str | None, int]]:
    """(cached prefix text or '', new tokens, adapter, adapted): every shape a session sends."""
    question = _ids(backend, "What is the capital of France? The capital")
    invocation = _ids(backend, "<|im_start|>certainty\n")
    rewrite = _ids(backend, "<|im_start|>rewrite\n") + _ids(backend, "Velmora was founded")
    return [
        ("", question, None, 0),  # a prefill on a fresh cache
        ("The quick brown fox jumps over", _ids(backend, " the lazy dog."), None, 0),  # prefill after a past
        ("Velmora was founded in 1832 by", _ids(backend, " the"), None, 0),  # a base decode step
        ("Answer only from the documents.", invocation, "alpha", len(invocation) - 1),  # aLoRA call
        ("user assistant system", rewrite, "beta", len(rewrite)),  # another adapter, all adapted
        ("0 1 2 3 4 5 6", _ids(backend, " 7"), "alpha", 1),  # an adapter's decode step
    ]


@pytest.fixture(params=["sdpa", "eager"])
def attention(request, strong):
    """The strong backend with its model on each attention implementation a batch supports."""
    config = strong.base_model.config
    before = config._attn_implementation
    config._attn_implementation = request.param
    yield strong
    config._attn_implementation = before


def test_a_batched_forward_equals_each_lone_forward(attention):
    backend = attention
    shapes = _requests(backend)
    lone_caches = [_prefilled(backend, p) if p else backend.new_cache() for p, *_ in shapes]
    batch_caches = [_prefilled(backend, p) if p else backend.new_cache() for p, *_ in shapes]
    lone = [
        backend.forward(ids, cache, adapter=adapter, adapted=adapted)
        for (_, ids, adapter, adapted), cache in zip(shapes, lone_caches)
    ]
    requests = [
        ForwardRequest(ids, cache, adapter, adapted)
        for (_, ids, adapter, adapted), cache in zip(shapes, batch_caches)
    ]
    runs: list[int] = []
    hook = backend.base_model.register_forward_pre_hook(lambda module, args: runs.append(1))
    try:
        batched = forward_batch(backend, requests)
    finally:
        hook.remove()
    assert len(runs) == 1  # one forward of the model for all six requests
    assert len(batched) == len(shapes)
    for got, want in zip(batched, lone):
        assert got.shape == want.shape
        assert torch.allclose(got, want, atol=1e-4), float((got - want).abs().max())
        assert int(got.argmax()) == int(want.argmax())
    for a, b in zip(lone_caches, batch_caches):  # every cache grew by its own tokens only
        assert a.get_seq_length() == b.get_seq_length()
        for (ka, va), (kb, vb) in zip(_kv(a), _kv(b)):
            assert torch.allclose(ka, kb, rtol=1e-5, atol=1e-4)
            assert torch.allclose(va, vb, rtol=1e-5, atol=1e-4)
    # the adapters did act in the batch: the same tokens on the base model give other logits
    _, ids, _, _ = shapes[3]
    base = backend.forward(ids, _prefilled(backend, shapes[3][0]))
    assert (base - batched[3]).abs().max() > 1e-2


def test_one_cache_cannot_appear_twice_in_a_batch(strong):
    cache = strong.new_cache()
    ids = _ids(strong, "The quick")
    with pytest.raises(AloraFlowsError, match="caches of their own"):
        forward_batch(strong, [ForwardRequest(ids, cache), ForwardRequest(ids, cache)])


def _faulty(cache, layer: int):
    """``cache``, whose ``update`` fails at ``layer`` (the layers before it have taken their keys)."""
    update = cache.update

    def broken(key_states, value_states, layer_idx, *args, **kwargs):
        if layer_idx == layer:
            raise RuntimeError("this cache is broken")
        return update(key_states, value_states, layer_idx, *args, **kwargs)

    cache.update = broken
    return cache


def test_a_failing_request_fails_alone_and_the_rest_of_its_batch_is_right(strong):
    shapes = _requests(strong)
    lone_caches = [_prefilled(strong, p) if p else strong.new_cache() for p, *_ in shapes]
    lone = [
        strong.forward(ids, cache, adapter=adapter, adapted=adapted)
        for (_, ids, adapter, adapted), cache in zip(shapes, lone_caches)
    ]
    caches = [_prefilled(strong, p) if p else strong.new_cache() for p, *_ in shapes]
    past = caches[2].get_seq_length()
    _faulty(caches[2], layer=1)  # layer 0 of the packed forward appends to it, then it fails
    requests = [
        ForwardRequest(ids, cache, adapter, adapted)
        for (_, ids, adapter, adapted), cache in zip(shapes, caches)
    ]
    assert run_batch(strong, requests) is True  # the packed forward failed; each ran alone
    assert isinstance(requests[2].error, RuntimeError) and requests[2].logits is None
    assert caches[2].layers[0].get_seq_length() == past  # failed alone too, and cut back again
    for i, (request, want) in enumerate(zip(requests, lone)):
        if i == 2:
            continue
        assert request.error is None
        assert torch.allclose(request.logits, want, atol=1e-4), i
        # each cache holds its tokens once: cut back to before the failed forward, then run alone
        assert caches[i].get_seq_length() == lone_caches[i].get_seq_length(), i
        for (ka, va), (kb, vb) in zip(_kv(lone_caches[i]), _kv(caches[i])):
            assert torch.allclose(ka, kb, atol=1e-4) and torch.allclose(va, vb, atol=1e-4)
    ok = [
        ForwardRequest(ids, _prefilled(strong, p) if p else strong.new_cache()) for p, ids, _, _ in shapes[:2]
    ]
    assert run_batch(strong, ok) is False and all(r.error is None for r in ok)


def test_a_model_whose_attention_cannot_be_packed_skips_the_scheduler(strong, monkeypatch):
    """With an attention batching cannot pack (flash attention on a GPU, ``sdpa_kv``), a forward
    runs in its caller's thread, exactly the backend's own: no worker thread, no gather wait."""
    import alora_flows.core.batching as batching

    ids = _ids(strong, "The quick brown fox")
    want = strong.forward(ids, strong.new_cache())
    threads: list[str] = []
    real = Backend.forward

    def forward(self, *args, **kwargs):
        threads.append(threading.current_thread().name)
        return real(self, *args, **kwargs)

    # on the class: an instance attribute would outlive the test (a BatchedBackend shares __dict__)
    monkeypatch.setattr(Backend, "forward", forward)
    monkeypatch.setattr(batching, "batchable", lambda backend: False)
    scheduler = ForwardScheduler(strong)
    try:
        got = scheduler.forward(ids, strong.new_cache())
    finally:
        scheduler.close()
    assert threads == [threading.current_thread().name]
    assert scheduler._worker is None and scheduler.stats.forwards == 0
    assert torch.equal(got, want)


CONVERSATIONS = [
    "Velmora was founded in 1832 by Tarsk Olden. When was Velmora founded?",
    "What is the capital of France?",
    "The quick brown fox jumps over the lazy dog. What did the fox do?",
    "Answer only from the documents. Question: when was the town founded?",
]


def _session_work(backend, text: str) -> dict:
    """What one flow does: a conversation, a base answer, an aLoRA call with rollback, a follow-up."""
    session = Session(backend, messages=[{"role": "user", "content": text}])
    answer = session.generate(max_new_tokens=10)
    check = session.invoke("alpha", max_new_tokens=4, return_logits=True)
    session.extend([{"role": "user", "content": "Say it again."}])
    again = session.generate(max_new_tokens=6)
    return {
        "answer": answer.token_ids,
        "check": check.token_ids,
        "logits": check.logits,
        "again": again.token_ids,
        "cached": session.cached_tokens,
        "history": [(s.kind, s.prefill_tokens, s.reused_tokens, s.generated_tokens) for s in session.history],
    }


def test_concurrent_sessions_on_a_batching_backend_equal_their_sequential_runs(strong):
    sequential = [_session_work(strong, text) for text in CONVERSATIONS]
    results: dict[int, dict] = {}
    errors: list[BaseException] = []
    with BatchedBackend(strong, gather_seconds=0.05) as shared:
        barrier = threading.Barrier(len(CONVERSATIONS))

        def run(i: int) -> None:
            try:
                barrier.wait()
                results[i] = _session_work(shared, CONVERSATIONS[i])
            except BaseException as exc:  # reported below
                errors.append(exc)

        threads = [threading.Thread(target=run, args=(i,)) for i in range(len(CONVERSATIONS))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        stats = shared.stats
    assert not errors, errors
    for i, want in enumerate(sequential):
        got = results[i]
        for key in ("answer", "check", "again", "cached", "history"):
            assert got[key] == want[key], (i, key)
        assert torch.allclose(got["logits"], want["logits"], atol=1e-4)
    # the forwards really were batched: fewer forwards than requests, several rows at once
    assert stats.max_rows >= 2 and stats.forwards < stats.rows


def test_the_batching_view_is_the_backend_itself(strong, tmp_path):
    with BatchedBackend(strong) as shared:
        assert isinstance(shared, type(strong))
        assert shared.adapters is strong.adapters and shared.lock is strong.lock
        assert shared.model is strong.model and shared.stop_token_ids == strong.stop_token_ids
        # a lone session on the view runs as on the backend (a batch of one is a plain forward)
        alone = Session(shared, messages=[{"role": "user", "content": CONVERSATIONS[1]}])
        plain = Session(strong, messages=[{"role": "user", "content": CONVERSATIONS[1]}])
        assert alone.generate(max_new_tokens=5).token_ids == plain.generate(max_new_tokens=5).token_ids


def test_a_bad_request_fails_its_own_caller_and_a_closed_scheduler_refuses(strong):
    scheduler = ForwardScheduler(strong)
    cache = strong.new_cache()
    with pytest.raises(AdapterError, match="no adapter named 'nope'"):
        scheduler.forward([1, 2], cache, adapter="nope", adapted=1)
    with pytest.raises(AdapterError, match="1..2 positions"):
        scheduler.forward([1, 2], cache, adapter="alpha", adapted=3)
    assert scheduler.forward([1, 2], cache).shape[-1] == len(strong.tokenizer)
    scheduler.close()
    with pytest.raises(AloraFlowsError, match="closed"):
        scheduler.forward([3], cache)


@pytest.mark.slow
def test_batching_benchmark_smoke(tmp_path):
    """benchmarks/batching.py end to end on two flows of the embedded model (no control row)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    cmd = [
        sys.executable,
        "benchmarks/batching.py",
        "--questions",
        "2",
        "--no-control",
        "--out",
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, cwd=root, capture_output=True, text=True, timeout=1200)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "batching.json").read_text())
    sequential, batched = data["runs"]
    assert sequential["ok"] == batched["ok"] == 2
    assert batched["differences_from_sequential"] == [] and batched["forwards"] < batched["rows"]
    assert "| 2 threads, batched |" in (tmp_path / "batching.md").read_text()
