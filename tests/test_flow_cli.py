"""The CLI: exit codes, one-line errors, no model load for validate/draw or for bad input."""

import pytest
from typer.testing import CliRunner

from alora_flows import app as application
from alora_flows.cli import app
from alora_flows.cli.common import parse_inputs
from alora_flows.flow import FlowInputError
from tests import test_flow_support as support
from tests.test_flow_support import RAG_YAML

runner = CliRunner()


@pytest.fixture()
def no_model(monkeypatch):
    """Fail the test if anything tries to load a model."""
    from alora_flows.core.backend import Backend

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(Backend, "load", classmethod(refuse))


def write(tmp_path, text, name="flow.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return path


def one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.output
    return lines[0]


def test_validate_ok(tmp_path, no_model):
    result = runner.invoke(app, ["validate", str(write(tmp_path, RAG_YAML))])
    assert result.exit_code == 0, result.output
    assert "ok: flow 'rag-with-checks' is valid (5 nodes" in result.stdout


def test_validate_prints_every_problem_one_line_each_with_file_line_node(tmp_path, no_model):
    path = write(tmp_path, RAG_YAML.replace("[retrieve, answer]", "[retrieve, answr]"))
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 2
    assert "Traceback" not in result.output
    assert [line for line in result.stderr.splitlines() if line.strip()] == [
        f"error: {path}:21: node 'retrieve': edge to unknown node 'answr' (did you mean 'answer'?)",
        f"error: {path}:11: node 'answer': is unreachable from START (no edge leads to it)",
    ]


@pytest.mark.parametrize(
    "text, message",
    [
        ("name: x\nnodes: [\n", "invalid YAML"),
        ("name: x\nnodes:\n  a: {sett: {x: 1}}\n", "exactly one of the keys"),
    ],
)
def test_validate_shape_errors(tmp_path, text, message, no_model):
    result = runner.invoke(app, ["validate", str(write(tmp_path, text))])
    assert result.exit_code == 2
    assert message in one_error_line(result)


def test_validate_missing_file(tmp_path, no_model):
    result = runner.invoke(app, ["validate", str(tmp_path / "nope.yaml")])
    assert result.exit_code == 2
    assert "cannot read flow file" in one_error_line(result)


def test_debug_shows_the_traceback(tmp_path, no_model):
    path = write(tmp_path, RAG_YAML.replace("[retrieve, answer]", "[retrieve, answr]"))
    result = runner.invoke(app, ["validate", str(path), "--debug"])
    assert result.exit_code == 2
    assert "Traceback" in result.stderr and "FlowDefinitionError" in result.stderr


def test_draw_prints_mermaid(tmp_path, no_model):
    result = runner.invoke(app, ["draw", str(write(tmp_path, RAG_YAML))])
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("flowchart TD\n")
    assert "START --> n_rewrite" in out
    assert 'n_certainty -->|"certainty.score #lt; 0.4"| n_abstain' in out
    assert 'n_certainty -->|"default"| END' in out


def test_draw_invalid_flow_exits_2(tmp_path, no_model):
    path = write(tmp_path, RAG_YAML.replace("[retrieve, answer]", "[retrieve, answr]"))
    result = runner.invoke(app, ["draw", str(path)])
    assert result.exit_code == 2 and "answr" in result.stderr.splitlines()[0]


SENTINEL_YAML = """\
name: attack
inputs: [q]
nodes:
  first: {tool: "tests.test_flow_support:sentinel", args: {q: "{{ q }}"}, output: ran}
  echo: {message: {role: user, content: "{{ q }}"}}
edges:
  - from: first
    branches:
      - {when: "WHEN", to: echo}
      - {default: END}
  - [echo, END]
"""


@pytest.mark.parametrize(
    "when", ["().__class__.__bases__[0].__subclasses__()", "__import__('os').system('echo pwned')", "9**9**9"]
)
def test_run_refuses_injection_before_loading_or_running(tmp_path, when, no_model):
    support.SENTINEL_CALLS.clear()
    path = write(tmp_path, SENTINEL_YAML.replace("WHEN", when.replace('"', '\\"')))
    result = runner.invoke(app, ["run", str(path), "--input", "q=hi"])
    assert result.exit_code == 2
    assert "condition" in one_error_line(result)
    assert support.SENTINEL_CALLS == []


@pytest.mark.parametrize(
    "args, message",
    [
        (["--input", "nope"], "expects key=value"),
        ([], "needs input(s) q"),
        (["--input", "q=1", "--input", "z=2"], "has no input(s) z"),
        (["--input", "q=@/no/such/file.txt"], "cannot read"),
    ],
)
def test_run_bad_inputs_fail_before_the_model_loads(tmp_path, args, message, no_model):
    path = write(tmp_path, SENTINEL_YAML.replace("WHEN", "True"))
    result = runner.invoke(app, ["run", str(path), *args])
    assert result.exit_code == 2
    assert message in one_error_line(result)


def test_parse_inputs_reads_files(tmp_path):
    doc = tmp_path / "doc.txt"
    doc.write_text("line one\nline two\n")
    assert parse_inputs([f"doc=@{doc}", "q=a=b", "at=@@home"]) == {
        "doc": "line one\nline two\n",
        "q": "a=b",
        "at": "@home",
    }
    with pytest.raises(FlowInputError, match="twice"):
        parse_inputs(["q=1", "q=2"])


def test_unexpected_errors_are_one_line_without_debug(tmp_path, monkeypatch):
    def boom(*args, **kwargs):
        raise RuntimeError("model exploded")

    monkeypatch.setattr(application, "run_flow", boom)
    path = write(tmp_path, SENTINEL_YAML.replace("WHEN", "True"))
    result = runner.invoke(app, ["run", str(path), "--input", "q=hi"])
    assert result.exit_code == 1
    line = one_error_line(result)
    assert "internal error: RuntimeError: model exploded" in line and "--debug" in line
