"""Type-checked conditions: an operation whose operand types cannot work is a validation error
with file, line and node, before any model loads; what can work (or cannot be known) passes."""

from __future__ import annotations

from typing import Any

import pytest
from typer.testing import CliRunner

from alora_flows.cli import app
from alora_flows.errors import FlowDefinitionError
from alora_flows.flow import END, Flow
from alora_flows.sandbox.expressions import check_types
from tests.test_flow_support import RAG_YAML

runner = CliRunner()
GOOD = '"certainty.score < 0.4"'


def rag_with(condition: str) -> str:
    assert GOOD in RAG_YAML
    return RAG_YAML.replace(GOOD, '"' + condition.replace('"', '\\"') + '"')


def line_of(text: str, needle: str) -> int:
    return next(i for i, line in enumerate(text.splitlines(), 1) if needle in line)


@pytest.mark.parametrize(
    "condition, message",
    [
        (
            "certainty < 0.4",
            "cannot compare certainty (UncertaintyOutput) with 0.4 (float) using '<'; "
            "use one of its fields, e.g. certainty.score",
        ),
        ("0.4 >= certainty", "cannot compare 0.4 (float) with certainty (UncertaintyOutput) using '>='"),
        ("answer > 3", "cannot compare answer (str) with 3 (int) using '>'"),
        ("certainty + 1 > 2", "cannot compute certainty + 1: UncertaintyOutput + int is not defined"),
        ("len(certainty) > 0", "len() needs a text, list or mapping, but certainty is UncertaintyOutput"),
        ("'x' in certainty", "'x' in certainty: certainty is UncertaintyOutput, which cannot contain str"),
        ("certainty == 1", "certainty (UncertaintyOutput) is never equal to 1 (int)"),
        ("documents[0] < 1", "cannot compare documents[0] (str) with 1 (int) using '<'"),
        ("query.rewritten_question > 0", "cannot compare query.rewritten_question (str) with 0 (int)"),
        ("certainty.digit < 5 and answer - 1 > 0", "cannot compute answer - 1: str - int is not defined"),
        ("certainty.score[0] > 0", "certainty.score is float, which cannot be indexed"),
        ("-answer < 0", "'-' needs a number, but answer is str"),
    ],
)
def test_impossible_operations_are_validation_errors(condition, message):
    text = rag_with(condition)
    with pytest.raises(FlowDefinitionError) as caught:
        Flow.from_yaml_text(text, file="rag.yaml").validate()
    error = caught.value
    assert message in error.detail, error.detail
    assert error.detail.startswith(f"condition {condition!r}: ")
    assert (error.file, error.node) == ("rag.yaml", "certainty")
    assert error.line == line_of(text, condition.replace('"', '\\"'))


@pytest.mark.parametrize(
    "condition",
    [
        "certainty.score < 0.4",
        "certainty.digit <= 3 or certainty.score * 2 > 1.5",
        "len(answer) > 10 and certainty.score < 0.9",
        "answer == 'x' or answer != question",
        "'doc' in documents[0] and len(documents) > 1",
        "query.rewritten_question != question",
        "abs(certainty.score - 0.5) < 0.1 and round(certainty.score, 1) >= 0.5",
        "max(certainty.score, 0.2) > min(0.1, 0.3)",
        "(certainty.score if len(answer) > 3 else 0) < 0.4",
        "not certainty",
        "certainty is None or certainty.score < 0.4",
        "documents[1:] == [] and answer * 2 != ''",
    ],
)
def test_operations_that_can_work_pass(condition):
    Flow.from_yaml_text(rag_with(condition), file="rag.yaml").validate()


def test_unknown_types_pass_and_typed_inputs_are_checked():
    def anything(text: str):  # no return annotation: its field is Any
        return text

    flow = Flow("typed", inputs={"k": int, "free": "any"})
    flow.tool("look", anything, args={"text": "x"}, output="found")
    flow.branch("look", [("found < 3 and free > 'a' and k < 10", END)], default=END)
    flow.validate()
    flow.spec.edges[0].branches[0].when = "k < 'ten'"
    with pytest.raises(FlowDefinitionError, match=r"cannot compare k \(int\) with 'ten' \(str\)"):
        flow.validate()


def test_every_problem_of_a_condition_is_reported():
    problems = Flow.from_yaml_text(rag_with("certainty < 0.4 or answer > 3"), file="rag.yaml").problems()
    details = [p.detail for p in problems]
    assert len(details) == 2 and "UncertaintyOutput" in details[0] and "answer (str)" in details[1]


def test_check_types_follows_nested_outputs():
    from intrinsics.outputs import AnswerabilityOutput, HallucinationOutput, JsonOutput

    types: dict[str, Any] = {"h": HallucinationOutput, "a": AnswerabilityOutput, "j": JsonOutput}
    assert check_types("h.sentences[0].f == 'faithful' and h.unfaithful", types) == []
    assert check_types("h.sentences[0].f < 1", types) == [
        "cannot compare h.sentences[0].f (str) with 1 (int) using '<'"
    ]
    assert "has no attribute 'g'" in check_types("h.sentences[0].g", types)[0]
    assert check_types("a.probability < 0.3", types) == []  # float | None: can work
    assert check_types("a.label > 0", types) == ["cannot compare a.label (str) with 0 (int) using '>'"]
    assert check_types("j['score'] > 0.5", types) == []  # JsonOutput defines __getitem__


def test_cli_refuses_before_the_model_loads(tmp_path, monkeypatch):
    from alora_flows.core.backend import Backend

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(Backend, "load", classmethod(refuse))
    path = tmp_path / "rag.yaml"
    path.write_text(rag_with("certainty < 0.4"))
    line = line_of(path.read_text(), "certainty < 0.4")
    for command in (["validate", str(path)], ["run", str(path), "--input", "question=Q"]):
        result = runner.invoke(app, command)
        assert result.exit_code == 2, result.output
        assert f"{path}:{line}: node 'certainty': condition 'certainty < 0.4': cannot compare" in " ".join(
            result.stderr.split()
        )
