"""``alora-flows demo``: the RAG example on the embedded model, with the live trace and a summary.

``--chat`` keeps one session: after each answer it reads a follow-up, from the terminal (a
prompt) or, when stdin is not a terminal, one line at a time from stdin; an empty line or the end
of input ends it. Piped, the first line is the first question (unless ``--question`` is given),
so ``printf 'Q1\\nQ2\\n' | alora-flows demo --chat`` asks Q1, then Q2 as its follow-up.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.text import Text

from alora_flows.cli.common import (
    DebugOption,
    DeviceOption,
    ThreadsOption,
    VerboseOption,
    cli_errors,
    err_console,
    model_setup,
)
from alora_flows.errors import UsageError


def read_question(console: Console, prompt: str) -> str | None:
    """The next question: a prompt on a terminal, a plain line from a pipe; None at the end."""
    try:
        if sys.stdin.isatty():
            line = console.input(prompt)
        else:
            line = sys.stdin.readline()
            if not line:
                return None
    except EOFError:  # Ctrl-D at the prompt
        console.print()
        return None
    return line.strip() or None


def demo(
    question: Annotated[
        Optional[str],
        typer.Option(
            "--question", "-q", help="The question to answer (default: one the documents cannot answer)."
        ),
    ] = None,
    chat: Annotated[
        bool,
        typer.Option(
            "--chat",
            help="Then read follow-up questions (a prompt, or lines of stdin) and answer them in one "
            "growing session; an empty line or end of input stops.",
        ),
    ] = False,
    no_reuse: Annotated[
        bool, typer.Option("--no-reuse", help="Re-prefill the whole conversation for every call.")
    ] = False,
    compare: Annotated[
        bool,
        typer.Option(
            "--compare",
            help="Also time the question with and without reuse (a warm-up, then alternating "
            "rounds) and report the measured saving.",
        ),
    ] = False,
    repeats: Annotated[
        int, typer.Option("--repeats", min=1, help="Rounds of --compare (each runs both ways).")
    ] = 3,
    trace_json: Annotated[
        Optional[Path],
        typer.Option("--trace-json", help="Write the trace as JSON (with --chat: of the last question)."),
    ] = None,
    seed: Annotated[
        Optional[int], typer.Option("--seed", help="Seed for sampled generation (the demo decodes greedily).")
    ] = None,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
) -> None:
    """Answer a question over the shipped documents with intrinsic checks (RAG example)."""
    with cli_errors(debug):
        if compare and no_reuse:
            raise UsageError("--compare already runs without reuse; drop --no-reuse")
        note = model_setup(threads=threads, device=device, verbose=verbose)

        from alora_flows.app import prefill_seconds_per_token
        from alora_flows.demo import DEFAULT_QUESTION, DemoRunner, summary_panel
        from alora_flows.flow import TraceJsonWriter
        from alora_flows.flow.live import LiveView

        console, log = Console(), err_console()
        piped = chat and not sys.stdin.isatty()
        current = question or (read_question(log, "") if piped else DEFAULT_QUESTION)
        if not current:
            raise UsageError("--chat read no question from stdin (pipe one per line, or give --question)")
        runner = DemoRunner(reuse=not no_reuse, device=device, threads=threads)

        def prefill_cost() -> float:
            return prefill_seconds_per_token(runner.backend)

        def progress(label: str, trace: Any) -> None:
            log.print(Text(f"compare: {label} run {trace.compute_totals().seconds:.1f} s", style="dim"))

        while current:
            listeners: list[Any] = [TraceJsonWriter(trace_json)] if trace_json else []
            before = runner.session.fork() if compare else None
            with LiveView(log, note=note, prefill_cost=prefill_cost) as live:
                result = runner.ask(current, seed=seed, listeners=[live, *listeners])
            note = None  # said once
            comparison = (
                runner.compare(current, start=before, repeats=repeats, seed=seed, on_run=progress)
                if compare
                else None
            )
            console.print(summary_panel(result, comparison))
            current = read_question(log, "[bold]follow-up[/] (empty to quit): ") if chat else None
