"""Conformance with Granite's public formats, one intrinsic at a time: the request as sent
(message level, and token level through a Granite-shaped chat template), the raw output, and the
processed result and typed output — as granite-common and mellea define them.

The io.yaml fixtures are ours (:mod:`tests.granite_fixtures`); conversations, outputs and
log-probabilities are written here, and expected results are worked out by hand in each test.
"""

from __future__ import annotations

import json
import math

import pytest

from alora_flows.core.chat import ChatRenderer
from alora_flows.core.documents import Document
from alora_flows.errors import IntrinsicInputError, IntrinsicOutputError
from intrinsics.granite import load_granite_spec
from intrinsics.granite.likelihood import TokenLogprob
from intrinsics.spec import RawOutput
from tests import granite_fixtures as F
from tests.granite_support import granite_tokenizer

ASSISTANT_PROMPT = "<|start_of_role|>assistant<|end_of_role|>"


def make_spec(tmp_path, io_yaml, name, *, invocation=ASSISTANT_PROMPT, old_format=False):
    path = tmp_path / name
    path.mkdir()
    key = "invocation_string" if old_format else "alora_invocation_tokens"
    value = (
        invocation if old_format else granite_tokenizer()(invocation, add_special_tokens=False)["input_ids"]
    )
    (path / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8, key: value}))
    (path / "io.yaml").write_text(io_yaml)
    return load_granite_spec(path, name=name, tokenizer=granite_tokenizer())


def process(spec, request, text, tokens=None):
    raw = RawOutput(text=text, context={"granite_request": request, "granite_logprobs": tokens})
    return spec.parse(raw)


def dump(output):
    return output.model_dump(by_alias=True)


def lp(p: float) -> float:
    return math.log(p)


def split_at(text: str, value: str, logprob: float, top) -> list[TokenLogprob]:
    """Tokens of ``text``: everything before ``value``, ``value`` (with its alternatives), the rest."""
    at = text.index(value)
    out = [TokenLogprob(text=text[:at], logprob=0.0)] if at else []
    out.append(TokenLogprob(text=value, logprob=logprob, top=tuple(top)))
    if text[at + len(value) :]:
        out.append(TokenLogprob(text=text[at + len(value) :], logprob=0.0))
    return out


def prompt(request, session_documents=()):
    """The prompt text as the session renders it for this request (before the invocation)."""
    renderer = ChatRenderer(granite_tokenizer())
    docs = request.documents if request.documents is not None else list(session_documents)
    return renderer.text(list(request.sent) + list(request.extra), documents=docs)


QA = [{"role": "user", "content": "Who founded Velmora?"}, {"role": "assistant", "content": "Tarsk Olden."}]
DOCS = [Document(doc_id="1", text="Velmora was founded by Tarsk Olden.")]


# ---------------------------------------------------------------------------------- uncertainty
def test_uncertainty_granite_3x_old_format_digit(tmp_path):
    spec = make_spec(
        tmp_path,
        F.UNCERTAINTY_3X,
        "certainty",
        invocation="<|start_of_role|>certainty<|end_of_role|>",
        old_format=True,
    )
    assert spec.shape.name == "uncertainty" and spec.activation_offset == 1
    request = spec.build_request(QA, [], {})
    assert request.conversation is None and request.extra == () and spec.max_new_tokens == 2
    # as sent: the conversation, then the invocation (appended by the session after the prompt)
    assert prompt(request).endswith("Tarsk Olden.<|end_of_text|>\n")
    tokens = [TokenLogprob(text="8", logprob=lp(0.6), top=(("8", lp(0.6)), ("9", lp(0.3)), ("7", lp(0.1))))]
    out = process(spec, request, "8", tokens)
    assert dump(out) == {"certainty": pytest.approx(0.6 * 0.85 + 0.3 * 0.95 + 0.1 * 0.75)}
    assert float(out) == pytest.approx(0.87)


