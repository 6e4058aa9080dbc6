"""Interrupts: a run pauses for a person's values and continues, in the same process on the live
session (nothing prefilled again) or from its run directory (one prefill, recorded once), also
after the process that paused was killed with SIGKILL while it waited."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alora_flows.cli import app
from alora_flows.errors import FlowDefinitionError, FlowInputError, FlowRuntimeError
from alora_flows.flow import END, Flow, Interrupted, RunFinished, StepFinished
from alora_flows.runs.rundir import RunDir, load_run, run_with_dir
from alora_flows.testing import same_within
from tests.test_flow_support import FakeSession
from tests.test_orchestration_support import write_nested_project
from tests.test_reliability_rundir import REPO

runner = CliRunner()
QUESTION = "question=When was Velmora founded?"


def review_flow() -> Flow:
    flow = Flow("review", inputs=["question"], max_steps=20)
    flow.message("ask", "user", "{{ question }}")
    flow.generate("answer", output="answer")
    flow.interrupt("approve", "Approve '{{ answer }}'?", {"approved": bool, "note": str})
    flow.branch("approve", [("approved", END)], default="redo")
    flow.message("redo", "user", "Try again: {{ note }}")
    flow.edge("ask", "answer").edge("answer", "approve").edge("redo", "answer")
    return flow


def test_a_run_pauses_and_says_what_it_waits_for():
    events: list = []
    result = review_flow().run(FakeSession(answers=["first"]), {"question": "Q"}, listeners=[events.append])
    assert result.status == "interrupted" and result.interrupted
    request = result.interrupt
    assert (request.node, request.path, request.prompt) == ("approve", [], "Approve 'first'?")
    assert request.fields == {"approved": "bool", "note": "str"}
    assert [s.node for s in result.trace.steps] == ["ask", "answer"]  # the interrupt has not run
    assert result.trace.interrupt == request
    assert isinstance(events[-1], Interrupted) and events[-1].frames[0].node == "approve"
    assert not any(isinstance(e, RunFinished) for e in events)
    assert json.loads(result.trace.to_json())["interrupt"]["node"] == "approve"


def test_resume_checks_and_converts_the_values_then_goes_on():
    session = FakeSession(answers=["first", "second"])
    paused = review_flow().run(session, {"question": "Q"})
    with pytest.raises(FlowInputError, match=r"\(missing note\); expected: approved \(bool\), note \(str\)"):
        paused.resume(approved=True)
    with pytest.raises(FlowInputError, match="value for 'approved' must be bool"):
        paused.resume(approved="perhaps", note="")
    again = paused.resume({"approved": "no", "note": "be brief"})  # still resumable after bad values
    assert again.interrupted and again.interrupt.prompt == "Approve 'second'?"  # the loop came back
    with pytest.raises(FlowRuntimeError, match="already resumed"):
        paused.resume(approved=True, note="")
    done = again.resume(approved="true", note="ok")
    assert done.status == "finished" and done.interrupt is None
    assert done["approved"] is True and done["answer"] == "second"
    steps = [s.node for s in done.trace.steps]
    assert steps == ["ask", "answer", "approve", "redo", "answer", "approve"]
    assert done.trace.steps[2].output == {"approved": False, "note": "be brief"}
    assert [(r.at_step, r.node, r.session, r.prefill_tokens) for r in done.trace.resumes] == [
        (2, "approve", "kept", 0),
        (5, "approve", "kept", 0),
    ]
    assert session.messages[-2]["content"] == "Try again: be brief"
    with pytest.raises(FlowRuntimeError, match="only a run paused"):
        done.resume(approved=True, note="")


def test_interrupt_definitions_are_validated():
    text = review_flow().to_yaml().replace("approved: bool", "approved: boolean")
    with pytest.raises(FlowDefinitionError, match="type must be one of str, int, float, bool"):
        Flow.from_yaml_text(text, file="review.yaml")
    flow = review_flow()
    next(e for e in flow.spec.edges if hasattr(e, "branches")).branches[0].when = "note > 3"
    with pytest.raises(FlowDefinitionError, match=r"cannot compare note \(str\) with 3 \(int\)"):
        flow.validate()
    assert 'n_approve(["approve<br/><i>interrupt: approved, note</i>' in review_flow().to_mermaid()


def test_the_python_api_continues_on_the_live_session_without_prefilling_again(backend):
    from alora_flows.core.session import Session
    from intrinsics import uncertainty_spec

    real = {"alpha": uncertainty_spec("alpha", "<|im_start|>certainty\n")}

    def build(pause: bool) -> Flow:
        flow = Flow("ok", inputs=["question"])
        flow.message("ask", "user", "{{ question }}")
        flow.generate("answer", max_new_tokens=6, output="answer")
        if pause:
            flow.interrupt("approve", "Approve?", {"approved": bool})
        else:
            flow.set("approve", approved=True)
        flow.intrinsic("rate", "alpha", output="certainty")
        flow.generate("more", max_new_tokens=4, temperature=0.7, output="more")
        flow.edge("ask", "answer").edge("answer", "approve").edge("approve", "rate")
        flow.edge("rate", "more").edge("more", END)
        return flow

    inputs = {"question": "When was Velmora founded?"}
    session = Session(backend)
    paused = build(True).run(session, inputs, seed=4, intrinsic_specs=real)
    calls_before = len(session.history)
    done = paused.resume(approved=True)
    reference = build(False).run(Session(backend), inputs, seed=4, intrinsic_specs=real)
    assert same_within(done.trace.final_state, reference.trace.final_state, tol=1e-6)
    rate = done.trace.steps[3]
    # the whole conversation from the kept cache, but the answer's closing tokens (run with this call)
    assert 0 < rate.context_tokens - rate.reused_tokens <= 3 < rate.reused_tokens
    assert session.history[calls_before].kind == "invoke"  # nothing was prefilled before it
    (record,) = done.trace.resumes
    assert (record.session, record.prefill_tokens) == ("kept", 0)


# ---------------------------------------------------------------------- run directories and the CLI
@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    return write_nested_project(tmp_path_factory.mktemp("approval"))


def reference_run(project: Path, values: dict) -> dict:
    """The approval flow run and resumed in this process (same seed): the expected final state."""
    from alora_flows.app import load_flow_backend
    from alora_flows.core.session import Session

    flow = Flow.from_yaml(project / "approval.yaml")
    backend, real = load_flow_backend(flow, project)
    paused = flow.run(Session(backend), {"question": QUESTION[9:]}, seed=3, intrinsic_specs=real)
    assert paused.interrupt.path == ["approval"] and paused.interrupt.node == "ask_person"
    return paused.resume(values).trace.final_state


def one_line(result) -> str:
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def test_cli_run_waits_and_resume_set_continues(project, tmp_path):
    run_dir = tmp_path / "run"
    result = runner.invoke(
        app,
        [
            "run",
            str(project / "approval.yaml"),
            "--input",
            QUESTION,
            "--seed",
            "3",
            "--run-dir",
            str(run_dir),
        ],
    )
    assert result.exit_code == 0, result.output
    assert "waiting at 'approval/ask_person': Approve this answer?" in result.stderr
    assert f"alora-flows resume {run_dir} --set approved=... --set note=..." in " ".join(
        result.stderr.split()
    )
    partial = json.loads(result.stdout)
    assert set(partial) == {"question", "answer"}

    saved = load_run(run_dir)
    assert saved.manifest.status == "waiting"
    assert saved.manifest.waiting.fields == {"approved": "bool", "note": "str"}
    assert saved.checkpoint.next_node == "approval" and saved.checkpoint.inside[0].next_node == "ask_person"
    assert json.loads((run_dir / "trace.json").read_text())["interrupt"]["node"] == "ask_person"

    missing = runner.invoke(app, ["resume", str(run_dir)])
    assert missing.exit_code == 2 and "is waiting for input at 'ask_person'" in one_line(missing)
    wrong = runner.invoke(app, ["resume", str(run_dir), "--set", "approved=perhaps", "--set", "note=x"])
    assert wrong.exit_code == 2 and "value for 'approved' must be bool" in one_line(wrong)
    typo = runner.invoke(app, ["resume", str(run_dir), "--set", "aproved=true", "--set", "note=x"])
    assert typo.exit_code == 2 and "unknown aproved (did you mean 'approved'?)" in one_line(typo)
    assert load_run(run_dir).manifest.status == "waiting"  # refused before anything ran

    trace_path = tmp_path / "trace.json"
    resumed = runner.invoke(
        app,
        [
            "resume",
            str(run_dir),
            "--set",
            "approved=true",
            "--set",
            "note=fine",
            "--trace-json",
            str(trace_path),
        ],
    )
    assert resumed.exit_code == 0, resumed.output
    final = json.loads(resumed.stdout)
    assert same_within(final, reference_run(project, {"approved": True, "note": "fine"}), tol=1e-6)
    assert final["approved"] is True and final["note"] == "fine"
    trace = json.loads(trace_path.read_text())
    assert [s["node"] for s in trace["steps"]] == ["ask", "answer", "approval", "done"]
    assert [s["node"] for s in trace["steps"][2]["steps"]] == ["rate", "ask_person"]
    # the session was rebuilt with one prefill, recorded once; the next model step reused it all
    (record,) = trace["resumes"]
    assert record["session"] == "rebuilt" and record["node"] == "approval/ask_person"
    assert record["prefill_tokens"] == len(saved.checkpoint.session.token_ids)
    assert trace["steps"][3]["reused_tokens"] == record["prefill_tokens"]
    manifest = load_run(run_dir).manifest
    assert manifest.status == "finished" and manifest.waiting is None
    assert [r.model_dump() for r in manifest.resumes] == trace["resumes"]

    done = runner.invoke(app, ["resume", str(run_dir), "--set", "approved=true"])
    assert done.exit_code == 2 and "not waiting for input" in one_line(done)


def test_run_without_a_run_dir_says_the_pause_cannot_be_continued(project):
    result = runner.invoke(app, ["run", str(project / "approval.yaml"), "--input", QUESTION])
    assert result.exit_code == 0, result.output
    assert "nothing was saved" in result.stderr and "--run-dir" in result.stderr


def test_python_resume_of_a_run_dir_run_records_it_in_the_directory(project, tmp_path):
    from alora_flows.app import load_flow_backend
    from alora_flows.core.session import Session

    flow = Flow.from_yaml(project / "approval.yaml")
    backend, real = load_flow_backend(flow, project)
    run = RunDir.create(
        tmp_path / "run",
        flow_text=(project / "approval.yaml").read_text(),
        flow_file=project / "approval.yaml",
        flow_name=flow.name,
        model=flow.spec.model,
        inputs={"question": QUESTION[9:]},
        reuse=True,
        seed=3,
    )
    paused = run_with_dir(
        run, flow, Session(backend), {"question": QUESTION[9:]}, seed=3, intrinsic_specs=real
    )
    assert load_run(run.path).manifest.status == "waiting"
    events: list = []
    done = paused.resume({"approved": False, "note": "shorter"}, listeners=[events.append])
    assert [s.node for s in done.trace.steps] == ["ask", "answer", "approval", "retry", "again", "done"]
    finished = [(e.path, e.step.node) for e in events if isinstance(e, StepFinished)]
    assert finished == [
        (["approval"], "ask_person"),
        ([], "approval"),
        ([], "retry"),
        ([], "again"),
        ([], "done"),
    ]
    manifest = load_run(run.path).manifest
    assert manifest.status == "finished" and [r.session for r in manifest.resumes] == ["kept"]
    assert (run.path / "lock").read_text() == ""  # it was held while the run went on, then released
    assert same_within(
        done.trace.final_state, reference_run(project, {"approved": False, "note": "shorter"}), tol=1e-6
    )


SERVER = """\
import sys, time
from pathlib import Path
import torch
torch.set_num_threads(1)
from alora_flows.app import load_flow_backend
from alora_flows.core.session import Session
from alora_flows.flow import Flow
from alora_flows.runs.rundir import RunDir, run_with_dir

