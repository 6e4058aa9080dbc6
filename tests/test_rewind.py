"""Rewind: a session (and a flow, with ``mark`` / ``rewind`` nodes) returns to an earlier point of
its conversation without recomputing anything, and ends up as a fresh session on those messages."""

import pytest
import torch

from alora_flows.core.documents import DocumentSet
from alora_flows.core.session import Session, SessionMark
from alora_flows.errors import AloraFlowsError
from alora_flows.flow import Flow

QUESTION = [
    {"role": "system", "content": "Answer only from the documents."},
    {
        "role": "user",
        "content": "Velmora was founded in 1832 by Tarsk Olden.\n\nQuestion: When was Velmora founded?",
    },
]


def kv(session):
    return [(layer.keys, layer.values) for layer in session._cache.layers]


class ForwardCounter:
    """Counts the real backend's forward passes (and the tokens they ran)."""

    def __init__(self, backend, monkeypatch):
        self.calls, self.tokens = 0, 0
        real = backend.forward

        def forward(ids, *args, **kwargs):
            self.calls += 1
            self.tokens += len(ids)
            return real(ids, *args, **kwargs)

        monkeypatch.setattr(backend, "forward", forward)


def test_rewind_runs_no_forward_and_equals_a_fresh_session(backend, monkeypatch):
    session = Session(backend)
    session.extend(QUESTION[:1])
    mark = session.mark()
    session.extend(QUESTION[1:], documents=["Tarsk Olden also founded Quell."])
    session.generate(8)
    session.extend([{"role": "user", "content": "Answer again, strictly."}])
    session.generate(6)
    counter = ForwardCounter(backend, monkeypatch)
    stats = session.rewind(mark)
    assert counter.calls == 0  # cropping the cache only
    assert stats.kind == "rewind" and stats.prefill_tokens == 0 and stats.reused_tokens == mark.tokens
    assert session.messages == QUESTION[:1] and session.documents == []
    fresh = Session(backend, messages=QUESTION[:1])
    assert session._cached_ids == fresh._cached_ids == session.ids
    for (k0, v0), (k1, v1) in zip(kv(session), kv(fresh)):
        assert k0.shape == k1.shape
        assert torch.allclose(k0, k1, atol=1e-5) and torch.allclose(v0, v1, atol=1e-5)
    # and the session goes on as the fresh one does
    session.extend(QUESTION[1:])
    fresh.extend(QUESTION[1:])
    assert session.generate(6).token_ids == fresh.generate(6).token_ids


def test_rewind_keeps_inline_documents_before_the_mark(backend):
    session = Session(backend)
    docs = DocumentSet(documents=("Velmora was founded in 1832.",), render_as="inline")
    session.extend([{"role": "user", "content": "Question: When?"}], documents=docs)
    session.generate(4)
    mark = session.mark()
    more = DocumentSet(documents=("Quell is a river.",), render_as="inline")
    session.extend([{"role": "user", "content": "Question: And Quell?"}], documents=more)
    session.generate(4)
    session.rewind(mark)
    assert [d.text for d in session.documents] == ["Velmora was founded in 1832."]
    assert session.ids == Session(backend, messages=session.messages, documents=docs).ids


def test_rewind_refuses_a_changed_past_and_works_without_reuse(backend):
    session = Session(backend, reuse=False)
    session.extend(QUESTION)
    mark = session.mark()
    session.generate(4)
    assert session.rewind(mark).prefill_tokens == 0 and session.messages == QUESTION
    session.messages[1] = {"role": "user", "content": "something else"}
    with pytest.raises(AloraFlowsError, match="changed since the mark"):
        session.rewind(mark)
    too_long = SessionMark(messages=9, documents=0, digest="x")
    with pytest.raises(AloraFlowsError):
        session.rewind(too_long)


RETRY_FLOW = """\
name: retry-from-the-question
inputs: [question]
max_steps: 12
nodes:
  start: {set: {attempt: 1}}
  asked: {mark: before}
  ask: {message: {role: user, content: "{{ question }}"}}
  answer: {generate: {max_new_tokens: 5}, output: answer}
  again: {set: {attempt: 2}}
  back: {rewind: before}
edges:
  - [start, asked]
  - [asked, ask]
  - [ask, answer]
  - from: answer
    branches:
      - {when: "attempt == 1", to: again}
      - {default: END}
  - [again, back]
  - [back, ask]
"""


def test_a_flow_retries_from_the_mark_and_the_trace_shows_no_recompute(backend, monkeypatch):
    session = Session(backend)
    session.extend([{"role": "system", "content": "Be brief."}])
    result = Flow.from_yaml_text(RETRY_FLOW).run(session, {"question": "When was Velmora founded?"})
    steps = result.trace.steps
    assert [s.node for s in steps] == ["start", "asked", "ask", "answer", "again", "back", "ask", "answer"]
    back = steps[5]
    mark = result.state.before
    assert isinstance(mark, SessionMark) and mark.messages == 1
    assert back.kind == "rewind" and back.prefill_tokens == 0
    assert back.reused_tokens == mark.tokens > 0 and back.output["recomputed_tokens"] == 0
    assert back.output["dropped_tokens"] == back.context_tokens - mark.tokens > 0
    # the second attempt saw only the question, once: not the first attempt
    assert [m["role"] for m in session.messages] == ["system", "user", "assistant"]
    second = steps[7]
    # the message step ran nothing; the answer reused exactly what the rewind kept and ran the
    # question with its generation prompt in one forward: the retry cost what the first try did
    assert steps[6].prefill_tokens == steps[6].reused_tokens == 0
    first = steps[3]
    assert second.reused_tokens == first.reused_tokens == mark.tokens
    assert second.prefill_tokens == first.prefill_tokens > second.context_tokens - mark.tokens
    # the same answer as the first attempt: greedy, same conversation
    assert session.messages[-1]["content"] == steps[3].output


def test_rewind_validation_and_drawing():
    flow = Flow.from_yaml_text(RETRY_FLOW.replace("back: {rewind: before}", "back: {rewind: befor}"))
    problems = flow.problems()
    assert any(p.node == "back" and "befor" in p.detail for p in problems), problems
    good = Flow.from_yaml_text(RETRY_FLOW)
    good.validate()
    drawing = good.to_mermaid()
    assert "mark: before" in drawing and "rewind: before" in drawing
    assert Flow.from_yaml_text(good.to_yaml()) == good


def test_rewind_before_any_mark_is_a_runtime_error(backend):
    flow = Flow.from_yaml_text(
        """\
name: too-early
nodes:
  back: {rewind: before}
  asked: {mark: before}
edges:
  - [back, asked]
  - [asked, END]
"""
    )
    flow.validate()
    with pytest.raises(AloraFlowsError, match="no mark"):
        flow.run(Session(backend), {})
