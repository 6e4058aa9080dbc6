"""The typed event stream and async runs: events in order, lockstep with the reader, failures
raised after ``RunFailed``, an early stop that stops the run, and an event loop that keeps
serving other coroutines while a slow step runs."""

from __future__ import annotations

import asyncio
import threading

import pytest

from alora_flows.errors import FlowInputError, FlowRuntimeError
from alora_flows.flow import (
    END,
    BranchTaken,
    Flow,
    Interrupted,
    RunFailed,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    TokenStreamed,
)
from tests import test_orchestration_support as support
from tests.test_flow_support import FakeSession, specs


def counting_flow(limit: int = 3) -> Flow:
    flow = Flow("count", inputs={"n": int}, max_steps=20)
    flow.tool("tick", support.count_call, args={"label": "tick {{ n }}"}, output="last")
    flow.set("inc", n="{{ n + 1 }}")
    flow.edge("tick", "inc")
    flow.branch("inc", [(f"n < {limit}", "tick")], default=END)
    return flow


def rag_flow() -> Flow:
    flow = Flow("rag", inputs=["question"])
    flow.message("ask", "user", "{{ question }}")
    flow.generate("answer", output="answer")
    flow.intrinsic("certainty", "uncertainty", output="certainty")
    flow.set("abstain", answer="I don't know.")
    flow.edge("ask", "answer").edge("answer", "certainty")
    flow.branch("certainty", [("certainty.score < 0.4", "abstain")], default=END)
    flow.edge("abstain", END)
    return flow


def run_threads() -> list[threading.Thread]:
    """Worker threads of event streams still alive."""
    return [t for t in threading.enumerate() if t.name == "alora-flows-run" and t.is_alive()]


def kinds(events) -> list[str]:
    return [type(e).__name__ for e in events]


def test_stream_yields_typed_events_in_order():
    stream = rag_flow().stream(
        FakeSession(answers=["so it is"]), {"question": "Q"}, intrinsic_specs=specs(0.2)
    )
    events = list(stream)
    assert kinds(events) == [
        "RunStarted",
        "StepStarted",
        "StepFinished",
        "StepStarted",
        "TokenStreamed",
        "TokenStreamed",
        "TokenStreamed",
        "StepFinished",
        "StepStarted",
        "BranchTaken",
        "StepFinished",
        "StepStarted",
        "StepFinished",
        "RunFinished",
    ]
    assert "".join(e.text for e in events if isinstance(e, TokenStreamed)) == "so it is "
    branch = next(e for e in events if isinstance(e, BranchTaken))
    assert (branch.node, branch.to, branch.branch) == ("certainty", "abstain", "certainty.score < 0.4")
    assert isinstance(events[0], RunStarted) and isinstance(events[-1], RunFinished)
    assert stream.result.state.answer == "I don't know."
    assert all(e.model_dump(exclude={"state", "trace"}) is not None for e in events)  # pydantic events
    with pytest.raises(FlowRuntimeError, match="read once"):
        list(stream)


def test_each_event_shows_the_run_as_it_was_then():
    seen = [
        (e.step.node, e.state.n)
        for e in counting_flow().stream(FakeSession(), {"n": 0})
        if isinstance(e, StepFinished)
    ]
    assert seen == [("tick", 0), ("inc", 1), ("tick", 1), ("inc", 2), ("tick", 2), ("inc", 3)]


def test_stopping_early_stops_the_run():
    support.CALLS.clear()
    session = FakeSession()
    for event in counting_flow(limit=10).stream(session, {"n": 0}):
        if isinstance(event, StepFinished) and event.step.node == "inc":
            break
    assert support.CALLS == ["tick 0"]  # the worker stopped at its next event
    assert not run_threads()


def test_bad_inputs_fail_when_the_stream_is_made():
    with pytest.raises(FlowInputError, match="needs input"):
        rag_flow().stream(FakeSession(), {})


