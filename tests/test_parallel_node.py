"""The ``parallel`` node kind: branches from one conversation, intrinsic branches packed into one
forward, writes joined (with reducers), validation of conflicting writes."""

from __future__ import annotations

import pytest

from alora_flows.core import parallel as core_parallel
from alora_flows.core.session import Session
from alora_flows.flow import Flow
from intrinsics import text_spec, uncertainty_spec
from tests.test_flow_support import FakeSession

SPECS = {
    "alpha": uncertainty_spec(name="alpha", invocation="<|im_start|>certainty\n"),
    "beta": text_spec("beta", "<|im_start|>rewrite\n", max_new_tokens=5),
}

PARALLEL = """\
name: checks
intrinsics: {alpha: builtin, beta: builtin}
inputs: [question]
nodes:
  answer: {generate: {user: "{{ question }}", max_new_tokens: 6}, output: answer}
  checks:
    parallel:
      certainty: {intrinsic: alpha, output: certainty}
      rewrite:   {intrinsic: beta, output: rewritten}
      note:      {set: {note: "checked {{ answer }}"}}
edges:
  - [answer, checks]
  - [checks, END]
"""

SEQUENTIAL = """\
name: checks
intrinsics: {alpha: builtin, beta: builtin}
inputs: [question]
nodes:
  answer: {generate: {user: "{{ question }}", max_new_tokens: 6}, output: answer}
  certainty: {intrinsic: alpha, output: certainty}
  rewrite:   {intrinsic: beta, output: rewritten}
  note:      {set: {note: "checked {{ answer }}"}}
edges:
  - [answer, certainty]
  - [certainty, rewrite]
  - [rewrite, note]
  - [note, END]
"""


def test_parallel_branches_equal_the_sequential_flow_in_one_packed_pass(backend, monkeypatch):
    packed_calls = []
    real = core_parallel.invoke_parallel

    def spy(session, calls, **options):
        packed_calls.append([c.adapter for c in calls])
        return real(session, calls, **options)

    monkeypatch.setattr(core_parallel, "invoke_parallel", spy)
    inputs = {"question": "When was Velmora founded?"}
    session = Session(backend)
    result = Flow.from_yaml_text(PARALLEL).run(session, inputs, intrinsic_specs=SPECS)
    reference = Flow.from_yaml_text(SEQUENTIAL).run(Session(backend), inputs, intrinsic_specs=SPECS)
    assert packed_calls == [["alpha", "beta"]]  # both intrinsic branches in one packed call
    for field in ("answer", "rewritten", "note"):
        assert getattr(result.state, field) == getattr(reference.state, field), field
    assert result.state.certainty.score == pytest.approx(reference.state.certainty.score, abs=1e-5)
    step = result.trace.steps[1]
    assert step.kind == "parallel" and set(step.output) == {"certainty", "rewrite", "note"}
    seq = {s.node: s for s in reference.trace.steps}
    # the packed step ran each branch's own tokens once and re-read no conversation
    assert step.prefill_tokens == seq["certainty"].prefill_tokens + seq["rewrite"].prefill_tokens
    assert step.reused_tokens == seq["certainty"].reused_tokens
    assert session.messages == [
        {"role": "user", "content": inputs["question"]},
        {"role": "assistant", "content": result.state.answer},
    ]


def test_non_intrinsic_branches_run_on_forks_and_join_their_writes(backend):
    flow = Flow.from_yaml_text(
        """\
name: fan
inputs: [question]
nodes:
  fan:
    parallel:
      talk: {generate: {user: "{{ question }}", max_new_tokens: 3}, output: draft}
      tag:  {set: {tags: ["a"]}}
edges:
  - [fan, END]
"""
    )
    session = Session(backend)
    result = flow.run(session, {"question": "Hello?"})
    assert isinstance(result.state.draft, str) and result.state.tags == ["a"]
    assert session.messages == []  # a branch's turns stay on its fork
    assert result.trace.steps[0].generated_tokens > 0  # but its calls are counted


def test_two_branches_writing_one_field_need_a_reducer():
    text = """\
name: clash
nodes:
  fan:
    parallel:
      a: {set: {score: 1}}
      b: {set: {score: 2}}
edges:
  - [fan, END]
"""
    [problem] = Flow.from_yaml_text(text, file="clash.yaml").problems()
    assert problem.node == "fan" and problem.file == "clash.yaml" and problem.line == 5
    assert "reduce: {score: append}" in problem.detail
    reduced = Flow.from_yaml_text(text.replace("  fan:\n", "  fan:\n    reduce: {score: sum}\n"))
    assert reduced.problems() == []
    assert reduced.run(FakeSession(), {}).state.score == 3
    appended = Flow.from_yaml_text(text.replace("  fan:\n", "  fan:\n    reduce: {score: append}\n"))
    assert appended.compiled().field_types["score"] == list[int]


def test_branch_problems_name_the_branch_and_line():
    text = """\
name: bad
nodes:
  fan:
    parallel:
      a: {set: {x: "{{ missing }}"}}
    reduce: {y: append}
edges:
  - [fan, END]
"""
    problems = Flow.from_yaml_text(text, file="bad.yaml").problems()
    details = sorted(p.detail for p in problems)
    assert any("missing" in d for d in details)
    assert any("reduce names 'y'" in d for d in details)
    assert {p.line for p in problems} == {5, 6}


def test_nested_parallel_is_refused():
    with pytest.raises(Exception, match="itself parallel"):
        Flow.from_yaml_text(
            "name: n\nnodes:\n  f:\n    parallel:\n      a: {parallel: {b: {set: {x: 1}}}}\nedges:\n  - [f, END]\n"
        )


CANCEL = PARALLEL.replace('      note:      {set: {note: "checked {{ answer }}"}}\n', "").replace(
    "  checks:\n", '  checks:\n    cancel_when: "certainty.score < THRESHOLD"\n'
)


@pytest.mark.parametrize("threshold, cancelled", [(2.0, True), (-1.0, False)])
def test_cancel_when_stops_the_branches_it_makes_moot(backend, threshold, cancelled):
    """Once the finished certainty branch makes ``cancel_when`` hold, the rewrite branch stops,
    writes None and shows as cancelled; when it does not hold, both run to their end, as without
    it."""
    inputs = {"question": "When was Velmora founded?"}
    flow = Flow.from_yaml_text(CANCEL.replace("THRESHOLD", str(threshold)))
    result = flow.run(Session(backend), inputs, intrinsic_specs=SPECS)
    plain = Flow.from_yaml_text(PARALLEL).run(Session(backend), inputs, intrinsic_specs=SPECS)
    step = result.trace.steps[1]
    assert result.state.certainty.score == pytest.approx(plain.state.certainty.score, abs=1e-5)
    if cancelled:
        assert result.state.rewritten is None and step.output["rewrite"] == "cancelled"
        assert step.generated_tokens < plain.trace.steps[1].generated_tokens
    else:
        assert result.state.rewritten == plain.state.rewritten and step.output["rewrite"] != "cancelled"
        assert step.generated_tokens == plain.trace.steps[1].generated_tokens


def test_cancel_when_is_validated():
    bad = Flow.from_yaml_text(CANCEL.replace("certainty.score < THRESHOLD", "certainy.score < 0.5"))
    assert any("certainy" in p.detail for p in bad.problems())
