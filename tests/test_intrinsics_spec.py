"""IntrinsicSpec: tokens, decoding plans, input turns (sandboxed templates) and ``run``."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from pydantic import BaseModel, ConfigDict

from alora_flows.core.session import Session
from alora_flows.errors import (
    FlowDefinitionError,
    FlowRuntimeError,
    IntrinsicOutputError,
    UnsafeExpressionError,
)
from alora_flows.testing import tiny_tokenizer
from intrinsics import (
    ChoiceOutput,
    IntrinsicSpec,
    RawOutput,
    RewriteOutput,
    TextOutput,
    UncertaintyOutput,
    choice_spec,
    get_spec,
    split_sentences,
)
from intrinsics.builtin import HALLUCINATION_NUMBERED_INPUT


@pytest.fixture(scope="module")
def tok():
    return tiny_tokenizer()


def test_builtin_invocations_start_with_a_template_special_token(tok):
    start = tok.convert_tokens_to_ids("<|im_start|>")
    for name in ("uncertainty", "hallucination", "rewrite", "answerability"):
        ids = get_spec(name).invocation_ids(tok)
        assert (
            ids[0] == start and ids == tok(get_spec(name).invocation, add_special_tokens=False)["input_ids"]
        )


def test_digit_plan_decodes_one_constrained_token(tok):
    plan = get_spec("uncertainty").decoding_plan(tok)
    assert plan.max_new_tokens == 1 and plan.return_probs
    assert sorted(plan.first_token_labels.values()) == [str(d) for d in range(10)]
    assert plan.allowed_token_ids == [tok.convert_tokens_to_ids(str(d)) for d in range(10)]


def test_labels_sharing_a_first_token_decode_over_their_union(tok):
    spec = choice_spec("rel", "<|im_start|>rel\n", labels=["relevant", "relevant enough"])
    plan = spec.decoding_plan(tok)
    assert plan.first_token_labels is None and not plan.return_probs
    assert plan.max_new_tokens >= 2
    assert set(tok("relevant enough", add_special_tokens=False)["input_ids"]) <= set(plan.allowed_token_ids)


def test_rewrite_input_turn_and_overrides():
    spec = get_spec("rewrite")
    assert spec.input_messages({"question": "and its population?"}) == [
        {"role": "user", "content": "and its population?"}
    ]
    assert spec.input_messages({}, input_override="q2") == [{"role": "user", "content": "q2"}]
    assert spec.input_messages({}, input_override=[]) == []
    assert get_spec("uncertainty").input_messages({"question": "x"}) == []


def test_templates_render_pydantic_state_and_conversation_helpers():
    class State(BaseModel):
        model_config = ConfigDict(extra="allow")
        question: str = ""

    state = State(question="q", query=RewriteOutput(rewritten_question="Who founded Velmora?"))
    spec = get_spec("rewrite").replace(
        input_template="{{ query }} | {{ last_assistant | sentences | length }}"
    )
    conv = [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "One. Two."}]
    assert spec.input_messages(state, conv)[0]["content"] == "Who founded Velmora? | 2"
    numbered = get_spec("hallucination").replace(input_template=HALLUCINATION_NUMBERED_INPUT)
    assert numbered.input_messages({}, conv)[0]["content"] == "Answer sentences:\n0: One.\n1: Two."


def test_template_errors_are_typed_and_name_the_intrinsic():
    with pytest.raises(FlowRuntimeError, match="rewrite.*topic.*available"):
        get_spec("rewrite").replace(input_template="{{ topic }}").input_messages({"query": "x"})
    evil = get_spec("rewrite").replace(input_template="{{ question.__class__.__mro__ }}")
    with pytest.raises(UnsafeExpressionError):
        evil.input_messages({"question": "x"})
    with pytest.raises(FlowDefinitionError, match="rewrite.*template syntax error"):
        get_spec("rewrite").replace(input_template="{% if %}").input_messages({"question": "x"})


@pytest.mark.parametrize(
    "source",
    [
        "{{ 'a' * 10**7 }}",
        "{{ 'a'.center(10**6) }}",
        "{% for i in range(10**6) %}x{% endfor %}",
        "{{ cycler.__init__.__globals__ }}",
        "{{ question['__class__'] }}",
    ],
)
def test_intrinsic_templates_refuse_what_flow_templates_refuse(source):
    """One sandbox: an intrinsic template (which may travel with an adapter from elsewhere) gets
    exactly the limits of a flow template."""
    from alora_flows.sandbox.templates import TemplateError, check_template, render

    with pytest.raises((FlowDefinitionError, TemplateError)):
        check_template(source)
        render(source, {"question": "x"})
    spec = get_spec("rewrite").replace(input_template=source)
    with pytest.raises((FlowDefinitionError, FlowRuntimeError)):
        spec.input_messages({"question": "x"})
    adapted = get_spec("uncertainty").replace(adapted_input_template=source)
    with pytest.raises((FlowDefinitionError, FlowRuntimeError)):
        adapted.render_adapted_input({"question": "x", "last_assistant": "y"})


def test_spec_validation():
    with pytest.raises(ValueError):
        IntrinsicSpec(name="bad name", invocation="x", output_model=TextOutput, parser=lambda r: None)
    with pytest.raises(ValueError):
        IntrinsicSpec(name="ok", invocation="  ", output_model=TextOutput, parser=lambda r: None)
    with pytest.raises(ValueError):
        IntrinsicSpec(
            name="ok",
            invocation="x",
            allowed_outputs=("a", "a"),
            output_model=TextOutput,
            parser=lambda r: None,
        )


def test_parse_wraps_parser_bugs_and_wrong_types():
    def broken(raw):
        raise ZeroDivisionError("boom")

    spec = IntrinsicSpec(name="broken", invocation="<|im_start|>b\n", output_model=TextOutput, parser=broken)
    with pytest.raises(IntrinsicOutputError, match="broken.*boom"):
        spec.parse(RawOutput(text="x"))
    wrong = spec.replace(parser=lambda raw: ChoiceOutput(label="a"))
    with pytest.raises(IntrinsicOutputError, match="expected TextOutput"):
        wrong.parse(RawOutput(text="x"))


def test_split_sentences_matches_the_data_builders():
    data_text = pytest.importorskip("intrinsics.training.data.text")
    for text in ["", "One.", "One. Two!  Three? four", 'He said "yes." Then left.', "a.b c. d", "  x  "]:
        assert split_sentences(text) == data_text.split_sentences(text)


class FakeSession:
    """Records the invoke call; answers like a session whose adapter put all mass on digit 8."""

    def __init__(self, tok, text="8", token_ids=None, probs=None):
        self.backend = SimpleNamespace(tokenizer=tok)
        self.messages = [{"role": "user", "content": "Q?"}, {"role": "assistant", "content": "A."}]
        self.calls = []
        self.reply = SimpleNamespace(text=text, token_ids=token_ids or [], probs=probs, stats="STATS")

    def invoke(self, adapter, **kwargs):
        self.calls.append((adapter, kwargs))
        return self.reply


def test_run_calls_invoke_per_contract_and_maps_probabilities(tok):
    eight = tok.convert_tokens_to_ids("8")
    session = FakeSession(tok, token_ids=[eight], probs={eight: 0.75, tok.convert_tokens_to_ids("2"): 0.25})
    out, stats = get_spec("uncertainty").run(session, "unc", {})
    assert (out.score, out.digit) == (pytest.approx(0.75 * 0.85 + 0.25 * 0.25), 8)
    assert stats == "STATS"
    adapter, kwargs = session.calls[0]
    assert adapter == "unc" and kwargs["messages"] == [] and kwargs["max_new_tokens"] == 1
    assert kwargs["return_probs"] is True and len(kwargs["allowed_token_ids"]) == 10


def test_run_rewrite_falls_back_to_the_rendered_question(tok):
    session = FakeSession(tok, text="garbage")
    out, _ = get_spec("rewrite").run(session, "rw", {"question": "and its mayor?"})
    assert out == RewriteOutput(rewritten_question="and its mayor?", fallback=True)
    assert session.calls[0][1]["messages"] == [{"role": "user", "content": "and its mayor?"}]


def test_run_on_a_real_session_rolls_back_and_parses(backend):
    """The tiny backend's 'alpha' adapter uses the certainty invocation (random weights)."""
    session = Session(backend)
    session.extend(
        [
            {"role": "user", "content": "What is the capital of France?"},
            {"role": "assistant", "content": "The capital of France is Paris."},
        ]
    )
    before = (list(session.ids), session.cached_tokens, [dict(m) for m in session.messages])
    out, stats = get_spec("uncertainty").run(session, "alpha", {})
    assert isinstance(out, UncertaintyOutput) and 0 <= out.score <= 1
    spec, tok = get_spec("uncertainty"), backend.tokenizer
    reread = spec.adapted_input_ids(tok, {"last_assistant": session.messages[-1]["content"]})
    assert stats.generated_tokens == 1 and stats.prefill_tokens == len(spec.invocation_ids(tok)) + len(reread)
    assert (list(session.ids), session.cached_tokens, session.messages) == before
    rewritten, _ = get_spec("rewrite").run(session, "beta", {"question": "and its population?"})
    assert isinstance(rewritten, RewriteOutput) and str(rewritten)
    assert (list(session.ids), session.cached_tokens, session.messages) == before
