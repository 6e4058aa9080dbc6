"""``parallel``: branches that start from the same conversation and join their state writes.

    checks:
      parallel:
        certainty: {intrinsic: uncertainty, output: certainty}
        faithful:  {intrinsic: hallucination, output: hallucination}
        relevant:  {intrinsic: answerability, output: answerable}

Intrinsic branches run as **one packed forward** over the shared cached conversation
(:func:`alora_flows.core.parallel.invoke_parallel`): each branch pays its own few tokens, once,
and none of them re-reads the conversation. Two or more ``generate`` branches (N samples for
self-consistency, several prompts over one context) are packed the same way
(:func:`~alora_flows.core.parallel.generate_parallel`; they do not stream). Each branch gets a
seed of its own (:func:`branch_seed`), so sampled branches differ. Other branches run one after
the other, each on a free fork of the session, so every branch sees the conversation as it was at the fan-out and
none sees another's turns; only state writes join. Two branches may write the same field only
when the node declares how to combine them (``reduce: {notes: append}``, as LangGraph's reducers).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field, SerializeAsAny, field_validator, model_validator

from alora_flows.errors import FlowDefinitionError, FlowRuntimeError
from alora_flows.flow.nodes.base import (
    Node,
    NodeCheck,
    PathParts,
    StepContext,
    parse_node,
    register_node_kind,
)
from alora_flows.flow.nodes.generate import GenerateNode
from alora_flows.flow.nodes.intrinsic import IntrinsicNode
from alora_flows.flow.nodes.set import SetNode
from alora_flows.sandbox.expressions import ExpressionError, check_expression, evaluate
from alora_flows.sandbox.templates import TemplateError, is_template, map_strings, render

Reducer = Literal["append", "sum", "min", "max"]
_REDUCE: dict[str, Callable[[list[Any]], Any]] = {
    "append": list,
    "sum": sum,
    "min": min,
    "max": max,
}


def branch_seed(seed: int | None, position: int) -> int | None:
    """The run's seed for the branch at ``position`` (declaration order): distinct per branch, so
    that N sampled branches are N samples, and far apart, so that a branch's seed plus a step
    index (as the generate node adds) does not land on another branch's."""
    return None if seed is None else seed + 1_000_003 * position


@runtime_checkable
class PackableIntrinsic(Protocol):
    """An intrinsic that can split its call, so several can share one packed forward."""

    def prepare(self, session: Any, adapter_name: str, state: Any = None, input_override: Any = None) -> Any:
        """The call to make (``.call``: an :class:`~alora_flows.core.parallel.IntrinsicCall`), or
        None when this intrinsic cannot share a packed forward."""
        ...

    def finish(self, prepared: Any, result: Any) -> BaseModel:
        """The typed output of ``prepared``'s call, given its :class:`InvokeResult`."""
        ...


