"""Nothing lost: run directories, Ctrl-C, a real SIGKILL mid-run, and resume to the same result.

The flow (tests.test_reliability_support.RESUMABLE_YAML) has 8 steps on the tiny on-disk model:
message, greedy generate, intrinsic, a tool where the run is interrupted or killed, message,
*sampled* generate (seeded: resume must reproduce the sample), two intrinsics and a branch.
"""

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
from alora_flows.errors import RunDirError
from alora_flows.runs.rundir import Checkpoint, RunDir, RunManifest, load_run, restore_state
from alora_flows.testing import same_within
from tests.test_reliability_support import ARMED, GATE_ENV, NODES, RESUMABLE_YAML, write_tiny_project

REPO = Path(__file__).resolve().parent.parent
QUESTION = "question=When was Velmora founded?"
runner = CliRunner()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    root = write_tiny_project(tmp_path_factory.mktemp("resumable"))
    (root / "flow.yaml").write_text(RESUMABLE_YAML)
    return root


def cli_run(project: Path, *args: str):
    return runner.invoke(app, ["run", str(project / "flow.yaml"), "--input", QUESTION, "--seed", "3", *args])


@pytest.fixture(scope="module")
def reference(project) -> dict[bool, dict]:
    """Final states of uninterrupted runs (no run directory), with and without cache reuse."""
    out = {}
    for reuse in (True, False):
        result = cli_run(project, *([] if reuse else ["--no-reuse"]))
        assert result.exit_code == 0, result.output
        out[reuse] = json.loads(result.stdout)
    return out


def one_line(result) -> str:
    lines = [
        line for line in result.stderr.splitlines() if line.strip() and not line.startswith("Loading weights")
    ]
    errors = [line for line in lines if line.startswith("error:")]
    assert len(errors) == 1 and "Traceback" not in result.output, result.output
    return errors[0]


def test_run_dir_holds_flow_inputs_states_trace_and_session(project, reference, tmp_path):
    run_dir = tmp_path / "run"
    result = cli_run(project, "--run-dir", str(run_dir))
    assert result.exit_code == 0, result.output
    state = json.loads(result.stdout)
    assert same_within(state, reference[True], tol=1e-6)

    manifest = RunManifest.model_validate_json((run_dir / "manifest.json").read_text())
    assert manifest.status == "finished" and manifest.inputs == {"question": QUESTION[9:]}
    assert manifest.seed == 3 and manifest.reuse and manifest.flow_file.endswith("flow.yaml")
    assert (run_dir / "flow.yaml").read_text() == RESUMABLE_YAML
    steps = sorted(p.name for p in (run_dir / "steps").iterdir())
    assert steps == [f"{i:04d}-{node}.json" for i, node in enumerate(NODES)]
    after_rate = json.loads((run_dir / "steps" / "0002-rate.json").read_text())
    assert set(after_rate["state"]) == {"question", "answer", "certainty"}
    checkpoint = Checkpoint.model_validate_json((run_dir / "checkpoint.json").read_text())
    assert checkpoint.next_node == "END" and checkpoint.steps_done == len(NODES)
    assert checkpoint.state == state and checkpoint.unsaved == []
    assert [m["role"] for m in checkpoint.session.messages] == ["user", "assistant", "user", "assistant"]
    assert len(checkpoint.session.token_ids) > 50
    assert json.loads((run_dir / "result.json").read_text()) == state
    assert [s["node"] for s in json.loads((run_dir / "trace.json").read_text())["steps"]] == NODES
    assert [p.name for p in run_dir.iterdir() if p.name.startswith(".")] == []
    assert (run_dir / "lock").read_text() == ""  # released


