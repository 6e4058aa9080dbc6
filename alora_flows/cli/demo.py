"""``alora-flows demo``: the RAG example on the embedded model, with the live trace and a summary."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console

from alora_flows.cli.common import DebugOption, cli_errors, err_console


def demo(
    question: Annotated[
        Optional[str], typer.Option("--question", "-q", help="The question to answer.")
    ] = None,
    chat: Annotated[bool, typer.Option("--chat", help="Ask follow-up questions in one session.")] = False,
    no_reuse: Annotated[bool, typer.Option("--no-reuse", help="Re-prefill for every call.")] = False,
    compare: Annotated[
        bool,
        typer.Option("--compare", help="Also run the question without reuse and report measured savings."),
    ] = False,
    trace_json: Annotated[
        Optional[Path], typer.Option("--trace-json", help="Write the trace as JSON.")
    ] = None,
    seed: Annotated[Optional[int], typer.Option("--seed")] = None,
    debug: DebugOption = False,
) -> None:
    """Answer a question over the shipped documents with intrinsic checks (RAG example)."""
    from alora_flows.demo import DEFAULT_QUESTION, DemoRunner, summary_panel
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
