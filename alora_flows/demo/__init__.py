"""The demo: the RAG example on the embedded model, shipped as package data so that a wheel
install runs ``alora-flows demo``.

It runs ``alora_flows/demo/flow.yaml`` over the documents in ``corpus/`` (BM25,
:mod:`alora_flows.demo.retrieval`; ``docs_dir`` for another folder): rewrite -> retrieve ->
answer (the documents handed to the session as documents) -> uncertainty -> (low: rewind to the
question, retry once with more documents, then abstain) -> hallucination -> (unfaithful: rewind,
answer again strictly once, then flag). ``--chat`` keeps one session across questions, so
follow-ups reuse the growing conversation's cache and the rewrite intrinsic resolves "it"/"its"
against it.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from statistics import median
from typing import TYPE_CHECKING, Any

from rich.console import Group
from rich.panel import Panel
from rich.table import Table

if TYPE_CHECKING:
    from alora_flows.app import ReuseComparison

#: Unanswerable from the documents: a plain RAG pipeline invents a source ("Mount Qimso"); the flow
#: retries with more documents when certainty is low, then abstains (examples/rag/results/
#: rag_eval.json, q22). The earlier demo question, q13, is one the flow now gets wrong (README).
DEFAULT_QUESTION = "Where does Juhoskor spring from?"
FLOW_FILE = Path(__file__).resolve().parent / "flow.yaml"


def load_flow(flow_file: Path = FLOW_FILE, *, docs_dir: str | Path | None = None) -> Any:
    """The demo flow; with ``docs_dir``, its ``retrieve`` step searches that folder instead of the
    shipped corpus."""
    from alora_flows.flow import Flow

    flow = Flow.from_yaml(flow_file)
    if docs_dir is not None:
        node = flow.nodes["retrieve"]
        flow.nodes["retrieve"] = node.model_copy(update={"args": {**node.args, "docs_dir": str(docs_dir)}})
    return flow


class DemoRunner:
    """Model, adapters and one session, loaded once; runs the RAG flow per question."""

    def __init__(
        self,
        *,
        reuse: bool = True,
        flow_file: Path = FLOW_FILE,
        device: str | None = None,
        threads: int | None = None,
        docs_dir: str | Path | None = None,
    ) -> None:
        from alora_flows.app import load_flow_backend
        from alora_flows.core.session import Session

        self.docs_dir = docs_dir
        self.flow = load_flow(flow_file, docs_dir=docs_dir)
        self.flow.validate()
        self.backend, self.specs = load_flow_backend(
            self.flow, flow_file.parent, device=device, threads=threads
        )
        self.session = Session(self.backend, reuse=reuse)

    def ask(
        self, question: str, *, seed: int | None = None, listeners: Sequence[Any] = (), session: Any = None
    ) -> Any:
        """Run the flow on ``question`` in the runner's session (or ``session``)."""
        return self.flow.run(
            self.session if session is None else session,
            {"question": question},
            seed=seed,
            listeners=list(listeners),
            intrinsic_specs=self.specs,
        )

    def compare(
        self,
        question: str,
        *,
        start: Any = None,
        repeats: int = 3,
        seed: int | None = None,
        on_run: Callable[[str, Any], None] | None = None,
    ) -> ReuseComparison:
        """Time ``question`` with and without reuse from ``start``'s conversation (see
        :func:`alora_flows.app.compare_reuse`; a no-reuse warm-up run comes first)."""
        from alora_flows.app import compare_reuse

        return compare_reuse(
            self.flow,
            self.backend,
            {"question": question},
            intrinsic_specs=self.specs,
            start=start,
            repeats=repeats,
            seed=seed,
            on_run=on_run,
        )


def faithfulness(labels: Sequence[str], unfaithful: bool) -> str:
    """``faithful (2 sentences)``, ``unfaithful (3 sentences: 2 faithful, 1 unfaithful)``."""
    verdict = "unfaithful" if unfaithful else "faithful"
    if not labels:
        return f"{verdict} (no sentences)"
    counts = Counter(labels)
    n = f"{len(labels)} sentence{'s' if len(labels) != 1 else ''}"
    if len(counts) == 1 and next(iter(counts)) == verdict:
        return f"{verdict} ({n})"
    return f"{verdict} ({n}: " + ", ".join(f"{c} {label}" for label, c in counts.items()) + ")"


