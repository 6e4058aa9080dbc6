"""io.yaml reading, input processing (sentence tags, documents, instructions), output rules and
their schemas, and the decoding constraint, piece by piece."""

from __future__ import annotations

import json

import pytest
import torch

from alora_flows.core.chat import ChatRenderer
from alora_flows.core.documents import Document, DocumentSet, as_documents, chat_inputs
from alora_flows.errors import DocumentError, IntrinsicSpecError, UnsafeExpressionError
from alora_flows.testing import tiny_tokenizer
from intrinsics.granite.decoding import DecodeProcessor, compile_schema
from intrinsics.granite.inputs import build_request, instruction_template, tag_sentences, untag
from intrinsics.granite.io_yaml import IoConfig, read_io_yaml
from intrinsics.granite.jsonpos import Literal, parse_with_positions
from intrinsics.granite.likelihood import TokenLogprob, expected_value
from intrinsics.granite.shapes import model_from_schema
from intrinsics.granite.transformations import OutputContext, build_rules, output_schema
from tests.granite_support import granite_tokenizer


# ---------------------------------------------------------------------------------- io.yaml
def test_io_yaml_errors_name_the_file_and_the_key(tmp_path):
    file = tmp_path / "io.yaml"
    file.write_text("model: ~\nresponse_format: '{broken'\n")
    with pytest.raises(IntrinsicSpecError, match="io.yaml: response_format: .*not valid JSON"):
        read_io_yaml(tmp_path)
    file.write_text("model: ~\nresponse_fromat: '{}'\n")
    with pytest.raises(IntrinsicSpecError, match="response_fromat"):
        read_io_yaml(tmp_path)
    file.write_text("parameters: {max_completion_tokens: 4, frequency_penalty: 0.1}\n")
    with pytest.raises(IntrinsicSpecError, match="frequency_penalty"):
        read_io_yaml(tmp_path)
    file.write_text("sentence_boundaries: {answer: i}\n")
    with pytest.raises(IntrinsicSpecError, match="unknown location 'answer'"):
        read_io_yaml(tmp_path)
    file.write_text("docs_as_message: xml\n")
    with pytest.raises(IntrinsicSpecError, match="docs_as_message"):
        read_io_yaml(tmp_path)


def test_io_yaml_is_found_next_to_the_adapter_or_above_it(tmp_path):
    adapter = tmp_path / "answerability" / "alora" / "granite-tiny"
    adapter.mkdir(parents=True)
    (tmp_path / "answerability" / "io.yaml").write_text("parameters: {max_completion_tokens: 6}\n")
    assert read_io_yaml(adapter).max_new_tokens == 6
    (adapter / "io.yaml").write_text("parameters: {max_completion_tokens: 7}\n")
    assert read_io_yaml(adapter).max_new_tokens == 7


@pytest.mark.parametrize(
    "rules,message",
    [
        ([{"type": "squash", "input_path": []}], "unknown io.yaml rule 'squash'"),
        ([{"type": "nest", "input_path": []}], "missing argument 'field_name'"),
        ([{"type": "nest", "input_path": [], "field_name": "x", "depth": 2}], "unknown argument"),
        ([{"type": "nest", "input_path": "x", "field_name": "x"}], "'input_path' must be a list"),
        ([{"type": "likelihood", "input_path": [], "categories_to_values": {"a": "high"}}], "to a number"),
        (
            [
                {
                    "type": "decode_sentences",
                    "input_path": [None, "r"],
                    "source": "last_message",
                    "output_names": {"begin": "b"},
                }
            ],
            "sentence_boundaries has no 'last_message'",
        ),
    ],
)
def test_malformed_rules_are_refused_at_load(rules, message):
    with pytest.raises(IntrinsicSpecError, match=message):
        build_rules(IoConfig(transformations=rules), "x")


# ---------------------------------------------------------------------------------- instruction
def test_instruction_placeholders_become_sandboxed_template_names():
    template, names = instruction_template("{{ literal }} {last_message} and {who}!", "x")
    assert names == ("last_message", "who")
    request = build_request(
        IoConfig(instruction="{{ literal }} {last_message} and {who}!"),
        [{"role": "user", "content": "hi {there}"}],
        [],
        {"who": "you"},
        adapter="x",
        instruction=(template, names),
    )
    assert request.extra == ({"role": "user", "content": "{ literal } hi {there} and you!"},)


@pytest.mark.parametrize("bad", ["{x.__class__}", "{x[0]}", "{0}", "{x!r}", "{x:>9}", "{"])
def test_instruction_placeholders_must_be_plain_names(bad):
    with pytest.raises(IntrinsicSpecError, match="intrinsic 'x'"):
        instruction_template(bad, "x")


