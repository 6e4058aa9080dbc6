"""The RAG example: retrieval, the two equal definitions of its flow, judging, and the demo."""

import json

import pytest
from typer.testing import CliRunner

from alora_flows.cli import app
from alora_flows.demo.retrieval import DOCS_DIR, retrieve_ids, search
from alora_flows.flow import Flow
from alora_flows.flow.trace import jsonable
from examples.rag.evaluate import judge, load_questions
from examples.rag.pipeline import build_flow

FLOW_FILE = DOCS_DIR.parent / "flow.yaml"


def test_python_and_yaml_define_the_same_flow():
    assert build_flow() == Flow.from_yaml(FLOW_FILE)
    build_flow().validate()


def test_retrieval_finds_gold_documents_for_most_questions():
    answerable = [q for q in load_questions() if q.get("doc")]
    hits = sum(q["doc"] in retrieve_ids(q["question"], 2) for q in answerable)
    assert hits / len(answerable) >= 0.8
    assert search("zzzz qqqq", 2) == []  # no overlap, no documents


@pytest.mark.parametrize(
    "answer,gold,abstained,verdict",
    [
        ("The chief export of Skoharna is tin cups.", "tin cups", False, "correct"),
        ("The chief export of Skoharna is salt.", "tin cups", False, "wrong"),
        ("I don't know: the documents do not answer this.", "tin cups", True, "abstained"),
        ("The documents do not mention its population.", None, False, "abstained"),
        ("About 4,000 people live there.", None, False, "wrong"),
    ],
)
def test_judge(answer, gold, abstained, verdict):
    assert judge(answer, gold, abstained) == verdict


@pytest.mark.slow
def test_python_and_yaml_flows_end_in_the_same_state():
    from alora_flows.core.session import Session
    from alora_flows.demo import DemoRunner

    runner = DemoRunner()
    python_flow = build_flow()
    for q in load_questions()[:2]:
        runner.session = Session(runner.backend)
        from_yaml = runner.ask(q["question"])
        session = Session(runner.backend)
        from_python = python_flow.run(session, {"question": q["question"]}, intrinsic_specs=runner.specs)
        assert {k: jsonable(v) for k, v in from_yaml.values.items()} == {
            k: jsonable(v) for k, v in from_python.values.items()
        }


@pytest.mark.slow
def test_demo_runs_and_intrinsics_reuse_the_conversation(tmp_path):
    trace_file = tmp_path / "trace.json"
    result = CliRunner().invoke(app, ["demo", "--trace-json", str(trace_file)])
    assert result.exit_code == 0, result.output
    assert "answer" in result.output and "certainty" in result.output
    trace = json.loads(trace_file.read_text())
    intrinsic_steps = [s for s in trace["steps"] if s["kind"] == "intrinsic"]
    assert [s["node"] for s in intrinsic_steps] == ["rewrite"]  # before any conversation exists
    checks = [s for s in trace["steps"] if s["kind"] == "parallel"]
    assert checks and all(s["node"] == "checks" for s in checks)
    for step in checks:  # both checks, side by side, in one packed pass over the cached conversation
        assert set(step["output"]) == {"certainty", "check"}
        assert step["reused_tokens"] >= 0.9 * step["context_tokens"]
    # The path through the graph depends on what the intrinsics said.
    assert any(s["branch"] for s in checks)


def test_the_flow_hands_documents_over_and_retries_from_the_question():
    """Both retry paths rewind to the mark set before the first attempt, and the documents enter
    the session as documents (inline: the intrinsics' training layout)."""
    flow = Flow.from_yaml(FLOW_FILE)
    nodes = flow.nodes
    assert nodes["asked"].mark == "before_answer"
    assert (
        nodes["ask"].message.documents == "{{ documents }}" and nodes["ask"].message.documents_as == "inline"
    )
    graph = flow.to_networkx()
    for retry, rewind in (("widen", "retry_wider"), ("stricter", "retry_strict")):
        assert list(graph.successors(retry)) == [rewind]
        assert nodes[rewind].rewind == "before_answer"
    assert list(graph.successors("retry_wider")) == ["retrieve"]  # more documents, same question
    assert list(graph.successors("retry_strict")) == ["instruct"]  # a stricter instruction


def test_retrieval_searches_another_folder(tmp_path):
    (tmp_path / "a.md").write_text("---\nid: a\n---\nThe Danube flows into the Black Sea.\n")
    (tmp_path / "b.md").write_text("---\nid: b\n---\nMount Fuji is 3,776 metres high.\n")
    assert retrieve_ids("How high is Mount Fuji?", 1, str(tmp_path)) == ["b"]
    from alora_flows.demo import load_flow

    flow = load_flow(docs_dir=tmp_path)
    assert flow.nodes["retrieve"].args["docs_dir"] == str(tmp_path)
    assert build_flow(docs_dir=str(tmp_path)) == flow
