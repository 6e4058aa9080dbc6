"""Runs a compiled flow on one Session, one node at a time.

The loop is deliberately plain: execute the node, write its output into the typed state, choose
the next node (first ``when`` that holds, else ``default``), record a :class:`TraceStep`, tell the
listeners, repeat until END or ``max_steps``. Each step's token counts come from the calls the
session recorded while the step ran (``session.history``), so intrinsic specs that make several
calls are counted exactly.

Resuming (added later) needs only :meth:`Runner.run_from` with a restored state and node, and a
listener on :class:`StepFinished` to persist the state after every step.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from functools import lru_cache
from typing import Any

from pydantic import BaseModel, ConfigDict, TypeAdapter, ValidationError

from alora_flows.errors import AloraFlowsError, FlowRuntimeError
from alora_flows.flow.expressions import ExpressionError, evaluate
from alora_flows.flow.spec import (END, START, GenerateNode, IntrinsicNode, MessageNode, SetNode,
                                   ToolNode)
from alora_flows.flow.state import state_values, type_name
from alora_flows.flow.templates import (TemplateError, evaluate_native, is_template, render,
                                        single_expression)
from alora_flows.flow.tools import parameter_types, tool_label, wants_value
from alora_flows.flow.trace import (Listener, RunFailed, RunFinished, RunStarted, StepFinished,
                                    StepStarted, TokenStreamed, Trace, TraceStep, jsonable)
from alora_flows.flow.validation import CompiledFlow, lookup_spec


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


@lru_cache(maxsize=256)
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation, config=None)


def _with_node(exc: AloraFlowsError, node: str) -> AloraFlowsError:
    """Prefix an error from the session/intrinsics with the node it happened in (same type)."""
    if exc.args and isinstance(exc.args[0], str) and f"'{node}'" not in exc.args[0]:
        exc.args = (f"node '{node}': {exc.args[0]}", *exc.args[1:])
    return exc


class Runner:
    """Executes one compiled flow on one session; create one per run."""

    def __init__(self, compiled: CompiledFlow, session: Any, *, seed: int | None = None,
                 listeners: Iterable[Listener] = ()) -> None:
        self.compiled = compiled
        self.session = session
        self.seed = seed
        self.listeners: list[Listener] = list(listeners)

    # ------------------------------------------------------------------ public
    def new_trace(self) -> Trace:
        backend = getattr(self.session, "backend", None)
        model = getattr(backend, "model_id", None) or self.compiled.spec.model
        return Trace(flow=self.compiled.spec.name, model=str(model),
                     reuse=bool(getattr(self.session, "reuse", True)), seed=self.seed)

    def run(self, inputs: Mapping[str, Any]) -> RunResult:
        """Run from START with ``inputs``; returns the final state and the trace."""
        state = self.compiled.new_state(inputs)
        trace = self.new_trace()
        self._emit(RunStarted(flow=trace.flow, model=trace.model, reuse=trace.reuse,
                              inputs={k: jsonable(v) for k, v in inputs.items()},
                              max_steps=self.compiled.spec.max_steps))
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
                        "fix its exit condition or raise max_steps")
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
        adapter = node.intrinsic if isinstance(node, IntrinsicNode) else None
        self._emit(StepStarted(index=index, node=name, kind=node.kind, adapter=adapter))
        history = getattr(self.session, "history", None)
        before = len(history) if history is not None else 0
        # Conversation length when a model step begins: the denominator of its reuse ratio.
        context = len(self.session.ids) if not isinstance(node, (ToolNode, SetNode)) else 0
        started = time.perf_counter()
        handler = {GenerateNode: self._generate, IntrinsicNode: self._intrinsic,
                   ToolNode: self._tool, SetNode: self._set, MessageNode: self._message}
        try:
            output = handler[type(node)](name, node, state, index)
        except AloraFlowsError as exc:
            raise _with_node(exc, name)
        seconds = time.perf_counter() - started
        calls: Sequence[Any] = history[before:] if history is not None else []
        return TraceStep(
            node=name, kind=node.kind, adapter=adapter, index=index,
            prefill_tokens=sum(c.prefill_tokens for c in calls),
            reused_tokens=calls[0].reused_tokens if calls else 0,
            generated_tokens=sum(c.generated_tokens for c in calls), context_tokens=context,
            seconds=round(seconds, 6), output=jsonable(output))

    def _render(self, source: str, state: BaseModel, node: str, what: str) -> str:
        try:
            return render(source, state_values(state))
        except TemplateError as exc:
            raise FlowRuntimeError(f"node '{node}': {what} template: {exc}") from None

    def _write(self, state: BaseModel, field: str | None, value: Any, node: str) -> None:
        if not field:
            return
        try:
            setattr(state, field, value)
        except ValidationError as exc:
            expected = type_name(self.compiled.field_types.get(field))
            detail = exc.errors()[0]["msg"]
            raise FlowRuntimeError(
                f"node '{node}' produced a {type(value).__name__} for '{field}', which is typed "
                f"{expected}: {detail}") from None

    def _generate(self, name: str, node: GenerateNode, state: BaseModel, index: int) -> str:
        params = node.generate
        messages = [{"role": role, "content": self._render(text, state, name, role)}
                    for role, text in (("system", params.system), ("user", params.user))
                    if text is not None]
        if messages:
            self.session.extend(messages)

        def on_token(text: str) -> None:
            self._emit(TokenStreamed(index=index, node=name, text=text))

        seed = None if self.seed is None else self.seed + index
        result = self.session.generate(params.max_new_tokens, temperature=params.temperature,
                                       seed=seed, on_token=on_token)
        self._write(state, node.output, result.text, name)
        return result.text

    def _intrinsic(self, name: str, node: IntrinsicNode, state: BaseModel, index: int) -> Any:
        spec = self.compiled.specs.get(node.intrinsic)
        if spec is None:
            spec = lookup_spec(None, node.intrinsic)
        if spec is None:
            raise FlowRuntimeError(f"node '{name}': no spec for intrinsic '{node.intrinsic}' "
                                   "(is the intrinsics package importable?)")
        override = None
        if node.input is not None:
            override = self._render(node.input, state, name, "input")
        output, _stats = spec.run(self.session, node.intrinsic, state_values(state),
                                  input_override=override)
        self._write(state, node.output, output, name)
        return output

    def _tool(self, name: str, node: ToolNode, state: BaseModel, index: int) -> Any:
        fn = self.compiled.tools[name]
        args = self._tool_args(fn, node, state, name)
        try:
            value = fn(**args)
        except AloraFlowsError:
            raise
        except Exception as exc:
            raise FlowRuntimeError(f"tool node '{name}' ({tool_label(node.tool)}) raised "
                                   f"{type(exc).__name__}: {exc}") from exc
        self._write(state, node.output, value, name)
        return value

    def _tool_args(self, fn: Any, node: ToolNode, state: BaseModel, name: str) -> dict[str, Any]:
        """Render arguments; a parameter annotated with a non-text type gets the value itself
        for an exact ``{{ expr }}`` and is validated/coerced to its annotation (``"3"`` -> 3)."""
        types = parameter_types(fn)
        args: dict[str, Any] = {}
        for key, raw in node.args.items():
            annotation = types.get(key)
            if wants_value(annotation) and single_expression(raw) is not None:
                try:
                    value = evaluate_native(raw, state_values(state))
                except TemplateError as exc:
                    raise FlowRuntimeError(f"node '{name}': argument '{key}': {exc}") from None
            else:
                value = self._render_value(raw, state, name)
            if wants_value(annotation):
                try:
                    value = _adapter(annotation).validate_python(value)
                except ValidationError as exc:
                    raise FlowRuntimeError(
                        f"node '{name}': argument '{key}' must be {type_name(annotation)}: "
                        f"{exc.errors()[0]['msg']}") from None
            args[key] = value
        return args

    def _render_value(self, value: Any, state: BaseModel, node: str) -> Any:
        if isinstance(value, str):
            return self._render(value, state, node, "value") if is_template(value) else value
        if isinstance(value, Mapping):
            return {k: self._render_value(v, state, node) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self._render_value(v, state, node) for v in value]
        return value

    def _set(self, name: str, node: SetNode, state: BaseModel, index: int) -> dict[str, Any]:
        values = {key: self._render_value(value, state, name) for key, value in node.set.items()}
        for key, value in values.items():
            self._write(state, key, value, name)
        return {key: getattr(state, key) for key in values}

    def _message(self, name: str, node: MessageNode, state: BaseModel, index: int) -> str:
        content = self._render(node.message.content, state, name, "message")
        self.session.extend([{"role": node.message.role, "content": content}])
        return content

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
                raise FlowRuntimeError(
                    f"node '{name}': condition {route.label!r} failed: {exc}") from None
            except AloraFlowsError:
                raise
            except Exception as exc:
                raise FlowRuntimeError(f"node '{name}': condition {route.label!r} raised "
                                       f"{type(exc).__name__}: {exc}") from exc
            if holds:
                return route.to, route.label
        raise FlowRuntimeError(f"node '{name}': no branch condition held and there is no default")
