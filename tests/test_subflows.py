"""Subflows: a flow as one step, on the parent's session, with explicit state in and out.

Fast checks on the fake session (mapping, trace nesting, events, validation with the child's
file and line), then the tiny model: the child's intrinsic reuses the parent's KV cache, a
subflow run gives the same final state as the same nodes inline, and a run killed (SIGKILL)
inside a subflow resumes inside it to the state of an uninterrupted run.
"""

from __future__ import annotations

import json
import signal
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alora_flows.cli import app
from alora_flows.errors import FlowDefinitionError, RunDirError
from alora_flows.flow import END, Flow, StepFinished, StepStarted
from alora_flows.runs.rundir import RunDir, load_run, resume_run, run_with_dir
from alora_flows.testing import same_within
from tests.test_flow_support import FakeSession, specs
from tests.test_orchestration_support import NESTED_TOP, REVIEW_STEPS, write_nested_project
from tests.test_reliability_rundir import QUESTION, _start_run
from tests.test_reliability_support import ARMED

runner = CliRunner()


def child_flow() -> Flow:
    child = Flow("check", inputs=["answer"])
    child.intrinsic("rate", "uncertainty", output="certainty")
    child.set("judge", verdict="{{ 'sure' if certainty.score > 0.5 else 'unsure' }}", scratch="x")
    child.edge("rate", "judge").edge("judge", END)
    return child


def parent_flow(child: Flow | str | dict) -> Flow:
    parent = Flow("main", inputs=["question"])
    parent.message("ask", "user", "{{ question }}")
    parent.generate("answer", output="answer")
    parent.subflow(
        "check", child, inputs={"answer": "{{ answer }}"}, outputs={"verdict": "verdict", "certainty": "sure"}
    )
    parent.edge("ask", "answer").edge("answer", "check")
    parent.branch("check", [("sure.score < 0.5", "doubt")], default=END)
    parent.set("doubt", verdict="doubtful: {{ verdict }}")
    parent.edge("doubt", END)
    return parent


def test_state_goes_in_and_out_only_through_the_mappings():
    events: list = []
    result = parent_flow(child_flow()).run(
        FakeSession(answers=["it was 1832"]),
        {"question": "When?"},
        intrinsic_specs=specs(0.9),
        listeners=[events.append],
    )
    assert result.values.keys() == {"question", "answer", "verdict", "sure"}  # no 'scratch'
    assert result["verdict"] == "sure" and result["sure"].score == 0.9
    check = result.trace.steps[2]
    assert check.kind == "flow" and check.output == {"verdict": "sure", "sure": {"score": 0.9, "digit": 0}}
    assert [s.node for s in check.steps] == ["rate", "judge"]
    # the subflow step's tokens are its children's: the totals count each model call once
    assert check.prefill_tokens == sum(s.prefill_tokens for s in check.steps)
    assert check.reused_tokens == check.steps[0].reused_tokens > 0
    assert result.trace.totals.reused_tokens == sum(s.reused_tokens for s in result.trace.steps)
    started = [(e.path, e.node) for e in events if isinstance(e, StepStarted)]
    assert started == [([], "ask"), ([], "answer"), ([], "check"), (["check"], "rate"), (["check"], "judge")]
    finished = [e for e in events if isinstance(e, StepFinished)]
    assert [(e.path, e.step.node) for e in finished][2:] == [
        (["check"], "rate"),
        (["check"], "judge"),
        ([], "check"),
    ]
    # inside the child, events carry the child's state and the enclosing frames
    inner = finished[2]
    assert set(inner.state.model_fields) == {"answer", "certainty", "verdict", "scratch"}
    assert inner.frames[0].node == "check" and inner.frames[0].state.answer == "it was 1832"


def test_a_low_score_routes_on_the_mapped_output():
    fake = specs(0.2)
    result = parent_flow(child_flow()).run(FakeSession(), {"question": "Q"}, intrinsic_specs=fake)
    assert [s.node for s in result.trace.steps] == ["ask", "answer", "check", "doubt"]
    assert result["verdict"] == "doubtful: unsure"
    assert fake["uncertainty"].calls[0]["state"] == {"answer": "a fine answer"}  # the child's own state


def test_yaml_subflow_from_a_file_relative_to_the_parent(tmp_path):
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "check.yaml").write_text(child_flow().to_yaml())
    parent = Flow.from_yaml_text(parent_flow("sub/check.yaml").to_yaml(), file=str(tmp_path / "main.yaml"))
    result = parent.run(FakeSession(), {"question": "Q"}, intrinsic_specs=specs(0.9))
    assert result["verdict"] == "sure"
    compiled = parent.validate(intrinsic_specs=specs(0.9))
    key = str((tmp_path / "sub" / "check.yaml").resolve())
    assert list(compiled.subflow_files) == [key] and len(compiled.subflow_files[key]) == 64


