"""Runs a compiled flow on one Session, one node at a time.

The loop is deliberately plain: execute the node, write its output into the typed state, choose
the next node (first ``when`` that holds, else ``default``), record a :class:`TraceStep`, tell the
listeners, repeat until END or ``max_steps``. Each step's token counts come from the calls the
session recorded while the step ran (``session.history``), so intrinsic specs that make several
calls are counted exactly.

The runner does not know node kinds: each node executes itself through a :class:`_Step` (the
:class:`~alora_flows.flow.nodes.StepContext` it is handed). Three things are generic here:

- *nesting*: a node may run a compiled flow through ``ctx.subflow`` (the ``flow`` kind). A child
  :class:`Runner` shares the session, the listeners and the seed, and knows the enclosing
  :class:`Frame` stack, so its events carry ``path`` and checkpoints can point inside it;
- *pausing*: a node raising :class:`Pause` (the ``interrupt`` kind) stops the run; each runner
  on the way up adds its frame, and the top one returns a paused :class:`RunResult` whose
  :meth:`RunResult.resume` continues from the innermost frame on the live session;
- *retries and error routes*: a node's :meth:`Node.retry_policy` and :meth:`Node.error_route`.

Resuming from a run directory needs only :meth:`Runner.run_from` with a restored state, node and
frame stack (``inside``), and a listener on :class:`StepFinished` to persist after every step.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import AbstractContextManager, nullcontext
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, PrivateAttr, ValidationError

from alora_flows.errors import AloraFlowsError, FlowInputError, FlowRuntimeError
from alora_flows.flow.catalog import Intrinsic
from alora_flows.flow.nodes import Node, Pause, coerce_values
from alora_flows.flow.spec import END, START
from alora_flows.flow.state import state_values, type_name
from alora_flows.flow.trace import (
    Attempt,
    BranchTaken,
    Frame,
    Interrupted,
    InterruptRequest,
    Listener,
    ResumeRecord,
    RunFailed,
    RunFinished,
    RunStarted,
    StepFinished,
    StepRetried,
    StepStarted,
    TokenStreamed,
    Trace,
    TraceStep,
    jsonable,
)
from alora_flows.flow.validation import CompiledFlow
from alora_flows.sandbox.expressions import ExpressionError, evaluate
from alora_flows.sandbox.templates import TemplateError, is_template, map_strings, render


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class RunResult(BaseModel):
    """What a run returns: the final typed state and the trace.

    ``status`` is ``"interrupted"`` when the run paused at an ``interrupt`` node: ``interrupt``
    then says what it waits for, and :meth:`resume` continues it with the person's values on the
    same live session (nothing is prefilled again).
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    state: BaseModel
    trace: Trace
    status: Literal["finished", "interrupted"] = "finished"
    interrupt: InterruptRequest | None = None
    _runner: Runner | None = PrivateAttr(default=None)
    _frames: list[Frame] = PrivateAttr(default_factory=list)
    #: held while a paused run continues (a run directory's lock), set by whoever started it
    _guard: Callable[[], AbstractContextManager[Any]] | None = PrivateAttr(default=None)

    @property
    def values(self) -> dict[str, Any]:
        """The fields that were set, as objects (``result.values["answer"]``)."""
        return state_values(self.state)

    @property
    def interrupted(self) -> bool:
        return self.status == "interrupted"

    def __getitem__(self, name: str) -> Any:
        return getattr(self.state, name)

    def resume(
        self, values: Mapping[str, Any] | None = None, *, listeners: Iterable[Listener] = (), **more: Any
    ) -> RunResult:
        """Continue a paused run with the values it waits for (a mapping or keywords).

        The run goes on in this process on the session it paused with: the conversation and its
        KV cache are still there, so the trace records a resume that rebuilt nothing. Values are
        checked against the interrupt's fields first. ``listeners`` join the run's own for the
        rest of the run. A result can be resumed once; the new result may pause again. The run
        goes on in the same trace and state objects, so this result's ``trace`` grows with it.
        """
        runner, frames = self._runner, self._frames
        if self.interrupt is None or runner is None or not frames:
            raise FlowRuntimeError(
                "only a run paused at an interrupt can be resumed"
                + (" (this one was already resumed)" if self.interrupt is not None else "")
            )
        request = self.interrupt
        checked = coerce_values(request.fields, {**dict(values or {}), **more}, f"interrupt '{request.node}'")
        self._runner, self._frames = None, []
        extra = list(listeners)
        runner.listeners.extend(extra)
        try:
            with (self._guard or nullcontext)():
                return runner.continue_paused(frames, checked, guard=self._guard)
        finally:
            for listener in extra:
                runner.listeners.remove(listener)

    async def aresume(
        self, values: Mapping[str, Any] | None = None, *, listeners: Iterable[Listener] = (), **more: Any
    ) -> RunResult:
        """:meth:`resume` in a worker thread: the event loop keeps running while the model does."""
        from alora_flows.flow.stream import run_async

        return await run_async(lambda extra: self.resume(values, listeners=[*listeners, *extra], **more))