def test_uncertainty_granite_41_score_object(tmp_path):
    spec = make_spec(tmp_path, F.UNCERTAINTY_41, "uncertainty")
    assert spec.shape.name == "uncertainty" and spec.activation_offset == 0
    request = spec.build_request(QA, [], {})
    assert request.extra == ({"role": "user", "content": "<certainty>"},)
    assert prompt(request).endswith(
        "Tarsk Olden.<|end_of_text|>\n<|start_of_role|>user<|end_of_role|><certainty><|end_of_text|>\n"
    )
    text = '{"score": "8"}'
    tokens = [
        TokenLogprob(text='{"', logprob=0.0),
        TokenLogprob(text="score", logprob=0.0),
        TokenLogprob(text='":', logprob=0.0),
        TokenLogprob(text=' "', logprob=0.0),
        TokenLogprob(text="8", logprob=lp(0.7), top=(("8", lp(0.7)), ("9", lp(0.2)), ("1", lp(0.1)))),
        TokenLogprob(text='"}', logprob=0.0),
    ]
    out = process(spec, request, text, tokens)
    assert dump(out) == {"certainty": pytest.approx(0.7 * 0.85 + 0.2 * 0.95 + 0.1 * 0.15)}
    assert spec.output_schema == {
        "type": "object",
        "properties": {"certainty": {"type": "number", "minimum": 0.05, "maximum": 0.95}},
        "required": ["certainty"],
    }


def test_likelihood_reads_a_value_that_starts_inside_a_token(tmp_path):
    """A tokenizer that merges the quote with the digit (' "8'): alternatives with the same
    beginning (' "9') are read, others (' ') are not."""
    spec = make_spec(tmp_path, F.UNCERTAINTY_41, "uncertainty")
    tokens = [
        TokenLogprob(text='{"score":', logprob=0.0),
        TokenLogprob(text=' "8', logprob=lp(0.5), top=((' "8', lp(0.5)), (' "9', lp(0.25)), (" ", lp(0.25)))),
        TokenLogprob(text='"}', logprob=0.0),
    ]
    out = process(spec, spec.build_request(QA, [], {}), '{"score": "8"}', tokens)
    assert out.certainty == pytest.approx((0.5 * 0.85 + 0.25 * 0.95) / 0.75)


# ---------------------------------------------------------------------------------- RAG
def test_answerability_likelihood(tmp_path):
    spec = make_spec(tmp_path, F.ANSWERABILITY, "answerability")
    conversation = [{"role": "user", "content": "When was Velmora founded?"}]
    request = spec.build_request(conversation, DOCS, {})
    assert request.extra == () and request.documents is None  # the session's documents, by the template
    text = prompt(request, DOCS)
    assert (
        "<|start_of_role|>document 1<|end_of_role|>Velmora was founded by Tarsk Olden.<|end_of_text|>" in text
    )
    tokens = [
        TokenLogprob(text='"', logprob=0.0),
        TokenLogprob(text="un", logprob=lp(0.8), top=(("un", lp(0.8)), ("answer", lp(0.2)))),
        TokenLogprob(text="answerable", logprob=0.0),
        TokenLogprob(text='"', logprob=0.0),
    ]
    out = process(spec, request, '"unanswerable"', tokens)
    assert dump(out) == {"answerability_likelihood": pytest.approx(0.2)}


def test_answerability_label_form(tmp_path):
    spec = make_spec(tmp_path, F.ANSWERABILITY_LABEL, "answerability")
    out = process(spec, spec.build_request([{"role": "user", "content": "Q?"}], DOCS, {}), '"answerable"')
    assert dump(out) == {"answerability": "answerable"} and str(out) == "answerable"


def test_context_relevance_json_object_with_likelihood(tmp_path):
    spec = make_spec(tmp_path, F.CONTEXT_RELEVANCE, "context_relevance")
    assert spec.shape.name == "context_relevance"  # not a choice over bare labels
    conversation = [{"role": "user", "content": "Who is the CEO of Velmora Bank?"}]
    request = spec.build_request(conversation, [], {"document_content": "Velmora Bank is a bank."})
    assert request.extra == ({"role": "user", "content": "Here is a document: Velmora Bank is a bank."},)
    text = '{"context_relevance": "partially relevant"}'
    tokens = [
        TokenLogprob(text='{"', logprob=0.0),
        TokenLogprob(text="context_relevance", logprob=0.0),
        TokenLogprob(text='": "', logprob=0.0),
        TokenLogprob(
            text="partial",
            logprob=lp(0.5),
            top=(("partial", lp(0.5)), ("relevant", lp(0.3)), ("irre", lp(0.15)), ('"', lp(0.05))),
        ),
        TokenLogprob(text="ly relevant", logprob=0.0),
        TokenLogprob(text='"}', logprob=0.0),
    ]
    out = process(spec, request, text, tokens)
    assert dump(out) == {"context_relevance": pytest.approx((0.5 * 0.5 + 0.3 * 1.0) / 0.95)}


