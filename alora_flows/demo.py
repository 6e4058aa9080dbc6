"""``alora-flows demo``: the RAG example on the embedded model, with the live trace and a summary.

The demo runs ``examples/rag/flow.yaml``: rewrite -> retrieve -> answer -> uncertainty ->
(low: retry once with more documents, then abstain) -> hallucination -> (unfaithful: regenerate
strictly once, then flag). ``--chat`` keeps one session across questions, so follow-ups reuse the
growing conversation's cache and the rewrite intrinsic resolves "it"/"its" against it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table

#: Unanswerable from the documents: a plain RAG pipeline invents a source ("Mount Qimso"); the flow
#: retries with more documents when certainty is low, then abstains (examples/rag/results/
#: rag_eval.json, q22). The earlier demo question, q13, is one the flow now gets wrong (README).
DEFAULT_QUESTION = "Where does Juhoskor spring from?"
FLOW_FILE = Path(__file__).resolve().parent.parent / "examples" / "rag" / "flow.yaml"


class DemoRunner:
    """Model, adapters and one session, loaded once; runs the RAG flow per question."""

    def __init__(self, *, reuse: bool = True, flow_file: Path = FLOW_FILE) -> None:
        from alora_flows.cli import load_flow_backend
        from alora_flows.flow import Flow
        from alora_flows.session import Session

        self.flow = Flow.from_yaml(flow_file)
        self.flow.validate()
        self.backend, self.specs = load_flow_backend(self.flow, flow_file.parent)
        self.session = Session(self.backend, reuse=reuse)

    def ask(self, question: str, *, seed: int | None = None, listeners: list[Any] = ()) -> Any:
        return self.flow.run(self.session, {"question": question}, seed=seed,
                             listeners=list(listeners), intrinsic_specs=self.specs)


def summary_panel(result: Any, baseline: Any = None) -> Panel:
    """Answer, certainty, faithfulness, documents used, and what reuse saved."""
    from examples.rag.tools import search

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
        docs = [doc_id for doc_id, _, _ in search(str(values["query"]), int(values.get("k", 2)))]
        grid.add_row("documents", ", ".join(docs) or "none")
    branches = [f"{s.node} -> {s.next} ({s.branch})" for s in trace.steps
                if s.branch and s.branch != "default" and s.kind == "intrinsic"]
    if branches:
        grid.add_row("branches", "\n".join(branches))
    for step in trace.steps:
        if step.kind == "intrinsic":
            share = step.reused_tokens / step.context_tokens if step.context_tokens else 1.0
            grid.add_row(f"  {step.node}", f"reused {step.reused_tokens} of {step.context_tokens} "
                         f"conversation tokens ({share:.0%}), ran {step.prefill_tokens} new")
    totals = trace.compute_totals()
    line = (f"prefilled {totals.prefill_tokens} tokens, reused {totals.reused_tokens}, "
            f"generated {totals.generated_tokens}, {totals.seconds:.1f} s")
    if baseline is not None:
        base = baseline.trace.compute_totals()
        line += (f"\nwithout reuse (measured): prefilled {base.prefill_tokens} tokens, "
                 f"{base.seconds:.1f} s -> saved {base.prefill_tokens - totals.prefill_tokens} "
                 f"tokens and {base.seconds - totals.seconds:.1f} s")
    else:
        line += "\n(run with --compare to measure the same question without reuse)"
    return Panel(Group(grid, "", line), title="alora-flows demo", border_style="green")


def demo(
    question: Annotated[Optional[str], typer.Option("--question", "-q",
                                                    help="The question to answer.")] = None,
    chat: Annotated[bool, typer.Option("--chat", help="Ask follow-up questions in one session.")
                    ] = False,
    no_reuse: Annotated[bool, typer.Option("--no-reuse", help="Re-prefill for every call.")
                        ] = False,
    compare: Annotated[bool, typer.Option(
        "--compare", help="Also run the question without reuse and report measured savings.")
    ] = False,
    trace_json: Annotated[Optional[Path], typer.Option("--trace-json",
                                                       help="Write the trace as JSON.")] = None,
    seed: Annotated[Optional[int], typer.Option("--seed")] = None,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
) -> None:
    """Answer a question over the shipped documents with intrinsic checks (RAG example)."""
    from alora_flows.cli import cli_errors, err_console
    from alora_flows.flow import TraceJsonWriter
    from alora_flows.flow.live import LiveView

    console = Console()
    with cli_errors(debug):
        runner = DemoRunner(reuse=not no_reuse)
        pending = [question or DEFAULT_QUESTION]
        while pending:
            current = pending.pop()
            listeners: list[Any] = [TraceJsonWriter(trace_json)] if trace_json else []
            with LiveView(err_console()) as live:
                result = runner.ask(current, seed=seed, listeners=[live, *listeners])
            baseline = None
            if compare:
                cold = DemoRunner(reuse=False)
                baseline = cold.ask(current, seed=seed)
            console.print(summary_panel(result, baseline))
            if chat:
                follow_up = console.input("[bold]follow-up[/] (empty to quit): ").strip()
                if follow_up:
                    pending.append(follow_up)


def register(app: typer.Typer) -> None:
    """Add ``demo`` to the main app."""
    app.command("demo")(demo)