@register_node_kind
class ParallelNode(Node):
    kind: ClassVar[str] = "parallel"
    style: ClassVar[str] = "bright_magenta"
    shape: ClassVar[tuple[str, str]] = ('[["', '"]]')
    uses_session: ClassVar[bool] = True
    branches: ClassVar[bool] = True

    parallel: dict[str, SerializeAsAny[Node]] = Field(min_length=1)  # dumped as their own kinds
    reduce: dict[str, Reducer] = {}
    #: An expression over the state and the branches' outputs: once it holds, packed intrinsic
    #: branches still decoding stop and write None (a low certainty makes a long faithfulness
    #: check moot). Checked as branches finish, once every branch it reads has.
    cancel_when: str | None = None

    @field_validator("parallel", mode="before")
    @classmethod
    def _branches(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {name: parse_node(node, lambda v: v) for name, node in value.items()}
        return value

    @model_validator(mode="after")
    def _no_nesting(self) -> ParallelNode:
        nested = [name for name, node in self.parallel.items() if isinstance(node, ParallelNode)]
        if nested:
            raise ValueError(f"branch {nested[0]!r} is itself parallel: list its branches here instead")
        return self

    # ------------------------------------------------------------------ validation
    def check(self, ctx: NodeCheck) -> None:
        writes: dict[str, list[tuple[str, Any, PathParts]]] = {}
        for name, branch in self.parallel.items():
            branch.check(_BranchCheck(ctx, name, writes))
        for field, writers in writes.items():
            reducer = self.reduce.get(field)
            first, tp, path = writers[0]
            if len(writers) > 1 and reducer is None:
                others = ", ".join(repr(w[0]) for w in writers[1:])
                ctx.error(
                    f"branches {first!r} and {others} all write '{field}': give each its own field, "
                    f"or declare how to combine them (reduce: {{{field}: append}})",
                    path,
                )
                continue
            ctx.write(field, list[tp] if reducer == "append" else tp, path)  # type: ignore[valid-type]
        for field in self.reduce:
            if field not in writes:
                ctx.error(f"reduce names '{field}', which no branch writes", ("reduce", field))
        if self.cancel_when is not None:
            ctx.template("{{ " + self.cancel_when + " }}", ("cancel_when",), "cancel_when")

    def prepare(self, ctx: NodeCheck) -> dict[str, Any]:
        return {name: branch.prepare(_BranchCheck(ctx, name, {})) for name, branch in self.parallel.items()}

    def outputs(self) -> list[str]:
        return sorted({field for branch in self.parallel.values() for field in branch.outputs()})

    def detail(self) -> str:
        return ", ".join(self.parallel)

    # ------------------------------------------------------------------ running
    def execute(self, ctx: StepContext) -> dict[str, Any]:
        writes: dict[str, list[Any]] = {}
        resources = ctx.resource() or {}
        branches = [
            Branch(name, node, position, resource=resources.get(name))
            for position, (name, node) in enumerate(self.parallel.items())
        ]
        outputs = run_branches(ctx, branches, writes, cancel_when=self.cancel_when)
        for field, values in writes.items():
            reducer = self.reduce.get(field)
            ctx.write(field, _REDUCE[reducer](values) if reducer else values[-1])
        for name, branch in self.parallel.items():
            if isinstance(branch, SetNode):  # show what the join wrote, as a lone set node does
                outputs[name] = {field: getattr(ctx.state, field) for field in branch.outputs()}
        return outputs


@dataclass
class Branch:
    """One branch of a fan-out: a ``parallel`` node's branch, or one item of a ``map``."""

    name: str
    node: Node
    position: int  # declaration (item) order: the branch's seed
    local: Mapping[str, Any] = dataclasses.field(default_factory=dict)  # names bound for this branch only
    resource: Any = None  # what the node's ``prepare`` resolved at validation


def run_branches(
    ctx: StepContext, branches: list[Branch], writes: dict[str, list[Any]], *, cancel_when: str | None = None
) -> dict[str, Any]:
    """Run ``branches`` from the conversation as it is now; returns each branch's output by name,
    in branch order, and collects their state writes in ``writes`` (the caller joins them).

    Two or more intrinsic branches run as one packed forward per decoding step
    (:func:`~alora_flows.core.parallel.invoke_parallel`), two or more ``generate`` branches too
    (:func:`~alora_flows.core.parallel.generate_parallel`, with reuse); the others run one after
    the other, those that use the session each on a fork of it. Shared by ``parallel`` and ``map``.
    """
    steps = {
        b.name: _BranchStep(ctx, b.name, ctx.session, b.resource, writes, b.position, b.local)
        for b in branches
    }
    outputs: dict[str, Any] = {}
    intrinsic = [b for b in branches if isinstance(b.node, IntrinsicNode)]
    specs = {b.name: ctx.intrinsic(b.node.intrinsic) for b in intrinsic}  # type: ignore[attr-defined]
    if len(intrinsic) > 1 and all(isinstance(s, PackableIntrinsic) for s in specs.values()):
        outputs.update(_packed(ctx, intrinsic, specs, steps, cancel_when) or {})
    generators = [b for b in branches if type(b.node) is GenerateNode]
    if len(generators) > 1 and getattr(ctx.session, "reuse", False):
        outputs.update(_packed_generate(ctx, generators, steps, writes))
    for b in branches:
        if b.name in outputs:
            continue
        if not b.node.uses_session:
            outputs[b.name] = b.node.execute(steps[b.name])
            continue
        fork = ctx.session.fork()
        before = len(fork.history)
        step = steps[b.name]
        step.session = fork
        outputs[b.name] = b.node.execute(step)
        ctx.session.history.extend(fork.history[before:])  # the trace counts every branch's calls
    return {b.name: outputs[b.name] for b in branches}


def _packed(
    ctx: StepContext,
    branches: list[Branch],
    specs: dict[str, Any],
    steps: dict[str, _BranchStep],
    cancel_when: str | None = None,
) -> dict[str, Any] | None:
    """The intrinsic branches as one packed call; None when one of them cannot share it (its
    spec's ``prepare`` says so, e.g. a rewrite whose question ends the conversation): they then
    run one after the other, each as its own node would. A branch stopped by ``cancel_when``
    writes None and shows ``"cancelled"``."""
    from alora_flows.core.parallel import invoke_parallel

    prepared = {}
    for b in branches:
        node: IntrinsicNode = b.node  # type: ignore[assignment]
        step = steps[b.name]
        override = None if node.input is None else step.render(node.input, "input")
        prepared[b.name] = specs[b.name].prepare(
            ctx.session, node.intrinsic, step.values(), input_override=override
        )
        if prepared[b.name] is None:
            return None
    parsed: dict[int, Any] = {}

    def finish(i: int, result: Any) -> Any:
        if i not in parsed:
            parsed[i] = specs[branches[i].name].finish(prepared[branches[i].name], result)
        return parsed[i]

    stop_when = None
    if cancel_when is not None:
        reads = check_expression(cancel_when).names

        def stop_when(finished: dict[int, Any]) -> bool:
            if any(i not in finished and set(b.node.outputs()) & reads for i, b in enumerate(branches)):
                return False  # a branch it reads is still running
            values = dict(ctx.values())
            for i, result in finished.items():
                field = getattr(branches[i].node, "output", None)
                if field:
                    values[field] = finish(i, result)
            try:
                return bool(evaluate(cancel_when, values))
            except ExpressionError as exc:
                raise FlowRuntimeError(f"cancel_when {cancel_when!r} failed: {exc}") from None

    results = invoke_parallel(ctx.session, [p.call for p in prepared.values()], stop_when=stop_when)
    outputs: dict[str, Any] = {}
    for i, (b, result) in enumerate(zip(branches, results)):
        output = None if result.cancelled else finish(i, result)
        steps[b.name].write(getattr(b.node, "output", None), output)
        outputs[b.name] = "cancelled" if result.cancelled else output
    return outputs


def _packed_generate(
    ctx: StepContext, branches: list[Branch], steps: dict[str, _BranchStep], writes: dict[str, list[Any]]
) -> dict[str, Any]:
    """The generate branches as one packed pass: what each would do on its fork (its messages,
    then a base-model answer with its own seed), same tokens."""
    from alora_flows.core.parallel import GenerateCall, generate_parallel

    calls = []
    for b in branches:
        params = b.node.generate  # type: ignore[attr-defined]
        step = steps[b.name]
        messages = [
            {"role": role, "content": step.render(text, role)}
            for role, text in (("system", params.system), ("user", params.user))
            if text is not None
        ]
        calls.append(
            GenerateCall(
                messages=messages,
                max_new_tokens=params.max_new_tokens,
                temperature=params.temperature,
                seed=None if step.seed is None else step.seed + ctx.index,  # as the generate node seeds
            )
        )
    results = generate_parallel(ctx.session, calls)
    outputs = {}
    for b, result in zip(branches, results):
        steps[b.name].write(getattr(b.node, "output", None), result.text)
        outputs[b.name] = result.text
    return outputs


class _BranchCheck:
    """A branch's view of the validator: paths under ``parallel.<branch>`` (or ``prefix``),
    writes collected; ``local`` names (a map's item) are readable though not state fields."""

    def __init__(
        self,
        ctx: NodeCheck,
        branch: str,
        writes: dict[str, list[tuple[str, Any, PathParts]]],
        *,
        prefix: PathParts | None = None,
        label: str | None = None,
        local: frozenset[str] = frozenset(),
    ) -> None:
        self.ctx, self.branch, self.writes, self.local = ctx, branch, writes, local
        self.name, self.flow, self.base_dir = ctx.name, ctx.flow, ctx.base_dir
        self.prefix: PathParts = ("parallel", branch) if prefix is None else prefix
        self.label = f"branch '{branch}'" if label is None else label

    def error(
        self, message: str, path: PathParts = (), cls: type[FlowDefinitionError] = FlowDefinitionError
    ) -> None:
        self.ctx.error(f"{self.label}: {message}", self.prefix + path, cls)

    def wrap(self, exc: Any, path: PathParts, what: str) -> None:
        self.ctx.wrap(exc, self.prefix + path, f"{self.label}: {what}")

    def template(self, source: Any, path: PathParts, what: str, local: frozenset[str] = frozenset()) -> None:
        self.ctx.template(source, self.prefix + path, what, self.local | local)

    def literal(self, value: Any, path: PathParts, what: str) -> None:
        map_strings(value, lambda text, at: self.template(text, path + at, what))  # with the local names

    def write(self, field: str | None, tp: Any, path: PathParts) -> None:
        if field:
            self.writes.setdefault(field, []).append((self.branch, tp, self.prefix + path))

    def intrinsic(self, name: str, path: PathParts) -> Any:
        return self.ctx.intrinsic(name, self.prefix + path)

    def tool(self, ref: Any, path: PathParts) -> Any:
        return self.ctx.tool(ref, self.prefix + path)

    def subflow(self, ref: Any, path: PathParts) -> Any:
        return self.ctx.subflow(ref, self.prefix + path)


class _BranchStep:
    """A branch's step context: its own fork of the session; writes collected for the join."""

    def __init__(
        self,
        ctx: StepContext,
        branch: str,
        session: Any,
        resource: Any,
        writes: dict[str, list[Any]],
        position: int,
        local: Mapping[str, Any] | None = None,
    ):
        self.ctx, self.branch, self.session, self._resource, self.writes = (
            ctx,
            branch,
            session,
            resource,
            writes,
        )
        self.name, self.index, self.state = ctx.name, ctx.index, ctx.state
        self.seed = branch_seed(ctx.seed, position)
        self.path = ctx.path
        self.local = dict(local or {})

    def values(self) -> dict[str, Any]:
        return {**self.ctx.values(), **self.local}

    def render(self, source: str, what: str) -> str:
        if not self.local:
            return self.ctx.render(source, what)
        try:
            return render(source, self.values())
        except TemplateError as exc:
            raise FlowRuntimeError(f"{what} template: {exc}") from None

    def render_value(self, value: Any) -> Any:
        return map_strings(value, lambda text, _: self.render(text, "value") if is_template(text) else text)

    def write(self, field: str | None, value: Any) -> None:
        if field:
            self.writes.setdefault(field, []).append(value)

    def resource(self) -> Any:
        return self._resource

    def intrinsic(self, name: str) -> Any:
        return self.ctx.intrinsic(name)

    def stream(self, text: str) -> None:
        self.ctx.stream(text)

    def subflow(self, compiled: Any, inputs: Mapping[str, Any]) -> Any:
        return self.ctx.subflow(compiled, inputs)

    def take_values(self) -> dict[str, Any] | None:
        return self.ctx.take_values()