@pytest.mark.parametrize("reuse", [True, False], ids=["reuse", "no-reuse"])
def test_ctrl_c_exits_130_with_a_resume_hint_and_resume_finishes_the_same(
    project, reference, tmp_path, reuse
):
    run_dir = tmp_path / "run"
    mode = [] if reuse else ["--no-reuse"]
    ARMED["interrupt"] = True  # the 'wait' tool raises KeyboardInterrupt, as Ctrl-C would
    try:
        result = cli_run(project, "--run-dir", str(run_dir), *mode)
    finally:
        ARMED["interrupt"] = False
    assert result.exit_code == 130
    line = one_line(result)
    assert "interrupted after 3 finished steps" in line
    assert f"alora-flows resume {run_dir}" in line
    saved = load_run(run_dir)
    assert saved.manifest.status == "interrupted"
    assert saved.checkpoint.steps_done == 3 and saved.checkpoint.next_node == "wait"

    trace_path = tmp_path / "trace.json"
    resumed = runner.invoke(app, ["resume", str(run_dir), "--trace-json", str(trace_path)])
    assert resumed.exit_code == 0, resumed.output
    assert "resuming" in resumed.stderr and "at 'wait'" in resumed.stderr
    assert same_within(json.loads(resumed.stdout), reference[reuse], tol=1e-6)
    trace = json.loads(trace_path.read_text())
    assert [s["node"] for s in trace["steps"]] == NODES and trace["reuse"] is reuse
    manifest = load_run(run_dir).manifest
    assert manifest.status == "finished" and manifest.resumes[0].at_step == 3
    # rebuilding the session prefilled the conversation once (reuse mode only)
    assert (manifest.resumes[0].prefill_tokens > 0) is reuse

    again = runner.invoke(app, ["resume", str(run_dir)])  # finished: no model, same state
    assert again.exit_code == 0 and "already finished" in again.stderr
    assert json.loads(again.stdout) == json.loads(resumed.stdout)


def test_interrupt_without_run_dir_says_how_to_make_runs_resumable(project):
    ARMED["interrupt"] = True
    try:
        result = cli_run(project)
    finally:
        ARMED["interrupt"] = False
    assert result.exit_code == 130
    assert "--run-dir" in one_line(result) and "nothing was saved" in one_line(result)


