"""Every validation error, raised before any node runs, naming file, line and node."""

import pytest

from alora_flows.errors import FlowDefinitionError, UnsafeExpressionError
from alora_flows.flow import END, START, Flow
from tests.test_flow_support import RAG_YAML, Score, retrieve, specs


def load(text: str) -> Flow:
    return Flow.from_yaml_text(text, file="flow.yaml")


def first_problem(text: str) -> FlowDefinitionError:
    with pytest.raises(FlowDefinitionError) as info:
        load(text).validate(intrinsic_specs=specs())
    return info.value


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


def test_rag_example_is_valid_and_typed():
    compiled = load(RAG_YAML).validate(intrinsic_specs=specs())
    assert compiled.field_types["certainty"] is Score
    assert compiled.field_types["answer"] is str
    assert compiled.field_types["documents"] == list[str]
    assert set(compiled.graph.successors("certainty")) == {"abstain", END}


CASES = [
    # (description, replace old -> new in RAG_YAML, expected message part, node, line marker)
    (
        "unknown node in edge",
        ("  - [retrieve, answer]", "  - [retrieve, answr]"),
        "unknown node 'answr' (did you mean 'answer'?)",
        "retrieve",
        "[retrieve, answr]",
    ),
    ("unknown start", ("start: rewrite", "start: rewrit"), "start node 'rewrit'", None, "start: rewrit"),
    (
        "unreachable node",
        [
            ("  abstain:   {set", "  orphan: {set: {x: 1}}\n  abstain:   {set"),
            ("  - [abstain, END]", "  - [abstain, END]\n  - [orphan, END]"),
        ],
        "unreachable",
        "orphan",
        "orphan:",
    ),
    ("no outgoing edge", ("  - [abstain, END]\n", ""), "no outgoing edge", "abstain", "abstain:   {set"),
    (
        "condition on unknown field",
        ('"certainty.score < 0.4"', '"certanty.score < 0.4"'),
        "unknown state field(s) certanty (did you mean 'certainty'?)",
        "certainty",
        "certanty.score",
    ),
    (
        "condition on unknown attribute",
        ('"certainty.score < 0.4"', '"certainty.scor < 0.4"'),
        "has no attribute 'scor'",
        "certainty",
        "certainty.scor",
    ),
    (
        "template reads unknown field",
        ("Question: {{ question }}", "Question: {{ questoin }}"),
        "template reads unknown state field(s) questoin",
        "answer",
        "questoin",
    ),
    (
        "two writers, two types",
        ('abstain:   {set: {answer: "I don\'t know."}}', "abstain:   {set: {answer: 0}}"),
        "field 'answer' is written as int here but as str by node 'answer'",
        "abstain",
        "{answer: 0}",
    ),
    (
        "intrinsic not declared",
        ("  rewrite: builtin\n", ""),
        "intrinsic 'rewrite' is not declared under 'intrinsics:'",
        "rewrite",
        "rewrite:   {intrinsic",
    ),
    (
        "tool not importable",
        ("tests.test_flow_support:retrieve", "tests.nope:retrieve"),
        "cannot import module 'tests.nope'",
        "retrieve",
        "tests.nope",
    ),
    (
        "tool attribute missing",
        ("tests.test_flow_support:retrieve", "tests.test_flow_support:retrieve_all"),
        "has no attribute 'retrieve_all'",
        "retrieve",
        "retrieve_all",
    ),
    (
        "two plain edges from one node",
        ("  - [abstain, END]", "  - [abstain, END]\n  - [rewrite, answer]"),
        "more than one outgoing edge",
        "rewrite",
        "[rewrite, answer]",
    ),
    (
        "missing default",
        ("      - default: END\n", ""),
        "exactly one 'default'",
        "certainty",
        "from: certainty",
    ),
    (
        "loop with no way out",
        ("  - [abstain, END]", "  - [abstain, abstain]"),
        "no path to END",
        "abstain",
        "abstain:   {set",
    ),
    (
        "edge to START",
        ("  - [abstain, END]", "  - [abstain, START]"),
        "cannot lead to START",
        "abstain",
        "[abstain, START]",
    ),
    (
        "reserved node name",
        ("  abstain:   {set", "  END: {set: {x: 1}}\n  abstain:   {set"),
        "reserved",
        "END",
        "END: {set",
    ),
    (
        "bad field name",
        ("output: query}", "output: model_dump}"),
        "clashes with a pydantic",
        "rewrite",
        "model_dump",
    ),
    (
        "unsafe condition",
        ('"certainty.score < 0.4"', '"certainty.__class__"'),
        "'__class__'",
        "certainty",
        "certainty.__class__",
    ),
    (
        "unsafe template",
        ("Question: {{ question }}", "{{ question.__class__.__mro__ }}"),
        "names starting with '_'",
        "answer",
        "question.__class__",
    ),
    (
        "template syntax",
        ("Question: {{ question }}", "Question: {{ question }"),
        "template syntax error",
        "answer",
        "Question: {{ question }",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_validation_errors_name_file_line_node(case):
    _, replacements, message, node, marker = case
    text = RAG_YAML
    for old, new in replacements if isinstance(replacements, list) else [replacements]:
        assert old in text
        text = text.replace(old, new, 1)
    error = first_problem(text)
    assert message in str(error)
    assert error.file == "flow.yaml"
    assert error.node == node
    assert error.line == line_of(text, marker), str(error)


def test_unsafe_errors_have_their_own_type():
    error = first_problem(RAG_YAML.replace('"certainty.score < 0.4"', "\"__import__('os')\""))
    assert isinstance(error, UnsafeExpressionError)


def test_unknown_intrinsic_spec():
    text = RAG_YAML.replace("  rewrite: builtin", "  rewrite: builtin\n  mystery: builtin").replace(
        "{intrinsic: rewrite,", "{intrinsic: mystery,"
    )
    error = first_problem(text)
    assert "unknown intrinsic 'mystery'" in str(error) and error.node == "rewrite"


def test_problems_lists_everything_and_validate_counts_the_rest():
    text = RAG_YAML.replace("[retrieve, answer]", "[retrieve, answr]").replace(
        '"certainty.score < 0.4"', '"certanty.score < 0.4"'
    )
    flow = load(text)
    problems = flow.problems(intrinsic_specs=specs())
    assert len(problems) >= 3  # unknown node, unreachable 'answer', unknown field
    with pytest.raises(FlowDefinitionError, match=r"and \d+ more problems"):
        flow.validate(intrinsic_specs=specs())


def test_python_api_errors_point_at_the_calling_line():
    flow = Flow("py", inputs=["question"])
    flow.tool("retrieve", retrieve, args={"query": "{{ question }}"}, output="documents")
    flow.edge("retrieve", "answer")  # the bad line
    with pytest.raises(FlowDefinitionError) as info:
        flow.validate(intrinsic_specs={})
    assert info.value.file == __file__
    assert "unknown node 'answer'" in str(info.value)
    with open(__file__) as fh:
        assert 'flow.edge("retrieve", "answer")' in fh.read().splitlines()[info.value.line - 1]


def test_duplicate_node_in_python_api():
    flow = Flow("dup")
    flow.set("a", x=1)
    with pytest.raises(FlowDefinitionError, match="already exists"):
        flow.set("a", x=2)


def test_set_template_takes_type_of_other_writers():
    flow = Flow("counter", max_steps=10)
    flow.set("init", n=0).set("inc", n="{{ n + 1 }}")
    flow.edge(START, "init").edge("init", "inc")
    flow.branch("inc", [("n < 3", "inc")], default=END)
    assert flow.validate(intrinsic_specs={}).field_types["n"] is int


def test_both_start_and_start_edge():
    flow = Flow("s", start="a")
    flow.set("a", x=1).edge(START, "a").edge("a", END)
    with pytest.raises(FlowDefinitionError, match="both 'start:' and an edge from START"):
        flow.validate(intrinsic_specs={})
