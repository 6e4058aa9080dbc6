"""The examples of docs/flows.md's orchestration sections (subflows, interrupts, retries, streams,
OpenTelemetry) really run, their YAML validates, and examples/flows/ is the inline subflow
example split into two files."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

from alora_flows.flow import Flow
from tests.test_flow_support import FakeSession, specs

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "flows.md"
SECTIONS = [
    "Subflows",
    "Interrupts (human input)",
    "Retries and error routes",
    "Event streams and async",
    "OpenTelemetry",
]


def section(title: str) -> str:
    text = DOC.read_text()
    start = text.index(f"\n## {title}\n")
    end = text.find("\n## ", start + 1)
    return text[start : end if end != -1 else len(text)]


def blocks(text: str, language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", text, flags=re.S)


YAML = [(title, i, block) for title in SECTIONS for i, block in enumerate(blocks(section(title), "yaml"))]
PYTHON = [(title, i, block) for title in SECTIONS for i, block in enumerate(blocks(section(title), "python"))]


def test_every_section_has_examples():
    for title in SECTIONS[:3]:
        assert blocks(section(title), "yaml") and blocks(section(title), "python"), title
    assert blocks(section("Event streams and async"), "python")
    assert len(blocks(section("OpenTelemetry"), "python")) == 2


@pytest.mark.parametrize("title, index, text", YAML, ids=[f"{t}-{i}" for t, i, _ in YAML])
def test_yaml_examples_validate(title, index, text):
    flow = Flow.from_yaml_text(text)
    flow.validate()
    assert Flow.from_yaml_text(flow.to_yaml()) == flow


@pytest.mark.parametrize("title, index, code", PYTHON, ids=[f"{t}-{i}" for t, i, _ in PYTHON])
def test_python_examples_run(title, index, code, capsys):
    if "opentelemetry" in code and importlib.util.find_spec("opentelemetry.sdk") is None:
        pytest.skip("the 'otel' extra is not installed")
    compiled = compile(code, f"{DOC}:{title}", "exec")
    if "OTLPSpanExporter" in code:  # needs a collector: checked for syntax only
        return
    namespace: dict = {"__name__": "docs_example"}
    exec(compiled, namespace)
    out = capsys.readouterr().out
    if title == "Subflows":
        step = namespace["result"].trace.steps[1]
        assert [s.node for s in step.steps] == ["rate", "verdict"] and step.steps[0].reused_tokens > 0
    elif title.startswith("Interrupts"):
        assert namespace["paused"].status == "interrupted" and "interrupted {'approved'" in out
        assert namespace["done"].state.answer == "Velmora was founded in 1832."
        assert namespace["done"].trace.resumes[0].session == "kept"
    elif title == "Retries and error routes":
        attempts = namespace["result"].trace.steps[0].attempts
        assert [(a.error_type, a.delay) for a in attempts] == [
            ("ConnectionError", 0.01),
            ("ConnectionError", 0.02),
            (None, 0.0),
        ]
        assert namespace["result"].state.documents == ["Velmora was founded in 1832."]
    elif title == "Event streams and async":
        assert namespace["stream"].result.state.answer in out and "RunFinished" in out
    elif title == "OpenTelemetry":
        assert "flow rated" in out and "step certainty" in out and "alora.tokens.reused" in out


def test_the_example_files_are_the_inline_example():
    inline = Flow.from_yaml_text(blocks(section("Subflows"), "yaml")[0])
    split = Flow.from_yaml(ROOT / "examples" / "flows" / "answer_and_check.yaml")
    split.validate()
    for score in (0.9, 0.1):
        a = inline.run(FakeSession(), {"question": "Q"}, intrinsic_specs=specs(score))
        b = split.run(FakeSession(), {"question": "Q"}, intrinsic_specs=specs(score))
        assert a.trace.final_state == b.trace.final_state
        assert [s.node for s in a.trace.steps] == [s.node for s in b.trace.steps]