def _root_cause(exc: BaseException) -> BaseException:
    """The error ``exc`` was raised from, first in its chain (a tool's own exception)."""
    seen = {id(exc)}
    while exc.__cause__ is not None and id(exc.__cause__) not in seen:
        exc = exc.__cause__
        seen.add(id(exc))
    return exc


def _message(exc: BaseException) -> str:
    """An engine error's message (it names the tool and the error); others with their type."""
    if isinstance(exc, AloraFlowsError):
        return exc.detail or type(exc).__name__
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


class _Inbox:
    """Values a person gave to a paused run, shared by a runner and its nested runners: the
    first ``interrupt`` step that runs after the resume takes them."""

    def __init__(self) -> None:
        self.values: dict[str, Any] | None = None


class _Step:
    """The :class:`~alora_flows.flow.nodes.StepContext` of one node execution."""

    def __init__(self, runner: Runner, name: str, node: Node, state: BaseModel, index: int) -> None:
        self.runner, self.name, self.node, self.state, self.index = runner, name, node, state, index
        self.session = runner.session
        self.seed = runner.seed
        self.path = runner.path
        self.children: list[TraceStep] | None = None  # the steps of a subflow this step ran

    def values(self) -> dict[str, Any]:
        return state_values(self.state)

    def render(self, source: str, what: str) -> str:
        try:
            return render(source, self.values())
        except TemplateError as exc:
            raise FlowRuntimeError(f"{what} template: {exc}") from None

    def render_value(self, value: Any) -> Any:
        return map_strings(value, lambda text, _: self.render(text, "value") if is_template(text) else text)

    def write(self, field: str | None, value: Any) -> None:
        if not field:
            return
        try:
            setattr(self.state, field, value)
        except ValidationError as exc:
            expected = type_name(self.runner.compiled.field_types.get(field))
            detail = exc.errors()[0]["msg"]
            raise FlowRuntimeError(
                f"produced a {type(value).__name__} for '{field}', which is typed {expected}: {detail}"
            ) from None

    def resource(self) -> Any:
        return self.runner.compiled.resources.get(self.name)

    def intrinsic(self, name: str) -> Intrinsic:
        spec = self.runner.compiled.specs.get(name)
        if spec is None:
            raise FlowRuntimeError(f"no spec for intrinsic '{name}' was found at validation")
        return spec

    def stream(self, text: str) -> None:
        self.runner._emit(TokenStreamed(index=self.index, node=self.name, text=text, path=self.path))

    def subflow(self, compiled: Any, inputs: Mapping[str, Any]) -> RunResult:
        result = self.runner._run_child(self, compiled, inputs)
        self.children = result.trace.steps
        return result

    def take_values(self) -> dict[str, Any] | None:
        inbox = self.runner.inbox
        values, inbox.values = inbox.values, None
        return values


