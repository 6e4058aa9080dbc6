"""The RAG flow of ``alora_flows/demo/flow.yaml``, built with the Python API (same graph, same state).

python -m examples.rag.pipeline "What is the chief export of Skoharna?"

The retrieved documents enter the conversation as documents (a ``message`` node with
``documents`` rendered ``inline``: in front of the question, as the intrinsics were trained), so
the hallucination check accepts only values found in them; the two checks after the answer run
as branches of one ``parallel`` node (one packed pass); both retries rewind to the mark set
before the first attempt, so the second answer starts from the question.
"""

from __future__ import annotations

import sys

from alora_flows.demo.retrieval import retrieve
from alora_flows.flow import END, Flow
from alora_flows.flow.nodes import (
    IntrinsicNode,
    MarkNode,
    MessageNode,
    MessageParams,
    ParallelNode,
    RewindNode,
)

#: Certainty below this is "low": retry once with more documents, then abstain. Chosen on the
#: uncertainty validation split as the threshold that cuts the most wrong answers net of the
#: correct ones it loses (keeps 51/87 correct, cuts 87/113 wrong answers there).
CERTAINTY_THRESHOLD = 0.55
ABSTAIN = "I don't know: the documents do not answer this."
INSTRUCTION = "Answer only from the documents."
STRICTER = "Answer with one sentence copied from the documents, or say: I don't know."


def build_flow(threshold: float = CERTAINTY_THRESHOLD, docs_dir: str | None = None) -> Flow:
    """The demo flow; ``docs_dir`` makes ``retrieve`` search another folder of documents."""
    low = f"certainty.score < {threshold}"
    intrinsics = {"rewrite": "builtin", "uncertainty": "builtin", "hallucination": "builtin"}
    flow = Flow(
        "rag-with-checks",
        inputs=["question"],
        max_steps=30,
        model="embedded",
        intrinsics=intrinsics,
        start="init",
    )
    flow.set("init", attempt=1, k=2, strict=False, abstained=False, flagged=False, instruction=INSTRUCTION)
    flow.add("asked", MarkNode(mark="before_answer"))
    flow.intrinsic("rewrite", "rewrite", output="query")
    args = {"query": "{{ query }}", "k": "{{ k }}", **({"docs_dir": docs_dir} if docs_dir else {})}
    flow.tool("retrieve", retrieve, args=args, output="documents")
    flow.message("instruct", "system", "{{ instruction }}")
    flow.add(
        "ask",
        MessageNode(
            message=MessageParams(
                role="user",
                content="Question: {{ question }}",
                documents="{{ documents }}",
                documents_as="inline",
            )
        ),
    )
    flow.generate("answer", max_new_tokens=64, output="answer")
    # both checks as branches of one packed pass; a low certainty stops the faithfulness check,
    # whose result the branches below would not read
    checks = {
        "certainty": IntrinsicNode(intrinsic="uncertainty", output="certainty"),
        "check": IntrinsicNode(intrinsic="hallucination", output="hallucination"),
    }
    flow.add("checks", ParallelNode(parallel=checks, cancel_when=f"certainty.score < {threshold}"))
    flow.set("widen", attempt=2, k=4)
    flow.add("retry_wider", RewindNode(rewind="before_answer"))
    flow.set("abstain", answer=ABSTAIN, abstained=True)
    flow.set("stricter", strict=True, instruction=STRICTER)
    flow.add("retry_strict", RewindNode(rewind="before_answer"))
    flow.set("flag", flagged=True)

    flow.edge("init", "asked").edge("asked", "rewrite").edge("rewrite", "retrieve")
    flow.edge("retrieve", "instruct").edge("instruct", "ask").edge("ask", "answer")
    flow.edge("answer", "checks")
    flow.branch(
        "checks",
        [
            (f"{low} and attempt == 1", "widen"),
            (low, "abstain"),
            ("hallucination.unfaithful and not strict", "stricter"),
            ("hallucination.unfaithful", "flag"),
        ],
        default=END,
    )
    flow.edge("widen", "retry_wider").edge("retry_wider", "retrieve").edge("abstain", END)
    flow.edge("stricter", "retry_strict").edge("retry_strict", "instruct").edge("flag", END)
    return flow


def main() -> None:
    from pathlib import Path

    from alora_flows.app import run_flow

    question = " ".join(sys.argv[1:]) or "What is the chief export of Skoharna?"
    result = run_flow(build_flow(), {"question": question}, base_dir=Path(__file__).parent)
    print(result.state.answer)


if __name__ == "__main__":
    main()
