"""Retry policies and error routes on tool and generate steps: attempts, backoff (tiny in tests),
which errors, each attempt in the trace and the events, exhausted retries routed to on_error."""

from __future__ import annotations

import random

import pytest

from alora_flows.core.session import Session
from alora_flows.errors import FlowDefinitionError, FlowRuntimeError
from alora_flows.flow import END, BranchTaken, Flow, RetryPolicy, StepRetried
from tests import test_orchestration_support as support
from tests.test_flow_support import FakeSession


@pytest.fixture(autouse=True)
def fresh_counters():
    support.FLAKY.clear()
    support.FAILURES.clear()
    yield


def fetch_flow(retry=None, **errors) -> Flow:
    flow = Flow("fetching", inputs=["key"])
    flow.tool("fetch", support.flaky, args={"key": "{{ key }}"}, output="data", retry=retry, **errors)
    flow.edge("fetch", END)
    if errors.get("on_error"):
        flow.set(
            "apologise", data="unavailable: {{ problem }}" if errors.get("error_output") else "unavailable"
        )
        flow.edge("apologise", END)
    return flow


def test_a_flaky_tool_succeeds_on_its_third_try_and_the_trace_shows_each():
    support.FAILURES["a"] = 2
    events: list = []
    policy = {"attempts": 3, "backoff": 0.001, "multiplier": 3, "on": ["connection"]}
    result = fetch_flow(policy).run(FakeSession(), {"key": "a"}, listeners=[events.append])
    assert result["data"] == "result for a" and support.FLAKY["a"] == 3
    attempts = result.trace.steps[0].attempts
    assert [(a.number, a.error_type, a.delay) for a in attempts] == [
        (1, "ConnectionError", 0.001),
        (2, "ConnectionError", 0.003),
        (3, None, 0.0),
    ]
    assert (
        attempts[0].error
        == "tool tests.test_orchestration_support:flaky raised ConnectionError: service unavailable (call 1)"
    )
    retried = [e.attempt.number for e in events if isinstance(e, StepRetried)]
    assert retried == [1, 2]
    assert result.trace.to_json().count('"number"') == 3


def test_errors_the_policy_does_not_name_fail_at_once():
    flow = Flow("strict", inputs=["key"])
    flow.tool(
        "fetch", support.bad_value, args={"key": "{{ key }}"}, retry={"attempts": 5, "on": ["TimeoutError"]}
    )
    flow.edge("fetch", END)
    with pytest.raises(FlowRuntimeError, match="raised ValueError") as caught:
        flow.run(FakeSession(), {"key": "a"})
    assert "attempts" not in str(caught.value) and caught.value.node == "fetch"


def test_exhausted_retries_fail_as_before_when_there_is_no_error_route():
    support.FAILURES["a"] = 10
    with pytest.raises(FlowRuntimeError, match=r"service unavailable \(call 3\) \(after 3 attempts\)"):
        fetch_flow(3).run(FakeSession(), {"key": "a"})
    assert support.FLAKY["a"] == 3


def test_exhausted_retries_route_to_on_error_with_the_message():
    support.FAILURES["a"] = 10
    events: list = []
    flow = fetch_flow(2, on_error="apologise", error_output="problem")
    result = flow.run(FakeSession(), {"key": "a"}, listeners=[events.append])
    assert [s.node for s in result.trace.steps] == ["fetch", "apologise"]
    fetch = result.trace.steps[0]
    assert (fetch.next, fetch.branch, len(fetch.attempts)) == ("apologise", "on_error", 2)
    assert (
        fetch.error
        == "tool tests.test_orchestration_support:flaky raised ConnectionError: service unavailable (call 2)"
    )
    assert result["data"] == f"unavailable: {fetch.error}"
    assert any(isinstance(e, BranchTaken) and e.branch == "on_error" for e in events)
    # without a policy, on_error alone routes the first failure
    support.FLAKY.clear()
    result = fetch_flow(on_error="apologise").run(FakeSession(), {"key": "a"})
    assert result["data"] == "unavailable" and support.FLAKY["a"] == 1
    assert result.trace.steps[0].attempts is None and result.trace.steps[0].error


def test_ctrl_c_is_never_retried_nor_routed():
    flow = Flow("stop", inputs=["key"])
    flow.tool("fetch", support.interrupted, args={"key": "{{ key }}"}, retry=5, on_error="after")
    flow.set("after", data="x")
    flow.edge("fetch", END).edge("after", END)
    with pytest.raises(KeyboardInterrupt):
        flow.run(FakeSession(), {"key": "a"})


