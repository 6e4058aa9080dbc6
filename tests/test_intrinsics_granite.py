"""Granite-style intrinsic directories (old ``alora`` configs, native PEFT configs, io.yaml)."""

from __future__ import annotations

import json

import pytest

from alora_flows.core.session import Session
from alora_flows.testing import save_random_alora, tiny_tokenizer
from intrinsics import IntrinsicSpecError, UncertaintyOutput, load_intrinsic, read_spec_file
from intrinsics.granite import convert_granite_adapter, is_granite_dir, kind_from_schema, load_granite_spec

GRANITE_CERTAINTY = "<|start_of_role|>certainty<|end_of_role|>"

CERTAINTY_IO = """model: ~
response_format: |
  {"type": "integer", "enum": [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]}
transformations:
  - type: likelihood
    categories_to_values: {0: 0.05, 9: 0.95}
instruction: ~
parameters:
  max_completion_tokens: 2
"""

HALLUCINATION_IO = """model: ~
response_format: |
  {"$defs": {"Entry": {"properties": {"r": {"type": "integer"}, "e": {"type": "string"},
   "f": {"type": "boolean"}}, "type": "object"}},
   "items": {"$ref": "#/$defs/Entry"}, "type": "array"}
transformations: ~
instruction: >
  Split the last assistant response into sentences {{ not a template }}.
parameters:
  max_completion_tokens: 1024
"""

REWRITE_IO = """model: ~
response_format: |
  {"properties": {"rewritten_question": {"type": "string"}}, "required": ["rewritten_question"], "type": "object"}
transformations: ~
parameters: {max_completion_tokens: 256}
"""

ANSWERABILITY_IO = """model: answerability
response_format: |
  {"type": "string", "enum": ["answerable", "unanswerable"]}
transformations: ~
parameters: {max_completion_tokens: 6}
"""


def granite_dir(tmp_path, name, config, io_yaml=None):
    path = tmp_path / name
    path.mkdir(parents=True)
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, **config}))
    if io_yaml:
        (path / "io.yaml").write_text(io_yaml)
    return path


@pytest.mark.parametrize(
    "io_yaml,kind,max_new",
    [
        (CERTAINTY_IO, "uncertainty", 1),
        (HALLUCINATION_IO, "hallucination", 1024),
        (REWRITE_IO, "rewrite", 256),
        (ANSWERABILITY_IO, "answerability", 4),
    ],
)
def test_io_yaml_decides_the_kind(tmp_path, io_yaml, kind, max_new):
    path = granite_dir(tmp_path, "some_adapter", {"invocation_string": GRANITE_CERTAINTY}, io_yaml)
    assert is_granite_dir(path)
    spec = load_granite_spec(path)
    assert spec.kind == kind and spec.max_new_tokens == max_new and spec.invocation == GRANITE_CERTAINTY


def test_granite_instruction_becomes_a_literal_input_turn(tmp_path):
    path = granite_dir(
        tmp_path,
        "hd",
        {"invocation_string": "<|start_of_role|>hallucination<|end_of_role|>"},
        HALLUCINATION_IO,
    )
    spec = load_granite_spec(path, name="hallucination_detection")
    assert spec.name == "hallucination_detection"
    turn = spec.input_messages({})
    assert turn == [
        {"role": "user", "content": "Split the last assistant response into sentences {{ not a template }}."}
    ]


def test_names_decide_when_there_is_no_io_yaml(tmp_path):
    old = granite_dir(
        tmp_path / "lib" / "context_relevance" / "alora",
        "granite-3.3-8b-instruct",
        {"invocation_string": "<|start_of_role|>context_relevance<|end_of_role|>"},
    )
    spec = load_granite_spec(old)
    assert spec.kind == "choice" and spec.allowed_outputs == ("relevant", "partially relevant", "irrelevant")
    rewrite = granite_dir(
        tmp_path, "query_rewrite", {"invocation_string": "<|start_of_role|>rewrite<|end_of_role|>"}
    )
    assert load_granite_spec(rewrite).kind == "rewrite"
    # our built-in hallucination spec adds a numbered-sentences turn; a Granite adapter gets none
    detector = granite_dir(tmp_path, "hallucination_detection", {"invocation_string": "<|x|>"})
    spec = load_granite_spec(detector)
    assert spec.kind == "hallucination" and spec.input_template is None and spec.input_messages({}) == []
    mystery = granite_dir(tmp_path, "mystery", {"invocation_string": "<|x|>"})
    with pytest.raises(IntrinsicSpecError, match="cannot tell which intrinsic"):
        load_granite_spec(mystery)


def test_native_tokens_need_the_tokenizer(tmp_path):
    tok = tiny_tokenizer()
    ids = tok("<|im_start|>certainty\n", add_special_tokens=False)["input_ids"]
    path = granite_dir(tmp_path, "certainty", {"alora_invocation_tokens": ids}, CERTAINTY_IO)
    assert load_granite_spec(path, tokenizer=tok).invocation == "<|im_start|>certainty\n"
    with pytest.raises(IntrinsicSpecError, match="tokenizer"):
        load_granite_spec(path)


def test_schema_recognition():
    assert kind_from_schema({"enum": ["yes", "no"]}) == ("choice", {"labels": ["yes", "no"]})
    assert kind_from_schema({"type": "object"}) == ("json", {})
    assert (
        kind_from_schema({"type": "array", "items": {"properties": {"r": {}, "f": {}}}})[0] == "hallucination"
    )
    assert kind_from_schema(None) == (None, {})


def test_old_alora_adapter_runs_and_converts(tmp_path, fresh_backend):
    """An adapter saved by the old ``alora`` package: only ``invocation_string`` in its config."""
    tok, model = fresh_backend.tokenizer, fresh_backend.base_model
    path = save_random_alora(
        model, tok, "<|im_start|>certainty\n", tmp_path / "certainty", base_model_name="tiny"
    )
    config = json.loads((path / "adapter_config.json").read_text())
    config.pop("alora_invocation_tokens")
    config["invocation_string"] = "<|im_start|>certainty\n"
    (path / "adapter_config.json").write_text(json.dumps(config))
    (path / "io.yaml").write_text(CERTAINTY_IO)

    resolved = load_intrinsic("certainty", path, "tiny", tokenizer=tok)
    assert resolved.spec.kind == "uncertainty" and resolved.adapter_type == "alora"
    assert resolved.invocation_tokens == tok("<|im_start|>certainty\n", add_special_tokens=False)["input_ids"]
    converted = convert_granite_adapter(path, tok, tmp_path / "converted")
    native = json.loads((converted / "adapter_config.json").read_text())
    assert (
        native["alora_invocation_tokens"] == resolved.invocation_tokens and "invocation_string" not in native
    )
    assert read_spec_file(converted).kind == "uncertainty"

    for name, adapter in (("old", path), ("native", converted)):
        fresh_backend.add_adapter(name, adapter)
    session = Session(
        fresh_backend, messages=[{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]
    )
    old, _ = resolved.spec.run(session, "old", {})
    new, _ = resolved.spec.run(session, "native", {})
    assert isinstance(old, UncertaintyOutput) and old == new  # same weights, same invocation