root, run_dir, marker = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
flow = Flow.from_yaml(root / "approval.yaml")
backend, specs = load_flow_backend(flow, root)
inputs = {"question": "When was Velmora founded?"}
run = RunDir.create(run_dir, flow_text=(root / "approval.yaml").read_text(), flow_file=root / "approval.yaml",
                    flow_name=flow.name, model=flow.spec.model, inputs=inputs, reuse=True, seed=3)
result = run_with_dir(run, flow, Session(backend), inputs, seed=3, intrinsic_specs=specs)
assert result.interrupted
marker.write_text("paused")
time.sleep(600)  # a server holding the live session while it waits for a person
"""


def test_sigkill_while_waiting_then_resume_from_the_run_dir(project, tmp_path):
    run_dir, marker, log = tmp_path / "run", tmp_path / "paused", tmp_path / "server.log"
    env = {
        **os.environ,
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-c", SERVER, str(project), str(run_dir), str(marker)],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "the server never paused"
            time.sleep(0.05)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert load_run(run_dir).manifest.status == "waiting"

    resumed = runner.invoke(app, ["resume", str(run_dir), "--set", "approved=false", "--set", "note=shorter"])
    assert resumed.exit_code == 0, resumed.output
    assert same_within(
        json.loads(resumed.stdout), reference_run(project, {"approved": False, "note": "shorter"}), tol=1e-6
    )
    final = load_run(run_dir)
    assert final.manifest.status == "finished"
    assert [s.node for s in final.checkpoint.trace.steps] == [
        "ask",
        "answer",
        "approval",
        "retry",
        "again",
        "done",
    ]