def test_backoff_grows_caps_and_jitters():
    policy = RetryPolicy(attempts=6, backoff=0.5, multiplier=2, max_backoff=3)
    assert [policy.delay(n) for n in range(1, 6)] == [0.5, 1.0, 2.0, 3.0, 3.0]
    jittered = RetryPolicy(backoff=1.0, multiplier=2, jitter=True)
    rng = random.Random(0)
    delays = [jittered.delay(3, rng) for _ in range(200)]
    assert all(0.0 <= d <= 4.0 for d in delays) and len(set(delays)) > 150
    assert RetryPolicy.model_validate(4).attempts == 4


def test_yaml_retry_options_validate_and_round_trip():
    text = """\
name: y
inputs: [key]
nodes:
  fetch:
    tool: "tests.test_orchestration_support:flaky"
    args: {key: "{{ key }}"}
    output: data
    retry: {attempts: 4, backoff: 0.001, jitter: true, on: [timeout, ConnectionError]}
    on_error: fallback
    error_output: why
  fallback: {set: {data: "none ({{ why }})"}}
edges: [[fetch, END], [fallback, END]]
"""
    flow = Flow.from_yaml_text(text, file="y.yaml")
    flow.validate()  # 'fallback' is reached only through on_error: not unreachable
    assert Flow.from_yaml_text(flow.to_yaml()) == flow
    support.FAILURES["k"] = 1
    assert flow.run(FakeSession(), {"key": "k"})["data"] == "result for k"
    assert 'n_fetch -->|"on_error"| n_fallback' in flow.to_mermaid()


BAD_RETRY = """\
name: y
inputs: [key]
nodes:
  fetch:
    tool: "tests.test_orchestration_support:flaky"
    args: {key: "{{ key }}"}
    retry: {attempts: 4}
    on_error: fallback
  fallback: {set: {data: x}}
edges: [[fetch, END], [fallback, END]]
"""


@pytest.mark.parametrize(
    "old, new, message, line",
    [
        ("on_error: fallback", "on_error: fallbak", "on_error leads to unknown node 'fallbak'", 8),
        ("retry: {attempts: 4}", "retry: {on: [not-a-name]}", "'not-a-name' is neither an exception", 7),
        ("retry: {attempts: 4}", "retry: {attempts: 0}", "greater than or equal to 1", 7),
    ],
)
def test_bad_retry_options_name_their_line(old, new, message, line):
    with pytest.raises(FlowDefinitionError) as caught:
        Flow.from_yaml_text(BAD_RETRY.replace(old, new), file="y.yaml").validate()
    assert message in str(caught.value) and caught.value.line == line and caught.value.node == "fetch"


def test_error_output_needs_on_error():
    flow = Flow("x", inputs=["key"])
    flow.tool("fetch", support.flaky, args={"key": "{{ key }}"}, error_output="why")
    flow.edge("fetch", END)
    with pytest.raises(FlowDefinitionError, match="error_output needs on_error"):
        flow.validate()


class FailingOnce(Session):
    """A real session whose first generate call fails after its turn was appended (a GPU OOM)."""

    failures = 1

    def generate(self, *args, **kwargs):
        if self.failures:
            self.failures -= 1
            raise RuntimeError("CUDA out of memory (simulated)")
        return super().generate(*args, **kwargs)


def test_a_retried_generate_starts_from_the_conversation_before_it(backend):
    def build(retry) -> Flow:
        flow = Flow("gen", inputs=["question"])
        flow.generate("answer", user="{{ question }}", max_new_tokens=6, output="answer", retry=retry)
        flow.generate("more", user="And then?", max_new_tokens=4, output="more")
        flow.edge("answer", "more").edge("more", END)
        return flow

    inputs = {"question": "When was Velmora founded?"}
    session = FailingOnce(backend)
    result = build({"attempts": 2, "on": ["RuntimeError"]}).run(session, inputs)
    reference = build(None).run(Session(backend), inputs)
    assert result.trace.final_state == reference.trace.final_state
    assert [m["role"] for m in session.messages] == ["user", "assistant", "user", "assistant"]
    (failed, ok) = result.trace.steps[0].attempts
    assert failed.error == "RuntimeError: CUDA out of memory (simulated)" and ok.error is None
    # the second step reused the whole conversation: the failed try left nothing behind
    more = result.trace.steps[1]
    assert more.reused_tokens == reference.trace.steps[1].reused_tokens
    assert 0 < more.context_tokens - more.reused_tokens <= 3  # only the answer's closing tokens
    with pytest.raises(RuntimeError, match="out of memory"):  # not an engine error: raised as is
        build(None).run(FailingOnce(backend), inputs)