def test_context_relevance_label_form(tmp_path):
    spec = make_spec(tmp_path, F.CONTEXT_RELEVANCE_LABEL, "context_relevance")
    request = spec.build_request([{"role": "user", "content": "Q?"}], [], {"document_content": "D."})
    out = process(spec, request, '{\n    "context_relevance": "irrelevant"\n}')
    assert dump(out) == {"context_relevance": "irrelevant"}
    with pytest.raises(IntrinsicOutputError, match="field 'context_relevance'"):
        process(spec, request, '{"context_relevance": "somewhat"}')


HALLU_CONVERSATION = [
    {"role": "user", "content": "Tell me about yellow fish."},
    {"role": "assistant", "content": "Purple fish are yellow. Green fish are also yellow."},
]
HALLU_DOCS = [Document(doc_id="1", text="The only yellow fish is the purple fish.")]


def test_hallucination_detection(tmp_path):
    spec = make_spec(tmp_path, F.HALLUCINATION, "hallucination_detection")
    assert spec.shape.name == "hallucination_detection"
    request = spec.build_request(HALLU_CONVERSATION, HALLU_DOCS, {})
    tagged = "<i0> Purple fish are yellow. <i1> Green fish are also yellow."
    assert request.conversation[-1] == {"role": "assistant", "content": tagged}
    assert request.extra[0]["content"].startswith("Judge each tagged sentence")
    assert f"<|start_of_role|>assistant<|end_of_role|>{tagged}<|end_of_text|>" in prompt(request, HALLU_DOCS)
    raw = '[{"r": 0, "f": "faithful", "e": "Stated."}, {"r": 1, "f": "unfaithful", "e": "Not stated."}]'
    out = process(spec, request, raw)
    assert dump(out) == [
        {
            "response_begin": 0,
            "response_end": 24,
            "response_text": "Purple fish are yellow. ",
            "faithfulness": "faithful",
            "explanation": "Stated.",
        },
        {
            "response_begin": 24,
            "response_end": 51,
            "response_text": "Green fish are also yellow.",
            "faithfulness": "unfaithful",
            "explanation": "Not stated.",
        },
    ]
    assert len(out) == 2 and out[1].faithfulness == "unfaithful"


def test_query_rewrite_sends_the_question_once(tmp_path):
    spec = make_spec(tmp_path, F.QUERY_REWRITE, "query_rewrite")
    conversation = [
        {"role": "user", "content": "Tell me about Velmora."},
        {"role": "assistant", "content": "It is a town."},
        {"role": "user", "content": "Who founded it?"},
    ]
    request = spec.build_request(conversation, [], {"question": "Who founded it?"})
    assert request.conversation is None and request.extra == ()
    assert prompt(request).count("Who founded it?") == 1
    out = process(spec, request, '{\n  "rewritten_question": "Who founded Velmora?"\n}')
    assert dump(out) == {"rewritten_question": "Who founded Velmora?"} and str(out) == "Who founded Velmora?"


def test_query_clarification(tmp_path):
    spec = make_spec(tmp_path, F.QUERY_CLARIFICATION, "query_clarification")
    assert spec.shape.name == "query_clarification"
    out = process(
        spec,
        spec.build_request([{"role": "user", "content": "Is it spoken?"}], [], {}),
        '{"clarification": "Which language do you mean?"}',
    )
    assert dump(out) == {"clarification": "Which language do you mean?"}


def test_answer_relevance_classifier_is_not_context_relevance(tmp_path):
    spec = make_spec(tmp_path, F.ANSWER_RELEVANCE_CLASSIFIER, "answer_relevance_classifier")
    assert spec.shape.name == "answer_relevance_classifier"
    request = spec.build_request(QA, [], {})
    assert request.extra == ({"role": "user", "content": "answer_relevance"},)
    text = '{"answer_relevance_analysis": "Vague.", "answer_relevance_category": "No attempt", "answer_relevance_judgment": false}'
    tokens = split_at(text, "false", lp(0.9), [("false", lp(0.9)), ("true", lp(0.1))])
    out = process(spec, request, text, tokens)
    assert dump(out) == {
        "answer_relevance_analysis": "Vague.",
        "answer_relevance_category": "No attempt",
        "answer_relevance_likelihood": pytest.approx(0.1),
    }