def test_inline_subflow_and_python_subflow_write_the_same_yaml():
    python = parent_flow(child_flow())
    text = python.to_yaml()
    assert "flow:\n      name: check" in text  # a Python subflow is written inline
    again = Flow.from_yaml_text(text)
    assert again == python
    result = again.run(FakeSession(), {"question": "Q"}, intrinsic_specs=specs(0.9))
    assert result["verdict"] == "sure"


def broken_child_problems(tmp_path, child_text: str, node_yaml: str | None = None):
    (tmp_path / "check.yaml").write_text(child_text)
    node = node_yaml or '{flow: check.yaml, inputs: {answer: "{{ answer }}"}, outputs: {verdict: verdict}}'
    parent = f"""\
name: main
intrinsics: {{uncertainty: builtin}}
inputs: [question]
nodes:
  answer: {{generate: {{user: "{{{{ question }}}}"}}, output: answer}}
  check: {node}
edges: [[answer, check], [check, END]]
"""
    (tmp_path / "main.yaml").write_text(parent)
    return Flow.from_yaml(tmp_path / "main.yaml").problems(intrinsic_specs=specs(0.9))


CHILD_OK = child_flow().to_yaml()


def test_errors_inside_a_subflow_name_the_child_file_line_and_node(tmp_path):
    text = CHILD_OK.replace("certainty.score > 0.5", "certanty.score > 0.5")
    (problem,) = broken_child_problems(tmp_path, text)
    assert problem.file == str(tmp_path / "check.yaml")
    line = text.splitlines()[problem.line - 1]
    assert "certanty.score" in line
    assert problem.node == "check/judge"
    assert "reads unknown state field(s) certanty (did you mean 'certainty'?)" in problem.detail
    assert str(problem).startswith(f"{tmp_path / 'check.yaml'}:{problem.line}: node 'check/judge': ")


def test_a_subflow_shape_error_keeps_its_line(tmp_path):
    text = CHILD_OK.replace("      scratch: x", "      scratch: x\n    bogus: 1")
    (problem,) = broken_child_problems(tmp_path, text)
    assert problem.file.endswith("check.yaml") and "unknown key" in problem.detail
    assert "bogus" in text.splitlines()[problem.line - 1]


@pytest.mark.parametrize(
    "node, message",
    [
        ("{flow: check.yaml, outputs: {verdict: verdict}}", "needs input(s) answer"),
        (
            '{flow: check.yaml, inputs: {answer: "{{ answer }}", extra: 1}, outputs: {verdict: verdict}}',
            "has no input 'extra'",
        ),
        (
            '{flow: check.yaml, inputs: {answer: "{{ answer }}"}, outputs: {verdikt: v}}',
            "no state field 'verdikt'",
        ),
        ('{flow: missing.yaml, inputs: {answer: "{{ answer }}"}}', "cannot read subflow file"),
        (
            '{flow: check.yaml, inputs: {answer: "{{ nope }}"}, outputs: {verdict: verdict}}',
            "unknown state field",
        ),
    ],
)
def test_mapping_errors_point_at_the_parent_node(tmp_path, node, message):
    problems = broken_child_problems(tmp_path, CHILD_OK, node)
    assert any(message in p.detail for p in problems), problems
    problem = next(p for p in problems if message in p.detail)
    assert problem.file == str(tmp_path / "main.yaml") and problem.node == "check" and problem.line == 6


def test_a_subflow_that_includes_itself_is_refused(tmp_path):
    loop = """\
name: loop
inputs: [answer]
nodes:
  again: {flow: main.yaml, inputs: {question: "{{ answer }}"}}
edges: [[again, END]]
"""
    problems = broken_child_problems(tmp_path, loop)
    assert any("includes itself" in p.detail for p in problems), problems


