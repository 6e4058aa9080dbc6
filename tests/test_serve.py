"""``alora-flows serve`` on the tiny model, over real HTTP on the loopback interface: concurrent
clients get what sequential ones get, a full queue answers 429, limits and bad requests get a
clear 4xx and the server keeps serving, the API key is enforced, events stream as SSE."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest

pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from alora_flows.batch.worker import FlowWorker, WorkerConfig
from alora_flows.serve.http import create_app
from alora_flows.serve.service import FlowService, ServeSettings
from tests.tiny_flow import GATE_ENV, TOO_LONG, write_tiny_flow

KEY = "test-key-123"
AUTH = {"Authorization": f"Bearer {KEY}"}


@pytest.fixture(scope="module")
def config(tmp_path_factory) -> WorkerConfig:
    return WorkerConfig.from_file(write_tiny_flow(tmp_path_factory.mktemp("serve")))


@pytest.fixture(scope="module")
def worker(config) -> FlowWorker:
    """Loaded once through the application layer and shared by every test server here."""
    return FlowWorker(config)


@contextmanager
def live_server(config: WorkerConfig, worker: FlowWorker, **settings) -> Iterator[str]:
    """A uvicorn server on 127.0.0.1 (a free port) serving the tiny flow; yields its base URL."""
    with serving(FlowService(config, ServeSettings(**settings), loader=lambda _: worker)) as url:
        yield url


@contextmanager
def serving(service: FlowService) -> Iterator[str]:
    """``service``'s app on a uvicorn server on 127.0.0.1 (a free port), once its flow has loaded."""
    app = create_app(service)
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    deadline = time.monotonic() + 30
    while not (server.started and service.ready):
        assert time.monotonic() < deadline and thread.is_alive(), "the test server did not start"
        time.sleep(0.02)
    try:
        yield url
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()


