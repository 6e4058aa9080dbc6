"""Registry, intrinsic.yaml files, adapter resolution, and adding your own intrinsic."""

from __future__ import annotations

import json

import pytest

import intrinsics
from alora_flows.core.models import EMBEDDED_KEY, EMBEDDED_MODEL_ID
from alora_flows.core.session import Session
from alora_flows.errors import AdapterError, AdapterMismatchError
from alora_flows.testing import save_random_alora
from intrinsics import (
    ChoiceOutput,
    IntrinsicConflictError,
    IntrinsicSpecError,
    TextOutput,
    UnknownIntrinsicError,
    choice_spec,
    get_spec,
    load_intrinsic,
    model_key,
    read_spec_file,
    register_spec,
    resolve_adapter,
    unregister_spec,
    write_spec_file,
)
from intrinsics.parsers import parse_text


@pytest.fixture()
def clean_registry():
    before = set(intrinsics.list_specs())
    yield
    for name in set(intrinsics.list_specs()) - before:
        unregister_spec(name)


def test_builtins_and_aliases():
    assert {"uncertainty", "hallucination", "rewrite", "answerability"} <= set(intrinsics.list_specs())
    assert get_spec("certainty") is get_spec("uncertainty")
    assert get_spec("query_rewrite").name == "rewrite"


def test_unknown_intrinsic_is_a_typed_key_error():
    with pytest.raises(UnknownIntrinsicError, match="unknown intrinsic 'nope'.*register_spec") as info:
        get_spec("nope")
    assert isinstance(info.value, KeyError)
    assert str(info.value).startswith("unknown intrinsic")


def test_register_conflicts_need_replace(clean_registry):
    spec = choice_spec("tone", "<|im_start|>tone\n", labels=["polite", "rude"])
    assert register_spec(spec) is spec
    register_spec(choice_spec("tone", "<|im_start|>tone\n", labels=["polite", "rude"]))  # identical: fine
    other = choice_spec("tone", "<|im_start|>tone2\n", labels=["polite", "rude"])
    with pytest.raises(IntrinsicConflictError, match="replace=True"):
        register_spec(other)
    register_spec(other, replace=True)
    assert get_spec("tone").invocation == "<|im_start|>tone2\n"


def test_model_keys():
    assert model_key("embedded") == model_key(EMBEDDED_MODEL_ID) == EMBEDDED_KEY
    assert model_key("/models/My-Model/") == "my-model"
    assert model_key("org/Granite-3.3-8B") == "granite-3.3-8b"


def test_builtin_source_without_shipped_adapter_says_how_to_train(monkeypatch, tmp_path):
    monkeypatch.setattr("intrinsics.registry.ADAPTER_ROOT", tmp_path)
    (tmp_path / EMBEDDED_KEY / "uncertainty").mkdir(parents=True)
    (tmp_path / EMBEDDED_KEY / "uncertainty" / "adapter_config.json").write_text("{}")
    assert resolve_adapter("certainty", "builtin", "embedded") == tmp_path / EMBEDDED_KEY / "uncertainty"
    with pytest.raises(
        AdapterError,
        match=r"no built-in 'rewrite' adapter for model 'tiny'.*"
        r"smollm2-135m-instruct: uncertainty.*alora-flows train",
    ):
        resolve_adapter("rewrite", "builtin", "tiny")


def test_local_sources(tmp_path):
    adapter = tmp_path / "flows" / "adapters" / "x"
    adapter.mkdir(parents=True)
    with pytest.raises(AdapterError, match="no adapter_config.json"):
        resolve_adapter("x", adapter, "tiny")
    (adapter / "adapter_config.json").write_text("{}")
    assert resolve_adapter("x", "adapters/x", "tiny", base_dir=tmp_path / "flows") == adapter
    with pytest.raises(AdapterError, match="does not exist"):
        resolve_adapter("x", "adapters/missing", "tiny", base_dir=tmp_path / "flows")


def test_spec_file_round_trips(tmp_path):
    for spec in [
        get_spec("uncertainty").replace(invocation="<|im_start|>sure\n"),
        get_spec("hallucination"),
        get_spec("rewrite"),
        choice_spec("tone", "<|im_start|>tone\n", labels=["polite", "rude"]),
        intrinsics.IntrinsicSpec(
            name="echo",
            invocation="<|im_start|>echo\n",
            output_model=TextOutput,
            parser=parse_text,
            max_new_tokens=7,
        ),
    ]:
        path = write_spec_file(spec, tmp_path / spec.name, adapter={"type": "alora"})
        again = read_spec_file(path)
        assert again == spec, spec.name


