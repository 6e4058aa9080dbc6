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

from collections.abc import Callable, Mapping
from typing import Any, ClassVar, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, Field, field_validator, model_validator

from alora_flows.errors import FlowDefinitionError
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

    parallel: dict[str, Node] = Field(min_length=1)
    reduce: dict[str, Reducer] = {}

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

    def prepare(self, ctx: NodeCheck) -> dict[str, Any]:
        return {name: branch.prepare(_BranchCheck(ctx, name, {})) for name, branch in self.parallel.items()}

    def outputs(self) -> list[str]:
        return sorted({field for branch in self.parallel.values() for field in branch.outputs()})

    def detail(self) -> str:
        return ", ".join(self.parallel)

    # ------------------------------------------------------------------ running
    def execute(self, ctx: StepContext) -> dict[str, Any]:
        writes: dict[str, list[Any]] = {}
        outputs: dict[str, Any] = {}
        packable = {
            name: branch for name, branch in self.parallel.items() if isinstance(branch, IntrinsicNode)
        }
        specs = {name: ctx.intrinsic(branch.intrinsic) for name, branch in packable.items()}
        packed = None
        if len(packable) > 1 and all(isinstance(s, PackableIntrinsic) for s in specs.values()):
            packed = self._packed(ctx, packable, specs, writes)
        if packed is None:
            packable = {}
        else:
            outputs.update(packed)
        done: set[str] = set(packable)
        generators = {name: branch for name, branch in self.parallel.items() if type(branch) is GenerateNode}
        if len(generators) > 1 and getattr(ctx.session, "reuse", False):
            outputs.update(self._packed_generate(ctx, generators, writes))
            done = set(packable) | set(generators)
        resources = ctx.resource() or {}
        for position, (name, branch) in enumerate(self.parallel.items()):
            if name in done:
                continue
            if not branch.uses_session:
                outputs[name] = branch.execute(
                    _BranchStep(ctx, name, ctx.session, resources.get(name), writes, position)
                )
                continue
            fork = ctx.session.fork()
            before = len(fork.history)
            outputs[name] = branch.execute(
                _BranchStep(ctx, name, fork, resources.get(name), writes, position)
            )
            ctx.session.history.extend(fork.history[before:])  # the trace counts every branch's calls
        for field, values in writes.items():
            reducer = self.reduce.get(field)
            ctx.write(field, _REDUCE[reducer](values) if reducer else values[-1])
        for name, branch in self.parallel.items():
            if isinstance(branch, SetNode):  # show what the join wrote, as a lone set node does
                outputs[name] = {field: getattr(ctx.state, field) for field in branch.outputs()}
        return outputs

    def _packed(
        self,
        ctx: StepContext,
        branches: dict[str, IntrinsicNode],
        specs: dict[str, Any],
        writes: dict[str, list[Any]],
    ) -> dict[str, Any] | None:
        """The intrinsic branches as one packed call; None when one of them cannot share it (its
        spec's ``prepare`` says so, e.g. a rewrite whose question ends the conversation): they
        then run one after the other, each as its own node would."""
        from alora_flows.core.parallel import invoke_parallel

        values = ctx.values()
        prepared = {}
        for name, branch in branches.items():
            override = None if branch.input is None else ctx.render(branch.input, "input")
            prepared[name] = specs[name].prepare(
                ctx.session, branch.intrinsic, values, input_override=override
            )
            if prepared[name] is None:
                return None
        results = invoke_parallel(ctx.session, [p.call for p in prepared.values()])
        outputs = {}
        for (name, branch), result in zip(branches.items(), results):
            output = specs[name].finish(prepared[name], result)
            if branch.output:
                writes.setdefault(branch.output, []).append(output)
            outputs[name] = output
        return outputs

    def _packed_generate(
        self, ctx: StepContext, branches: dict[str, GenerateNode], writes: dict[str, list[Any]]
    ) -> dict[str, Any]:
        """The generate branches as one packed pass: what each would do on its fork (its
        messages, then a base-model answer with its own seed), same tokens."""
        from alora_flows.core.parallel import GenerateCall, generate_parallel

        positions = {name: i for i, name in enumerate(self.parallel)}
        calls = []
        for name, branch in branches.items():
            params = branch.generate
            messages = [
                {"role": role, "content": ctx.render(text, role)}
                for role, text in (("system", params.system), ("user", params.user))
                if text is not None
            ]
            seed = branch_seed(ctx.seed, positions[name])
            calls.append(
                GenerateCall(
                    messages=messages,
                    max_new_tokens=params.max_new_tokens,
                    temperature=params.temperature,
                    seed=None if seed is None else seed + ctx.index,  # as the generate node seeds
                )
            )
        results = generate_parallel(ctx.session, calls)
        outputs = {}
        for (name, branch), result in zip(branches.items(), results):
            if branch.output:
                writes.setdefault(branch.output, []).append(result.text)
            outputs[name] = result.text
        return outputs


class _BranchCheck:
    """A branch's view of the validator: paths under ``parallel.<branch>``, writes collected."""

    def __init__(
        self, ctx: NodeCheck, branch: str, writes: dict[str, list[tuple[str, Any, PathParts]]]
    ) -> None:
        self.ctx, self.branch, self.writes = ctx, branch, writes
        self.name, self.flow, self.base_dir = ctx.name, ctx.flow, ctx.base_dir
        self.prefix: PathParts = ("parallel", branch)

    def error(
        self, message: str, path: PathParts = (), cls: type[FlowDefinitionError] = FlowDefinitionError
    ) -> None:
        self.ctx.error(f"branch '{self.branch}': {message}", self.prefix + path, cls)

    def wrap(self, exc: Any, path: PathParts, what: str) -> None:
        self.ctx.wrap(exc, self.prefix + path, f"branch '{self.branch}': {what}")

    def template(self, source: Any, path: PathParts, what: str) -> None:
        self.ctx.template(source, self.prefix + path, what)

    def literal(self, value: Any, path: PathParts, what: str) -> None:
        self.ctx.literal(value, self.prefix + path, what)

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

    def values(self) -> dict[str, Any]:
        return self.ctx.values()

    def render(self, source: str, what: str) -> str:
        return self.ctx.render(source, what)

    def render_value(self, value: Any) -> Any:
        return self.ctx.render_value(value)

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
