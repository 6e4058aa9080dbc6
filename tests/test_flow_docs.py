"""The examples in docs/flows.md really run."""

import re
from pathlib import Path

import pytest

from alora_flows.flow import Flow

DOC = Path(__file__).resolve().parents[1] / "docs" / "flows.md"


def blocks(language: str) -> list[str]:
    return re.findall(rf"```{language}\n(.*?)```", DOC.read_text(), flags=re.S)


def test_python_example_runs(capsys):
    code = blocks("python")[0]  # the first example; later sections' examples: test_orchestration_docs
    namespace: dict = {"__name__": "docs_example"}
    exec(compile(code, str(DOC), "exec"), namespace)
    result = namespace["result"]
    assert [s.node for s in result.trace.steps][:3] == ["retrieve", "answer", "certainty"]
    certainty = result.trace.steps[2]
    assert certainty.reused_tokens > 0 and certainty.adapter == "uncertainty"
    assert 0.0 <= result.state.certainty.score <= 1.0
    # the invocation (3 tokens) and the answer the uncertainty adapter re-reads after it
    from intrinsics import get_spec

    backend, spec = namespace["backend"], get_spec("uncertainty")
    answer = result.trace.steps[1].output  # the generated answer ('abstain' replaced it in the state)
    reread = spec.adapted_input_ids(backend.tokenizer, {"last_assistant": answer})
    assert len(reread) > len(backend.tokenizer(answer)["input_ids"])
    closing = certainty.context_tokens - certainty.reused_tokens  # the answer's end of turn
    assert 0 < closing <= 3
    assert f"('certainty', {closing + 3 + len(reread)}, " in capsys.readouterr().out


def test_yaml_reference_example_validates():
    (text,) = [b for b in blocks("yaml") if b.startswith("name: rag-with-checks")]
    flow = Flow.from_yaml_text(text)
    pytest.importorskip("alora_flows.demo.retrieval", reason="the RAG example's tools are not written yet")
    flow.validate()