def test_hand_written_yaml(tmp_path):
    (tmp_path / "intrinsic.yaml").write_text(
        'name: tone\nkind: choice\ninvocation: "<|im_start|>tone\\n"\nlabels: [polite, rude]\n'
        'input_template: "Reply: {{ reply }}"\nmax_new_tokens: 3\n'
    )
    spec = read_spec_file(tmp_path)
    assert spec.kind == "choice" and spec.allowed_outputs == ("polite", "rude") and spec.max_new_tokens == 3
    assert spec.input_messages({"reply": "Go away."}) == [{"role": "user", "content": "Reply: Go away."}]


@pytest.mark.parametrize(
    "text,match",
    [
        ("name: a\ninvocation: x\ncolour: red\n", "colour"),
        ("name: a\nkind: sentiment\ninvocation: x\n", "unknown kind 'sentiment'"),
        ("name: a\nkind: choice\ninvocation: x\n", "needs labels"),
        ("name: a\nkind: custom\ninvocation: x\n", "needs 'parser'"),
        (
            "name: a\nkind: custom\ninvocation: x\nparser: nope.mod:f\noutput_model: nope.mod:M\n",
            "cannot import parser",
        ),
        ("name: [unclosed\n", "invalid YAML"),
        ("- just a list\n", "expected a mapping"),
    ],
)
def test_bad_spec_files_name_the_file(tmp_path, text, match):
    (tmp_path / "intrinsic.yaml").write_text(text)
    with pytest.raises(IntrinsicSpecError, match=match) as info:
        read_spec_file(tmp_path / "intrinsic.yaml")
    assert "intrinsic.yaml" in str(info.value)


def test_load_intrinsic_prefers_the_spec_next_to_the_adapter(tmp_path, backend):
    tok, model = backend.tokenizer, backend.base_model
    spec = get_spec("uncertainty").replace(name="sure", invocation="<|im_start|>sure\n")
    path = save_random_alora(model, tok, spec.invocation, tmp_path / "sure", base_model_name="tiny")
    write_spec_file(spec, path)
    resolved = load_intrinsic("my_certainty", path, "tiny", tokenizer=tok)
    assert resolved.spec == spec and resolved.adapter_type == "alora"
    assert resolved.invocation_tokens == spec.invocation_ids(tok)
    # the same weights with a spec whose invocation differs: refused, with the fix in the message
    write_spec_file(spec.replace(invocation="<|im_start|>other\n"), path)
    with pytest.raises(AdapterMismatchError, match="fix the invocation"):
        load_intrinsic("my_certainty", path, "tiny", tokenizer=tok)


def test_load_intrinsic_without_spec_file_uses_the_registry(tmp_path, backend):
    tok, model = backend.tokenizer, backend.base_model
    path = save_random_alora(
        model, tok, get_spec("rewrite").invocation, tmp_path / "rw", base_model_name="tiny"
    )
    assert load_intrinsic("rewrite", path, "tiny", tokenizer=tok).spec is get_spec("rewrite")
    lora = save_random_alora(
        model, tok, "<|im_start|>x\n", tmp_path / "lora", lora=True, base_model_name="tiny"
    )
    (tmp_path / "lora" / "intrinsic.yaml").write_text('name: x\nkind: text\ninvocation: "<|im_start|>x\\n"\n')
    assert load_intrinsic("x", lora, "tiny", tokenizer=tok).adapter_type == "lora"
    with pytest.raises(UnknownIntrinsicError):
        load_intrinsic("mystery", path, "tiny", tokenizer=tok)


def test_your_own_intrinsic_in_a_few_lines(tmp_path, fresh_backend, clean_registry):
    """The docs' example: a spec + an adapter (random here), registered and run in a session."""
    tone = register_spec(
        choice_spec(
            "tone", "<|im_start|>tone\n", labels=["polite", "rude"], input_template="Reply: {{ reply }}"
        )
    )
    path = save_random_alora(
        fresh_backend.base_model,
        fresh_backend.tokenizer,
        tone.invocation,
        tmp_path / "tone",
        base_model_name="tiny",
    )
    resolved = load_intrinsic("tone", path, fresh_backend.model_id, tokenizer=fresh_backend.tokenizer)
    fresh_backend.add_adapter("tone", resolved.path)
    session = Session(fresh_backend, messages=[{"role": "user", "content": "Hello"}])
    out, stats = resolved.spec.run(session, "tone", {"reply": "Go away."})
    assert isinstance(out, ChoiceOutput) and out.label in ("polite", "rude")
    assert set(out.probs) == {"polite", "rude"} and sum(out.probs.values()) == pytest.approx(1.0)
    assert json.loads((path / "adapter_config.json").read_text())[
        "alora_invocation_tokens"
    ] == tone.invocation_ids(fresh_backend.tokenizer)
