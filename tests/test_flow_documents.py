"""Documents as a flow input: a ``message`` node hands the session documents (rendered as the
chat template renders them), and the CLI reads a ``list`` input as JSON."""

from __future__ import annotations

import json

import pytest

from alora_flows.cli.common import json_inputs, parse_inputs
from alora_flows.core.documents import as_documents
from alora_flows.core.session import Session
from alora_flows.errors import FlowInputError
from alora_flows.flow import Flow

FLOW = """\
name: with-documents
inputs: {question: str, documents: list}
nodes:
  ask: {message: {role: user, content: "{{ question }}", documents: "{{ documents }}"}}
  answer: {generate: {max_new_tokens: 3}, output: answer}
edges:
  - [ask, answer]
  - [answer, END]
"""
DOCS = [{"doc_id": "a", "text": "Velmora was founded in 1832."}, "Tarsk Olden founded it."]


def test_a_message_node_hands_the_session_its_documents(backend):
    session = Session(backend)
    result = Flow.from_yaml_text(FLOW).run(session, {"question": "When?", "documents": DOCS})
    assert session.documents == as_documents(DOCS)
    text = backend.tokenizer.decode(session.ids)
    assert "Velmora was founded in 1832." in text and "Tarsk Olden founded it." in text
    assert isinstance(result.state.answer, str)
    # the message step ran nothing; the answer ran the documents, the question and its
    # generation prompt in one forward
    ask, answer = result.trace.steps
    assert ask.prefill_tokens == ask.reused_tokens == 0
    assert answer.reused_tokens == 0 and answer.prefill_tokens > answer.context_tokens > 0


def test_documents_must_be_one_expression():
    bad = Flow.from_yaml_text(
        FLOW.replace('documents: "{{ documents }}"', 'documents: "docs: {{ documents }}"')
    )
    [problem] = bad.problems()
    assert "one {{ expression }}" in problem.detail and problem.node == "ask"


def test_the_cli_reads_a_list_input_as_json(tmp_path):
    path = tmp_path / "docs.json"
    path.write_text(json.dumps(DOCS))
    flow = Flow.from_yaml_text(FLOW)
    inputs = json_inputs(flow, parse_inputs([f"documents=@{path}", "question=When?"]))
    assert inputs == {"documents": DOCS, "question": "When?"}
    flow.validate().new_state(inputs)
    with pytest.raises(FlowInputError, match="documents: declared list, so its value must be JSON"):
        json_inputs(flow, {"documents": "not json"})
