"""Trace of a run: one record per executed node, the events listeners receive, the JSON writer.

The JSON layout is the ``--trace-json`` contract of DESIGN §2: ``flow``, ``model``, ``reuse``,
``steps`` (``node``, ``kind``, ``adapter``, ``prefill_tokens``, ``reused_tokens``,
``generated_tokens``, ``seconds``, ``output``, ``next``), ``totals``, ``final_state``. Extra keys
come after the contract's (``branch`` and ``index`` per step; ``seed`` and ``error`` at the top).

Events are small pydantic objects passed to every listener (any callable taking one event); the
live view, the JSON writer, a run-directory persister, the OpenTelemetry exporter and the event
streams of :mod:`alora_flows.flow.stream` are all listeners. ``StepFinished`` carries the state
after the step, so persisting a run after every step is one listener. Steps inside a subflow
emit the same events with ``path`` (the enclosing subflow nodes) set.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer
from pydantic_core import to_jsonable_python


def jsonable(value: Any) -> Any:
    """Any state value as JSON data (pydantic objects dumped, unknown objects as ``repr``)."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    return to_jsonable_python(value, fallback=repr)


def _without_empty(data: Any, keys: tuple[str, ...]) -> Any:
    if isinstance(data, dict):
        for key in keys:
            if key in data and data[key] in (None, []):
                del data[key]
    return data


class TraceTotals(BaseModel):
    prefill_tokens: int = 0
    reused_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0


class Attempt(BaseModel):
    """One try of a step with a retry policy: ``error`` is None for the try that succeeded;
    ``delay`` is the backoff slept after a failed try before the next one."""

    number: int
    error: str | None = None
    error_type: str | None = None
    seconds: float = 0.0
    delay: float = 0.0


class InterruptRequest(BaseModel):
    """What a paused run waits for: a person's values for ``fields`` (name -> type name).

    ``path`` names the subflow nodes the interrupt sits in (outermost first), empty at top level.
    """

    node: str
    path: list[str] = Field(default_factory=list)
    prompt: str
    fields: dict[str, str]


class ResumeRecord(BaseModel):
    """One resume: where it continued and what rebuilding the session cost.

    ``session`` is ``"rebuilt"`` when the conversation was prefilled again from its saved messages
    (``prefill_tokens`` says how many tokens that ran), ``"kept"`` when the live session of the
    paused run was continued (nothing to rebuild: 0 tokens).
    """

    at_step: int
    node: str
    prefill_tokens: int = 0
    seconds: float = 0.0
    session: Literal["rebuilt", "kept"] = "rebuilt"
    time: str


class TraceStep(BaseModel):
    """One executed node. ``reused_tokens`` are the tokens already cached when the step began
    that its first model call took from the cache; ``prefill_tokens`` is every prompt token its
    model calls ran; ``seconds`` is the step's wall time.

    A subflow step holds its child steps in ``steps`` (its token counts are their sums); a step
    with a retry policy lists its tries in ``attempts``; a step whose error was routed to its
    ``on_error`` node records the error in ``error`` (``branch`` is then ``"on_error"``).
    """

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
    steps: list[TraceStep] | None = None  # a subflow's own steps
    attempts: list[Attempt] | None = None  # tries, for a node with a retry policy
    error: str | None = None  # the error routed to the node's on_error target

    @model_serializer(mode="wrap")
    def _lean(self, handler: SerializerFunctionWrapHandler) -> Any:
        """Leave out the keys only some steps have, when a step has none of them."""
        return _without_empty(handler(self), ("steps", "attempts", "error"))


class Trace(BaseModel):
    """A run's record. ``interrupt`` is set while the run waits for a person's input;
    ``resumes`` lists every continuation and what rebuilding its session cost (not counted in
    ``totals``, which sum the steps)."""

    flow: str
    model: str
    reuse: bool
    steps: list[TraceStep] = Field(default_factory=list)
    totals: TraceTotals = Field(default_factory=TraceTotals)
    final_state: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = None
    error: str | None = None
    interrupt: InterruptRequest | None = None
    resumes: list[ResumeRecord] = Field(default_factory=list)

    @model_serializer(mode="wrap")
    def _lean(self, handler: SerializerFunctionWrapHandler) -> Any:
        return _without_empty(handler(self), ("interrupt", "resumes"))

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


