"""The demo: the RAG example on the embedded model, shipped as package data so that a wheel
install runs ``alora-flows demo``.

It runs ``alora_flows/demo/flow.yaml`` over the documents in ``corpus/`` (BM25,
:mod:`alora_flows.demo.retrieval`): rewrite -> retrieve -> answer -> uncertainty ->
(low: retry once with more documents, then abstain) -> hallucination -> (unfaithful: regenerate
strictly once, then flag). ``--chat`` keeps one session across questions, so follow-ups reuse the
growing conversation's cache and the rewrite intrinsic resolves "it"/"its" against it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table

#: Unanswerable from the documents: a plain RAG pipeline invents a source ("Mount Qimso"); the flow
#: retries with more documents when certainty is low, then abstains (examples/rag/results/
#: rag_eval.json, q22). The earlier demo question, q13, is one the flow now gets wrong (README).
DEFAULT_QUESTION = "Where does Juhoskor spring from?"
FLOW_FILE = Path(__file__).resolve().parent / "flow.yaml"


class DemoRunner:
    """Model, adapters and one session, loaded once; runs the RAG flow per question."""

    def __init__(self, *, reuse: bool = True, flow_file: Path = FLOW_FILE, device: str | None = None) -> None:
        from alora_flows.app import load_flow_backend
        from alora_flows.core.session import Session
        from alora_flows.flow import Flow

        self.flow = Flow.from_yaml(flow_file)
        self.flow.validate()
        self.backend, self.specs = load_flow_backend(self.flow, flow_file.parent, device=device)
        self.session = Session(self.backend, reuse=reuse)

    def ask(self, question: str, *, seed: int | None = None, listeners: Sequence[Any] = ()) -> Any:
        return self.flow.run(
            self.session,
            {"question": question},
            seed=seed,
            listeners=list(listeners),
            intrinsic_specs=self.specs,
        )


def summary_panel(result: Any, baseline: Any = None) -> Panel:
    """Answer, certainty, faithfulness, documents used, and what reuse saved."""
    from alora_flows.demo.retrieval import retrieve_ids

    values = result.values
    trace = result.trace
    grid = Table.grid(padding=(0, 2))
    grid.add_column(style="bold")
    grid.add_column()
    grid.add_row("answer", str(values.get("answer", "")))
    if "certainty" in values:
        grid.add_row("certainty", f"{values['certainty'].score:.2f}")
    if "hallucination" in values:
        labels = [s.f for s in values["hallucination"].sentences]
        verdict = "unfaithful" if values["hallucination"].unfaithful else "faithful"
        grid.add_row("faithfulness", f"{verdict} ({', '.join(labels) or 'no sentences'})")
    flags = [name for name in ("abstained", "flagged") if values.get(name)]
    if flags:
        grid.add_row("status", ", ".join(flags))
    if "query" in values:
        docs = retrieve_ids(str(values["query"]), int(values.get("k", 2)))
        grid.add_row("documents", ", ".join(docs) or "none")
    branches = [
        f"{s.node} -> {s.next} ({s.branch})"
        for s in trace.steps
        if s.branch and s.branch != "default" and s.kind == "intrinsic"
    ]
    if branches:
        grid.add_row("branches", "\n".join(branches))
    for step in trace.steps:
        if step.kind == "intrinsic":
            share = step.reused_tokens / step.context_tokens if step.context_tokens else 1.0
            grid.add_row(
                f"  {step.node}",
                f"reused {step.reused_tokens} of {step.context_tokens} "
                f"conversation tokens ({share:.0%}), ran {step.prefill_tokens} new",
            )
    totals = trace.compute_totals()
    line = (
        f"prefilled {totals.prefill_tokens} tokens, reused {totals.reused_tokens}, "
        f"generated {totals.generated_tokens}, {totals.seconds:.1f} s"
    )
    if baseline is not None:
        base = baseline.trace.compute_totals()
        line += (
            f"\nwithout reuse (measured): prefilled {base.prefill_tokens} tokens, "
            f"{base.seconds:.1f} s -> saved {base.prefill_tokens - totals.prefill_tokens} "
            f"tokens and {base.seconds - totals.seconds:.1f} s"
        )
    else:
        line += "\n(run with --compare to measure the same question without reuse)"
    return Panel(Group(grid, "", line), title="alora-flows demo", border_style="green")