def test_answer_relevance_rewriter_keeps_its_output(tmp_path):
    spec = make_spec(tmp_path, F.ANSWER_RELEVANCE_REWRITER, "answer_relevance_rewriter")
    assert spec.shape.name == "answer_relevance_rewriter"
    args = {
        "answer_relevance_category": "Too vague or generic",
        "answer_relevance_analysis": "It names nobody.",
        "correction_method": "naming the founder",
    }
    request = spec.build_request(QA, [], args)
    assert request.extra[0]["content"] == (
        "Rewrite the answer for relevance. It was judged Too vague or generic: It names nobody.\n"
        "Fix it by naming the founder.\n"
    )
    out = process(spec, request, '{"answer_relevance_rewrite": "Tarsk Olden founded Velmora."}')
    # the adapter's answer, not a fallback to the question
    assert dump(out) == {"answer_relevance_rewrite": "Tarsk Olden founded Velmora."}
    with pytest.raises(IntrinsicInputError, match="'answer_relevance_rewriter'.*'correction_method'"):
        spec.build_request(QA, [], {k: v for k, v in args.items() if k != "correction_method"})


CITE_DOCS = [
    Document(
        doc_id="0", text="Velmora was founded in 1832. It lies on the river Quell. Tarsk Olden founded it."
    ),
    Document(doc_id="1", text="Nothing here. Still nothing."),
]
CITE_CONVERSATION = [
    {"role": "user", "content": "Tell me about Velmora."},
    {"role": "assistant", "content": "Velmora was founded in 1832 by Tarsk Olden. It is on the Quell."},
]


def test_citations(tmp_path):
    spec = make_spec(tmp_path, F.CITATIONS, "citations")
    assert spec.shape.name == "citations"
    request = spec.build_request(CITE_CONVERSATION, CITE_DOCS, {})
    assert [d.text for d in request.sent_documents] == [
        "<c0> Velmora was founded in 1832. <c1> It lies on the river Quell. <c2> Tarsk Olden founded it.",
        "<c3> Nothing here. <c4> Still nothing.",
    ]
    assert (
        request.sent[-1]["content"]
        == "<r0> Velmora was founded in 1832 by Tarsk Olden. <r1> It is on the Quell."
    )
    text = prompt(request)
    assert (
        "<|start_of_role|>document 1<|end_of_role|><c3> Nothing here. <c4> Still nothing.<|end_of_text|>"
        in text
    )
    raw = '[{"r": 0, "c": [0, 2, 0]}, {"r": 0, "c": [2]}, {"r": 1, "c": [1]}, {"r": 1, "c": []}]'
    r0 = {
        "response_begin": 0,
        "response_end": 44,
        "response_text": "Velmora was founded in 1832 by Tarsk Olden. ",
    }
    r1 = {"response_begin": 44, "response_end": 63, "response_text": "It is on the Quell."}
    c0 = {
        "citation_doc_id": "0",
        "citation_begin": 0,
        "citation_end": 29,
        "citation_text": "Velmora was founded in 1832. ",
    }
    c1 = {
        "citation_doc_id": "0",
        "citation_begin": 29,
        "citation_end": 57,
        "citation_text": "It lies on the river Quell. ",
    }
    c2 = {
        "citation_doc_id": "0",
        "citation_begin": 57,
        "citation_end": 80,
        "citation_text": "Tarsk Olden founded it.",
    }
    assert dump(process(spec, request, raw)) == [{**r0, **c0}, {**r0, **c2}, {**r1, **c1}]


