"""YAML loading with line numbers, and Python <-> YAML round trips."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from alora_flows.errors import FlowDefinitionError
from alora_flows.flow import END, START, Flow
from tests.test_flow_support import RAG_YAML, count_words, retrieve, specs


def error_for(text: str) -> FlowDefinitionError:
    with pytest.raises(FlowDefinitionError) as info:
        Flow.from_yaml_text(text, file="f.yaml")
    return info.value


@pytest.mark.parametrize(
    "text, line, node, message",
    [
        (
            "name: x\nnodes:\n  a:\n    generate:\n      usr: hi\n",
            5,
            "a",
            "nodes.a.generate.usr: unknown key",
        ),
        ("name: x\nnodes:\n  a: {intrinsic: u, tool: 'm:f'}\n", 3, "a", "exactly one of the keys"),
        ("name: x\nnodes:\n  a: {set: {x: 1}}\nedges:\n  - [a]\n", 5, "a", "edges[0]"),
        (
            "name: x\nnodes:\n  a: {set: {x: 1}}\nedges:\n  - from: a\n    branches:\n"
            "      - {wen: x, to: END}\n",
            7,
            "a",
            "edges[0].branches[0].when: missing required key",
        ),
        ("name: x\nmax_steps: 0\n", 2, None, "max_steps"),
        ("name: x\nnodes: {a: {tool: 'os.system'}}\n", 2, "a", "package.module:function"),
        ("name: x\nname: y\n", 2, None, "duplicate key"),
        ("name: x\nnodes: [\n", 3, None, "invalid YAML"),
        ("- just a list\n", 1, None, "must be a YAML mapping"),
        ("nodes: {}\n", None, None, "name: missing required key"),
    ],
)
def test_shape_errors_name_line_and_node(text, line, node, message):
    error = error_for(text)
    assert message in str(error)
    assert (error.file, error.line, error.node) == ("f.yaml", line, node)
    if line is not None:
        assert str(error).startswith(f"f.yaml:{line}: ")


def test_missing_file(tmp_path):
    with pytest.raises(FlowDefinitionError, match="cannot read flow file") as info:
        Flow.from_yaml(tmp_path / "nope.yaml")
    assert info.value.file.endswith("nope.yaml")


def test_yaml_aliases_are_not_expanded_exponentially():
    bomb = "name: x\na: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [*{chr(97 + i)}, *{chr(97 + i)}, *{chr(97 + i)}]\n" for i in range(20)
    )
    error = error_for(bomb)  # unknown top-level keys; must come back quickly, not hang
    assert "unknown key" in str(error)


def python_flow() -> Flow:
    flow = Flow("rag", inputs={"question": str, "k": int}, max_steps=12, model="tiny")
    flow.intrinsic("rewrite", output="query", input="{{ question }}")
    flow.tool("retrieve", retrieve, args={"query": "{{ query }}", "k": "{{ k }}"}, output="documents")
    flow.message("docs", "user", "Documents:\n{{ documents | join('\n') }}")
    flow.generate(
        "answer",
        system="Be brief.",
        user="{{ question }}",
        output="answer",
        max_new_tokens=32,
        temperature=0.5,
    )
    flow.tool("words", count_words, args={"text": "{{ answer }}"}, output="n_words")
    flow.intrinsic("certainty", "uncertainty", output="certainty")
    flow.set("abstain", {"answer": "I don't know.", "flags": ["abstained"], "extra": {"a": 1}})
    flow.edge(START, "rewrite").edge("rewrite", "retrieve").edge("retrieve", "docs")
    flow.edge("docs", "answer").edge("answer", "words").edge("words", "certainty")
    flow.branch("certainty", [("certainty.score < 0.4", "abstain"), ("n_words > 100", "answer")], default=END)
    flow.edge("abstain", END)
    return flow


def test_python_flow_round_trips_through_yaml(tmp_path):
    flow = python_flow()
    flow.validate(intrinsic_specs=specs())
    path = tmp_path / "rag.yaml"
    text = flow.to_yaml(path)
    again = Flow.from_yaml(path)
    assert again == flow
    assert again.to_yaml() == text
    assert (
        again.validate(intrinsic_specs=specs()).field_types
        == flow.validate(intrinsic_specs=specs()).field_types
    )
    changed = Flow.from_yaml_text(text.replace("max_steps: 12", "max_steps: 13"))
    assert changed != flow


def test_yaml_round_trips_through_python():
    flow = Flow.from_yaml_text(RAG_YAML)
    assert Flow.from_yaml_text(flow.to_yaml()) == flow


def test_unwritable_flows_say_why():
    flow = Flow("x")
    flow.tool("t", lambda: 1, output="y").edge("t", END)
    with pytest.raises(FlowDefinitionError, match="cannot be written to YAML"):
        flow.to_yaml()
    flow = Flow("x")
    flow.set("a", y=1).branch("a", [(lambda s: True, END)], default=END)
    with pytest.raises(FlowDefinitionError, match="callable condition"):
        flow.to_yaml()


literals = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
    | st.text(st.characters(blacklist_categories=("Cs",)), max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.from_regex(r"[a-z]{1,5}", fullmatch=True), inner, max_size=3)
    ),
    max_leaves=6,
)


@settings(max_examples=40, deadline=None)
@given(values=st.lists(literals, min_size=1, max_size=4), max_steps=st.integers(1, 99))
def test_set_literals_round_trip(values, max_steps):
    flow = Flow("lits", max_steps=max_steps)
    names = [f"s{i}" for i in range(len(values))]
    for i, (name, value) in enumerate(zip(names, values)):
        flow.set(name, {f"f{i}": value})
    for a, b in zip(names, names[1:] + [END]):
        flow.edge(a, b)
    again = Flow.from_yaml_text(flow.to_yaml())
    assert again == flow