class Frame(_Event):
    """Where one level of a (possibly nested) run stands: the flow's ``state``, its ``trace`` so
    far and ``node``, the node it is at (for an enclosing flow: the subflow node running).

    A run inside subflows is a stack of frames, outermost first; checkpoints and paused runs
    keep that stack, so a run continues from inside the innermost subflow. ``state`` may be the
    saved JSON data of the state (a run directory); the runner validates it when it continues.
    """

    node: str
    state: Any
    trace: Trace


class RunStarted(_Event):
    """A run starts, or continues (``resume`` then says from where and at what cost)."""

    flow: str
    model: str
    reuse: bool
    inputs: dict[str, Any]
    max_steps: int
    resume: ResumeRecord | None = None


class StepStarted(_Event):
    """A node starts. ``path``: the subflow nodes it runs inside, outermost first (top level: [])."""

    index: int
    node: str
    kind: str
    adapter: str | None = None
    path: list[str] = Field(default_factory=list)


class TokenStreamed(_Event):
    """A piece of base-model text as it is generated (``generate`` steps only)."""

    index: int
    node: str
    text: str
    path: list[str] = Field(default_factory=list)


class StepRetried(_Event):
    """A try of a step with a retry policy failed; the step runs again after ``attempt.delay``."""

    index: int
    node: str
    attempt: Attempt
    path: list[str] = Field(default_factory=list)


class StepFinished(_Event):
    """A node ran and the next node is chosen. ``state`` is the live state object after the step
    (dump it to persist); ``trace`` is the trace so far, this step included. Inside a subflow,
    both are the subflow's, and ``frames`` holds the enclosing flows (outermost first)."""

    step: TraceStep
    state: BaseModel
    trace: Trace
    frames: list[Frame] = Field(default_factory=list)

    @property
    def path(self) -> list[str]:
        return [frame.node for frame in self.frames]


class BranchTaken(_Event):
    """A conditional edge (or an ``on_error`` route) chose ``to`` after ``node``; ``branch`` is
    the condition that held, ``"default"``, or ``"on_error"``."""

    index: int
    node: str
    to: str
    branch: str
    path: list[str] = Field(default_factory=list)


class Interrupted(_Event):
    """The run paused at an ``interrupt`` node and waits for ``request.fields``.

    ``trace`` and ``state`` are the top-level flow's; ``frames`` is the whole stack down to the
    interrupt node (what a checkpoint saves and what ``RunResult.resume`` continues from).
    """

    request: InterruptRequest
    trace: Trace
    state: BaseModel
    frames: list[Frame]


class RunFinished(_Event):
    trace: Trace
    state: BaseModel


class RunFailed(_Event):
    """The run stopped with an error; ``trace`` holds the steps done and ``error`` the message."""

    trace: Trace
    error: str
    node: str | None = None
    state: BaseModel | None = None


Event = (
    RunStarted
    | StepStarted
    | TokenStreamed
    | StepRetried
    | StepFinished
    | BranchTaken
    | Interrupted
    | RunFinished
    | RunFailed
)
Listener = Callable[[Any], None]


class RunListener:
    """Base class for listeners that want one method per event kind (all optional)."""

    def __call__(self, event: Any) -> None:
        handlers: dict[type, Callable[[Any], None]] = {
            RunStarted: self.on_run_started,
            StepStarted: self.on_step_started,
            TokenStreamed: self.on_token,
            StepRetried: self.on_step_retried,
            StepFinished: self.on_step_finished,
            BranchTaken: self.on_branch_taken,
            Interrupted: self.on_interrupted,
            RunFinished: self.on_run_finished,
            RunFailed: self.on_run_failed,
        }
        handler = handlers.get(type(event))
        if handler is not None:
            handler(event)

    def on_run_started(self, event: RunStarted) -> None: ...
    def on_step_started(self, event: StepStarted) -> None: ...
    def on_token(self, event: TokenStreamed) -> None: ...
    def on_step_retried(self, event: StepRetried) -> None: ...
    def on_step_finished(self, event: StepFinished) -> None: ...
    def on_branch_taken(self, event: BranchTaken) -> None: ...
    def on_interrupted(self, event: Interrupted) -> None: ...
    def on_run_finished(self, event: RunFinished) -> None: ...
    def on_run_failed(self, event: RunFailed) -> None: ...


class TraceJsonWriter(RunListener):
    """Writes the ``--trace-json`` file when the run ends, also when it fails (with ``error``)
    or pauses for input (with ``interrupt``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def on_interrupted(self, event: Interrupted) -> None:
        event.trace.write(self.path)

    def on_run_finished(self, event: RunFinished) -> None:
        event.trace.write(self.path)

    def on_run_failed(self, event: RunFailed) -> None:
        event.trace.write(self.path)
