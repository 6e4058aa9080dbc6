"""Ray on a local instance (started on 127.0.0.1, no dashboard) with the tiny model:
``batch --ray`` with 2 actors gives the results of a single local worker, and with one actor
killed mid-run every input is written exactly once (its input reruns on the other actor);
``serve --ray`` answers like a single server process."""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path

import pytest

ray = pytest.importorskip("ray")  # the [ray] extra; CI installs it through [dev]

from typer.testing import CliRunner

from alora_flows.batch import batch
from alora_flows.cli import app
from tests.test_batch import QUESTIONS, KillOneWorker, question_inputs, read_results
from tests.tiny_flow import GATE_ENV, write_tiny_flow

pytestmark = pytest.mark.slow  # starts a Ray instance and three actor processes (~30-60 s on 2 cores)

ROOT = Path(__file__).parents[1]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A local Ray instance on 127.0.0.1 without dashboard. Its workers find this checkout (the
    tests package holds the flow's gate tool), and runs wait at the gate until ``gate`` exists."""
    gate = tmp_path_factory.mktemp("ray") / "gate"
    path = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH", "")) if p)
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=False,
        runtime_env={"env_vars": {"PYTHONPATH": path, GATE_ENV: str(gate), "OMP_NUM_THREADS": "1"}},
    )
    yield gate
    ray.shutdown()


@pytest.fixture(scope="module")
def flow_file(tmp_path_factory) -> Path:
    return write_tiny_flow(tmp_path_factory.mktemp("batch-ray"))


@pytest.fixture(scope="module")
def reference(flow_file, tmp_path_factory) -> dict[str, dict]:
    """Final states from one local worker in this process (the gate is not set here)."""
    tmp = tmp_path_factory.mktemp("reference")
    batch(flow_file, question_inputs(tmp / "in.jsonl"), tmp / "out.jsonl")
    return {r["id"]: r["final_state"] for r in read_results(tmp / "out.jsonl")}


def test_ray_actors_lose_one_and_every_input_is_written_once(cluster, flow_file, reference, tmp_path):
    """Two actors (each loads the flow once). Once both have sent a result, one is SIGKILLed:
    its input reruns on the other actor, a replacement may start, and no id is lost or doubled."""
    killer = KillOneWorker(cluster)  # opens the gate when both actors are ready
    inputs, out = question_inputs(tmp_path / "in.jsonl"), tmp_path / "out.jsonl"
    summary = batch(flow_file, inputs, out, workers=2, ray="local", listeners=[killer])
    assert summary.workers == "2 Ray actor worker(s), 1 torch thread(s) each"
    assert killer.killed is not None and killer.lost == [killer.killed]
    assert summary.stats.lost_workers == 1 and summary.stats.retried == 1
    results = read_results(out)
    assert sorted(r["id"] for r in results) == sorted(reference)  # every input exactly once
    assert {r["id"]: r["final_state"] for r in results} == reference
    assert all(r["status"] == "ok" for r in results)
    assert [r["attempts"] for r in results].count(2) == 1
    pids = {int(r["worker"].rsplit(":", 1)[1]) for r in results}
    assert os.getpid() not in pids and len(pids) >= 2


def test_the_ray_command_line_resumes_like_the_local_one(cluster, flow_file, reference, tmp_path):
    cluster.touch()  # no holding here
    inputs, out = question_inputs(tmp_path / "in.jsonl"), tmp_path / "out.jsonl"
    first = next(iter(reference))
    out.write_text(json.dumps({"id": first, "status": "ok", "final_state": reference[first]}) + "\n")
    args = ["batch", str(flow_file), str(inputs), "--out", str(out), "--workers", "2", "--ray"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert f"{len(reference) - 1} to run (1 already in" in result.stderr
    assert "on 2 Ray actor worker(s)" in result.stderr
    results = read_results(out)
    assert sorted(r["id"] for r in results) == sorted(reference)
    assert {r["id"]: r["final_state"] for r in results} == reference


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_on_ray_replicas_answer_like_one_process(cluster, flow_file, reference):
    """``serve --ray``: one Ray Serve replica behind Serve's proxy on 127.0.0.1 serves the same
    API (key, runs, events) and gives the outputs a local run gives."""
    pytest.importorskip("fastapi")
    httpx = pytest.importorskip("httpx")
    serve = pytest.importorskip("ray.serve")  # ray[serve]; CI installs it through [dev]
    from rich.console import Console

    from alora_flows.batch.worker import WorkerConfig
    from alora_flows.serve.ray_serve import serve_on_ray
    from alora_flows.serve.service import ServeSettings

    cluster.touch()
    settings = ServeSettings(port=free_port(), api_key="k")
    url = f"http://127.0.0.1:{settings.port}"
    config = WorkerConfig.from_file(flow_file)
    serve_on_ray(
        config,
        settings,
        address=None,
        replicas=1,
        cpus_per_replica=1,
        console=Console(stderr=True),
        blocking=False,
    )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "the Ray Serve replica never became ready"
            time.sleep(1)
        body = {"inputs": {"question": QUESTIONS[0]}}
        assert httpx.post(f"{url}/runs", json=body, timeout=60).status_code == 401
        answer = httpx.post(f"{url}/runs", json=body, headers={"Authorization": "Bearer k"}, timeout=60)
        assert answer.status_code == 200 and answer.json()["final_state"] == reference["q0"]
        with httpx.stream(
            "POST", f"{url}/runs/stream", json=body, headers={"Authorization": "Bearer k"}, timeout=60
        ) as response:
            lines = [line for line in response.iter_lines() if line.startswith("event: ")]
        assert lines[0] == "event: accepted" and lines[-1] == "event: run_finished"
    finally:
        serve.shutdown()
