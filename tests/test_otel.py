"""OpenTelemetry export with the SDK's in-memory exporter: a span per run and per step, subflow
steps nested, attributes for kind, adapter, tokens and branch, retries as span events, errors
and pauses on the spans."""

from __future__ import annotations

import pytest

pytest.importorskip("opentelemetry.sdk", reason="the 'otel' extra is not installed")

from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import StatusCode

from alora_flows.errors import FlowRuntimeError
from alora_flows.flow import END, Flow
from alora_flows.flow.otel import OpenTelemetryListener
from tests import test_orchestration_support as support
from tests.test_flow_support import FakeSession, specs


@pytest.fixture()
def exported():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    return exporter, OpenTelemetryListener(provider)


def by_name(exporter) -> dict:
    return {span.name: span for span in exporter.get_finished_spans()}


def nested_flow() -> Flow:
    child = Flow("check", inputs=["answer"])
    child.intrinsic("rate", "uncertainty", output="certainty")
    child.edge("rate", END)
    flow = Flow("main", inputs=["question"])
    flow.message("ask", "user", "{{ question }}")
    flow.generate("answer", output="answer")
    flow.subflow("check", child, inputs={"answer": "{{ answer }}"}, outputs={"certainty": "certainty"})
    flow.set("abstain", answer="I don't know.")
    flow.edge("ask", "answer").edge("answer", "check")
    flow.branch("check", [("certainty.score < 0.4", "abstain")], default=END)
    flow.edge("abstain", END)
    return flow


def test_a_span_per_run_and_step_with_token_and_branch_attributes(exported):
    exporter, listener = exported
    result = nested_flow().run(
        FakeSession(), {"question": "Q"}, intrinsic_specs=specs(0.2), listeners=[listener]
    )
    spans = by_name(exporter)
    assert set(spans) == {"flow main", "step ask", "step answer", "step check", "step rate", "step abstain"}
    run = spans["flow main"]
    assert run.parent is None
    for name in ("step ask", "step answer", "step check", "step abstain"):
        assert spans[name].parent.span_id == run.context.span_id
    assert spans["step rate"].parent.span_id == spans["step check"].context.span_id  # nested
    assert len({span.context.trace_id for span in spans.values()}) == 1

    rate = spans["step rate"].attributes
    step = result.trace.steps[2].steps[0]
    assert rate["alora.node.kind"] == "intrinsic" and rate["alora.adapter"] == "uncertainty"
    assert rate["alora.path"] == "check"
    assert (rate["alora.tokens.prefill"], rate["alora.tokens.reused"], rate["alora.tokens.generated"]) == (
        step.prefill_tokens,
        step.reused_tokens,
        step.generated_tokens,
    )
    check = spans["step check"].attributes
    assert check["alora.node.kind"] == "flow" and check["alora.branch"] == "certainty.score < 0.4"
    assert check["alora.next"] == "abstain"
    totals = result.trace.totals
    assert run.attributes["alora.tokens.reused"] == totals.reused_tokens > 0
    assert run.attributes["alora.steps"] == 4 and run.attributes["alora.flow"] == "main"
    assert all(span.status.status_code == StatusCode.UNSET for span in spans.values())


def test_retries_are_span_events_and_failures_set_error_status(exported):
    exporter, listener = exported
    support.FLAKY.clear()
    support.FAILURES.clear()
    support.FAILURES["k"] = 5
    flow = Flow("fetch", inputs=["key"])
    flow.tool("fetch", support.flaky, args={"key": "{{ key }}"}, retry={"attempts": 2, "backoff": 0.001})
    flow.edge("fetch", END)
    with pytest.raises(FlowRuntimeError):
        flow.run(FakeSession(), {"key": "k"}, listeners=[listener])
    spans = by_name(exporter)
    fetch, run = spans["step fetch"], spans["flow fetch"]
    (event,) = fetch.events
    assert event.name == "retry" and event.attributes["alora.error_type"] == "ConnectionError"
    assert event.attributes["alora.attempt"] == 1 and event.attributes["alora.delay"] == 0.001
    assert fetch.status.status_code == StatusCode.ERROR and run.status.status_code == StatusCode.ERROR
    assert "after 2 attempts" in run.attributes["alora.error"]
    assert run.attributes["alora.error.node"] == "fetch"


def test_a_pause_ends_the_run_span_and_the_resume_starts_another(exported):
    exporter, listener = exported
    flow = Flow("ok", inputs=["q"])
    flow.generate("answer", output="answer")
    flow.interrupt("approve", "Approve?", {"approved": bool})
    flow.edge("answer", "approve").edge("approve", END)
    paused = flow.run(FakeSession(), {"q": "x"}, listeners=[listener])
    first = by_name(exporter)["flow ok"]
    assert (
        first.attributes["alora.interrupted"] is True
        and first.attributes["alora.interrupt.node"] == "approve"
    )
    assert by_name(exporter)["step approve"].attributes["alora.interrupted"] is True
    paused.resume(approved=True)
    runs = [span for span in exporter.get_finished_spans() if span.name == "flow ok"]
    assert len(runs) == 2
    resumed = runs[1]
    assert (
        resumed.attributes["alora.resumed"] is True and resumed.attributes["alora.resume.session"] == "kept"
    )
    steps = [s for s in exporter.get_finished_spans() if s.name == "step approve"]
    assert steps[-1].parent.span_id == resumed.context.span_id


def test_streamed_runs_nest_the_same_way(exported):
    exporter, listener = exported
    list(
        nested_flow().stream(
            FakeSession(), {"question": "Q"}, intrinsic_specs=specs(0.9), listeners=[listener]
        )
    )
    spans = by_name(exporter)
    assert spans["step rate"].parent.span_id == spans["step check"].context.span_id
    assert spans["step check"].parent.span_id == spans["flow main"].context.span_id
