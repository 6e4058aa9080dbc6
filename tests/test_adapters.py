"""Adapter loading: both aLoRA formats load; anything that does not fit is refused with a reason."""

import json
import warnings

import pytest

from alora_flows.core.session import Session
from alora_flows.errors import AdapterError, AdapterMismatchError, NotAnALoRAError
from alora_flows.testing import save_random_alora, tiny_model, tiny_tokenizer


def _edit_config(path, **changes):
    config_file = path / "adapter_config.json"
    config = json.loads(config_file.read_text())
    for key, value in changes.items():
        if value is None:
            config.pop(key, None)
        else:
            config[key] = value
    config_file.write_text(json.dumps(config))


def test_native_format_loads_and_runs(fresh_backend, tmp_path):
    path = save_random_alora(
        fresh_backend.base_model,
        fresh_backend.tokenizer,
        "<|im_start|>check\n",
        tmp_path / "check",
        base_model_name="tiny",
    )
    info = fresh_backend.add_adapter("check", path)
    assert (
        info.invocation_tokens
        == fresh_backend.tokenizer("<|im_start|>check\n", add_special_tokens=False)["input_ids"]
    )
    session = Session(fresh_backend, messages=[{"role": "user", "content": "hi"}])
    assert session.invoke("check", max_new_tokens=2).stats.adapter == "check"


def test_old_format_with_invocation_string_loads(fresh_backend, tmp_path):
    path = save_random_alora(
        fresh_backend.base_model,
        fresh_backend.tokenizer,
        "<|im_start|>old\n",
        tmp_path / "old",
        base_model_name="tiny",
    )
    _edit_config(path, alora_invocation_tokens=None, invocation_string="<|im_start|>old\n")
    info = fresh_backend.add_adapter("old", path)
    assert (
        info.invocation_tokens
        == fresh_backend.tokenizer("<|im_start|>old\n", add_special_tokens=False)["input_ids"]
    )
    assert info.invocation_string == "<|im_start|>old\n"


def test_plain_lora_is_refused(fresh_backend, tmp_path):
    path = save_random_alora(
        fresh_backend.base_model,
        fresh_backend.tokenizer,
        "x",
        tmp_path / "p",
        lora=True,
        base_model_name="tiny",
    )
    with pytest.raises(NotAnALoRAError, match="plain LoRA"):
        fresh_backend.add_adapter("plain", path)
    assert "plain" not in fresh_backend.adapters


def test_adapter_for_another_model_size_is_refused(fresh_backend, tmp_path):
    other = tiny_model(tiny_tokenizer(), hidden=32)
    path = save_random_alora(
        other, fresh_backend.tokenizer, "<|im_start|>c\n", tmp_path / "o", base_model_name="tiny"
    )
    with pytest.raises(AdapterMismatchError, match="different model size"):
        fresh_backend.add_adapter("other", path)


def test_adapter_targeting_missing_modules_is_refused(fresh_backend, tmp_path):
    deeper = tiny_model(tiny_tokenizer(), layers=4)
    path = save_random_alora(
        deeper, fresh_backend.tokenizer, "<|im_start|>c\n", tmp_path / "d", base_model_name="tiny"
    )
    with pytest.raises(AdapterMismatchError, match="does not have"):
        fresh_backend.add_adapter("deeper", path)


def test_recorded_base_model_mismatch_is_refused(fresh_backend, tmp_path):
    path = save_random_alora(
        fresh_backend.base_model,
        fresh_backend.tokenizer,
        "<|im_start|>c\n",
        tmp_path / "g",
        base_model_name="ibm-granite/granite-3.3-8b-instruct",
    )
    with pytest.raises(AdapterMismatchError, match="granite-3.3-8b-instruct"):
        fresh_backend.add_adapter("granite", path)


def test_unknown_base_model_warns(fresh_backend, tmp_path):
    path = save_random_alora(
        fresh_backend.base_model, fresh_backend.tokenizer, "<|im_start|>c\n", tmp_path / "u"
    )
    _edit_config(path, base_model_name_or_path=None)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        fresh_backend.add_adapter("unknown", path)
    assert any("does not record its base model" in str(w.message) for w in caught)


def test_missing_files_are_reported(fresh_backend, tmp_path):
    with pytest.raises(AdapterError, match="no adapter_config.json"):
        fresh_backend.add_adapter("missing", tmp_path / "nothing")
    path = save_random_alora(
        fresh_backend.base_model,
        fresh_backend.tokenizer,
        "<|im_start|>c\n",
        tmp_path / "w",
        base_model_name="tiny",
    )
    (path / "adapter_model.safetensors").unlink()
    with pytest.raises(AdapterError, match="incomplete"):
        fresh_backend.add_adapter("noweights", path)


def test_bad_adapter_names_are_refused(fresh_backend, tmp_path):
    path = save_random_alora(
        fresh_backend.base_model,
        fresh_backend.tokenizer,
        "<|im_start|>c\n",
        tmp_path / "n",
        base_model_name="tiny",
    )
    with pytest.raises(AdapterError, match="not usable"):
        fresh_backend.add_adapter("ora", path)