class Runner:
    """Executes one compiled flow on one session; create one per run.

    A runner for a subflow is made by its parent's step (``_run_child``): it shares the session,
    listeners and pending interrupt values, and knows its enclosing ``frames``.
    """

    def __init__(
        self,
        compiled: CompiledFlow,
        session: Any,
        *,
        seed: int | None = None,
        listeners: Iterable[Listener] = (),
    ) -> None:
        self.compiled = compiled
        self.session = session
        self.seed = seed
        self.listeners: list[Listener] = list(listeners)
        self.frames: list[Frame] = []  # the enclosing flows (nested runners only)
        self.inbox = _Inbox()
        self._inside: list[Frame] = []  # where to continue inside the first step (a resume)
        self._trace: Trace | None = None

    @property
    def nested(self) -> bool:
        return bool(self.frames)

    @property
    def path(self) -> list[str]:
        return [frame.node for frame in self.frames]

    # ------------------------------------------------------------------ public
    def new_trace(self) -> Trace:
        backend = getattr(self.session, "backend", None)
        model = getattr(backend, "model_id", None) or self.compiled.spec.model
        return Trace(
            flow=self.compiled.spec.name,
            model=str(model),
            reuse=bool(getattr(self.session, "reuse", True)),
            seed=self.seed,
        )

    def run(self, inputs: Mapping[str, Any]) -> RunResult:
        """Run from START with ``inputs``; returns the final state and the trace."""
        state = self.compiled.new_state(inputs)
        trace = self.new_trace()
        self.emit_started(trace, {k: jsonable(v) for k, v in inputs.items()})
        return self.run_from(state, START, trace)

    def emit_started(
        self, trace: Trace, inputs: Mapping[str, Any], resume: ResumeRecord | None = None
    ) -> None:
        """Tell the listeners that the run starts (or, with ``resume``, continues)."""
        self._emit(
            RunStarted(
                flow=trace.flow,
                model=trace.model,
                reuse=trace.reuse,
                inputs=dict(inputs),
                max_steps=self.compiled.spec.max_steps,
                resume=resume,
            )
        )

    def run_from(
        self,
        state: BaseModel,
        node: str,
        trace: Trace,
        *,
        inside: Sequence[Frame] = (),
        values: Mapping[str, Any] | None = None,
    ) -> RunResult:
        """Continue a run at ``node`` (``START`` to begin) with ``state`` and the trace so far.

        ``inside``: when ``node`` is a subflow that was running, where to continue inside it (one
        frame per nesting level, outermost first). ``values``: what a person supplied to the
        interrupt the run paused at (taken by the first ``interrupt`` step that runs).
        """
        spec = self.compiled.spec
        if inside and (node not in spec.nodes or not spec.nodes[node].nests):
            raise FlowRuntimeError(
                f"the saved position is inside node '{node}', which does not run a subflow in "
                f"flow '{spec.name}' (was the flow edited?)"
            )
        self._inside = list(inside)
        if values is not None:
            self.inbox.values = dict(values)
        self._trace = trace
        trace.interrupt = None
        current: str | None = None
        try:
            if node == START:
                node, _ = self._route(START, state)
            while node != END:
                if len(trace.steps) >= spec.max_steps:
                    last = trace.steps[-1].node if trace.steps else START
                    raise FlowRuntimeError(
                        f"flow '{spec.name}' reached max_steps={spec.max_steps} without reaching "
                        f"END (last node '{last}', next would be '{node}'): a loop did not exit; "
                        "fix its exit condition or raise max_steps"
                    )
                current = node
                step = self._execute(node, state, len(trace.steps))
                if step.error is None:
                    step.next, step.branch = self._route(node, state)
                if step.branch is not None:
                    self._emit(
                        BranchTaken(
                            index=step.index,
                            node=node,
                            to=step.next or END,
                            branch=step.branch,
                            path=self.path,
                        )
                    )
                trace.add_step(step)
                trace.final_state = self._final_state(state)
                self._emit(StepFinished(step=step, state=state, trace=trace, frames=list(self.frames)))
                node, current = step.next or END, None
        except Pause as pause:
            assert current is not None
            pause.frames.insert(0, Frame(node=current, state=state, trace=trace))
            if self.nested:
                raise
            return self._paused(pause, state, trace)
        except BaseException as exc:
            if self.nested:  # the top-level runner reports the failure, once
                raise
            trace.compute_totals()
            trace.final_state = self._final_state(state)
            trace.error = str(exc) or type(exc).__name__
            self._emit(RunFailed(trace=trace, error=trace.error, node=current, state=state))
            raise
        finally:
            self._inside = []
        if not self.nested:
            self._emit(RunFinished(trace=trace, state=state))
        return RunResult(state=state, trace=trace)

    def continue_paused(
        self,
        frames: Sequence[Frame],
        values: Mapping[str, Any],
        *,
        guard: Callable[[], AbstractContextManager[Any]] | None = None,
    ) -> RunResult:
        """Continue a run this runner paused (``frames`` from :class:`Pause`), live session kept."""
        top = frames[0]
        trace = top.trace
        record = ResumeRecord(at_step=len(trace.steps), node=top.node, session="kept", time=now())
        trace.resumes.append(record)
        self.emit_started(trace, {}, resume=record)
        result = self.run_from(top.state, top.node, trace, inside=frames[1:], values=values)
        result._guard = guard
        return result

    def _paused(self, pause: Pause, state: BaseModel, trace: Trace) -> RunResult:
        trace.compute_totals()
        trace.final_state = self._final_state(state)
        trace.interrupt = pause.request
        self._emit(Interrupted(request=pause.request, trace=trace, state=state, frames=pause.frames))
        result = RunResult(state=state, trace=trace, status="interrupted", interrupt=pause.request)
        result._runner, result._frames = self, pause.frames
        return result

    # ------------------------------------------------------------------ steps
    def _emit(self, event: Any) -> None:
        for listener in self.listeners:
            listener(event)

    @staticmethod
    def _final_state(state: BaseModel) -> dict[str, Any]:
        return {k: jsonable(v) for k, v in state_values(state).items()}

    def _run_child(self, step: _Step, compiled: CompiledFlow, inputs: Mapping[str, Any]) -> RunResult:
        """Run ``compiled`` inside ``step`` on this session (a fresh run, or where a resume left it)."""
        assert self._trace is not None
        child = Runner(
            compiled,
            self.session,
            seed=None if self.seed is None else self.seed + step.index,
            listeners=self.listeners,
        )
        child.frames = [*self.frames, Frame(node=step.name, state=step.state, trace=self._trace)]
        child.inbox = self.inbox
        if self._inside:
            position, deeper = self._inside[0], self._inside[1:]
            self._inside = []
            state = position.state
            if not isinstance(state, BaseModel):
                try:
                    state = compiled.state_model(**dict(state))
                except ValidationError as exc:
                    err = exc.errors()[0]
                    raise FlowRuntimeError(
                        f"the saved state of subflow '{compiled.spec.name}' does not fit it "
                        f"(field '{err['loc'][0]}': {err['msg']}); was the subflow edited?"
                    ) from None
            node = position.node
            if node not in (START, END) and node not in compiled.spec.nodes:
                raise FlowRuntimeError(
                    f"the saved position '{node}' is not a node of subflow '{compiled.spec.name}' "
                    "any more; was it edited?"
                )
            return child.run_from(state, node, position.trace, inside=deeper)
        try:
            state = compiled.new_state(inputs)
        except FlowInputError as exc:
            raise FlowRuntimeError(f"subflow '{compiled.spec.name}': {exc.detail}") from None
        return child.run_from(state, START, child.new_trace())

    def _execute(self, name: str, state: BaseModel, index: int) -> TraceStep:
        node = self.compiled.spec.nodes[name]
        adapter = node.adapter()
        policy = node.retry_policy()
        route = node.error_route()
        self._emit(StepStarted(index=index, node=name, kind=node.kind, adapter=adapter, path=self.path))
        history = getattr(self.session, "history", None)
        before = len(history) if history is not None else 0
        # Conversation length when a model step begins: the denominator of its reuse ratio.
        context = len(self.session.ids) if node.uses_session else 0
        # A failed try may have appended turns (a generate's user message): the next try, or the
        # error handler, starts from the conversation as it was before the step.
        messages = getattr(self.session, "messages", None)
        saved = list(messages) if (policy or route) and isinstance(messages, list) else None
        started = time.perf_counter()
        attempts: list[Attempt] = []
        failure: BaseException | None = None
        while True:
            tried = time.perf_counter()
            ctx = _Step(self, name, node, state, index)
            try:
                output = node.execute(ctx)
            except Exception as exc:  # Pause is an Exception too: never retried nor routed
                if isinstance(exc, Pause):
                    raise
                number = len(attempts) + 1
                record = Attempt(
                    number=number,
                    error=_message(exc),
                    error_type=type(_root_cause(exc)).__name__,
                    seconds=round(time.perf_counter() - tried, 6),
                )
                if saved is not None:
                    self.session.messages = list(saved)
                if policy is not None and number < policy.attempts and policy.matches(exc):
                    record.delay = policy.delay(number)
                    attempts.append(record)
                    self._emit(StepRetried(index=index, node=name, attempt=record, path=self.path))
                    if record.delay > 0:
                        time.sleep(record.delay)
                    continue
                if policy is not None:
                    attempts.append(record)
                if route is None:
                    if not isinstance(exc, AloraFlowsError):
                        raise
                    if len(attempts) > 1:
                        tried_all = exc.with_detail(f"{exc.detail} (after {len(attempts)} attempts)")
                        raise tried_all.at(node=name) from exc.__cause__
                    raise exc.at(node=name)  # noqa: B904 - the same error, now naming its node
                failure, output = exc, None
                break
            if policy is not None:
                attempts.append(
                    Attempt(number=len(attempts) + 1, seconds=round(time.perf_counter() - tried, 6))
                )
            break
        seconds = time.perf_counter() - started
        calls: Sequence[Any] = history[before:] if history is not None else []
        step = TraceStep(
            node=name,
            kind=node.kind,
            adapter=adapter,
            index=index,
            prefill_tokens=sum(c.prefill_tokens for c in calls),
            reused_tokens=calls[0].reused_tokens if calls else 0,
            generated_tokens=sum(c.generated_tokens for c in calls),
            context_tokens=context,
            seconds=round(seconds, 6),
            output=jsonable(output),
            attempts=attempts or None,
        )
        if ctx.children is not None:  # a subflow: its steps, and their sums
            step.steps = ctx.children
            step.prefill_tokens = sum(s.prefill_tokens for s in ctx.children)
            step.reused_tokens = sum(s.reused_tokens for s in ctx.children)
            step.generated_tokens = sum(s.generated_tokens for s in ctx.children)
        if failure is not None:
            assert route is not None
            step.error = _message(failure)
            step.next, step.branch = route.to, "on_error"
            ctx.write(route.output, step.error)
        return step

    # ------------------------------------------------------------------ routing
    def _route(self, name: str, state: BaseModel) -> tuple[str, str | None]:
        values: dict[str, Any] | None = None
        for route in self.compiled.routes[name]:
            if route.condition is None:
                return route.to, route.label or None
            try:
                if isinstance(route.condition, str):
                    values = state_values(state) if values is None else values
                    holds = bool(evaluate(route.condition, values))
                else:
                    holds = bool(route.condition(state))
            except ExpressionError as exc:
                raise FlowRuntimeError(f"condition {route.label!r} failed: {exc}", node=name) from None
            except AloraFlowsError:
                raise
            except Exception as exc:
                raise FlowRuntimeError(
                    f"condition {route.label!r} raised {type(exc).__name__}: {exc}", node=name
                ) from exc
            if holds:
                return route.to, route.label
        raise FlowRuntimeError("no branch condition held and there is no default", node=name)
