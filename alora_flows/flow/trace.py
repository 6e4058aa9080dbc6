"""Trace of a run: one record per executed node, the events listeners receive, the JSON writer.

The JSON layout is the ``--trace-json`` contract of DESIGN §2: ``flow``, ``model``, ``reuse``,
``steps`` (``node``, ``kind``, ``adapter``, ``prefill_tokens``, ``reused_tokens``,
``generated_tokens``, ``seconds``, ``output``, ``next``), ``totals``, ``final_state``. Extra keys
come after the contract's (``branch`` and ``index`` per step; ``seed`` and ``error`` at the top).

Events are small pydantic objects passed to every listener (any callable taking one event); the
live view, the JSON writer and a run-directory persister are all listeners. ``StepFinished``
carries the state after the step, so persisting a run after every step is one listener.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field
from pydantic_core import to_jsonable_python


def jsonable(value: Any) -> Any:
    """Any state value as JSON data (pydantic objects dumped, unknown objects as ``repr``)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return to_jsonable_python(value, fallback=repr)


class TraceTotals(BaseModel):
    prefill_tokens: int = 0
    reused_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0


class TraceStep(BaseModel):
    """One executed node. ``reused_tokens`` are the tokens already cached when the step began
    that its first model call took from the cache; ``prefill_tokens`` is every prompt token its
    model calls ran; ``seconds`` is the step's wall time."""

    node: str
    kind: str
    adapter: str | None = None
    prefill_tokens: int = 0
    reused_tokens: int = 0
    generated_tokens: int = 0
    context_tokens: int = 0  # conversation length when a model step began (reuse ratio = reused / this)
    seconds: float = 0.0
    output: Any = None
    next: str | None = None
    branch: str | None = None  # the condition that chose `next` ("default" or the expression)
    index: int = 0


class Trace(BaseModel):
    flow: str
    model: str
    reuse: bool
    steps: list[TraceStep] = Field(default_factory=list)
    totals: TraceTotals = Field(default_factory=TraceTotals)
    final_state: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    error: str | None = None

    def add_step(self, step: TraceStep) -> None:
        """Append ``step`` and update the totals in O(1) (re-summing per step is quadratic)."""
        self.steps.append(step)
        t = self.totals
        t.prefill_tokens += step.prefill_tokens
        t.reused_tokens += step.reused_tokens
        t.generated_tokens += step.generated_tokens
        t.seconds = round(t.seconds + step.seconds, 6)

    def compute_totals(self) -> TraceTotals:
        self.totals = TraceTotals(
            prefill_tokens=sum(s.prefill_tokens for s in self.steps),
            reused_tokens=sum(s.reused_tokens for s in self.steps),
            generated_tokens=sum(s.generated_tokens for s in self.steps),
            seconds=round(sum(s.seconds for s in self.steps), 6),
        )
        return self.totals

    def to_json(self, *, indent: int | None = 2) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=indent, ensure_ascii=False)

    def write(self, path: str | Path) -> Path:
        path = Path(path)
        if path.parent and not path.parent.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(self.to_json() + "\n", encoding="utf-8")
        return path


# ---------------------------------------------------------------------- events
class _Event(BaseModel):
    model_config = ConfigDict(arbitrary_types_allowed=True)


class RunStarted(_Event):
    flow: str
    model: str
    reuse: bool
    inputs: dict[str, Any]
    max_steps: int


class StepStarted(_Event):
    index: int
    node: str
    kind: str
    adapter: str | None = None


class TokenStreamed(_Event):
    """A piece of base-model text as it is generated (``generate`` steps only)."""

    index: int
    node: str
    text: str


class StepFinished(_Event):
    """A node ran and the next node is chosen. ``state`` is the live state object after the step
    (dump it to persist); ``trace`` is the trace so far, this step included."""

    step: TraceStep
    state: BaseModel
    trace: Trace


class RunFinished(_Event):
    trace: Trace
    state: BaseModel


class RunFailed(_Event):
    """The run stopped with an error; ``trace`` holds the steps done and ``error`` the message."""

    trace: Trace
    error: str
    node: str | None = None
    state: BaseModel | None = None


Event = RunStarted | StepStarted | TokenStreamed | StepFinished | RunFinished | RunFailed
Listener = Callable[[Any], None]


class RunListener:
    """Base class for listeners that want one method per event kind (all optional)."""

    def __call__(self, event: Any) -> None:
        handler = {
            RunStarted: self.on_run_started,
            StepStarted: self.on_step_started,
            TokenStreamed: self.on_token,
            StepFinished: self.on_step_finished,
            RunFinished: self.on_run_finished,
            RunFailed: self.on_run_failed,
        }.get(type(event))
        if handler is not None:
            handler(event)

    def on_run_started(self, event: RunStarted) -> None: ...
    def on_step_started(self, event: StepStarted) -> None: ...
    def on_token(self, event: TokenStreamed) -> None: ...
    def on_step_finished(self, event: StepFinished) -> None: ...
    def on_run_finished(self, event: RunFinished) -> None: ...
    def on_run_failed(self, event: RunFailed) -> None: ...


class TraceJsonWriter(RunListener):
    """Writes the ``--trace-json`` file when the run ends, also when it fails (with ``error``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_run_finished(self, event: RunFinished) -> None:
        event.trace.write(self.path)

    def on_run_failed(self, event: RunFailed) -> None:
        event.trace.write(self.path)