def test_a_failing_run_yields_run_failed_then_raises():
    flow = Flow("boom", inputs=["key"])
    flow.tool("fetch", support.bad_value, args={"key": "{{ key }}"})
    flow.edge("fetch", END)
    events = []
    with pytest.raises(FlowRuntimeError, match="cannot handle 'x'"):
        for event in flow.stream(FakeSession(), {"key": "x"}):
            events.append(event)
    assert kinds(events) == ["RunStarted", "StepStarted", "RunFailed"]
    assert events[-1].node == "fetch"


def test_an_interrupt_ends_the_stream_and_the_result_resumes():
    flow = Flow("ok", inputs=["q"])
    flow.interrupt("approve", "Approve {{ q }}?", {"approved": bool})
    flow.edge("approve", END)
    stream = flow.stream(FakeSession(), {"q": "this"})
    events = list(stream)
    assert kinds(events) == ["RunStarted", "StepStarted", "Interrupted"]
    assert isinstance(events[-1], Interrupted) and events[-1].request.prompt == "Approve this?"
    assert stream.result.resume(approved="yes")["approved"] is True


def test_astream_and_arun():
    async def main():
        events = [
            e async for e in rag_flow().astream(FakeSession(), {"question": "Q"}, intrinsic_specs=specs(0.9))
        ]
        result = await rag_flow().arun(FakeSession(), {"question": "Q"}, intrinsic_specs=specs(0.9))
        return events, result

    events, result = asyncio.run(main())
    assert kinds(events)[0] == "RunStarted" and kinds(events)[-1] == "RunFinished"
    assert sum(isinstance(e, StepStarted) for e in events) == 3
    assert result.state.answer == "a fine answer" and result.state.certainty.score == 0.9


def test_the_event_loop_runs_other_coroutines_while_a_step_blocks():
    """The tool blocks until another coroutine sets a flag: it can only return True if the loop
    kept running while the tool ran in the worker thread."""
    flow = Flow("slow")
    flow.tool("wait", support.wait_for_loop, output="saw_the_loop")
    flow.edge("wait", END)
    support.LOOP_FLAG.clear()
    ticks: list[int] = []

    async def ticker():
        while not ticks or ticks[-1] < 5:
            await asyncio.sleep(0.01)
            ticks.append(len(ticks) + 1)
        support.LOOP_FLAG.set()

    async def main():
        return await asyncio.gather(flow.arun(FakeSession(), {}), ticker())

    result, _ = asyncio.run(main())
    assert result["saw_the_loop"] is True and ticks[-1] >= 5


def test_cancelling_an_async_run_stops_it():
    support.CALLS.clear()

    async def main():
        task = asyncio.ensure_future(counting_flow(limit=10**6).arun(FakeSession(), {"n": 0}))
        while len(support.CALLS) < 3:
            await asyncio.sleep(0.001)
        at_cancel = len(support.CALLS)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task  # returns once the worker has left the run
        after = len(support.CALLS)
        await asyncio.sleep(0.2)
        return at_cancel, after

    at_cancel, after = asyncio.run(main())
    assert after <= at_cancel + 1  # at most the step in progress finished
    assert len(support.CALLS) == after and not run_threads()  # and nothing ran since


def test_aresume_continues_a_paused_run():
    flow = Flow("ok", inputs=["q"])
    flow.interrupt("approve", "Approve?", {"approved": bool})
    flow.edge("approve", END)

    async def main():
        paused = await flow.arun(FakeSession(), {"q": "x"})
        assert paused.interrupted
        return await paused.aresume(approved=False)

    assert asyncio.run(main())["approved"] is False


def test_streams_of_a_real_model_carry_its_tokens(backend):
    from alora_flows.core.session import Session

    flow = Flow("gen", inputs=["question"])
    flow.generate("answer", user="{{ question }}", max_new_tokens=5, output="answer")
    flow.edge("answer", END)
    stream = flow.stream(Session(backend), {"question": "When was Velmora founded?"})
    events = list(stream)
    text = "".join(e.text for e in events if isinstance(e, TokenStreamed))
    assert text == stream.result.state.answer and not any(isinstance(e, RunFailed) for e in events)
