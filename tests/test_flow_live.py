"""The rich live view: step rows, streamed tokens, and an honest savings summary."""

import io

import pytest
from rich.console import Console

from alora_flows.errors import FlowRuntimeError
from alora_flows.flow import Flow
from alora_flows.flow.live import LiveView, short, summary
from tests.test_flow_support import RAG_YAML, FakeSession, specs


def render(renderable) -> str:
    console = Console(file=io.StringIO(), width=160, color_system=None)
    console.print(renderable)
    return console.file.getvalue()


def run_with_view(session: FakeSession, baseline=None, fail: bool = False, prefill_cost=None):
    console = Console(file=io.StringIO(), width=160, color_system=None)
    flow = Flow.from_yaml_text(RAG_YAML)
    if fail:
        flow.spec.max_steps = 2
    view = LiveView(console, baseline=baseline, prefill_cost=prefill_cost)
    with view:
        result = flow.run(session, {"question": "Who?"}, intrinsic_specs=specs(0.2), listeners=[view])
    return result, console.file.getvalue(), view


def test_view_shows_steps_and_estimated_savings():
    result, out, view = run_with_view(FakeSession(), prefill_cost=lambda: 0.002)
    for node in ("rewrite", "retrieve", "answer", "certainty", "abstain"):
        assert node in out
    assert "intrinsic uncertainty" in out and "score=0.2" in out
    assert "certainty.score < 0.4" in out  # the branch taken
    reused = result.trace.totals.reused_tokens
    assert f"re-prefilling {reused} of" in out
    assert f"time saved ≈ {reused * 0.002:.2g}s (estimated: 2 ms per prefilled token" in out
    assert "measured" not in out
    assert [s.node for s in view.steps] == [s.node for s in result.trace.steps]


def test_no_time_estimate_without_a_timed_prefill_cost():
    _, out, _ = run_with_view(FakeSession())
    assert "re-prefilling" in out and "estimated" not in out and "time saved" not in out


def test_measured_savings_with_a_no_reuse_baseline():
    baseline, _, _ = run_with_view(FakeSession(reuse=False))
    result, out, _ = run_with_view(FakeSession(), baseline=baseline.trace)
    saved = baseline.trace.totals.prefill_tokens - result.trace.totals.prefill_tokens
    assert saved > 0
    assert f"measured): {saved} prefill tokens" in out and "estimated" not in out


def test_no_reuse_summary_and_failure_summary():
    result, _, _ = run_with_view(FakeSession(reuse=False))
    assert "reuse was off" in render(summary(result.trace))
    with pytest.raises(FlowRuntimeError):
        run_with_view(FakeSession(), fail=True)


def test_streamed_tokens_are_shown_while_generating():
    view = LiveView(Console(file=io.StringIO(), width=120, color_system=None))
    flow = Flow.from_yaml_text(RAG_YAML)
    seen = []

    def spy(event):
        view(event)
        if view.current is not None and view.current.node == "answer" and view.streamed:
            seen.append(render(view._render()))

    flow.run(
        FakeSession(answers=["streaming words here"]),
        {"question": "Who?"},
        intrinsic_specs=specs(0.9),
        listeners=[spy],
    )
    assert seen and "running answer (generate)" in seen[-1] and "streaming words here" in seen[-1]


def test_short_previews():
    assert short({"score": 0.123456, "digit": 1}) == "score=0.123 digit=1"
    assert short("a\nb  c") == "a b c"
    assert short("x" * 100, 10) == "x" * 9 + "…"
