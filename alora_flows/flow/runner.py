"""Runs a compiled flow on one Session, one node at a time.

The loop is deliberately plain: execute the node, write its output into the typed state, choose
the next node (first ``when`` that holds, else ``default``), record a :class:`TraceStep`, tell the
listeners, repeat until END or ``max_steps``. Each step's token counts come from the calls the
session recorded while the step ran (``session.history``), so intrinsic specs that make several
calls are counted exactly.

The runner does not know node kinds: each node executes itself through a :class:`_Step` (the
:class:`~alora_flows.flow.nodes.StepContext` it is handed). Resuming needs only
:meth:`Runner.run_from` with a restored state and node, and a listener on :class:`StepFinished`
to persist the state after every step.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from alora_flows.errors import AloraFlowsError, FlowRuntimeError
from alora_flows.flow.catalog import Intrinsic
from alora_flows.flow.nodes import Node
from alora_flows.flow.spec import END, START
from alora_flows.flow.state import state_values, type_name
from alora_flows.flow.trace import (
    Listener,
    RunFailed,
    RunFinished,
    RunStarted,
    StepFinished,
    StepStarted,
    TokenStreamed,
    Trace,
    TraceStep,
    jsonable,
)
from alora_flows.flow.validation import CompiledFlow
from alora_flows.sandbox.expressions import ExpressionError, evaluate
from alora_flows.sandbox.templates import TemplateError, is_template, render


class RunResult(BaseModel):
    """What a run returns: the final typed state and the trace."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    state: BaseModel
    trace: Trace

    @property
    def values(self) -> dict[str, Any]:
        """The fields that were set, as objects (``result.values["answer"]``)."""
        return state_values(self.state)

    def __getitem__(self, name: str) -> Any:
        return getattr(self.state, name)


class _Step:
    """The :class:`~alora_flows.flow.nodes.StepContext` of one node execution."""

    def __init__(self, runner: Runner, name: str, node: Node, state: BaseModel, index: int) -> None:
        self.runner, self.name, self.node, self.state, self.index = runner, name, node, state, index
        self.session = runner.session
        self.seed = runner.seed

    def values(self) -> dict[str, Any]:
        return state_values(self.state)

    def render(self, source: str, what: str) -> str:
        try:
            return render(source, self.values())
        except TemplateError as exc:
            raise FlowRuntimeError(f"{what} template: {exc}") from None

    def render_value(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.render(value, "value") if is_template(value) else value
        if isinstance(value, Mapping):
            return {k: self.render_value(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.render_value(v) for v in value]
        return value

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
        self.runner._emit(TokenStreamed(index=self.index, node=self.name, text=text))


class Runner:
    """Executes one compiled flow on one session; create one per run."""

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
        self._emit(
            RunStarted(
                flow=trace.flow,
                model=trace.model,
                reuse=trace.reuse,
                inputs={k: jsonable(v) for k, v in inputs.items()},
                max_steps=self.compiled.spec.max_steps,
            )
        )
        return self.run_from(state, START, trace)

    def run_from(self, state: BaseModel, node: str, trace: Trace) -> RunResult:
        """Continue a run at ``node`` (``START`` to begin) with ``state`` and the trace so far."""
        spec = self.compiled.spec
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
                step.next, step.branch = self._route(node, state)
                trace.add_step(step)
                trace.final_state = self._final_state(state)
                self._emit(StepFinished(step=step, state=state, trace=trace))
                node, current = step.next, None
        except BaseException as exc:
            trace.compute_totals()
            trace.final_state = self._final_state(state)
            trace.error = str(exc) or type(exc).__name__
            self._emit(RunFailed(trace=trace, error=trace.error, node=current, state=state))
            raise
        self._emit(RunFinished(trace=trace, state=state))
        return RunResult(state=state, trace=trace)

    # ------------------------------------------------------------------ steps
    def _emit(self, event: Any) -> None:
        for listener in self.listeners:
            listener(event)

    @staticmethod
    def _final_state(state: BaseModel) -> dict[str, Any]:
        return {k: jsonable(v) for k, v in state_values(state).items()}

    def _execute(self, name: str, state: BaseModel, index: int) -> TraceStep:
        node = self.compiled.spec.nodes[name]
        adapter = node.adapter()
        self._emit(StepStarted(index=index, node=name, kind=node.kind, adapter=adapter))
        history = getattr(self.session, "history", None)
        before = len(history) if history is not None else 0
        # Conversation length when a model step begins: the denominator of its reuse ratio.
        context = len(self.session.ids) if node.uses_session else 0
        started = time.perf_counter()
        try:
            output = node.execute(_Step(self, name, node, state, index))
        except AloraFlowsError as exc:
            raise exc.at(node=name)  # noqa: B904 - the same error, now naming its node
        seconds = time.perf_counter() - started
        calls: Sequence[Any] = history[before:] if history is not None else []
        return TraceStep(
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
        )

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