def post(url: str, inputs: dict, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/runs", json={"inputs": inputs}, timeout=60, **kwargs)


def wait_in_progress(url: str, count: int) -> None:
    deadline = time.monotonic() + 30
    while httpx.get(f"{url}/readyz").json()["in_progress"] != count:
        assert time.monotonic() < deadline, f"never {count} runs in progress"
        time.sleep(0.02)


def test_probes_and_openapi_describe_the_flow(config, worker):
    with live_server(config, worker, api_key=KEY) as url:
        assert httpx.get(f"{url}/healthz").json() == {"status": "ok"}
        ready = httpx.get(f"{url}/readyz")
        assert ready.status_code == 200 and ready.json()["flow"] == "tiny-batch"
        spec = httpx.get(f"{url}/openapi.json").json()
        assert {"/runs", "/runs/stream", "/healthz", "/readyz"} <= set(spec["paths"])
        inputs = spec["components"]["schemas"]["TinyBatchInputs"]
        assert inputs["required"] == ["question"] and inputs["additionalProperties"] is False
        assert spec["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_32_concurrent_clients_get_what_sequential_runs_get(config, worker):
    questions = [f"Question {i}: when was town {i * 7} founded?" for i in range(32)]
    with live_server(config, worker, concurrency=4, queue=32) as url:
        sequential = [post(url, {"question": q}) for q in questions]
        assert [r.status_code for r in sequential] == [200] * 32, sequential[0].text[:500]

        async def all_at_once() -> list[httpx.Response]:
            limits = httpx.Limits(max_connections=64)
            async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:
                return await asyncio.gather(
                    *(client.post("/runs", json={"inputs": {"question": q}}) for q in questions)
                )

        concurrent = asyncio.run(all_at_once())
    assert [r.status_code for r in concurrent] == [200] * 32
    for seq, con, question in zip(sequential, concurrent, questions):
        assert con.json()["final_state"] == seq.json()["final_state"]
        assert con.json()["final_state"]["question"] == question
        steps = [(s["node"], s["prefill_tokens"], s["reused_tokens"]) for s in con.json()["trace"]["steps"]]
        assert steps == [
            (s["node"], s["prefill_tokens"], s["reused_tokens"]) for s in seq.json()["trace"]["steps"]
        ]
    assert len({r.json()["run_id"] for r in concurrent}) == 32


def test_a_full_queue_answers_429_and_the_server_recovers(config, worker, tmp_path, monkeypatch):
    gate = tmp_path / "gate"
    monkeypatch.setenv(GATE_ENV, str(gate))  # runs wait in the flow's last step until it exists
    with live_server(config, worker, concurrency=1, queue=1) as url:
        held: list[httpx.Response] = []
        clients = [
            threading.Thread(target=lambda: held.append(post(url, {"question": "held"}))) for _ in range(2)
        ]
        for client in clients:
            client.start()
        wait_in_progress(url, 2)  # one running (in the gate), one queued: full
        busy = post(url, {"question": "one too many"})
        assert busy.status_code == 429 and busy.headers["retry-after"] == "1"
        assert "busy" in busy.json()["detail"]
        gate.touch()
        for client in clients:
            client.join(60)
        assert [r.status_code for r in held] == [200, 200]
        assert post(url, {"question": "after"}).status_code == 200


def test_a_run_past_its_deadline_gets_504_and_frees_its_slot(config, worker, tmp_path, monkeypatch):
    gate = tmp_path / "gate"
    monkeypatch.setenv(GATE_ENV, str(gate))
    with live_server(config, worker, concurrency=1, queue=0, timeout=1.0) as url:
        started = time.monotonic()
        late = post(url, {"question": "slow"})
        assert late.status_code == 504 and "time limit" in late.json()["detail"]
        assert 0.9 < time.monotonic() - started < 10
        assert post(url, {"question": "meanwhile"}).status_code == 429  # its thread still runs
        gate.touch()  # the tool returns; the run stops at its next event and frees the slot
        wait_in_progress(url, 0)
        assert post(url, {"question": "after"}).status_code == 200


def test_bad_requests_get_a_clear_4xx_and_the_server_keeps_serving(config, worker):
    with live_server(config, worker, max_body_bytes=30_000) as url:
        big = json.dumps({"inputs": {"question": "x" * 40_000}}).encode()
        cases = [
            (dict(content=big, headers={"content-type": "application/json"}), 413, "larger than 30000 bytes"),
            (  # no Content-Length: the body is counted as it streams in
                dict(
                    content=iter([big[:20_000], big[20_000:]]), headers={"content-type": "application/json"}
                ),
                413,
                "larger than 30000 bytes",
            ),
            (
                dict(content=b'{"inputs": {"question": ', headers={"content-type": "application/json"}),
                422,
                "JSON decode error",
            ),
            (dict(json={"inputs": {"qestion": "x"}}), 422, "Field required"),
            (dict(json={"inputs": {"question": 5}}), 422, "valid string"),
            (
                dict(json={"inputs": {"question": "x"}, "template": "{{ 7 * 7 }}"}),
                422,
                "Extra inputs are not permitted",
            ),
            (
                dict(json={"inputs": {"question": "x", "tool": "os:system"}}),
                422,
                "Extra inputs are not permitted",
            ),
            (dict(json=["not", "an", "object"]), 422, "valid dictionary"),
            (dict(json={"inputs": {"question": TOO_LONG}}), 422, "context is 4096 tokens"),
        ]
        for kwargs, status, message in cases:
            response = httpx.post(f"{url}/runs", timeout=60, **kwargs)
            assert response.status_code == status, (kwargs.get("json"), response.text[:300])
            assert message in response.text, response.text[:300]
            assert post(url, {"question": "still there?"}).status_code == 200


def test_the_api_key_is_required_on_runs(config, worker):
    with live_server(config, worker, api_key=KEY) as url:
        missing = post(url, {"question": "x"})
        assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
        assert post(url, {"question": "x"}, headers={"Authorization": "Bearer wrong"}).status_code == 401
        stream = httpx.post(f"{url}/runs/stream", json={"inputs": {"question": "x"}})
        assert stream.status_code == 401
        assert post(url, {"question": "x"}, headers=AUTH).status_code == 200
        assert httpx.get(f"{url}/readyz").status_code == 200  # probes need no key


def read_events(response: httpx.Response) -> list[tuple[str, dict]]:
    events, name = [], None
    for line in response.iter_lines():
        if line.startswith("event: "):
            name = line[len("event: ") :]
        elif line.startswith("data: "):
            events.append((name, json.loads(line[len("data: ") :])))
    return events


def test_events_stream_as_server_sent_events(config, worker):
    with live_server(config, worker) as url:
        plain = post(url, {"question": "When was Velmora founded?"}).json()
        with httpx.stream(
            "POST",
            f"{url}/runs/stream",
            json={"inputs": {"question": "When was Velmora founded?"}},
            timeout=60,
        ) as response:
            assert response.status_code == 200
            assert response.headers["content-type"].startswith("text/event-stream")
            events = read_events(response)
    names = [name for name, _ in events]
    assert names[:3] == ["accepted", "run_started", "step_started"] and names[-1] == "run_finished"
    finished = [data["node"] for name, data in events if name == "step_finished"]
    assert finished == ["ask", "answer", "rate", "note", "gate"]
    tokens = "".join(data["text"] for name, data in events if name == "token")
    final = events[-1][1]
    assert tokens == final["final_state"]["answer"] and final["final_state"] == plain["final_state"]

    with live_server(config, worker) as url:  # a failing run ends its stream with an error event
        with httpx.stream("POST", f"{url}/runs/stream", json={"inputs": {"question": TOO_LONG}}) as response:
            events = read_events(response)
    assert events[-1][0] == "error" and events[-1][1]["status"] == 422


def test_serve_command_checks_the_flow_before_listening(tmp_path):
    from typer.testing import CliRunner

    from alora_flows.cli import app
    from alora_flows.cli.serve import is_loopback

    bad = tmp_path / "flow.yaml"
    bad.write_text("name: x\nnodes: {a: {generate: {}}}\nedges: [[a, nowhere]]\n")
    result = CliRunner().invoke(app, ["serve", str(bad), "--port", "1"])
    assert result.exit_code == 2 and "nowhere" in result.stderr and "serving" not in result.stderr
    assert all(is_loopback(h) for h in ("127.0.0.1", "localhost", "::1", "127.0.0.2"))
    assert not any(is_loopback(h) for h in ("0.0.0.0", "::", "192.0.2.1", "example.org"))