def _wait_for(predicate, proc: subprocess.Popen, log: Path, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if proc.poll() is not None:
            pytest.fail(f"the run ended early (rc={proc.returncode}): {log.read_text()[-2000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"timed out waiting for the run: {log.read_text()[-2000:]}")
        time.sleep(0.05)


def _steps_done(run_dir: Path) -> int:
    try:
        return Checkpoint.model_validate_json((run_dir / "checkpoint.json").read_bytes()).steps_done
    except (OSError, ValueError):
        return 0


def _start_run(project: Path, tmp_path: Path) -> tuple[subprocess.Popen, Path, Path, Path]:
    """``alora-flows run --run-dir`` in a subprocess; it blocks in the 'wait' step (4th)."""
    run_dir, gate, log = tmp_path / "run", tmp_path / "gate", tmp_path / "run.log"
    env = {
        **os.environ,
        GATE_ENV: str(gate),
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    # A terminal's Ctrl-C reaches a process whose SIGINT is not ignored. The test suite itself
    # may run as a background job of a non-interactive shell (`pytest &` in a script), whose
    # children inherit SIGINT ignored, and Python keeps it so: restore what a terminal gives.
    code = (
        "import signal, sys, torch; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "torch.set_num_threads(1); from alora_flows.cli import main; "
        "sys.argv[0] = 'alora-flows'; main()"
    )
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-c",
                code,
                "run",
                str(project / "flow.yaml"),
                "--input",
                QUESTION,
                "--seed",
                "3",
                "--run-dir",
                str(run_dir),
            ],
            env=env,
            cwd=tmp_path,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        _wait_for(lambda: _steps_done(run_dir) >= 3 and Path(f"{gate}.waiting").exists(), proc, log)
    except BaseException:
        proc.kill()
        proc.wait(timeout=30)
        raise
    return proc, run_dir, gate, log


def test_sigkill_mid_run_then_resume_matches_an_uninterrupted_run(project, reference, tmp_path):
    proc, run_dir, gate, _ = _start_run(project, tmp_path)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL

    # the directory is consistent: a complete checkpoint at a step boundary, no partial files
    saved = load_run(run_dir)
    assert saved.manifest.status == "running"  # it never got to say otherwise
    assert saved.checkpoint.steps_done == 3 and saved.checkpoint.next_node == "wait"
    assert not [p for p in run_dir.rglob(".*.tmp")]
    assert (run_dir / "lock").read_text().startswith("process ")  # its owner died holding it

    gate.touch()
    resumed = runner.invoke(app, ["resume", str(run_dir)])
    assert resumed.exit_code == 0, resumed.output
    assert same_within(json.loads(resumed.stdout), reference[True], tol=1e-6)
    final = load_run(run_dir)
    assert final.manifest.status == "finished"
    assert [s.node for s in final.checkpoint.trace.steps] == NODES


def test_a_real_sigint_exits_130_and_says_how_to_resume(project, tmp_path):
    proc, run_dir, _, log = _start_run(project, tmp_path)
    proc.send_signal(signal.SIGINT)
    try:
        assert proc.wait(timeout=60) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=30)
    output = log.read_text()
    assert "Traceback" not in output
    assert f"interrupted after 3 finished steps; everything up to there is saved in {run_dir}" in " ".join(
        output.split()
    )
    assert load_run(run_dir).manifest.status == "interrupted"


def test_model_load_failure_leaves_a_resumable_run(project, reference, tmp_path):
    """Nothing lost even before the first step: fix the cause, then resume from START."""
    broken = tmp_path / "proj"
    broken.mkdir()
    (broken / "flow.yaml").write_text(RESUMABLE_YAML)
    (broken / "adapters").symlink_to(project / "adapters")
    run_dir = tmp_path / "run"
    result = runner.invoke(
        app, ["run", str(broken / "flow.yaml"), "--input", QUESTION, "--seed", "3", "--run-dir", str(run_dir)]
    )
    assert result.exit_code == 1 and "model 'tiny'" in one_line(result)
    saved = load_run(run_dir)
    assert saved.manifest.status == "failed" and saved.checkpoint is None
    (broken / "tiny").symlink_to(project / "tiny")
    resumed = runner.invoke(app, ["resume", str(run_dir)])
    assert resumed.exit_code == 0, resumed.output
    assert same_within(json.loads(resumed.stdout), reference[True], tol=1e-6)


def test_run_dir_must_be_new(project, tmp_path):
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    result = cli_run(project, "--run-dir", str(tmp_path / "used"))
    assert result.exit_code == 2
    assert "not empty" in one_line(result) and "alora-flows resume" in one_line(result)


def test_resume_errors_are_one_line(project, tmp_path):
    result = runner.invoke(app, ["resume", str(tmp_path / "nothing")])
    assert result.exit_code == 2 and "not a run directory" in one_line(result)

    run_dir = tmp_path / "run"
    assert cli_run(project, "--run-dir", str(run_dir)).exit_code == 0
    checkpoint = run_dir / "checkpoint.json"
    checkpoint.write_text(checkpoint.read_text()[:200])  # what a non-atomic writer could leave
    result = runner.invoke(app, ["resume", str(run_dir)])
    assert result.exit_code == 2 and "corrupt" in one_line(result)


def test_a_live_owner_blocks_a_second_resume(project, tmp_path):
    import fcntl

    run_dir = tmp_path / "run"
    ARMED["interrupt"] = True
    try:
        assert cli_run(project, "--run-dir", str(run_dir)).exit_code == 130
    finally:
        ARMED["interrupt"] = False
    with open(run_dir / "lock", "r+") as held:  # as a running process holds it
        fcntl.flock(held, fcntl.LOCK_EX | fcntl.LOCK_NB)
        held.write("process 4242")
        held.flush()
        result = runner.invoke(app, ["resume", str(run_dir)])
    assert result.exit_code == 2 and "in use by process 4242" in one_line(result)
    assert runner.invoke(app, ["resume", str(run_dir)]).exit_code == 0  # released: resumes


def test_values_that_are_not_json_are_never_silently_changed(tmp_path):
    """A tool returning an arbitrary object: saved as a preview, and resume refuses to go on."""
    from alora_flows.flow import Flow
    from alora_flows.runs.rundir import run_with_dir
    from tests.test_flow_support import FakeSession

    flow = Flow("objects", inputs=["q"], model="tiny")
    flow.tool("make", "tests.test_reliability_support:make_object", args={"text": "{{ q }}"}, output="thing")
    flow.tool("wait", "tests.test_reliability_support:gate", args={"text": "{{ q }}"}, output="gated")
    flow.edge("make", "wait").edge("wait", "END")
    run = RunDir.create(
        tmp_path / "run",
        flow_text=flow.to_yaml(),
        flow_file=tmp_path / "f.yaml",
        flow_name=flow.name,
        model="tiny",
        inputs={"q": "x"},
        reuse=True,
        seed=None,
        fsync=False,
    )
    ARMED["interrupt"] = True
    try:
        with pytest.raises(KeyboardInterrupt):
            run_with_dir(run, flow, FakeSession(), {"q": "x"})
    finally:
        ARMED["interrupt"] = False
    saved = load_run(run.path)
    assert saved.checkpoint.unsaved == ["thing"]
    assert saved.checkpoint.state["thing"].startswith("<object object")
    with pytest.raises(RunDirError, match="thing.*not JSON data"):
        restore_state(flow.validate(), saved)


def test_a_run_killed_after_its_last_step_is_finished_without_loading_a_model(project, tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    assert cli_run(project, "--run-dir", str(run_dir)).exit_code == 0
    final = json.loads((run_dir / "result.json").read_text())
    # as if killed between the last checkpoint and recording the end
    RunDir(run_dir).update(status="running")
    (run_dir / "result.json").unlink()

    from alora_flows.core.backend import Backend

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(Backend, "load", classmethod(refuse))
    result = runner.invoke(app, ["resume", str(run_dir)])
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == final
    assert json.loads((run_dir / "result.json").read_text()) == final
    assert load_run(run_dir).manifest.status == "finished"


def test_atomic_write_leaves_the_old_file_or_the_new_one(tmp_path, monkeypatch):
    from alora_flows.runs.rundir import atomic_write

    target = tmp_path / "checkpoint.json"
    atomic_write(target, "old")

    def die(*args):
        raise KeyboardInterrupt  # the process is stopped between writing and renaming

    monkeypatch.setattr("alora_flows.runs.rundir.os.replace", die)
    with pytest.raises(KeyboardInterrupt):
        atomic_write(target, "new" * 1000)
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == [target.name]
    monkeypatch.undo()
    with pytest.raises(RunDirError, match="cannot write"):
        atomic_write(tmp_path / "missing" / "x.json", "{}")


def test_python_api_run_dir_and_resume(backend, tmp_path):
    """The Python API of docs/reliability.md, on the in-memory tiny backend."""
    from alora_flows.core.session import Session
    from alora_flows.flow import Flow
    from alora_flows.runs.rundir import resume_run, run_with_dir
    from intrinsics import uncertainty_spec

    flow = Flow("api", inputs=["question"], model="tiny", max_steps=10)
    flow.message("ask", "user", "{{ question }}")
    flow.generate("answer", max_new_tokens=5, temperature=0.7, output="answer")
    flow.tool("wait", "tests.test_reliability_support:gate", args={"text": "{{ answer }}"}, output="gated")
    flow.intrinsic("rate", "alpha", output="certainty")
    flow.edge("ask", "answer").edge("answer", "wait").edge("wait", "rate").edge("rate", "END")
    specs = {"alpha": uncertainty_spec("alpha", "<|im_start|>certainty\n")}
    inputs = {"question": "When was Velmora founded?"}
    reference = flow.run(Session(backend), inputs, seed=0, intrinsic_specs=specs)

    run = RunDir.create(
        tmp_path / "run",
        flow_text=flow.to_yaml(),
        flow_file="flow.yaml",
        flow_name=flow.name,
        model=flow.spec.model,
        inputs=inputs,
        reuse=True,
        seed=0,
    )
    ARMED["interrupt"] = True
    try:
        with pytest.raises(KeyboardInterrupt):
            run_with_dir(run, flow, Session(backend), inputs, seed=0, intrinsic_specs=specs)
    finally:
        ARMED["interrupt"] = False
    assert load_run(run.path).checkpoint.next_node == "wait"
    result = resume_run(run.path, backend, intrinsic_specs=specs)
    assert same_within(result.trace.final_state, reference.trace.final_state, tol=1e-6)
    assert [s.node for s in result.trace.steps] == ["ask", "answer", "wait", "rate"]
