"""The runner on a fake session: routing, loops, typed state, trace, listeners, refusals."""

import json

import pytest

from alora_flows.errors import FlowRuntimeError, UnsafeExpressionError
from alora_flows.flow import (
    END,
    START,
    Flow,
    FlowInputError,
    RunFailed,
    RunFinished,
    RunListener,
    StepFinished,
    TokenStreamed,
    TraceJsonWriter,
)
from tests import test_flow_support as support
from tests.test_flow_support import RAG_YAML, FakeSession, Score, specs

TRACE_STEP_KEYS = {
    "node",
    "kind",
    "adapter",
    "prefill_tokens",
    "reused_tokens",
    "generated_tokens",
    "seconds",
    "output",
    "next",
}
TOTAL_KEYS = {"prefill_tokens", "reused_tokens", "generated_tokens", "seconds"}


def rag() -> Flow:
    return Flow.from_yaml_text(RAG_YAML, file="rag.yaml")


@pytest.mark.parametrize(
    "score, path, answer",
    [
        (0.9, ["rewrite", "retrieve", "answer", "certainty"], "a fine answer"),
        (0.2, ["rewrite", "retrieve", "answer", "certainty", "abstain"], "I don't know."),
    ],
)
def test_conditional_routing(score, path, answer):
    session = FakeSession()
    fake = specs(score)
    result = rag().run(session, {"question": "Who?"}, intrinsic_specs=fake)
    assert [s.node for s in result.trace.steps] == path
    assert result.state.answer == answer
    assert isinstance(result.state.certainty, Score)
    certainty = next(s for s in result.trace.steps if s.node == "certainty")
    assert certainty.branch == ("certainty.score < 0.4" if score < 0.4 else "default")
    assert certainty.next == ("abstain" if score < 0.4 else END)
    # the rewrite output (a pydantic object) rendered as its text in the tool's template
    assert result.state.documents[0] == "doc 0 about standalone question"
    # the generate step saw the documents joined by newlines
    assert "doc 0 about standalone question\ndoc 1" in session.messages[1]["content"]


def test_trace_counts_come_from_the_session_calls():
    session = FakeSession()
    result = rag().run(session, {"question": "Who?"}, intrinsic_specs=specs(0.9))
    steps = {s.node: s for s in result.trace.steps}
    assert steps["rewrite"].adapter == "rewrite" and steps["rewrite"].kind == "intrinsic"
    assert steps["retrieve"].prefill_tokens == steps["retrieve"].reused_tokens == 0
    conversation = session.tokens()
    assert steps["certainty"].reused_tokens == conversation
    assert steps["certainty"].prefill_tokens == 3
    assert steps["answer"].generated_tokens == 3
    totals = result.trace.totals
    assert totals.prefill_tokens == sum(s.prefill_tokens for s in result.trace.steps)
    assert totals.reused_tokens == sum(s.reused_tokens for s in result.trace.steps)


def test_trace_json_has_the_contract_fields(tmp_path):
    path = tmp_path / "out" / "trace.json"
    rag().run(
        FakeSession(),
        {"question": "Who?"},
        intrinsic_specs=specs(0.2),
        seed=7,
        listeners=[TraceJsonWriter(path)],
    )
    data = json.loads(path.read_text())
    assert list(data)[:6] == ["flow", "model", "reuse", "steps", "totals", "final_state"]
    assert data["flow"] == "rag-with-checks" and data["reuse"] is True and data["seed"] == 7
    assert data["model"] == "embedded"
    for step in data["steps"]:
        assert TRACE_STEP_KEYS <= set(step)
        assert isinstance(step["prefill_tokens"], int) and isinstance(step["seconds"], float)
    certainty = next(s for s in data["steps"] if s["node"] == "certainty")
    assert certainty["output"] == {"score": 0.2, "digit": 0}
    assert certainty["adapter"] == "uncertainty" and certainty["next"] == "abstain"
    assert set(data["totals"]) == TOTAL_KEYS
    assert data["final_state"]["answer"] == "I don't know."
    assert data["final_state"]["query"] == {"rewritten_question": "standalone question"}
    assert data["error"] is None


def counter_flow(limit: str, max_steps: int) -> Flow:
    flow = Flow("counter", inputs={"limit": int}, max_steps=max_steps)
    flow.set("init", n=0)
    flow.set("inc", n="{{ n + 1 }}")
    flow.edge(START, "init").edge("init", "inc")
    flow.branch("inc", [(limit, "inc")], default=END)
    return flow