def test_underscore_placeholders_are_refused_by_the_sandbox():
    template, names = instruction_template("{_secret}", "x")
    with pytest.raises(UnsafeExpressionError):
        build_request(
            IoConfig(instruction="{_secret}"),
            [{"role": "user", "content": "q"}],
            [],
            {"_secret": 1},
            adapter="x",
            instruction=(template, names),
        )


# ---------------------------------------------------------------------------------- sentences
def test_tags_and_untagging_round_trip():
    tagged, nxt = tag_sentences(["One. Two!", "Three?"], "c", 5)
    assert tagged == ["<c5> One. <c6> Two!", "<c7> Three?"] and nxt == 8
    spans = untag(tagged[0], "c", 5)
    assert [(s.begin, s.end, s.text) for s in spans] == [(0, 5, "One. "), (5, 9, "Two!")]
    with pytest.raises(ValueError, match="<c9>"):
        untag(tagged[0], "c", 9)


def test_sentence_boundaries_change_only_what_they_name():
    io = IoConfig(sentence_boundaries={"last_message": "i"})
    conversation = [{"role": "user", "content": "Q. Really?"}, {"role": "assistant", "content": "A. B."}]
    request = build_request(io, conversation, [Document(doc_id="1", text="D. E.")], {}, adapter="x")
    assert request.sent == (
        {"role": "user", "content": "Q. Really?"},
        {"role": "assistant", "content": "<i0> A. <i1> B."},
    )
    assert request.documents is None and request.sent_documents[0].text == "D. E."


# ---------------------------------------------------------------------------------- documents
def test_documents_render_through_the_template_or_as_one_documented_turn():
    granite, chatml = granite_tokenizer(), tiny_tokenizer()
    docs = [Document(doc_id="7", text="Velmora. <|end_of_text|>")]
    msgs = [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}]
    out, kwargs = chat_inputs(msgs, docs, granite)
    assert out == msgs and kwargs == {"documents": [{"doc_id": "7", "text": "Velmora. <|end_of_text|>"}]}
    text = ChatRenderer(granite).text(msgs, documents=docs)
    assert "<|start_of_role|>document 7<|end_of_role|>Velmora. <\u200b|end_of_text|><|end_of_text|>" in text
    out, kwargs = chat_inputs(msgs, docs, chatml)
    assert kwargs == {} and out[1] == {
        "role": "user",
        "content": "You have access to the following documents:\n\n[Document 7]\nVelmora. <|end_of_text|>",
    }
    assert out[0]["role"] == "system" and out[2]["content"] == "Q"


@pytest.mark.parametrize(
    "how,first",
    [
        (
            "string",
            {"role": "user", "content": "You have access to the following documents:\n\n[Document 7]\nV."},
        ),
        ("json", {"role": "user", "content": '[{"text": "V.", "doc_id": "7"}]'}),
        ("roles", {"role": "document 7", "content": "V."}),
    ],
)
def test_docs_as_message_forms(how, first):
    out, kwargs = chat_inputs(
        [{"role": "user", "content": "Q"}],
        DocumentSet(documents=(Document(doc_id="7", text="V."),), render_as=how),
        granite_tokenizer(),
    )
    assert kwargs == {} and out[0] == first and out[-1]["content"] == "Q"


def test_documents_from_strings_mappings_and_errors():
    assert as_documents(["a", {"doc_id": 3, "text": "b"}]) == [
        Document(doc_id="0", text="a"),
        Document(doc_id="3", text="b"),
    ]
    with pytest.raises(DocumentError, match="document 0"):
        as_documents([{"id": 1}])


# ---------------------------------------------------------------------------------- rules
def apply(io: IoConfig, value, text=None, tokens=None, request=None):
    rules = build_rules(io, "x")
    ctx = OutputContext(text=text or json.dumps(value), io=io, tokens=tokens, request=request)
    for rule in rules:
        value = rule.apply(value, ctx)
    return value, output_schema(io, rules)


def test_explode_drop_duplicates_project_nest():
    io = IoConfig(
        response_format={
            "type": "array",
            "items": {
                "type": "object",
                "required": ["k", "v"],
                "properties": {"k": {"type": "string"}, "v": {"type": "array", "items": {"type": "integer"}}},
            },
        },
        transformations=[
            {"type": "explode", "input_path": [], "target_field": "v"},
            {"type": "drop_duplicates", "input_path": [], "target_fields": ["k", "v"]},
            {"type": "project", "input_path": [], "retained_fields": {"v": "value", "missing": "m"}},
            {"type": "nest", "input_path": [], "field_name": "items"},
        ],
    )
    value, schema = apply(io, [{"k": "a", "v": [1, 2, 1]}, {"k": "b", "v": []}])
    assert value == {"items": [{"value": 1, "m": None}, {"value": 2, "m": None}]}
    assert schema["properties"]["items"]["items"]["properties"]["value"] == {"type": "integer"}
    model = model_from_schema(schema, "x")
    assert model.model_validate(value).items[1].value == 2


