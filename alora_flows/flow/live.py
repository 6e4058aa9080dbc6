"""A rich live view of a run: one row per step, base-model tokens as they stream, a summary.

It is just a listener (see :mod:`alora_flows.flow.trace`), so the runner knows nothing about
terminals. On a narrow terminal each step takes two short lines; when the output is not a
terminal (logs) each finished step is one plain line, printed at once. The summary's savings are
labelled honestly: the token count not re-prefilled is exact for the path taken; the time saved is
*estimated* from the machine's measured prefill time per token unless a measured no-reuse
baseline trace is given.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from rich import box
from rich.console import Console, Group, JustifyMethod, RenderableType
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from alora_flows.flow.nodes import NODE_KINDS
from alora_flows.flow.trace import (
    RunFailed,
    RunFinished,
    RunListener,
    RunStarted,
    StepFinished,
    StepStarted,
    TokenStreamed,
    Trace,
    TraceStep,
)


def kind_style(kind: str) -> str:
    """The rich style a node kind declares (white for kinds this process does not know)."""
    cls = NODE_KINDS.get(kind)
    return cls.style if cls is not None else "white"


def branch_outputs(step: TraceStep) -> dict[str, Any] | None:
    """A step's branches and their outputs, when its kind runs branches (``parallel``, ``map``:
    :attr:`Node.branches`) and its output maps them; None otherwise."""
    cls = NODE_KINDS.get(step.kind)
    if cls is None or not cls.branches or not isinstance(step.output, dict) or not step.output:
        return None
    return step.output


def branch_lines(step: TraceStep, width: int, indent: int = 3) -> list[Text] | None:
    """The branches of a parallel step side by side, one line each under the step, names
    aligned, outputs cut at ``width``: ``├ certainty  score=0.41 digit=3``."""
    branches = branch_outputs(step)
    if branches is None:
        return None
    name_width = min(max(len(str(name)) for name in branches), 14)
    lines = []
    for i, (name, output) in enumerate(branches.items()):
        line = Text(" " * indent + ("└ " if i == len(branches) - 1 else "├ "), style="dim")
        line.append_text(_fit(Text(str(name), style=kind_style(step.kind)), name_width))
        line.pad_right(indent + 2 + name_width + 2 - len(line))
        line.append(short(output, 10_000))
        lines.append(_fit(line, width))
    return lines


def _compact(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.3g}"
    if isinstance(value, dict):
        return " ".join(f"{k}={_compact(v)}" for k, v in value.items())
    if isinstance(value, list):
        return "[" + ", ".join(_compact(v) for v in value) + "]"
    return str(value)


def short(value: Any, width: int = 40) -> str:
    """One-line preview of a step output (``score=0.41 digit=0`` for an intrinsic output)."""
    text = " ".join(_compact(value).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def steps_table(steps: list[TraceStep], title: str | None = None) -> Table:
    """Steps as a table: fixed-width numbers, node/output/next share the rest of the width."""
    table = Table(
        title=title,
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        show_edge=False,
        collapse_padding=True,
    )
    columns: tuple[tuple[str, JustifyMethod], ...] = (
        ("#", "right"),
        ("node", "left"),
        ("kind", "left"),
        ("prefill", "right"),
        ("reused", "right"),
        ("gen", "right"),
        ("time", "right"),
        ("output", "left"),
        ("next", "left"),
    )
    for name, justify in columns:
        # only output/next may wrap, so a narrow terminal squeezes them, not the numbers
        table.add_column(name, justify=justify, no_wrap=name not in ("output", "next"))
    for step in steps:
        nxt = step.next or ""
        if step.branch:
            nxt += f"  [dim]({short(step.branch, 30)})[/dim]"
        table.add_row(
            str(step.index),
            step.node,
            f"[{kind_style(step.kind)}]{step.kind}[/]"
            + (f" [bold]{step.adapter}[/]" if step.adapter else ""),
            str(step.prefill_tokens),
            str(step.reused_tokens),
            str(step.generated_tokens),
            f"{step.seconds:.2f}s",
            Text("" if branch_outputs(step) else short(step.output, 48)),
            nxt,
        )
        for i, (name, output) in enumerate((branch_outputs(step) or {}).items()):
            last = i == len(step.output) - 1
            table.add_row(
                "", f"[dim]{'└' if last else '├'}[/] {name}", "", "", "", "", "", Text(short(output, 48)), ""
            )
    return table


#: Below this many columns the live view puts each step on two short lines instead of a table row.
WIDE = 100


def _fit(text: Text, width: int) -> Text:
    text = text.copy()
    text.truncate(max(1, width), overflow="ellipsis")
    return text


def _branch_text(step: TraceStep) -> str:
    return f"if {step.branch}" if step.branch and step.branch != "default" else ""


KIND_WIDTH = 13  # "hallucination"


def compact_step(step: TraceStep, width: int, node_width: int = 12) -> list[Text]:
    """A step in at most three lines of at most ``width`` columns (for 80-column terminals):
    the numbers on the first (an intrinsic shows its adapter, in the intrinsic colour, instead of
    its kind), the output on the second, and the condition that chose ``next`` on a third when
    one did. Long names and outputs are cut with an ellipsis, never wrapped."""
    head = Text(f"{step.index:>2} ")
    head.append_text(_fit(Text(step.node), node_width))
    head.pad_right(3 + node_width + 1 - len(head))
    head.append_text(_fit(Text(step.adapter or step.kind, style=kind_style(step.kind)), KIND_WIDTH))
    head.pad_right(3 + node_width + 1 + KIND_WIDTH - len(head))
    head.append(
        f" {step.prefill_tokens:>7} {step.reused_tokens:>6} {step.generated_tokens:>4} {step.seconds:>6.2f}s"
    )
    head.append(f"  → {step.next or ''}", style="bold")
    lines = [_fit(head, width)]
    lines.extend(branch_lines(step, width) or [_fit(Text("   " + short(step.output, 10_000)), width)])
    if _branch_text(step):
        lines.append(_fit(Text(f"     {_branch_text(step)}", style="dim"), width))
    return lines


def compact_steps(steps: list[TraceStep], title: str | None, width: int) -> Group:
    """:func:`compact_step` for every step, under a title and a column header."""
    node_width = min(max([4, *(len(s.node) for s in steps)]), 14)
    header = Text(
        f"{'#':>2} {'node':<{node_width}} {'kind':<{KIND_WIDTH}} {'prefill':>7} {'reused':>6} "
        f"{'gen':>4} {'time':>7}  next",
        style="bold",
    )
    lines: list[RenderableType] = []
    if title:
        lines.append(_fit(Text(title, style="italic"), width))
    lines.append(_fit(header, width))
    for step in steps:
        lines.extend(compact_step(step, width, node_width))
    return Group(*lines)


def plain_step(step: TraceStep, path: Sequence[str] = ()) -> str:
    """One log line per step: what ran, what it cost, where the flow went, what it produced.
    A step inside subflows is named by its path (``review/rate``), so a log reads unambiguously."""
    kind = f"{step.kind} {step.adapter}" if step.adapter else step.kind
    branch = f" {_branch_text(step)}" if _branch_text(step) else ""
    node = "/".join([*path, step.node])
    return (
        f"step {step.index} {node} ({kind}): prefill {step.prefill_tokens}, reused "
        f"{step.reused_tokens}, generated {step.generated_tokens}, {step.seconds:.2f}s -> "
        f"{step.next or '-'}{branch} | {short(step.output, 160)}"
    )


def _seconds(value: float) -> str:
    return f"{value:.2f}s" if value >= 0.1 else f"{value:.2g}s"


def summary_lines(trace: Trace, baseline: Trace | None = None, per_token: float | None = None) -> list[str]:
    """The summary's lines (rich markup). What reuse saved is measured against ``baseline`` when
    given; else the time is estimated as the reused tokens times ``per_token`` (seconds one more
    prefilled token costs on this machine, timed apart), and left out when that is unknown."""
    t = trace.totals
    lines = [
        f"[bold]{len(trace.steps)}[/] steps · prefilled [bold]{t.prefill_tokens}[/] · "
        f"reused [bold]{t.reused_tokens}[/] · generated [bold]{t.generated_tokens}[/] "
        f"tokens · [bold]{t.seconds:.2f}s[/]"
    ]
    if baseline is not None:
        b = baseline.totals
        lines.append(
            f"saved vs the no-reuse run ([green]measured[/]): "
            f"{b.prefill_tokens - t.prefill_tokens} prefill tokens, "
            f"{b.seconds - t.seconds:.2f}s ({b.seconds:.2f}s → {t.seconds:.2f}s)"
        )
    elif trace.reuse and t.reused_tokens:
        prompt = t.prefill_tokens + t.reused_tokens
        lines.append(f"reuse avoided re-prefilling [bold]{t.reused_tokens}[/] of {prompt} prompt tokens")
        if per_token is not None:
            lines.append(
                f"time saved ≈ {_seconds(t.reused_tokens * per_token)} ([yellow]estimated[/]: "
                f"{per_token * 1000:.3g} ms per prefilled token, timed after the run; "
                "--no-reuse measures it)"
            )
    elif not trace.reuse:
        lines.append("cache reuse was [bold]off[/] (--no-reuse): every call re-prefilled the conversation")
    if trace.error:
        lines.append(f"[red]stopped: {trace.error}[/]")
    return lines


def summary(trace: Trace, baseline: Trace | None = None, per_token: float | None = None) -> RenderableType:
    """:func:`summary_lines` in a panel titled with the flow and the model."""
    return Panel(
        "\n".join(summary_lines(trace, baseline, per_token)),
        title=f"{trace.flow} · {trace.model}",
        expand=False,
    )


class LiveView(RunListener):
    """Use as a context manager around a run and pass it as a listener::

    with LiveView(console) as view:
        flow.run(session, inputs, listeners=[view])

    On a terminal it redraws a table of the steps (two short lines per step below :data:`WIDE`
    columns) with the tokens being generated. When the console is not a terminal (a log file, a
    pipe, CI) it prints one plain line per finished step instead, flushed at once, so a run that
    is killed still leaves the steps it finished. ``plain`` forces either mode.

    ``note`` is a line shown (dim) under the title, e.g. the CPU threads the run uses.
    ``prefill_cost``, when given, is called once after a run with reuse to get the seconds one
    more prefilled token costs (``alora_flows.app`` times it on the run's model); the summary
    then estimates the time reuse saved.
    """

    def __init__(
        self,
        console: Console | None = None,
        *,
        baseline: Trace | None = None,
        stream_chars: int = 400,
        plain: bool | None = None,
        prefill_cost: Callable[[], float | None] | None = None,
        note: str | None = None,
    ) -> None:
        self.console = console or Console(stderr=True)
        self.baseline = baseline
        self.stream_chars = stream_chars
        self.plain = (not self.console.is_terminal) if plain is None else plain
        self.prefill_cost = prefill_cost
        self.note = note
        self.steps: list[TraceStep] = []
        self.current: StepStarted | None = None
        self.streamed = ""
        self.trace: Trace | None = None
        self.title = ""
        self._live: Live | None = None

    def __enter__(self) -> LiveView:
        if not self.plain:
            self._live = Live(self._render(), console=self.console, refresh_per_second=8, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
            self._live.__exit__(*exc)
            self._live = None
        if self.trace is not None:
            per_token = None
            if self.baseline is None and self.trace.reuse and self.trace.totals.reused_tokens:
                per_token = self.prefill_cost() if self.prefill_cost is not None else None
            if self.plain:
                for line in summary_lines(self.trace, self.baseline, per_token):
                    self._say(line, markup=True)
            else:
                self.console.print(summary(self.trace, self.baseline, per_token))

    def _say(self, line: str, *, markup: bool = False) -> None:
        """One log line, never wrapped, flushed at once."""
        self.console.print(line, soft_wrap=True, markup=markup, highlight=False)
        self.console.file.flush()

    def _render(self) -> RenderableType:
        width = self.console.width
        table: RenderableType = (
            steps_table(self.steps, self.title or None)
            if width >= WIDE
            else compact_steps(self.steps, self.title or None, width)
        )
        parts: list[RenderableType] = [table]
        if self.note and self.title:
            parts.insert(0, Text(self.note, style="dim", overflow="ellipsis", no_wrap=True))
        if self.current is not None:
            head = f"{'/'.join([*self.current.path, self.current.node])} ({self.current.kind}"
            head += f": {self.current.adapter})" if self.current.adapter else ")"
            body = self.streamed[-self.stream_chars :] if self.streamed else "…"
            parts.append(Panel(Text(body), title=f"running {head}", title_align="left", expand=False))
        return Group(*parts)

    def _refresh(self) -> None:
        if self._live is not None:
            self._live.update(self._render())

    def on_run_started(self, event: RunStarted) -> None:
        mode = "reuse" if event.reuse else "no-reuse"
        self.title = f"{event.flow} · {event.model} · {mode}"
        if self.plain:
            self._say(f"run {self.title}")
            if self.note:
                self._say(self.note)
        self._refresh()

    def on_step_started(self, event: StepStarted) -> None:
        self.current, self.streamed = event, ""
        self._refresh()

    def on_token(self, event: TokenStreamed) -> None:
        self.streamed += event.text
        self._refresh()

    def on_step_finished(self, event: StepFinished) -> None:
        # A subflow's steps finish before the subflow's own step: indent them under it.
        depth = len(event.frames)
        shown = (
            event.step.model_copy(update={"node": "  " * depth + event.step.node}) if depth else event.step
        )
        self.steps.append(shown)
        self.current, self.streamed = None, ""
        if self.plain:
            self._say(plain_step(event.step, event.path))
        self._refresh()

    def on_run_finished(self, event: RunFinished) -> None:
        self.trace = event.trace
        self._refresh()

    def on_run_failed(self, event: RunFailed) -> None:
        self.trace = event.trace
        self.current = None
        if self.plain:
            self._say(f"failed at {event.node or 'the start'}: {event.error}")
        self._refresh()
