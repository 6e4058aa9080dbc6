"""``alora-flows batch --pool thread --batching``: thread workers on one backend whose ready forwards
run as one (``core.batching``) give the results of one worker running the inputs one by one."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alora_flows.batch import batch
from alora_flows.cli import app
from alora_flows.errors import UsageError
from alora_flows.testing import same_within
from tests.tiny_flow import write_tiny_flow

QUESTIONS = [f"When was town {i} founded?" for i in range(6)]


@pytest.fixture(scope="module")
def flow_file(tmp_path_factory) -> Path:
    return write_tiny_flow(tmp_path_factory.mktemp("batching"))


def _inputs(path: Path) -> Path:
    path.write_text(
        "".join(
            json.dumps({"id": f"q{i}", "inputs": {"question": q}}) + "\n" for i, q in enumerate(QUESTIONS)
        )
    )
    return path


def _states(path: Path) -> dict[str, dict]:
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    assert all(r["status"] == "ok" for r in rows), rows
    return {r["id"]: r["final_state"] for r in rows}


def test_batched_thread_workers_give_the_results_of_one_worker(flow_file, tmp_path):
    inputs = _inputs(tmp_path / "in.jsonl")
    one = batch(flow_file, inputs, tmp_path / "one.jsonl")
    many = batch(flow_file, inputs, tmp_path / "many.jsonl", workers=4, pool="thread", batching=True)
    assert one.stats.ok == many.stats.ok == len(QUESTIONS)
    assert "forwards batched" in many.workers and "forwards batched" not in one.workers
    reference, batched = _states(tmp_path / "one.jsonl"), _states(tmp_path / "many.jsonl")
    assert reference.keys() == batched.keys()
    for key in reference:
        assert same_within(reference[key], batched[key]), (key, reference[key], batched[key])


def test_batching_needs_thread_workers(flow_file, tmp_path):
    with pytest.raises(UsageError, match="--pool thread"):
        batch(flow_file, _inputs(tmp_path / "in.jsonl"), tmp_path / "out.jsonl", workers=2, batching=True)


def test_the_batching_option_of_the_command(flow_file, tmp_path):
    inputs, out = _inputs(tmp_path / "in.jsonl"), tmp_path / "out.jsonl"
    args = ["batch", str(flow_file), str(inputs), "--out", str(out), "--workers", "3", "--pool", "thread"]
    result = CliRunner().invoke(app, [*args, "--batching"])
    assert result.exit_code == 0, result.output
    assert f"done: {len(QUESTIONS)} ok, 0 failed on 3 thread worker(s) on one backend, forwards batched" in (
        result.stderr.replace("\n", " ")
    )
