"""Evidence comes from the documents only; documents enter the conversation as documents (in the
layout the intrinsics were trained on); rewrite takes the last user turn and sends it once."""

import json

import pytest

from alora_flows.core.documents import DocumentSet, split_inline
from alora_flows.core.session import Session
from alora_flows.errors import DocumentError
from alora_flows.flow import Flow
from intrinsics import hallucination_spec, rewrite_spec
from intrinsics.parsers import parse_hallucination
from intrinsics.spec import RawOutput

DOCS = ["Velmora was founded in 1832 by Tarsk Olden.", "Quell is a river of 40 km."]
SYSTEM = {"role": "system", "content": "Answer only from the documents."}


def inline(*texts):
    return DocumentSet(documents=tuple(texts), render_as="inline")


# ---------------------------------------------------------------------------------- documents
def test_inline_documents_render_exactly_as_pasted_into_the_turn(backend):
    pasted = Session(
        backend, messages=[SYSTEM, {"role": "user", "content": "\n".join(DOCS) + "\n\nQuestion: When?"}]
    )
    first_class = Session(backend, messages=[SYSTEM])
    first_class.extend([{"role": "user", "content": "Question: When?"}], documents=inline(*DOCS))
    assert first_class.ids == pasted.ids
    assert [d.text for d in first_class.documents] == DOCS and first_class.documents_as == "inline"
    assert first_class.messages[-1]["content"] == "Question: When?"  # the question alone


def test_inline_documents_stay_with_their_turn(backend):
    session = Session(backend, messages=[SYSTEM])
    session.extend([{"role": "user", "content": "Question: When?"}], documents=inline(DOCS[0]))
    session.extend([{"role": "assistant", "content": "In 1832."}])
    session.extend([{"role": "user", "content": "Question: How long is Quell?"}], documents=inline(DOCS[1]))
    expected = Session(
        backend,
        messages=[
            SYSTEM,
            {"role": "user", "content": DOCS[0] + "\n\nQuestion: When?"},
            {"role": "assistant", "content": "In 1832."},
            {"role": "user", "content": DOCS[1] + "\n\nQuestion: How long is Quell?"},
        ],
    )
    assert session.ids == expected.ids
    assert session.fork().ids == session.ids


def test_one_rendering_per_session(backend):
    session = Session(backend, messages=[SYSTEM], documents=["plain document"])
    with pytest.raises(DocumentError, match="one rendering per session"):
        session.extend([{"role": "user", "content": "q"}], documents=inline("x"))


def test_split_inline_reads_the_data_layout_back():
    assert split_inline("a\nb\n\nQuestion: q?") == ("a\nb", "Question: q?")
    assert split_inline("Question: q?") is None and split_inline("no question here") is None


MESSAGE_FLOW = """\
name: docs-inline
inputs: {question: str, documents: list}
nodes:
  ask: {message: {role: user, content: "Question: {{ question }}", documents: "{{ documents }}", documents_as: inline}}
  answer: {generate: {max_new_tokens: 3}, output: answer}
edges:
  - [ask, answer]
  - [answer, END]
"""


def test_a_message_node_hands_over_inline_documents(backend):
    session = Session(backend)
    Flow.from_yaml_text(MESSAGE_FLOW).run(session, {"question": "When?", "documents": DOCS})
    assert [d.text for d in session.documents] == DOCS and session.documents_as == "inline"
    assert session.messages[0] == {"role": "user", "content": "Question: When?"}
    text = backend.tokenizer.decode(session.ids)
    assert DOCS[0] + "\n" + DOCS[1] + "\n\nQuestion: When?" in text
    bad = Flow.from_yaml_text(MESSAGE_FLOW.replace(', documents: "{{ documents }}"', ""))
    assert any("documents_as needs documents" in p.detail for p in bad.problems())


# ---------------------------------------------------------------------------------- evidence
def _hallucination_output(session, adapter_output):
    """The real spec's call as a flow prepares it on ``session``, parsed from a given adapter
    output (the adapter's text is what is fixed here; the context is the session's)."""
    spec = hallucination_spec()
    prepared = spec.prepare(session, "alpha", {})
    return spec.parse(RawOutput(text=adapter_output, context=prepared.context))


EVIDENCE = json.dumps([{"r": 0, "e": "documents: 1850", "f": "faithful"}])


def _retry_session(backend, *, documents: bool):
    """A retry's conversation: question, a first answer that invents 1850, a strict retry that
    repeats it. The documents say 1832."""
    turn = {"role": "user", "content": "Question: When was Velmora founded? Was it 1850?"}
    session = Session(backend, messages=[SYSTEM])
    if documents:
        session.extend([turn], documents=inline(*DOCS))
    else:
        session.extend([{"role": "user", "content": "\n".join(DOCS) + "\n\n" + turn["content"]}])
    session.extend(
        [
            {"role": "assistant", "content": "Velmora was founded in 1850."},
            {"role": "user", "content": "Answer again from the documents."},
            {"role": "assistant", "content": "Velmora was founded in 1850."},
        ]
    )
    return session


def test_a_value_only_in_an_earlier_answer_or_the_question_is_unverified(backend):
    out = _hallucination_output(_retry_session(backend, documents=True), EVIDENCE)
    [label] = out.sentences
    assert label.unverified == ["1850"] and label.f == "unfaithful" and out.unfaithful
    assert label.adapter_f == "faithful"


