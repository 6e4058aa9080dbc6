"""Activation exactly where an adapter was trained, for both adapter_config formats.

Old ``alora``-package adapters (``invocation_string`` only) switch on one token after the first
token of their string (that package's ``tokenize_alora`` gives ``alora_offsets = [len - 1]``);
PEFT adapters at the first of their ``alora_invocation_tokens``; a config with both is accepted
when the tokens are the string's minus its first token, as in IBM's converted configs.
"""

from __future__ import annotations

import json

import pytest
import torch

from alora_flows.core.adapters import activation, read_adapter_config
from alora_flows.core.session import Session
from alora_flows.errors import (
    AdapterError,
    InvocationMismatchError,
    InvocationNotFoundError,
    NotAnALoRAError,
)
from intrinsics.granite import convert_granite_adapter
from tests.granite_support import granite_backend, granite_tokenizer, write_adapter

CERTAINTY = "<|start_of_role|>certainty<|end_of_role|>"


def test_the_rule_for_each_format():
    tok = granite_tokenizer()
    full = tok(CERTAINTY, add_special_tokens=False)["input_ids"]
    assert len(full) == 3 and tok.convert_ids_to_tokens(full[0]) == "<|start_of_role|>"
    old = activation({"invocation_string": CERTAINTY}, tok, name="c")
    assert (old.tokens, old.offset, old.adapter_tokens, old.source) == (
        full,
        1,
        full[1:],
        "invocation_string",
    )
    both = activation({"invocation_string": CERTAINTY, "alora_invocation_tokens": full[1:]}, tok, name="c")
    assert (both.tokens, both.offset, both.source) == (full, 1, "both")
    native = activation({"alora_invocation_tokens": full}, tok, name="c")
    assert (native.tokens, native.offset) == (full, 0)
    assert activation({"r": 8}, tok, name="c") is None


def test_configs_whose_records_disagree_are_refused():
    tok = granite_tokenizer()
    full = tok(CERTAINTY, add_special_tokens=False)["input_ids"]
    with pytest.raises(InvocationMismatchError, match="adapter 'c'.*different activation points"):
        activation({"invocation_string": CERTAINTY, "alora_invocation_tokens": full}, tok, name="c")
    with pytest.raises(InvocationNotFoundError, match="outside this tokenizer's vocabulary"):
        activation({"alora_invocation_tokens": [49152, 6989]}, tok, name="c")
    with pytest.raises(InvocationNotFoundError, match="at least two tokens"):
        activation({"invocation_string": "<|start_of_role|>"}, tok, name="c")
    with pytest.raises(InvocationNotFoundError, match="list of token ids"):
        activation({"alora_invocation_tokens": "1 2"}, tok, name="c")


def test_adapter_config_is_read_in_one_place_with_typed_errors(tmp_path):
    with pytest.raises(AdapterError, match="no adapter_config.json"):
        read_adapter_config(tmp_path, name="x")
    (tmp_path / "adapter_config.json").write_text("{broken")
    with pytest.raises(AdapterError, match="adapter 'x'.*not valid JSON"):
        read_adapter_config(tmp_path, name="x")
    (tmp_path / "adapter_config.json").write_text("[1]")
    with pytest.raises(AdapterError, match="JSON object"):
        read_adapter_config(tmp_path, name="x")


def reference_logits(backend, adapter: str, ids: list[int], offset: int) -> torch.Tensor:
    """PEFT's own forward over the whole sequence, adapter on the last ``offset`` positions."""
    model = backend.model
    backend.select_adapter(adapter)  # PEFT's own path: its LoRA layers on, this adapter active
    with torch.inference_mode():
        out = model(input_ids=torch.tensor([ids]), alora_offsets=[offset])
    return out.logits[0, -1]


@pytest.mark.parametrize("fmt", ["old", "both", "native"])
def test_the_session_switches_the_adapter_on_where_it_was_trained(tmp_path, fmt):
    backend = granite_backend()
    path = write_adapter(
        backend, tmp_path / fmt, invocation=CERTAINTY, old_format=fmt == "old", both_keys=fmt == "both"
    )
    info = backend.add_adapter("certainty", path)
    full = backend.tokenizer(CERTAINTY, add_special_tokens=False)["input_ids"]
    assert info.invocation_tokens == full and info.activation_offset == (0 if fmt == "native" else 1)
    session = Session(
        backend, messages=[{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]
    )
    result = session.invoke("certainty", max_new_tokens=1, return_logits=True)
    ids = session.ids + full
    trained = reference_logits(backend, "certainty", ids, len(full) - info.activation_offset)
    one_early = reference_logits(backend, "certainty", ids, len(full) - info.activation_offset + 1)
    assert torch.allclose(result.logits, trained, atol=1e-4)
    assert not torch.allclose(result.logits, one_early, atol=1e-3)  # the offset matters


def test_converting_an_old_adapter_keeps_its_activation(tmp_path):
    backend = granite_backend()
    old = write_adapter(
        backend, tmp_path / "old", invocation=CERTAINTY, old_format=True, io_yaml="model: ~\n"
    )
    out = convert_granite_adapter(old, backend.tokenizer, tmp_path / "converted")
    config = json.loads((out / "adapter_config.json").read_text())
    full = backend.tokenizer(CERTAINTY, add_special_tokens=False)["input_ids"]
    assert config["alora_invocation_tokens"] == full[1:] and config["invocation_string"] == CERTAINTY
    assert (out / "io.yaml").is_file()
    a = backend.add_adapter("old", old)
    b = backend.add_adapter("converted", out)
    assert (a.invocation_tokens, a.activation_offset) == (b.invocation_tokens, b.activation_offset)


def test_plain_lora_is_refused(tmp_path):
    backend = granite_backend()
    path = write_adapter(backend, tmp_path / "lora", invocation=CERTAINTY)
    config = json.loads((path / "adapter_config.json").read_text())
    config.pop("alora_invocation_tokens")
    (path / "adapter_config.json").write_text(json.dumps(config))
    with pytest.raises(NotAnALoRAError):
        backend.add_adapter("plain", path)
