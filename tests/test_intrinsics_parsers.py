"""Parsers and formatters of the built-in intrinsics: well-formed, malformed and random outputs."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alora_flows.errors import IntrinsicOutputError
from intrinsics import (
    AnswerabilityOutput,
    HallucinationOutput,
    RawOutput,
    RewriteOutput,
    SentenceLabel,
    UncertaintyOutput,
    get_spec,
)
from intrinsics.parsers import (
    ChoiceParser,
    extract_json,
    parse_answerability,
    parse_hallucination,
    parse_json,
    parse_rewrite,
    parse_uncertainty,
)


def raw(text: str, **kw) -> RawOutput:
    return RawOutput(text=text, **kw)


# ---------------------------------------------------------------------------------- uncertainty
def test_uncertainty_expected_value_over_digit_probabilities():
    probs = {str(d): 0.0 for d in range(10)}
    probs.update({"9": 0.5, "1": 0.25, "5": 0.25})
    out = parse_uncertainty(raw("9", label_probs=probs))
    assert out.digit == 9
    assert out.score == pytest.approx(0.5 * 0.95 + 0.25 * 0.15 + 0.25 * 0.55)


def test_uncertainty_from_text_when_no_probabilities():
    assert parse_uncertainty(raw("7")) == UncertaintyOutput(score=0.75, digit=7)
    assert parse_uncertainty(raw(" 3 apples")).digit == 3


@pytest.mark.parametrize("text", ["", "high", "x9", "-"])
def test_uncertainty_malformed_is_typed_error(text):
    with pytest.raises(IntrinsicOutputError, match="digit"):
        parse_uncertainty(raw(text))


def test_uncertainty_all_zero_probabilities_fall_back_to_text():
    out = parse_uncertainty(raw("4", label_probs={str(d): 0.0 for d in range(10)}))
    assert out.digit == 4


# ---------------------------------------------------------------------------------- hallucination
def test_hallucination_well_formed_with_sentence_text():
    text = '[{"r":0,"f":"faithful"},{"r":1,"e":"not in docs","f":"unfaithful"}]'
    out = parse_hallucination(raw(text, context={"last_assistant": "Paris is big. It has 9 moons."}))
    assert out.unfaithful is True
    assert [s.f for s in out.sentences] == ["faithful", "unfaithful"]
    assert out.sentences[1].e == "not in docs"
    assert out.sentences[0].text == "Paris is big."


def test_hallucination_label_follows_its_evidence():
    """A fact is supported when its quoted value is in the documents and in the sentence; the label
    is then all / some / none supported. Evidence quoting no value keeps the adapter's label;
    without the documents (no session) nothing changes."""
    messages = [
        {
            "role": "user",
            "content": "Korveth was founded in 1843. Its mayor is Tam Orvel. The river is olive green."
            "\n\nQuestion: ?",
        },
        {
            "role": "assistant",
            "content": "Korveth was founded in 1851. Its mayor is Tam Orvel. The river is orange. "
            "It was founded in 1843 by Ada Quill. KORVETH has 19500 people. "
            "The documents say nothing about its bridges. Its mayor is Tam Orvel.",
        },
    ]
    documents = [messages[0]["content"].split("\n\nQuestion:")[0]]  # the session's documents
    context = {"messages": messages, "last_assistant": messages[-1]["content"], "source_documents": documents}
    text = json.dumps(
        [
            {"r": 0, "e": "documents: 1851", "f": "faithful"},  # the answer's own value
            {"r": 1, "e": "documents: Tam Orvel", "f": "unfaithful"},  # contradicts its evidence
            {"r": 2, "e": "documents: olive green", "f": "faithful"},  # another value than said
            {"r": 3, "e": "documents: 1843; Ada Quill", "f": "faithful"},  # one of two in the documents
            {"r": 4, "e": "documents: korveth; 1950", "f": "partial"},  # case; "19500" is not "1950"
            {"r": 5, "e": "documents: not stated", "f": "faithful"},  # no value quoted: kept
            {"r": 6, "e": "no evidence format", "f": "unfaithful"},  # kept
            {"r": 9, "e": "documents: 1851", "f": "faithful"},
        ]
    )  # no such sentence: kept
    out = parse_hallucination(raw(text, context=context))
    assert [s.f for s in out.sentences] == [
        "unfaithful",
        "faithful",
        "unfaithful",
        "partial",
        "partial",
        "faithful",
        "unfaithful",
        "faithful",
    ]
    assert [s.adapter_f for s in out.sentences] == [
        "faithful",
        "unfaithful",
        "faithful",
        "faithful",
        None,
        None,
        None,
        None,
    ]
    assert [s.unverified for s in out.sentences] == [
        ["1851"],
        [],
        [],
        ["Ada Quill"],
        ["1950"],
        [],
        [],
        ["1851"],
    ]
    assert out.unfaithful
    unchecked = parse_hallucination(raw(text, context={"last_assistant": messages[-1]["content"]}))
    assert [s.f for s in unchecked.sentences][:3] == ["faithful", "unfaithful", "faithful"]
    assert not any(s.unverified or s.adapter_f for s in unchecked.sentences)


def test_hallucination_granite_boolean_and_surrounding_text():
    out = parse_hallucination(
        raw('Result: [{"r": 0, "e": "ok", "f": true}, {"r": 1, "e": "", "f": false}] done')
    )
    assert [s.f for s in out.sentences] == ["faithful", "unfaithful"]


def test_hallucination_truncated_json_salvages_complete_items():
    out = parse_hallucination(raw('[{"r":0,"f":"faithful"},{"r":1,"f":"partial"},{"r":2,"f":"unf'))
    assert [(s.r, s.f) for s in out.sentences] == [(0, "faithful"), (1, "partial")]
    assert out.unfaithful is False and out.partial is True


def test_hallucination_duplicates_and_order():
    out = parse_hallucination(
        raw('[{"r":1,"f":"faithful"},{"r":0,"f":"unfaithful"},{"r":1,"f":"unfaithful"}]')
    )
    assert [(s.r, s.f) for s in out.sentences] == [(0, "unfaithful"), (1, "faithful")]


def test_hallucination_empty_list_is_valid():
    assert parse_hallucination(raw("[]")) == HallucinationOutput(sentences=[], unfaithful=False)


@pytest.mark.parametrize("text", ["", "faithful", '[{"r": 0}]', '{"r":0,"f":"maybe"}', "[1, 2]"])
def test_hallucination_malformed_is_typed_error(text):
    with pytest.raises(IntrinsicOutputError):
        parse_hallucination(raw(text))


# ---------------------------------------------------------------------------------- rewrite
def test_rewrite_well_formed_and_str():
    out = parse_rewrite(raw('{"rewritten_question": "When was Velmora founded?"}'))
    assert out == RewriteOutput(rewritten_question="When was Velmora founded?")
    assert str(out) == "When was Velmora founded?" and f"{out}" == str(out)


def test_rewrite_truncated_json_keeps_the_question_so_far():
    out = parse_rewrite(raw('{"rewritten_question": "When was Velmora fo'))
    assert out.rewritten_question == "When was Velmora fo" and not out.fallback


def test_rewrite_escapes_are_decoded():
    out = parse_rewrite(raw('{"rewritten_question": "Is \\"Quell\\" a river?"}'))
    assert out.rewritten_question == 'Is "Quell" a river?'


@pytest.mark.parametrize("text", ["", "nonsense", '{"rewritten_question": ""}', '{"q": "x"}'])
def test_rewrite_malformed_falls_back_to_the_original_question(text):
    out = parse_rewrite(raw(text, context={"question": "and its population?"}))
    assert out == RewriteOutput(rewritten_question="and its population?", fallback=True)


def test_rewrite_fallback_is_the_turn_the_adapter_read_not_an_earlier_question():
    """An evaluation example's context: ``question`` defaults to the conversation's last user turn
    *before* the follow-up, ``input`` is the follow-up the adapter was asked to rewrite."""
    from intrinsics.builtin import rewrite_spec

    spec = rewrite_spec()
    messages = [
        {"role": "user", "content": "Where does the Reskeor start?"},
        {"role": "assistant", "content": "On Mount Mostila."},
        {"role": "user", "content": "And what is its length?"},
    ]
    _, context = spec.example_context(messages)
    assert context["question"] == "Where does the Reskeor start?"  # the earlier turn
    out = parse_rewrite(raw("nonsense", context=context))
    assert out == RewriteOutput(rewritten_question="And what is its length?", fallback=True)


def test_rewrite_fallback_order_and_error_without_any_question():
    assert (
        parse_rewrite(raw("?", context={"input": "from input", "last_user": "u"})).rewritten_question
        == "from input"
    )
    assert parse_rewrite(raw("?", context={"last_user": "from chat"})).rewritten_question == "from chat"
    with pytest.raises(IntrinsicOutputError, match="fall back"):
        parse_rewrite(raw("?"))


# ---------------------------------------------------------------------------------- answerability
def test_answerability_labels_and_probability():
    out = parse_answerability(raw("unanswerable", label_probs={"answerable": 0.2, "unanswerable": 0.6}))
    assert (out.label, out.answerable, out.probability) == ("unanswerable", False, pytest.approx(0.25))
    assert parse_answerability(raw(" Answerable\n")).answerable is True


def test_answerability_malformed():
    with pytest.raises(IntrinsicOutputError):
        parse_answerability(raw("perhaps"))


def test_choice_parser_matches_longest_label_and_is_comparable():
    parser = ChoiceParser(["relevant", "partially relevant", "irrelevant"])
    assert parser(raw("partially relevant")).label == "partially relevant"
    assert parser(raw("Irrelevant.")).label == "irrelevant"
    assert parser == ChoiceParser(["relevant", "partially relevant", "irrelevant"])
    with pytest.raises(IntrinsicOutputError):
        parser(raw("unclear"))


def test_json_parser_and_extract():
    assert parse_json(raw('x {"a": [1, 2]} y')).data == {"a": [1, 2]}
    assert extract_json('{"a": } {"b": 1}', "{") == {"b": 1}
    with pytest.raises(IntrinsicOutputError):
        parse_json(raw("no json"))


# ---------------------------------------------------------------------------------- round trips
@pytest.mark.parametrize(
    "name,output",
    [
        ("uncertainty", UncertaintyOutput(score=0.75, digit=7)),
        (
            "hallucination",
            HallucinationOutput(
                sentences=[
                    SentenceLabel(r=0, f="faithful"),
                    SentenceLabel(r=1, e="wrong year", f="unfaithful"),
                ],
                unfaithful=True,
            ),
        ),
        ("rewrite", RewriteOutput(rewritten_question='Who founded "Velmora"?')),
        ("answerability", AnswerabilityOutput(label="answerable", answerable=True)),
    ],
)
def test_format_then_parse_round_trips(name, output):
    spec = get_spec(name)
    assert spec.parse(RawOutput(text=spec.format_output(output))) == output


def test_hallucination_target_is_compact_and_omits_empty_explanations():
    spec = get_spec("hallucination")
    text = spec.format_output({"sentences": [{"r": 0, "f": "faithful"}], "unfaithful": False})
    assert text == '[{"r":0,"f":"faithful"}]'
    assert json.loads(text)


# ---------------------------------------------------------------------------------- garbage
@settings(max_examples=150, deadline=None)
@given(
    text=st.text(max_size=200),
    name=st.sampled_from(["uncertainty", "hallucination", "rewrite", "answerability"]),
)
def test_random_garbage_never_crashes(text, name):
    """Any output either parses into the typed model or raises IntrinsicOutputError."""
    spec = get_spec(name)
    try:
        out = spec.parse(RawOutput(text=text, context={"question": "q?"}))
    except IntrinsicOutputError:
        return
    assert isinstance(out, spec.output_model)


@settings(max_examples=80, deadline=None)
@given(
    items=st.lists(
        st.fixed_dictionaries(
            {
                "r": st.integers(0, 20),
                "f": st.sampled_from(["faithful", "partial", "unfaithful"]),
                "e": st.text(max_size=20),
            }
        ),
        max_size=6,
    ),
    cut=st.integers(0, 400),
)
def test_truncated_hallucination_json_never_crashes(items, cut):
    text = json.dumps(items)[:cut]
    try:
        out = parse_hallucination(raw(text))
    except IntrinsicOutputError:
        return
    assert {s.r for s in out.sentences} <= {i["r"] for i in items}


def test_truncated_number_is_not_salvaged():
    """Regression (found by hypothesis): '"r": 1' at a cut may be the start of '"r": 10'."""
    with pytest.raises(IntrinsicOutputError):
        parse_hallucination(raw('[{"f": "faithful", "r": 1'))
    out = parse_hallucination(raw('[{"r":0,"f":"faithful"},{"r":1,"f":"unfaithful"'))
    assert [(s.r, s.f) for s in out.sentences] == [(0, "faithful"), (1, "unfaithful")]