def test_context_attribution_numbers_documents_then_earlier_turns(tmp_path):
    spec = make_spec(tmp_path, F.CONTEXT_ATTRIBUTION, "context_attribution")
    assert spec.shape.name == "context_attribution"
    conversation = [
        {"role": "user", "content": "Who founded Velmora?"},
        {"role": "assistant", "content": "Tarsk Olden founded it."},
    ]
    docs = [Document(doc_id="0", text="Velmora lies on the Quell. Tarsk Olden founded it.")]
    request = spec.build_request(conversation, docs, {})
    assert request.sent[0]["content"] == "<c2> Who founded Velmora?"
    out = process(spec, request, '[{"r": 0, "c": [1, 2]}]')
    r0 = {"response_begin": 0, "response_end": 23, "response_text": "Tarsk Olden founded it."}
    assert dump(out) == [
        {
            **r0,
            "attribution_doc_id": "0",
            "attribution_msg_index": None,
            "attribution_begin": 27,
            "attribution_end": 50,
            "attribution_text": "Tarsk Olden founded it.",
        },
        {
            **r0,
            "attribution_doc_id": None,
            "attribution_msg_index": 0,
            "attribution_begin": 0,
            "attribution_end": 20,
            "attribution_text": "Who founded Velmora?",
        },
    ]


# ---------------------------------------------------------------------------------- core, guardian
def test_requirement_check(tmp_path):
    spec = make_spec(tmp_path, F.REQUIREMENT_CHECK, "requirement_check")
    assert spec.shape.name == "requirement_check"
    request = spec.build_request(QA, [], {"requirement": "Answer in one sentence."})
    assert request.extra[0]["content"] == (
        '<requirements>: Answer in one sentence.\nDoes the last answer meet it? Reply {"score": "yes"} or {"score": "no"}.'
    )
    text = '{"score": "no"}'
    tokens = split_at(text, "no", lp(0.6), [("no", lp(0.6)), ("yes", lp(0.3)), ("n", lp(0.05))])
    out = process(spec, request, text, tokens)
    assert dump(out) == {"requirement_check": {"score": pytest.approx(0.3 / 0.95)}}
    with pytest.raises(IntrinsicInputError, match="intrinsic 'requirement_check'.*'requirement'"):
        spec.build_request(QA, [], {})


def test_guardian_typed_from_schema(tmp_path):
    spec = make_spec(tmp_path, F.GUARDIAN, "guardian_core")
    assert spec.shape.name == "guardian"
    request = spec.build_request(QA, [], {"criteria": "Harm.", "scoring_schema": "Say yes if harmful."})
    assert request.extra[0]["content"] == "Criteria: Harm.\nScoring: Say yes if harmful."
    text = '{"score": "yes"}'
    out = process(spec, request, text, split_at(text, "yes", lp(0.75), [("yes", lp(0.75)), ("no", lp(0.25))]))
    assert out.guardian.score == pytest.approx(0.75)


def test_policy_typed_from_schema(tmp_path):
    spec = make_spec(tmp_path, F.POLICY, "policy_guardrails")
    assert spec.shape.name == "policy"
    request = spec.build_request(QA, [], {"policy_text": "No refunds."})
    assert dump(process(spec, request, '{"label": "Ambiguous"}')) == {"label": "Ambiguous"}
    with pytest.raises(IntrinsicOutputError, match="field 'label'"):
        process(spec, request, '{"label": "Maybe"}')


def test_factuality_detection_and_correction(tmp_path):
    detect = make_spec(tmp_path, F.FACTUALITY_DETECTION, "factuality_detection")
    correct = make_spec(tmp_path, F.FACTUALITY_CORRECTION, "factuality_correction")
    assert correct.shape.name == "factuality_correction"
    assert dump(process(detect, detect.build_request(QA, DOCS, {}), '{"score": "no"}')) == {"score": "no"}
    out = process(correct, correct.build_request(QA, DOCS, {}), '{"correction": "Tarsk Olden."}')
    assert dump(out) == {"correction": "Tarsk Olden."}


def test_unknown_shape_is_a_generic_intrinsic_typed_from_its_schema(tmp_path):
    spec = make_spec(tmp_path, F.GENERIC, "stembolt")
    assert spec.shape.name == "generic"
    out = process(spec, spec.build_request(QA, [], {}), '{"defective_part": "bolt", "diag_likelihood": 0.7}')
    assert out.defective_part == "bolt" and out.diag_likelihood == 0.7
    with pytest.raises(IntrinsicOutputError, match="field 'diag_likelihood'"):
        process(spec, spec.build_request(QA, [], {}), '{"defective_part": "bolt", "diag_likelihood": "high"}')