def test_merge_spans_joins_adjacent_spans_of_a_group():
    io = IoConfig(
        transformations=[
            {
                "type": "merge_spans",
                "input_path": [],
                "group_fields": ["doc"],
                "begin_field": "b",
                "end_field": "e",
                "text_field": "t",
            }
        ]
    )
    records = [
        {"doc": "1", "b": 5, "e": 9, "t": "two "},
        {"doc": "1", "b": 0, "e": 5, "t": "one "},
        {"doc": "2", "b": 5, "e": 7, "t": "x"},
        {"doc": "1", "b": 12, "e": 14, "t": "z"},
    ]
    value, _ = apply(io, records)
    assert value == [
        {"doc": "1", "b": 0, "e": 9, "t": "one two "},
        {"doc": "1", "b": 12, "e": 14, "t": "z"},
        {"doc": "2", "b": 5, "e": 7, "t": "x"},
    ]
    with pytest.raises(ValueError, match="overlapping"):
        apply(io, [{"doc": "1", "b": 0, "e": 5, "t": "a"}, {"doc": "1", "b": 3, "e": 6, "t": "b"}])


def test_likelihood_needs_logprobs_and_categories():
    io = IoConfig(
        transformations=[{"type": "likelihood", "input_path": [], "categories_to_values": {"a": 1, "b": 0}}]
    )
    with pytest.raises(ValueError, match="log-probabilities"):
        apply(io, "a")
    with pytest.raises(ValueError, match="not one of the categories"):
        expected_value(Literal("c", 0, 3), [TokenLogprob(text='"c"', logprob=0.0)], {"a": 1})


def test_likelihood_does_not_read_a_longer_number_as_a_digit():
    tokens = [TokenLogprob(text="1", logprob=-0.1, top=(("1", -0.1), ("10", -1.0), ("2", -2.0)))]
    value = expected_value(Literal(1, 0, 1), tokens, {1: 1.0, 2: 0.0})
    import math

    assert value == pytest.approx(math.exp(-0.1) / (math.exp(-0.1) + math.exp(-2.0)))


def test_positions_of_literals():
    text = ' {"a": [1, "x\\"y", true], "b": null}'
    parsed = parse_with_positions(text)
    assert parsed["a"][0] == Literal(1, 8, 9) and text[8] == "1"
    assert parsed["a"][1] == Literal('x"y', 11, 17) and text[11:17] == '"x\\"y"'
    assert parsed["a"][2] == Literal(True, 19, 23) and parsed["b"] == Literal(None, 31, 35)
    with pytest.raises(ValueError):
        parse_with_positions('{"a": 1} x')


# ---------------------------------------------------------------------------------- decoding
def test_the_constraint_allows_only_what_the_schema_allows():
    tok = granite_tokenizer()
    grammar = compile_schema({"type": "string", "enum": ["answerable", "unanswerable"]}, adapter="x")
    proc = DecodeProcessor(tok, stop_ids=[tok.eos_token_id], grammar=grammar, record_logprobs=True)
    ids, out = [], ""
    while True:  # walk the grammar greedily on flat scores: always a valid prefix
        scores = proc(ids, torch.zeros(len(tok)))
        if not ids:
            allowed = [tok.decode([i]) for i in torch.nonzero(torch.isfinite(scores)).flatten().tolist()]
            assert allowed and all(a.startswith('"') for a in allowed)
        token = int(torch.argmax(scores))
        ids.append(token)
        if token == tok.eos_token_id:
            break
        out = tok.decode(ids)
        assert any(f'"{w}"'.startswith(out) for w in ("answerable", "unanswerable"))
    assert json.loads(out) in ("answerable", "unanswerable")
    records = proc.logprobs(ids)
    assert "".join(r.text for r in records) == out


def test_unusable_schema_is_a_typed_error():
    with pytest.raises(IntrinsicSpecError, match="intrinsic 'x': response_format"):
        compile_schema({"type": "bogus"}, adapter="x")


def test_top_k_and_top_p_mask_only_when_sampling():
    tok = granite_tokenizer()
    scores = torch.tensor([4.0, 3.0, 2.0, 1.0] + [0.0] * (len(tok) - 4))
    greedy = DecodeProcessor(tok, stop_ids=[0], top_k=2)
    assert torch.isfinite(greedy([], scores.clone())).all()
    k = DecodeProcessor(tok, stop_ids=[0], temperature=1.0, top_k=2)
    assert torch.isfinite(k([], scores.clone())).sum() == 2
    p = DecodeProcessor(tok, stop_ids=[0], temperature=1.0, top_p=0.5)
    kept = torch.isfinite(p([], scores.clone()))
    assert kept[0] and kept.sum() < len(tok)
