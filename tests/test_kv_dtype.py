"""The half-precision KV cache option (``kv_dtype="float16"``, ``core.kvcache``): bounded logit
differences, the session's guarantees kept (rollback, forks, reuse = no reuse), and the default
path untouched."""

from __future__ import annotations

import pytest
import torch
from transformers import DynamicCache

from alora_flows.core.backend import Backend
from alora_flows.core.session import Session
from alora_flows.errors import AloraFlowsError
from alora_flows.testing import save_random_alora, tiny_model, tiny_tokenizer

WORDS = "Velmora was founded in 1832 by the inventor Tarsk Olden on the river Quell. "
CONVERSATION = [
    {"role": "system", "content": "Answer only from the documents."},
    {"role": "user", "content": WORDS * 12 + "When was Velmora founded?"},
    {"role": "assistant", "content": "Velmora was founded in 1832."},
]


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    """Two backends on identical tiny models and the same adapter: exact KV and float16 KV."""
    tmp = tmp_path_factory.mktemp("kv")
    tokenizer = tiny_tokenizer()
    path = save_random_alora(tiny_model(tokenizer), tokenizer, "<|im_start|>certainty\n", tmp / "alpha")
    backends = {}
    for kv in ("auto", "float16"):
        backend = Backend(tiny_model(tokenizer), tokenizer, model_id="tiny", kv_dtype=kv)
        backend.add_adapter("alpha", path)
        backends[kv] = backend
    return backends


def test_default_cache_and_attention_are_untouched(pair):
    exact = pair["auto"]
    assert exact.kv_dtype == "auto"
    assert exact.new_cache().storage_dtype is None
    assert exact.base_model.config._attn_implementation == "sdpa"
    assert pair["float16"].base_model.config._attn_implementation == "sdpa_kv"


def test_default_path_is_bit_identical_to_transformers(pair):
    """The exact option runs transformers' own attention on unrounded keys and values: equal to
    a hand-made ``DynamicCache`` forward bit for bit."""
    exact = pair["auto"]
    session = Session(exact, messages=CONVERSATION)
    result = session.invoke("alpha", max_new_tokens=1, return_logits=True)
    ids = session.ids
    info = exact.adapters["alpha"]
    with exact.lock, torch.inference_mode():
        cache = DynamicCache()
        exact.select_adapter(None)
        exact.base_model(input_ids=torch.tensor([ids]), cache=cache, use_cache=True)
        with exact._deltas.active([("alpha", -len(info.adapter_tokens), None)]):
            out = exact.base_model(
                input_ids=torch.tensor([info.invocation_tokens]),
                cache=cache,
                use_cache=True,
                logits_to_keep=1,
            )
    assert torch.equal(result.logits, out.logits[0, -1])


def test_half_cache_stores_float16_and_halves_the_bytes(pair):
    sessions = {kv: Session(b, messages=CONVERSATION) for kv, b in pair.items()}
    layer = sessions["float16"]._cache.layers[0]
    assert layer.keys.dtype == layer.values.dtype == torch.float16
    assert sessions["auto"]._cache.layers[0].keys.dtype == torch.float32
    assert sessions["float16"].kv_bytes() * 2 == sessions["auto"].kv_bytes()


def test_half_cache_logits_differ_boundedly(pair):
    """Rounding keys and values to float16 changes the logits, but little (measured on the
    realistic evaluation in benchmarks/results/kv_dtype_accuracy.md)."""
    logits = {}
    for kv, backend in pair.items():
        session = Session(backend, messages=CONVERSATION)
        logits[kv] = session.invoke("alpha", max_new_tokens=1, return_logits=True).logits
    diff = (logits["float16"] - logits["auto"]).abs().max().item()
    scale = logits["auto"].abs().max().item()
    assert 0 < diff < 1e-2 * scale, (diff, scale)
    assert int(logits["float16"].argmax()) == int(logits["auto"].argmax())


def test_half_cache_keeps_reuse_equal_to_no_reuse_and_rollback_exact(pair):
    half = pair["float16"]
    session = Session(half, messages=CONVERSATION)
    tensors = [(layer.keys, layer.values) for layer in session._cache.layers]
    reused = session.invoke("alpha", max_new_tokens=4, return_logits=True)
    assert [(layer.keys, layer.values) for layer in session._cache.layers] == tensors  # same objects
    cold = Session(half, reuse=False, messages=CONVERSATION).invoke(
        "alpha", max_new_tokens=4, return_logits=True
    )
    assert reused.token_ids == cold.token_ids
    assert (reused.logits - cold.logits).abs().max().item() < 1e-4


def test_half_cache_forks_share_tensors(pair):
    session = Session(pair["float16"], messages=CONVERSATION)
    twin = session.fork()
    assert all(
        a.keys.data_ptr() == b.keys.data_ptr() for a, b in zip(session._cache.layers, twin._cache.layers)
    )
    twin.extend([{"role": "user", "content": "And who founded it?"}])
    assert session._cache.get_seq_length() < twin._cache.get_seq_length()
    assert type(twin._cache) is type(session._cache)


def test_bad_kv_dtype_and_non_sdpa_attention_are_refused():
    tokenizer = tiny_tokenizer()
    with pytest.raises(AloraFlowsError, match="kv_dtype must be one of"):
        Backend(tiny_model(tokenizer), tokenizer, model_id="tiny", kv_dtype="int8")
    model = tiny_model(tokenizer)
    model.config._attn_implementation = "eager"
    with pytest.raises(AloraFlowsError, match="SDPA attention"):
        Backend(model, tokenizer, model_id="tiny", kv_dtype="float16")
