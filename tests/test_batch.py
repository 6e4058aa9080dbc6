"""``alora-flows batch`` on the tiny model: the two files, local workers (threads and processes),
failures recorded, resume of a partial results file, a lost worker's input run again once."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alora_flows.batch import BatchListener, ResultsFile, batch, read_inputs
from alora_flows.batch.records import BatchResult
from alora_flows.cli import app
from alora_flows.errors import BatchFileError, FlowDefinitionError
from tests.tiny_flow import GATE_ENV, TOO_LONG, write_tiny_flow

QUESTIONS = [f"When was town {i} founded?" for i in range(8)]


@pytest.fixture(scope="module")
def flow_file(tmp_path_factory) -> Path:
    return write_tiny_flow(tmp_path_factory.mktemp("batch"))


def write_inputs(path: Path, items: list[dict]) -> Path:
    path.write_text("".join(json.dumps(item) + "\n" for item in items))
    return path


def question_inputs(path: Path) -> Path:
    return write_inputs(path, [{"id": f"q{i}", "inputs": {"question": q}} for i, q in enumerate(QUESTIONS)])


def read_results(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


@pytest.fixture(scope="module")
def reference(flow_file, tmp_path_factory) -> dict[str, dict]:
    """Final states of the questions run one after another by a single worker in this process."""
    tmp = tmp_path_factory.mktemp("reference")
    summary = batch(flow_file, question_inputs(tmp / "in.jsonl"), tmp / "out.jsonl")
    assert summary.stats.ok == len(QUESTIONS) and summary.workers.startswith("1 thread")
    return {r["id"]: r["final_state"] for r in read_results(tmp / "out.jsonl")}


# ---------------------------------------------------------------------- the files
def test_inputs_file_errors_name_the_line(tmp_path):
    cases = {
        '{"id": "a", "inputs": {}}\nnot json\n': ":2: not a JSON object",
        '{"inputs": {"question": "x"}}\n': ':1: every line needs an "id"',
        '{"id": 1, "inputs": {}}\n\n{"id": "1", "inputs": {}}\n': ":3: id '1' is used twice (first on line 1)",
        '{"id": "a", "inputs": "text"}\n': ":1: inputs: Input should be a valid dictionary",
        '{"id": "a", "inputs": {}, "code": "x"}\n': ":1: code: Extra inputs are not permitted",
        '["a"]\n': ':1: expected {"id": ..., "inputs": {...}}',
    }
    for text, message in cases.items():
        path = tmp_path / "in.jsonl"
        path.write_text(text)
        with pytest.raises(BatchFileError) as err:
            read_inputs(path)
        assert str(err.value).startswith(str(path)) and message in str(err.value), str(err.value)
    path.write_text('{"id": 7, "inputs": {"question": "q"}}\n\n{"id": "b"}\n')
    assert [(i.id, i.inputs) for i in read_inputs(path)] == [(7, {"question": "q"}), ("b", {})]


def test_results_file_cuts_a_torn_last_line_and_rejects_a_corrupt_one(tmp_path):
    path = tmp_path / "results.jsonl"
    records = [BatchResult(id=f"r{i}", status="ok", final_state={"i": i}) for i in range(3)]
    with ResultsFile(path) as results:
        for record in records:
            assert results.append(record)
        assert not results.append(records[0])  # an id is written once
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) - 10])  # a crash in the middle of the last line
    results = ResultsFile(path)
    assert sorted(results.load()) == ["r0", "r1"]
    assert path.read_bytes() == whole[: whole.rstrip(b"\n").rindex(b"\n") + 1]  # the torn bytes are gone
    with results:
        results.append(records[2])
    assert ResultsFile(path).load().keys() == {"r0", "r1", "r2"}

    path.write_bytes(whole.rstrip(b"\n"))  # whole record, only its newline missing: kept
    results = ResultsFile(path)
    assert sorted(results.load()) == ["r0", "r1", "r2"]
    with results:
        results.append(BatchResult(id="r3", status="error", error="x"))
    assert [r["id"] for r in read_results(path)] == ["r0", "r1", "r2", "r3"]

    lines = whole.split(b"\n")
    path.write_bytes(b"\n".join([lines[0], b'{"id": "r1", "stat', lines[2], b""]))
    with pytest.raises(BatchFileError, match=r"results.jsonl:2: not a result record"):
        ResultsFile(path).load()


# ---------------------------------------------------------------------- running
def test_failing_inputs_are_recorded_and_the_rest_go_on(flow_file, tmp_path, reference):
    inputs = write_inputs(
        tmp_path / "in.jsonl",
        [
            {"id": "q0", "inputs": {"question": QUESTIONS[0]}},
            {"id": "long", "inputs": {"question": TOO_LONG}},  # fails in its first model step
            {"id": "typo", "inputs": {"qestion": "x"}},  # fails validation against the flow
            {"id": "q1", "inputs": {"question": QUESTIONS[1]}},
        ],
    )
    summary = batch(flow_file, inputs, tmp_path / "out.jsonl", workers=2, pool="thread")
    assert (summary.stats.ok, summary.stats.failed) == (2, 2)
    results = {r["id"]: r for r in read_results(tmp_path / "out.jsonl")}
    assert set(results) == {"q0", "long", "typo", "q1"}
    assert results["long"]["status"] == "error" and "context is 4096 tokens" in results["long"]["error"]
    assert results["long"]["error"].startswith("node 'ask': ") and results["long"]["path"] == []
    assert results["typo"]["status"] == "error" and "needs input(s) question" in results["typo"]["error"]
    for key in ("q0", "q1"):
        assert results[key]["status"] == "ok" and results[key]["error"] is None
        assert results[key]["final_state"] == reference[key]  # two threads, one backend: same outputs
        assert results[key]["path"] == ["ask", "answer", "rate", "note", "gate"]
        assert results[key]["totals"]["reused_tokens"] > 0


def test_rerun_resumes_a_partial_results_file(flow_file, tmp_path, reference):
    inputs, out = question_inputs(tmp_path / "in.jsonl"), tmp_path / "out.jsonl"
    batch(flow_file, inputs, out)
    lines = out.read_bytes().split(b"\n")
    partial = b"\n".join(lines[:3]) + b"\n" + lines[3][:25]  # three results and a torn fourth
    out.write_bytes(partial)
    summary = batch(flow_file, inputs, out, workers=2, pool="thread")
    assert summary.skipped == 3 and summary.stats.ok == len(QUESTIONS) - 3
    results = read_results(out)
    assert out.read_bytes().startswith(b"\n".join(lines[:3]) + b"\n")  # finished lines untouched
    assert sorted(r["id"] for r in results) == sorted(reference)  # every id exactly once
    assert {r["id"]: r["final_state"] for r in results} == reference
    again = batch(flow_file, inputs, out)  # all done: nothing runs, no model loads
    assert again.skipped == len(QUESTIONS) and again.stats.ok == 0 and again.workers == ""


def test_retry_failed_runs_only_the_failed_inputs_again(flow_file, tmp_path):
    inputs = question_inputs(tmp_path / "in.jsonl")
    out = tmp_path / "out.jsonl"
    with ResultsFile(out) as results:
        results.append(BatchResult(id="q2", status="error", error="boom"))
        results.append(BatchResult(id="q5", status="ok", final_state={"kept": True}))
    summary = batch(flow_file, inputs, out, retry_failed=True)
    assert summary.retried_failed == 1 and summary.skipped == 1 and summary.stats.ok == len(QUESTIONS) - 1
    results = {r["id"]: r for r in read_results(out)}
    assert len(results) == len(QUESTIONS) == len(read_results(out))
    assert results["q2"]["status"] == "ok" and results["q5"]["final_state"] == {"kept": True}


class KillOneWorker(BatchListener):
    """Opens the flow's gate once both workers are ready (so both run inputs), then, once both
    have sent a result, SIGKILLs the one that did not send the latest: a crash in mid-batch."""

    def __init__(self, gate: Path) -> None:
        self.gate = gate
        self.ready: list[str] = []
        self.seen: set[str] = set()
        self.killed: str | None = None
        self.lost: list[str] = []

    def on_ready(self, worker: str) -> None:
        self.ready.append(worker)
        if len(self.ready) == 2:
            self.gate.touch()

    def on_result(self, result, written: bool) -> None:
        self.seen.add(result.worker)
        if self.killed is None and len(self.seen) == 2:
            self.killed = next(w for w in self.seen if w != result.worker)
            os.kill(int(self.killed.rsplit(":", 1)[1]), signal.SIGKILL)

    def on_lost(self, worker: str, item) -> None:
        self.lost.append(worker)


@pytest.mark.slow  # starts three worker processes (torch import + model load each): ~30-60 s on 2 cores
def test_two_process_workers_and_a_killed_one(flow_file, tmp_path, reference, monkeypatch):
    """Two worker processes (a model each) give the sequential outputs; one is killed mid-run:
    its input runs on the other worker, and every id is written exactly once."""
    inputs, out = question_inputs(tmp_path / "in.jsonl"), tmp_path / "out.jsonl"
    killer = KillOneWorker(tmp_path / "gate")
    monkeypatch.setenv(GATE_ENV, str(killer.gate))  # the worker processes inherit it
    summary = batch(flow_file, inputs, out, workers=2, pool="process", threads=1, listeners=[killer])
    assert summary.workers == "2 process worker(s), 1 torch thread(s) each"
    assert killer.killed is not None and killer.lost == [killer.killed]
    assert summary.stats.lost_workers == 1 and summary.stats.retried == 1
    results = read_results(out)
    assert sorted(r["id"] for r in results) == sorted(reference)  # every input exactly once
    assert {r["id"]: r["final_state"] for r in results} == reference
    assert all(r["status"] == "ok" for r in results)
    assert [r["attempts"] for r in results].count(2) == 1  # the input the lost worker had
    workers = {r["worker"] for r in results}
    assert workers == set(killer.ready) and f"{socket.gethostname()}:{os.getpid()}" not in workers


def test_a_flow_that_does_not_load_stops_the_batch_with_its_error(tmp_path):
    flow = tmp_path / "flow.yaml"
    flow.write_text(
        "name: x\nmodel: ./no-such-model\ninputs: [question]\nnodes: {a: {generate: {}}}\nedges: [[a, END]]\n"
    )
    inputs = question_inputs(tmp_path / "in.jsonl")
    result = CliRunner().invoke(app, ["batch", str(flow), str(inputs), "--out", str(tmp_path / "o.jsonl")])
    assert result.exit_code == 1 and "no-such-model" in result.stderr, result.output
    assert not (tmp_path / "o.jsonl").exists() or (tmp_path / "o.jsonl").read_text() == ""
    flow.write_text("name: x\nnodes: {a: {generate: {}}}\nedges: [[a, b]]\n")
    with pytest.raises(FlowDefinitionError):
        batch(flow, inputs, tmp_path / "o.jsonl")


# ---------------------------------------------------------------------- the documented commands
DOCS = Path(__file__).parents[1] / "docs" / "scale.md"


def doc_commands() -> list[str]:
    """The local ``alora-flows batch`` commands of docs/scale.md (the Ray ones are in test_batch_ray)."""
    lines = re.findall(r"^alora-flows batch .*$", DOCS.read_text(), flags=re.M)
    return [line.strip() for line in lines if "--ray" not in line]


def doc_inputs() -> list[dict]:
    block = re.search(r"```jsonl?\n(\{\"id\".*?)```", DOCS.read_text(), flags=re.S)
    assert block, "docs/scale.md lost its INPUTS.jsonl example"
    return [json.loads(line) for line in block.group(1).splitlines() if line.strip()]


def test_the_docs_show_local_batch_commands():
    commands = doc_commands()
    assert len(commands) >= 2 and any("--workers" in c for c in commands)


@pytest.mark.parametrize(
    "command",
    [
        pytest.param(c, marks=[pytest.mark.slow] if "--workers" in c else [])  # worker processes
        for c in doc_commands()
    ],
)
def test_documented_batch_command_runs_and_resumes(command, flow_file, monkeypatch):
    """The command as printed in docs/scale.md, in a directory holding a flow.yaml (the tiny one)
    and the documented questions.jsonl; then again, which finds everything done."""
    items = doc_inputs()
    monkeypatch.chdir(flow_file.parent)
    args = command.split()[1:]
    write_inputs(Path(args[2]), items)
    out = Path(args[args.index("--out") + 1])
    out.unlink(missing_ok=True)
    runner = CliRunner()
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"done: {len(items)} ok, 0 failed" in result.stderr
    assert sorted(r["id"] for r in read_results(out)) == sorted(i["id"] for i in items)
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and f"0 to run ({len(items)} already in" in again.stderr
