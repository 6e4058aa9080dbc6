"""The architecture's promises: open node kinds, one sandbox, recompiling mutated flows, entry-point
discovery, structured errors, and a process left untouched by constructing a backend."""

from __future__ import annotations

import io
import os
from typing import Any, ClassVar

import pytest
from rich.console import Console

from alora_flows.core.session import Session
from alora_flows.errors import AloraFlowsError, FlowDefinitionError, FlowRuntimeError
from alora_flows.flow import END, Flow, TraceJsonWriter
from alora_flows.flow.catalog import ENTRY_POINT_GROUP, discovered_catalog
from alora_flows.flow.live import LiveView, steps_table
from alora_flows.flow.nodes import NODE_KINDS, Node, NodeCheck, StepContext, register_node_kind
from tests.test_flow_support import FakeSession, specs


@register_node_kind
class Shout(Node):
    """A node kind defined outside the engine: appends its text, upper-cased, as a user turn."""

    kind: ClassVar[str] = "shout"
    style: ClassVar[str] = "bold red"
    shape: ClassVar[tuple[str, str]] = ('(("', '"))')
    uses_session: ClassVar[bool] = True

    shout: str
    output: str | None = None

    def check(self, ctx: NodeCheck) -> None:
        ctx.template(self.shout, ("shout",), "shout template")
        ctx.write(self.output, str, ("output",))

    def execute(self, ctx: StepContext) -> Any:
        text = ctx.render(self.shout, "shout").upper()
        ctx.session.extend([{"role": "user", "content": text}])
        ctx.write(self.output, text)
        return text

    def detail(self) -> str:
        return "loud"


SHOUT_FLOW = """\
name: shouting
inputs: [name]
nodes:
  greet: {shout: "hello {{ name }}", output: greeting}
  answer: {generate: {max_new_tokens: 4}, output: answer}
edges:
  - [greet, answer]
  - [answer, END]
"""


def test_a_new_node_kind_validates_runs_draws_and_shows_without_engine_edits(backend, tmp_path):
    assert NODE_KINDS["shout"] is Shout
    flow = Flow.from_yaml_text(SHOUT_FLOW, file="shout.yaml")
    assert flow.problems() == []
    # validation reaches into the new kind: an unknown field in its template is reported at its line
    bad = Flow.from_yaml_text(SHOUT_FLOW.replace("{{ name }}", "{{ nmae }}"), file="shout.yaml")
    [problem] = bad.problems()
    assert (problem.file, problem.line, problem.node) == ("shout.yaml", 4, "greet")
    assert "nmae" in problem.detail
    # runs on a real session, with its turn in the conversation and a typed output
    session = Session(backend)
    result = flow.run(session, {"name": "ada"}, listeners=[TraceJsonWriter(tmp_path / "t.json")])
    assert result.state.greeting == "HELLO ADA"
    assert session.messages[0] == {"role": "user", "content": "HELLO ADA"}
    greet = result.trace.steps[0]
    assert (greet.kind, greet.output, greet.next) == ("shout", "HELLO ADA", "answer")
    assert result.trace.steps[1].reused_tokens > 0  # the next base step reused the shouted turn
    # drawn with its own shape and detail
    mermaid = flow.to_mermaid()
    assert 'n_greet(("greet<br/><i>shout: loud</i><br/>→ greeting"))' in mermaid
    # shown in the live view with its own style
    table = steps_table(result.trace.steps)
    console = Console(file=io.StringIO(), width=120, force_terminal=True, color_system="truecolor")
    console.print(table)
    out = console.file.getvalue()  # type: ignore[attr-defined]
    assert "shout" in out and "\x1b[1;31m" in out  # bold red, the style the kind declared
    view = LiveView(Console(file=io.StringIO(), width=120))
    with view:
        flow.run(Session(backend), {"name": "bob"}, listeners=[view])
    assert [s.kind for s in view.steps] == ["shout", "generate"]


def test_node_kind_keys_must_be_unique_identifiers():
    class Again(Node):
        kind: ClassVar[str] = "shout"

    with pytest.raises(TypeError, match="already registered"):
        register_node_kind(Again)

    class Nameless(Node):
        pass

    with pytest.raises(TypeError, match="identifier"):
        register_node_kind(Nameless)


def test_a_mutated_flow_is_recompiled():
    """run() reuses its validation only while the flow is unchanged: direct edits count too."""
    session = FakeSession()
    flow = Flow("f", inputs=["q"]).set("a", x=1).edge("a", END)
    assert flow.run(session, {"q": "?"}).state.x == 1
    flow.spec.nodes["a"].set["x"] = 2  # mutate in place, no builder call
    assert flow.run(session, {"q": "?"}).state.x == 2
    flow.spec.max_steps = 1
    flow.set("b", y=1)  # a builder call makes the flow invalid: it must be validated again
    with pytest.raises(FlowDefinitionError, match="no outgoing edge"):
        flow.run(session, {"q": "?"})


def test_a_mutated_spec_mapping_is_seen():
    session = FakeSession()
    flow = Flow.from_yaml_text(
        "name: f\nintrinsics: {uncertainty: builtin}\nnodes:\n  c: {intrinsic: uncertainty, output: c}\n"
        "edges:\n  - [c, END]\n"
    )
    mapping = specs(0.9)
    assert flow.run(session, {}, intrinsic_specs=mapping).state.c.score == 0.9
    mapping.update(specs(0.1))  # same dict object, new contents
    assert flow.run(session, {}, intrinsic_specs=mapping).state.c.score == 0.1


def test_intrinsic_libraries_are_found_by_entry_point():
    catalog = discovered_catalog()
    assert catalog.catalogs, f"no catalog under the {ENTRY_POINT_GROUP!r} entry point group"
    assert catalog.spec("uncertainty").name == "uncertainty"
    with pytest.raises(AloraFlowsError, match="unknown intrinsic 'nope'"):
        catalog.spec("nope")


def test_errors_carry_structured_fields_not_rewritten_messages():
    def explode() -> str:
        raise ValueError("boom")

    flow = Flow("f").tool("t", explode, output="x").edge("t", END)
    with pytest.raises(FlowRuntimeError) as info:
        flow.run(FakeSession(), {})
    error = info.value
    assert error.node == "t"
    assert error.detail.startswith("tool ") and "raised ValueError: boom" in error.detail
    assert str(error) == f"node 't': {error.detail}"
    # attaching a place never overwrites one that is known, and never edits the message
    assert error.at(node="other").node == "t"
    assert error.args == (error.detail,)


def test_constructing_a_backend_leaves_the_process_alone(tmp_path, monkeypatch):
    """CPU tuning is the entry point's decision (alora_flows.app), not a side effect of Backend()."""
    from alora_flows.core import tuning
    from alora_flows.testing import tiny_backend

    monkeypatch.delenv("TRANSFORMERS_SDPA_FORCE_GQA", raising=False)
    monkeypatch.setattr(tuning, "_applied", False)
    tiny_backend(tmp_path)
    assert "TRANSFORMERS_SDPA_FORCE_GQA" not in os.environ
    assert tuning._applied is False
