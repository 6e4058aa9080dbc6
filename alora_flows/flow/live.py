"""A rich live view of a run: one row per step, base-model tokens as they stream, a summary.

It is just a listener (see :mod:`alora_flows.flow.trace`), so the runner knows nothing about
terminals. The summary's savings are labelled honestly: the token count not re-prefilled is exact
for the path taken, the time saved is *estimated* from this run's own speed unless a measured
no-reuse baseline trace is given.
"""

from __future__ import annotations

from typing import Any

from rich import box
from rich.console import Console, Group, RenderableType
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
    for name, justify in (
        ("#", "right"),
        ("node", "left"),
        ("kind", "left"),
        ("prefill", "right"),
        ("reused", "right"),
        ("gen", "right"),
        ("time", "right"),
        ("output", "left"),
        ("next", "left"),
    ):
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
            Text(short(step.output, 48)),
            nxt,
        )
    return table


def summary(trace: Trace, baseline: Trace | None = None) -> RenderableType:
    """Totals and what cache reuse saved (measured against ``baseline`` when given)."""
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
        rates = [
            s.seconds / (s.prefill_tokens + s.generated_tokens)
            for s in trace.steps
            if s.prefill_tokens + s.generated_tokens > 0
        ]
        per_token = min(rates) if rates else 0.0
        prompt = t.prefill_tokens + t.reused_tokens
        lines.append(
            f"reuse avoided re-prefilling [bold]{t.reused_tokens}[/] of {prompt} prompt "
            f"tokens; time saved ≈ {t.reused_tokens * per_token:.2f}s ([yellow]estimated"
            "[/] at this run's fastest time per token; --no-reuse measures it)"
        )
    elif not trace.reuse:
        lines.append("cache reuse was [bold]off[/] (--no-reuse): every call re-prefilled the conversation")
    if trace.error:
        lines.append(f"[red]stopped: {trace.error}[/]")
    return Panel("\n".join(lines), title=f"{trace.flow} · {trace.model}", expand=False)


class LiveView(RunListener):
    """Use as a context manager around a run and pass it as a listener::

    with LiveView(console) as view:
        flow.run(session, inputs, listeners=[view])
    """

    def __init__(
        self, console: Console | None = None, *, baseline: Trace | None = None, stream_chars: int = 400
    ) -> None:
        self.console = console or Console(stderr=True)
        self.baseline = baseline
        self.stream_chars = stream_chars
        self.steps: list[TraceStep] = []
        self.current: StepStarted | None = None
        self.streamed = ""
        self.trace: Trace | None = None
        self.title = ""
        self._live: Live | None = None

    def __enter__(self) -> LiveView:
        self._live = Live(self._render(), console=self.console, refresh_per_second=8, transient=False)
        self._live.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._live is not None:
            self._live.update(self._render(), refresh=True)
            self._live.__exit__(*exc)
            self._live = None
            if not self.console.is_terminal:
                self.console.line()
        if self.trace is not None:
            self.console.print(summary(self.trace, self.baseline))

    def _render(self) -> RenderableType:
        parts: list[RenderableType] = [steps_table(self.steps, self.title or None)]
        if self.current is not None:
            head = f"{self.current.node} ({self.current.kind}"
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
        self._refresh()

    def on_step_started(self, event: StepStarted) -> None:
        self.current, self.streamed = event, ""
        self._refresh()

    def on_token(self, event: TokenStreamed) -> None:
        self.streamed += event.text
        self._refresh()

    def on_step_finished(self, event: StepFinished) -> None:
        self.steps.append(event.step)
        self.current, self.streamed = None, ""
        self._refresh()

    def on_run_finished(self, event: RunFinished) -> None:
        self.trace = event.trace
        self._refresh()

    def on_run_failed(self, event: RunFailed) -> None:
        self.trace = event.trace
        self.current = None
        self._refresh()
