"""``alora-flows serve`` with batching (``ServeSettings.batching``, on by default when concurrency
> 1): concurrent requests over real HTTP get exactly what the same requests get one at a time from
a server without batching, their forwards really were packed, a failing run fails alone, and the
probes answer as before."""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

from alora_flows.batch.worker import FlowWorker, WorkerConfig
from alora_flows.core.batching import BatchedBackend
from alora_flows.serve.service import FlowService, ServeSettings
from alora_flows.testing import same_within
from tests.test_serve import post, serving
from tests.tiny_flow import TOO_LONG, write_tiny_flow

QUESTIONS = [f"Question {i}: when was town {i * 7} founded?" for i in range(6)]


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> WorkerConfig:
    return WorkerConfig.from_file(write_tiny_flow(tmp_path_factory.mktemp("serve-batching")))


@pytest.fixture(scope="module")
def reference(config) -> dict[str, dict]:
    """Each question's response from a server without batching, one request at a time."""
    service = FlowService(config, ServeSettings(concurrency=1, batching=False))
    with serving(service) as url:
        assert not isinstance(service.worker.session_backend, BatchedBackend)
        assert httpx.get(f"{url}/readyz").json()["batching"] is None
        responses = {q: post(url, {"question": q}) for q in QUESTIONS}
    assert all(r.status_code == 200 for r in responses.values())
    return {q: r.json() for q, r in responses.items()}


def steps(response: dict) -> list[tuple]:
    return [
        (s["node"], s["prefill_tokens"], s["reused_tokens"], s["generated_tokens"])
        for s in response["trace"]["steps"]
    ]


def test_concurrent_batched_requests_equal_one_at_a_time_and_a_failing_run_fails_alone(config, reference):
    service = FlowService(
        config, ServeSettings(concurrency=len(QUESTIONS) + 1, queue=8)
    )  # batching by default
    with serving(service) as url:
        assert isinstance(service.worker.session_backend, BatchedBackend)  # the service's own loader

        async def all_at_once() -> list[httpx.Response]:
            async with httpx.AsyncClient(base_url=url, timeout=120) as client:
                bodies = [{"inputs": {"question": q}} for q in [*QUESTIONS[:3], TOO_LONG, *QUESTIONS[3:]]]
                return await asyncio.gather(*(client.post("/runs", json=body) for body in bodies))

        responses = asyncio.run(all_at_once())
        failed = responses.pop(3)  # its run fails at its first model step, among the others' forwards
        assert failed.status_code == 422 and "context is 4096 tokens" in failed.json()["detail"]
        assert [r.status_code for r in responses] == [200] * len(QUESTIONS), responses[0].text[:300]
        for question, response in zip(QUESTIONS, responses):
            got, want = response.json(), reference[question]
            assert got["final_state"]["question"] == question
            assert same_within(got["final_state"], want["final_state"]), (question, got["final_state"])
            assert steps(got) == steps(want)
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 200 and httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        batching = ready.json()["batching"]
        stats = service.batching
    # the scheduler ran the forwards, several requests at once
    assert stats is not None and batching == {
        "forwards": stats.forwards,
        "requests": stats.rows,
        "max_requests": stats.max_rows,
    }
    assert stats.max_rows >= 2 and stats.forwards < stats.rows, stats
    # the server shut down: its scheduler's thread ended with it
    assert service.worker.session_backend._scheduler._closed


def test_the_batching_setting(config, monkeypatch):
    assert ServeSettings().batches  # default concurrency 2
    assert not ServeSettings(concurrency=1).batches
    assert ServeSettings(concurrency=1, batching=True).batches
    assert not ServeSettings(concurrency=8, batching=False).batches
    for settings in (ServeSettings(concurrency=4), ServeSettings(concurrency=4, batching=False)):
        service = FlowService(config, settings, loader=FlowWorker)
        assert service.config.batching is settings.batches and service.batching is None  # not loaded
        service._load()
        assert isinstance(service.worker.session_backend, BatchedBackend) is settings.batches
        assert (service.batching is not None) is settings.batches
        # a model whose attention cannot be packed: its forwards run one by one, and /readyz says so
        monkeypatch.setattr("alora_flows.serve.service.batchable", lambda backend: False)
        assert service.batching is None
        monkeypatch.undo()
        service.close()


def test_the_serve_command_passes_the_batching_option(config, monkeypatch):
    from typer.testing import CliRunner

    import alora_flows.cli.serve as serve_cli
    from alora_flows.cli import app

    seen: list[ServeSettings] = []
    monkeypatch.setattr(serve_cli, "_serve_here", lambda config, settings, console: seen.append(settings))
    for flags, batching in (([], None), (["--batching"], True), (["--no-batching"], False)):
        result = CliRunner().invoke(app, ["serve", config.flow_file, "--concurrency", "4", *flags])
        assert result.exit_code == 0, result.output
        assert seen[-1].batching is batching and seen[-1].batches is (batching is not False)


def test_serve_batching_benchmark_smoke(tmp_path):
    """benchmarks/serve_batching.py end to end on the tiny flow (two servers, one repeat)."""
    import json
    import subprocess
    import sys
    from pathlib import Path

    flow = write_tiny_flow(tmp_path / "flow")
    script = Path(__file__).parents[1] / "benchmarks" / "serve_batching.py"
    args = ["--requests", "3", "--repeats", "1", "--lone", "1", "--flow", str(flow), "--out", str(tmp_path)]
    proc = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    data = json.loads((tmp_path / "serve_batching.json").read_text())
    assert data["same_outputs"] and data["torch_threads"] == 1
    (pair,) = data["pairs"]
    assert pair["ratio"] > 0 and pair["requests_per_forward"] >= 1
    assert [r["batching"] for r in data["rounds"]] == [True, False]
    assert "| 0 | on, off |" in (tmp_path / "serve_batching.md").read_text()