def test_a_value_in_the_documents_is_supported(backend):
    session = Session(backend, messages=[SYSTEM])
    session.extend(
        [{"role": "user", "content": "Question: When was Velmora founded?"}], documents=inline(*DOCS)
    )
    session.extend([{"role": "assistant", "content": "Velmora was founded in 1832."}])
    evidence = json.dumps([{"r": 0, "e": "documents: 1832", "f": "unfaithful"}])
    [label] = _hallucination_output(session, evidence).sentences
    assert label.f == "faithful" and label.unverified == []


def test_documents_pasted_into_a_turn_are_not_evidence(backend):
    """Evidence needs first-class documents: text in a user turn (even the documents) is not."""
    out = _hallucination_output(_retry_session(backend, documents=False), EVIDENCE)
    assert out.sentences[0].unverified == ["1850"] and out.unfaithful
    ok = json.dumps([{"r": 0, "e": "documents: 1832", "f": "faithful"}])
    assert _hallucination_output(_retry_session(backend, documents=False), ok).sentences[0].unverified == [
        "1832"
    ]


def test_a_state_field_cannot_pose_as_documents(backend):
    session = _retry_session(backend, documents=True)
    prepared = hallucination_spec().prepare(session, "alpha", {"source_documents": ["Founded in 1850."]})
    assert prepared.context["source_documents"] == DOCS


def test_without_a_session_the_adapter_label_is_kept():
    context = {"last_assistant": "Velmora was founded in 1850.", "messages": []}
    [label] = parse_hallucination(RawOutput(text=EVIDENCE, context=context)).sentences
    assert label.f == "faithful" and label.unverified == []


def test_training_data_marks_documents_by_their_layout():
    messages = [
        SYSTEM,
        {"role": "user", "content": "\n".join(DOCS) + "\n\nQuestion: When? 1850?"},
        {"role": "assistant", "content": "Velmora was founded in 1850."},
        {"role": "user", "content": "Answer sentences:\n0: Velmora was founded in 1850."},
    ]
    _, context = hallucination_spec().example_context(messages)
    assert context["source_documents"] == ["\n".join(DOCS)]
    [label] = parse_hallucination(RawOutput(text=EVIDENCE, context=context)).sentences
    assert label.unverified == ["1850"]  # the question's 1850 does not count


# ---------------------------------------------------------------------------------- rewrite
def test_rewrite_without_a_question_takes_the_last_user_turn_once(backend):
    spec = rewrite_spec("rewrite", "<|im_start|>rewrite\n")
    session = Session(backend, messages=[{"role": "user", "content": "Where is Velmora?"}])
    session.extend(
        [{"role": "assistant", "content": "On the Quell."}, {"role": "user", "content": "How old is it?"}]
    )
    assert spec.input_messages({}, session.messages) == [{"role": "user", "content": "How old is it?"}]
    prepared = spec.prepare(session, "beta", {})
    assert prepared is not None and prepared.call.messages == []  # already the last turn: not again
    output, stats = spec.run(session, "beta", {})  # no "'question' is undefined"
    invocation = backend.adapters["beta"].invocation_tokens
    assert stats.prefill_tokens == len(invocation) and stats.reused_tokens == len(session.ids)
    if output.fallback:
        assert output.rewritten_question == "How old is it?"


def test_rewrite_sends_a_flow_question_once(backend):
    spec = rewrite_spec("rewrite", "<|im_start|>rewrite\n")
    session = Session(backend, messages=[{"role": "user", "content": "How old is it?"}])
    assert spec.prepare(session, "beta", {"question": "How old is it?"}).call.messages == []
    new = spec.prepare(session, "beta", {"question": "And Quell?"}).call.messages
    assert new == [{"role": "user", "content": "And Quell?"}]


def test_rewrite_of_an_answered_question_runs_on_the_conversation_up_to_it(backend):
    spec = rewrite_spec("rewrite", "<|im_start|>rewrite\n")
    session = Session(backend, messages=[{"role": "user", "content": "How old is Velmora?"}])
    session.generate(4)
    assert spec.prepare(session, "beta", {}) is None  # not packable: a shorter conversation
    before = list(session.messages), list(session._cached_ids)
    _, stats = spec.run(session, "beta", {})
    assert stats.prefill_tokens == len(backend.adapters["beta"].invocation_tokens)
    asked = Session(backend, messages=[{"role": "user", "content": "How old is Velmora?"}])
    assert stats.reused_tokens == len(asked.ids)
    assert (list(session.messages), list(session._cached_ids)) == before


def test_a_run_directory_keeps_the_sessions_documents(backend, tmp_path):
    """A checkpoint saves the session's documents with its messages, so resuming a run whose
    flow handed documents over rebuilds the same conversation, token for token."""
    from alora_flows.runs.rundir import RunDir, load_run, restore_session, run_with_dir

    flow = Flow.from_yaml_text(MESSAGE_FLOW)
    inputs = {"question": "When?", "documents": DOCS}
    (tmp_path / "flow.yaml").write_text(MESSAGE_FLOW)
    run = RunDir.create(
        tmp_path / "run",
        flow_text=MESSAGE_FLOW,
        flow_file=tmp_path / "flow.yaml",
        flow_name=flow.name,
        model="tiny",
        inputs=inputs,
        reuse=True,
        seed=None,
    )
    session = Session(backend)
    run_with_dir(run, flow, session, inputs)
    saved = load_run(run.path)
    assert [d.text for d in saved.checkpoint.session.documents] == DOCS
    rebuilt, record = restore_session(backend, saved)
    assert rebuilt.ids == session.ids and rebuilt.documents_as == "inline"
    assert record.session == "rebuilt"
