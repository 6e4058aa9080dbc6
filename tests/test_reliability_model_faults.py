"""Model-side faults through ``alora-flows run``: each is one line with a fix, a non-zero exit and
no traceback, and never a silent fall-back to the base model (no step runs with a bad adapter)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from alora_flows.cli import app
from alora_flows.testing import save_random_alora, tiny_model, tiny_tokenizer
from intrinsics import uncertainty_spec, write_spec_file
from tests.test_reliability_support import write_tiny_project

INVOCATION = "<|im_start|>certainty\n"
FLOW = """\
name: faults
model: MODEL
intrinsics: {alpha: adapters/ADAPTER}
inputs: [question]
nodes:
  ask: {message: {role: user, content: "{{ question }}"}}
  answer: {generate: {max_new_tokens: 4}, output: answer}
  rate: {intrinsic: alpha, output: certainty}
edges: [[ask, answer], [answer, rate], [rate, END]]
"""
runner = CliRunner()


@pytest.fixture(scope="module")
def project(tmp_path_factory) -> Path:
    """The tiny project plus one broken adapter per fault, each with a valid intrinsic.yaml."""
    root = write_tiny_project(tmp_path_factory.mktemp("faults"))
    tok = tiny_tokenizer()
    model = tiny_model(tok, seed=0)
    short = tiny_model(tok, seed=0, max_positions=64)
    short.save_pretrained(root / "short" / "tiny")  # named 'tiny': the adapters record that name
    tok.save_pretrained(root / "short" / "tiny")
    adapters = root / "adapters"
    spec = uncertainty_spec("alpha", INVOCATION)

    def adapter(name: str, base=model, **kwargs) -> Path:
        path = save_random_alora(base, tok, INVOCATION, adapters / name, **kwargs)
        write_spec_file(spec, path)
        return path

    adapter("granite", base_model_name="ibm-granite/granite-3.3-8b-instruct")
    adapter("smaller", base=tiny_model(tok, hidden=32), base_model_name="tiny")
    adapter("deeper", base=tiny_model(tok, layers=3), base_model_name="tiny")
    plain = save_random_alora(model, tok, INVOCATION, adapters / "plain", lora=True, base_model_name="tiny")
    write_spec_file(spec, plain)
    (adapter("noweights", base_model_name="tiny") / "adapter_model.safetensors").unlink()
    shutil.copytree(adapters / "alpha", adapters / "otherinvocation")
    write_spec_file(spec.replace(invocation="<|im_start|>rewrite\n"), adapters / "otherinvocation")
    return root


def run(
    project: Path, adapter: str, *, model: str = "tiny", question: str = "When?", trace: Path | None = None
):
    flow = project / f"flow-{adapter}-{model.replace('/', '-')}.yaml"
    flow.write_text(FLOW.replace("MODEL", model).replace("ADAPTER", adapter))
    extra = ["--trace-json", str(trace)] if trace else []
    return runner.invoke(app, ["run", str(flow), "--input", f"question={question}", *extra])


def error_line(result) -> str:
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_the_good_adapter_runs(project):
    result = run(project, "alpha")
    assert result.exit_code == 0, result.output
    assert 0.0 <= json.loads(result.stdout)["certainty"]["score"] <= 1.0


@pytest.mark.parametrize(
    "adapter, message, fix",
    [
        (
            "granite",
            "trained for base model 'ibm-granite/granite-3.3-8b-instruct'",
            "Load the matching base model",
        ),
        ("smaller", "different model size", "trained for a different model size"),
        ("deeper", "which the base model does not have", "different architecture"),
        ("plain", "is a plain LoRA", "Retrain it as an aLoRA"),
        ("noweights", "no adapter_model.safetensors", "re-copy or re-train"),
        ("otherinvocation", "is invoked by tokens", "fix the invocation in intrinsic.yaml"),
    ],
)
def test_adapter_faults_are_typed_one_line_errors_before_any_step(project, adapter, message, fix):
    result = run(project, adapter)
    assert result.exit_code == 1, result.output
    line = error_line(result)
    assert message in line and fix in line, line
    assert result.stdout == ""  # nothing ran: no final state, no base-model stand-in


def test_missing_adapter_directory_fails_validation_with_file_line_node(project):
    result = run(project, "missing")
    assert result.exit_code == 2  # caught before any model loads
    line = error_line(result)
    assert "flow-missing-tiny.yaml:8: node 'rate':" in line and "'alpha'" in line


def test_missing_adapter_directory_is_named_in_the_error(project):
    assert "adapters/missing" in error_line(run(project, "missing"))


def test_missing_model_is_a_typed_error(project):
    result = run(project, "alpha", model="no-such-model-dir")
    assert result.exit_code == 1
    assert "neither 'embedded', an existing local directory, nor a hub id" in error_line(result)


def test_context_overflow_stops_the_step_with_a_fix(project, tmp_path):
    trace_path = tmp_path / "trace.json"
    long_question = "Where is the river? " * 40  # far beyond the 64 positions of 'short'
    result = run(project, "alpha", model="short/tiny", question=long_question, trace=trace_path)
    assert result.exit_code == 1
    line = error_line(result)
    assert "node 'ask'" in line and "the model's context is 64 tokens" in line
    assert "shorten the documents" in line and "lower max_new_tokens" in line
    trace = json.loads(trace_path.read_text())
    assert trace["steps"] == [] and "context is 64 tokens" in trace["error"]


def test_generation_that_would_overflow_is_refused_before_generating(project, tmp_path):
    """The prompt fits but prompt + max_new_tokens does not: refused at the generate step."""
    from alora_flows.core.chat import ChatRenderer

    renderer = ChatRenderer(tiny_tokenizer())

    def fits(question: str, *, answer_room: int) -> bool:
        messages = [{"role": "user", "content": question}]
        return len(renderer.ids(messages, add_generation_prompt=True)) + answer_room <= 64

    question = next(
        q
        for q in ("river " * k for k in range(1, 60))
        if fits(q, answer_room=0) and not fits(q, answer_room=4)
    )
    result = run(project, "alpha", model="short/tiny", question=question, trace=tmp_path / "trace.json")
    assert result.exit_code == 1
    line = error_line(result)
    assert "node 'answer'" in line and "4 more may be generated" in line
    steps = json.loads((tmp_path / "trace.json").read_text())["steps"]
    assert [s["node"] for s in steps] == ["ask"]