def test_loop_exits_by_condition():
    result = counter_flow("n < limit", max_steps=10).run(FakeSession(), {"limit": "4"})
    assert result.state.n == 4 and isinstance(result.state.n, int)
    assert [s.node for s in result.trace.steps] == ["init"] + ["inc"] * 4
    assert [s.branch for s in result.trace.steps[1:]] == ["n < limit"] * 3 + ["default"]


def test_loop_stopped_by_max_steps(tmp_path):
    events = []
    with pytest.raises(FlowRuntimeError, match=r"max_steps=6 .*last node 'inc'") as info:
        counter_flow("n > 0", max_steps=6).run(
            FakeSession(), {"limit": 1}, listeners=[events.append, TraceJsonWriter(tmp_path / "t.json")]
        )
    written = json.loads((tmp_path / "t.json").read_text())
    assert "max_steps" in written["error"] and len(written["steps"]) == 6
    failed = events[-1]
    assert isinstance(failed, RunFailed) and "max_steps" in failed.error
    assert len(failed.trace.steps) == 6
    assert failed.trace.error == str(info.value)
    assert failed.state.n == 5


def test_python_callable_condition():
    flow = Flow("py", inputs=["text"])
    flow.tool("count", support.count_words, args={"text": "{{ text }}"}, output="n")
    flow.set("long", label="long").set("short", label="short")
    flow.branch("count", [(lambda state: state.n > 3, "long")], default="short")
    flow.edge("long", END).edge("short", END)
    assert flow.run(FakeSession(), text="one two three four five").state.label == "long"
    assert flow.run(FakeSession(), text="one").state.label == "short"


def test_routing_from_start():
    flow = Flow("router", inputs={"x": int})
    flow.set("big", size="big").set("small", size="small")
    flow.branch(START, [("x > 10", "big")], default="small")
    flow.edge("big", END).edge("small", END)
    assert flow.run(FakeSession(), x=11).state.size == "big"
    assert flow.run(FakeSession(), x=1).state.size == "small"


def test_generate_streams_tokens_and_gets_seed_and_messages():
    flow = Flow("chat", inputs=["question"])
    flow.message("ctx", "system", "You are terse.")
    flow.generate("a1", user="{{ question }}", output="first")
    flow.generate("a2", user="Again: {{ first }}", output="second", temperature=0.7)
    flow.edge("ctx", "a1").edge("a1", "a2").edge("a2", END)
    session = FakeSession(answers=["alpha beta", "gamma"])
    tokens = []
    result = flow.run(
        session,
        {"question": "Hi"},
        seed=10,
        listeners=[lambda e: isinstance(e, TokenStreamed) and tokens.append(e)],
    )
    assert (result.state.first, result.state.second) == ("alpha beta", "gamma")
    assert [t.text for t in tokens] == ["alpha ", "beta ", "gamma "]
    assert {t.node for t in tokens} == {"a1", "a2"}
    assert session.seeds == [11, 12]  # run seed + step index
    assert [m["role"] for m in session.messages] == ["system", "user", "assistant", "user", "assistant"]
    assert session.messages[3]["content"] == "Again: alpha beta"
    steps = result.trace.steps
    # the system turn was deferred: the first answer ran it, and reused nothing
    assert session.history[0].prefill_tokens == session.history[0].reused_tokens == 0
    assert steps[1].reused_tokens == 0 and steps[1].prefill_tokens > steps[1].generated_tokens


def test_intrinsic_gets_state_and_rendered_input_override():
    flow = Flow("ov", inputs=["question"])
    flow.intrinsic("rewrite", input="Make standalone: {{ question }}", output="query")
    flow.edge("rewrite", END)
    fake = specs()
    flow.run(FakeSession(), {"question": "and then?"}, intrinsic_specs=fake)
    call = fake["rewrite"].calls[0]
    assert call["input"] == "Make standalone: and then?"
    assert call["state"] == {"question": "and then?"} and call["adapter"] == "rewrite"


def test_step_finished_is_a_persistence_hook():
    snapshots = []

    class Persist(RunListener):
        def on_step_finished(self, event: StepFinished) -> None:
            snapshots.append(
                (event.step.node, event.step.next, event.state.model_dump(mode="json", exclude_unset=True))
            )

        def on_run_finished(self, event: RunFinished) -> None:
            snapshots.append(("done", None, None))

    counter_flow("n < 2", max_steps=10).run(FakeSession(), {"limit": 0}, listeners=[Persist()])
    assert snapshots == [
        ("init", "inc", {"limit": 0, "n": 0}),
        ("inc", "inc", {"limit": 0, "n": 1}),
        ("inc", END, {"limit": 0, "n": 2}),
        ("done", None, None),
    ]