def test_one_intrinsic_name_for_two_adapters_is_refused(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").mkdir()
    child = CHILD_OK.replace("uncertainty: builtin", "uncertainty: b")
    (tmp_path / "sub" / "check.yaml").write_text(child)
    parent = parent_flow("sub/check.yaml")
    parent.spec.intrinsics["uncertainty"] = "a"
    flow = Flow.from_yaml_text(parent.to_yaml(), file=str(tmp_path / "main.yaml"))
    problems = flow.problems(intrinsic_specs=specs(0.9))
    assert any("'a' in this flow but 'b' in subflow 'check'" in p.detail for p in problems), problems
    # the same directory named from two places is one adapter
    (tmp_path / "sub" / "check.yaml").write_text(
        CHILD_OK.replace("uncertainty: builtin", "uncertainty: ../a")
    )
    assert (
        Flow.from_yaml_text(parent.to_yaml(), file=str(tmp_path / "main.yaml")).problems(
            intrinsic_specs=specs(0.9)
        )
        == []
    )


def test_mapped_outputs_keep_the_child_types_for_condition_checks():
    parent = parent_flow(child_flow())
    parent.spec.edges[-2].branches[0].when = "sure < 0.5"  # the output object, not its score
    with pytest.raises(FlowDefinitionError, match=r"cannot compare sure \(Score\) with 0.5"):
        parent.validate(intrinsic_specs=specs(0.9))


def test_draw_shows_the_subflow():
    text = parent_flow(child_flow()).to_mermaid()
    assert 'n_check[["check<br/><i>flow: check</i>' in text


# ---------------------------------------------------------------------- the tiny model
def test_child_intrinsics_reuse_the_parent_cache_and_match_the_same_nodes_inline(backend):
    from alora_flows.core.session import Session
    from intrinsics import text_spec, uncertainty_spec

    real = {
        "alpha": uncertainty_spec("alpha", "<|im_start|>certainty\n"),
        "beta": text_spec("beta", "<|im_start|>rewrite\n", max_new_tokens=4),
    }
    child = Flow("review", inputs=["answer"])
    child.intrinsic("rate", "alpha", output="certainty")
    child.message("follow", "user", "Say more about: {{ answer }}")
    child.generate("more", max_new_tokens=5, output="more")
    child.intrinsic("note", "beta", output="note")
    child.edge("rate", "follow").edge("follow", "more").edge("more", "note").edge("note", END)
    parent = Flow("nested", inputs=["question"])
    parent.message("ask", "user", "{{ question }}")
    parent.generate("answer", max_new_tokens=6, output="answer")
    parent.subflow(
        "review",
        child,
        inputs={"answer": "{{ answer }}"},
        outputs={"certainty": "certainty", "more": "more", "note": "note"},
    )
    parent.edge("ask", "answer").edge("answer", "review").edge("review", END)

    flat = Flow("flat", inputs=["question"])
    flat.message("ask", "user", "{{ question }}")
    flat.generate("answer", max_new_tokens=6, output="answer")
    flat.intrinsic("rate", "alpha", output="certainty")
    flat.message("follow", "user", "Say more about: {{ answer }}")
    flat.generate("more", max_new_tokens=5, output="more")
    flat.intrinsic("note", "beta", output="note")
    for a, b in [
        ("ask", "answer"),
        ("answer", "rate"),
        ("rate", "follow"),
        ("follow", "more"),
        ("more", "note"),
    ]:
        flat.edge(a, b)
    flat.edge("note", END)

    inputs = {"question": "When was Velmora founded?"}
    nested_session = Session(backend)
    nested = parent.run(nested_session, inputs, intrinsic_specs=real)
    reference = flat.run(Session(backend), inputs, intrinsic_specs=real)
    assert same_within(nested.trace.final_state, reference.trace.final_state, tol=1e-6)

    review = nested.trace.steps[2]
    rate, note = review.steps[0], review.steps[3]
    conversation = len(Session(backend, messages=nested_session.messages[:2]).ids)
    # The parent's whole cache; only the answer's closing tokens (end of turn) waited for this call.
    assert rate.context_tokens == conversation > rate.reused_tokens >= conversation - 3
    assert note.context_tokens > rate.context_tokens >= note.context_tokens - note.reused_tokens
    flat_rate = reference.trace.steps[2]
    assert (rate.prefill_tokens, rate.reused_tokens) == (flat_rate.prefill_tokens, flat_rate.reused_tokens)
    assert nested.trace.totals.prefill_tokens == reference.trace.totals.prefill_tokens


# ---------------------------------------------------------------------- resume inside a subflow
@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return write_nested_project(tmp_path_factory.mktemp("nested"))


@pytest.fixture(scope="module")
def reference(project) -> dict:
    result = runner.invoke(app, ["run", str(project / "flow.yaml"), "--input", QUESTION, "--seed", "3"])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_sigkill_inside_a_subflow_resumes_inside_it(project, reference, tmp_path):
    proc, run_dir, gate, _ = _start_run(project, tmp_path)  # blocks in the child's 'wait' step
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    saved = load_run(run_dir)
    assert saved.manifest.status == "running"
    checkpoint = saved.checkpoint
    assert checkpoint.steps_done == 3 and checkpoint.next_node == "review"
    (position,) = checkpoint.inside
    assert position.next_node == "wait"
    assert [s.node for s in position.trace.steps] == ["rate", "note"]
    assert set(position.state) == {"answer", "certainty", "note"}
    steps = sorted(p.name for p in (run_dir / "steps").iterdir())
    assert steps[-2:] == ["0003-review.0000-rate.json", "0003-review.0001-note.json"]
    assert saved.manifest.subflow_files.keys() == {str((project / "flows" / "review.yaml").resolve())}

    gate.touch()
    trace_path = tmp_path / "trace.json"
    resumed = runner.invoke(app, ["resume", str(run_dir), "--trace-json", str(trace_path)])
    assert resumed.exit_code == 0, resumed.output
    assert "at 'review'" in resumed.stderr
    assert same_within(json.loads(resumed.stdout), reference, tol=1e-6)
    trace = json.loads(trace_path.read_text())
    assert [s["node"] for s in trace["steps"]] == NESTED_TOP
    assert [s["node"] for s in trace["steps"][3]["steps"]] == REVIEW_STEPS
    (record,) = trace["resumes"]
    assert record["node"] == "review/wait" and record["session"] == "rebuilt"
    # the conversation was prefilled once on resume; the child's next model step (after the
    # deferred follow-up message, which ran nothing) reused all of it
    follow, answer2 = trace["steps"][3]["steps"][3:5]
    assert follow["prefill_tokens"] == follow["reused_tokens"] == 0
    assert record["prefill_tokens"] == len(checkpoint.session.token_ids) == answer2["reused_tokens"]
    assert load_run(run_dir).manifest.status == "finished"


def test_resume_refuses_a_changed_subflow_file(tmp_path):
    root = write_nested_project(tmp_path / "proj")
    from alora_flows.app import load_flow_backend

    flow = Flow.from_yaml(root / "flow.yaml")
    backend, real = load_flow_backend(flow, root)
    from alora_flows.core.session import Session

    run = RunDir.create(
        tmp_path / "run",
        flow_text=(root / "flow.yaml").read_text(),
        flow_file=root / "flow.yaml",
        flow_name=flow.name,
        model=flow.spec.model,
        inputs={"question": "Q?"},
        reuse=True,
        seed=1,
    )
    ARMED["interrupt"] = True  # Ctrl-C in the child's 'wait' step
    try:
        with pytest.raises(KeyboardInterrupt):
            run_with_dir(run, flow, Session(backend), {"question": "Q?"}, seed=1, intrinsic_specs=real)
    finally:
        ARMED["interrupt"] = False
    assert load_run(run.path).checkpoint.inside[0].next_node == "wait"
    child = root / "flows" / "review.yaml"
    original = child.read_text()
    child.write_text(original.replace("max_new_tokens: 8", "max_new_tokens: 9"))
    with pytest.raises(RunDirError, match="review.yaml changed"):
        resume_run(run.path, backend, intrinsic_specs=real)
    child.write_text(original)
    result = resume_run(run.path, backend, intrinsic_specs=real)
    assert [s.node for s in result.trace.steps] == NESTED_TOP
    assert [s.node for s in result.trace.steps[3].steps] == REVIEW_STEPS


@pytest.mark.parametrize("width", [80, 120])
def test_the_live_view_shows_subflow_steps_under_their_subflow(width):
    import io

    from rich.console import Console

    from alora_flows.flow.live import LiveView

    for plain in (True, False):
        out = io.StringIO()
        console = Console(file=out, width=width, force_terminal=not plain, color_system=None)
        with LiveView(console, plain=plain) as view:
            parent_flow(child_flow()).run(
                FakeSession(), {"question": "When?"}, intrinsic_specs=specs(0.9), listeners=[view]
            )
        nodes = [step.node for step in view.steps]
        assert nodes == ["ask", "answer", "  rate", "  judge", "check"]  # children indented
        text = out.getvalue()
        if plain:  # a log names a child by its path
            assert "step 0 check/rate (intrinsic uncertainty)" in text
            assert "step 1 check/judge (set)" in text and "step 2 check (flow)" in text
        else:
            import re

            indent = {
                m.group(2): len(m.group(1))
                for m in (re.match(r"\s*\d+(\s+)(\w+)", line) for line in text.splitlines())
                if m
            }
            assert indent["rate"] > indent["ask"] == indent["check"]