#: Step kinds the panel reports reuse and branching for: intrinsic calls, and parallel steps
#: (the flow's checks run as branches of one packed pass).
_CHECKS = ("intrinsic", "parallel")


def reuse_line(step: Any) -> str:
    """What one intrinsic step took from the cache, in words."""
    if not step.context_tokens:
        return f"first call, no conversation to reuse yet; ran {step.prefill_tokens} new"
    share = step.reused_tokens / step.context_tokens
    return (
        f"reused {step.reused_tokens} of {step.context_tokens} conversation tokens "
        f"({share:.0%}), ran {step.prefill_tokens} new"
    )


def rewind_line(step: Any) -> str:
    """What a rewind kept and recomputed, in words."""
    out = step.output if isinstance(step.output, dict) else {}
    return (
        f"back to the question: kept {step.reused_tokens} cached tokens, dropped "
        f"{out.get('dropped_tokens', '?')}, recomputed {step.prefill_tokens}"
    )


def _spread(values: Sequence[float]) -> str:
    return f"{min(values):.1f}-{max(values):.1f} s"


def comparison_lines(comparison: ReuseComparison) -> list[str]:
    """The measured comparison: medians of the alternating rounds, their spread, the saving."""
    reuse, no_reuse, savings = comparison.reuse_seconds, comparison.no_reuse_seconds, comparison.savings
    n = len(savings)
    saved = median(savings)
    share = saved / median(no_reuse) if median(no_reuse) > 0 else 0.0
    lines = [
        f"measured, {n} round{'s' if n != 1 else ''} after a warm-up, order alternating (median, range):",
        f"  without reuse {median(no_reuse):.1f} s ({_spread(no_reuse)}), "
        f"with reuse {median(reuse):.1f} s ({_spread(reuse)})",
        f"  saved {comparison.saved_prefill_tokens} prefill tokens and {saved:.1f} s a run "
        f"({share:.0%}; rounds {_spread(savings)})",
    ]
    cpu_savings = comparison.cpu_savings
    if cpu_savings:
        # CPU time counts only this process's work, so other work on the machine moves it less.
        lines.append(
            f"  CPU time {median(comparison.no_reuse_cpu_seconds):.1f} s and "
            f"{median(comparison.reuse_cpu_seconds):.1f} s, saved {median(cpu_savings):.1f} s "
            f"(rounds {_spread(cpu_savings)})"
        )
    if comparison.other_cpus and median(comparison.other_cpus) >= 0.25:
        lines.append(
            f"  note: other work kept {median(comparison.other_cpus):.1f} CPUs busy; more --repeats "
            "narrow the range"
        )
    if not comparison.same_path:
        lines.append("  [yellow]note: the runs took different paths, so their times differ for that too[/]")
    return lines


def summary_panel(
    result: Any, comparison: ReuseComparison | None = None, *, docs_dir: str | Path | None = None
) -> Panel:
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
    # not about a withdrawn answer, nor a check that a low certainty cancelled (None)
    if values.get("hallucination") is not None and not values.get("abstained"):
        check = values["hallucination"]
        grid.add_row("faithfulness", faithfulness([s.f for s in check.sentences], check.unfaithful))
    flags = [name for name in ("abstained", "flagged") if values.get(name)]
    if flags:
        grid.add_row("status", ", ".join(flags))
    if "query" in values:
        docs = retrieve_ids(
            str(values["query"]), int(values.get("k", 2)), None if docs_dir is None else str(docs_dir)
        )
        grid.add_row("documents", ", ".join(docs) or "none")
    branches = [
        f"{s.node} -> {s.next} ({s.branch})"
        for s in trace.steps
        if s.branch and s.branch != "default" and s.kind in _CHECKS
    ]
    if branches:
        grid.add_row("branches", "\n".join(branches))
    for step in trace.steps:
        if step.kind in _CHECKS:
            grid.add_row(f"  {step.node}", reuse_line(step))
        elif step.kind == "rewind":
            grid.add_row(f"  {step.node}", rewind_line(step))
    totals = trace.compute_totals()
    lines = [
        f"this run: prefilled {totals.prefill_tokens} tokens, reused {totals.reused_tokens}, "
        f"generated {totals.generated_tokens}, {totals.seconds:.1f} s"
    ]
    if comparison is not None:
        lines += comparison_lines(comparison)
    elif trace.reuse:
        lines.append("(--compare measures the same question without reuse)")
    return Panel(Group(grid, "", "\n".join(lines)), title="alora-flows demo", border_style="green")