def test_tool_arguments_follow_annotations():
    flow = Flow("t", inputs={"q": str, "k": int})
    flow.tool("retrieve", support.retrieve, args={"query": "about {{ q }}", "k": "{{ k }}"}, output="docs")
    flow.edge("retrieve", END)
    assert flow.run(FakeSession(), q="x", k=3).state.docs == [
        "doc 0 about about x",
        "doc 1 about about x",
        "doc 2 about about x",
    ]


def _failing_flow(tool, args):
    flow = Flow("fail", inputs=["q"])
    flow.branch(START, [("q == 'skip'", "never")], default="tool")
    flow.set("never", missing_later="x")
    flow.tool("tool", tool, args=args, output="out")
    flow.edge("never", "tool").edge("tool", END)
    return flow


@pytest.mark.parametrize(
    "tool, args, message",
    [
        (support.explode, {}, r"node 'tool': tool .*explode raised ValueError: tool exploded"),
        (support.wrong_type, {}, "produced a str for 'out', which is typed int"),
        (support.retrieve, {"query": "{{ missing_later }}"}, "'missing_later' is undefined"),
        (support.retrieve, {"query": "q", "k": "many"}, "argument 'k' must be int"),
    ],
)
def test_runtime_errors(tool, args, message):
    with pytest.raises(FlowRuntimeError, match=message):
        _failing_flow(tool, args).run(FakeSession(), q="go")


def test_condition_on_unset_field_fails_clearly():
    flow = Flow("c", inputs=["q"])
    flow.branch(START, [("q == 'x'", "setter")], default="check")
    flow.set("setter", flag=True).edge("setter", "check")
    flow.set("check", done=True)
    flow.branch("check", [("flag", END)], default=END)
    with pytest.raises(FlowRuntimeError, match="'flag' has no value yet"):
        flow.run(FakeSession(), q="y")


def test_inputs_are_checked():
    flow = counter_flow("n < limit", max_steps=10)
    with pytest.raises(FlowInputError, match="needs input"):
        flow.run(FakeSession(), {})
    with pytest.raises(FlowInputError, match="has no input"):
        flow.run(FakeSession(), {"limit": 1, "other": 2})
    with pytest.raises(FlowInputError, match="limit"):
        flow.run(FakeSession(), {"limit": "lots"})


# ---------------------------------------------------------------------- refusals
def sentinel_flow(condition: str = "True", template: str = "{{ q }}") -> Flow:
    """START -> sentinel (a tool that records that it ran) -> echo (template) -> END."""
    flow = Flow("attack", inputs=["q"])
    flow.tool("sentinel", support.sentinel, args={"q": "{{ q }}"}, output="ran")
    flow.message("echo", "user", template)
    flow.branch("sentinel", [(condition, "echo")], default=END)
    flow.edge("echo", END)
    return flow


WHEN_ATTACKS = [
    "().__class__.__bases__[0].__subclasses__()",
    "__import__('os')",
    "q.__class__.__mro__",
    "q.gi_frame",
    "9**9**9",
    "'a'*10**9",
    "q.upper()",
    "[x for x in q]",
]
TEMPLATE_ATTACKS = [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ q|attr('__class__') }}",
    "{{ q.__class__.__base__.__subclasses__() }}",
]


@pytest.mark.parametrize("condition", WHEN_ATTACKS)
def test_injection_in_when_is_refused_before_anything_runs(condition):
    support.SENTINEL_CALLS.clear()
    session = FakeSession()
    with pytest.raises(UnsafeExpressionError):
        sentinel_flow(condition=condition).run(session, q="hi")
    assert support.SENTINEL_CALLS == [] and session.messages == []


@pytest.mark.parametrize("template", TEMPLATE_ATTACKS)
def test_injection_in_template_is_refused_before_anything_runs(template):
    support.SENTINEL_CALLS.clear()
    session = FakeSession()
    with pytest.raises(UnsafeExpressionError):
        sentinel_flow(template=template).run(session, q="hi")
    assert support.SENTINEL_CALLS == [] and session.messages == []


def test_sentinel_flow_runs_when_safe():
    support.SENTINEL_CALLS.clear()
    session = FakeSession()
    sentinel_flow(condition="ran == 'ran'").run(session, q="hi")
    assert support.SENTINEL_CALLS == [{"q": "hi"}]
    assert session.messages == [{"role": "user", "content": "hi"}]
