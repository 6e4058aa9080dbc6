"""``flow``: run another flow as one step, on the same session, with explicit state in and out.

    verify:
      flow: check_answer.yaml                  # relative to this file; or an inline flow mapping
      inputs: {answer: "{{ answer }}"}         # the child's inputs <- templates over this state
      outputs: {verdict: check}                # child field -> field of this flow

Why one session: the child's base-model turns continue the parent's conversation and its
intrinsics reuse the parent's KV cache, exactly as if its nodes were inline. Why explicit
mappings: the child has its own typed state (its own field names and types), so it can be reused
by several parents, and the parent's state only changes through ``outputs``.

The child is validated with the parent (its errors name the child's file, line and node, as
``node 'verify/answer'``). Its steps appear inside this step in the trace (``steps``), its events
carry ``path == ["verify"]``, and a checkpoint taken inside it records the child's state and next
node, so a killed or paused run continues inside the child.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

from pydantic import Field, field_validator

from alora_flows.errors import FlowRuntimeError
from alora_flows.flow.nodes.base import Node, NodeCheck, StepContext, register_node_kind
from alora_flows.sandbox.templates import TemplateError, evaluate_native, single_expression


@register_node_kind
class SubflowNode(Node):
    kind: ClassVar[str] = "flow"
    style: ClassVar[str] = "bright_blue"
    shape: ClassVar[tuple[str, str]] = ('[["', '"]]')
    nests: ClassVar[bool] = True

    #: a path (relative to the parent's file), an inline flow mapping, or a Flow (Python API)
    flow: Any
    inputs: dict[str, Any] = {}
    #: child field -> parent field (``outputs:`` in YAML; ``Node.outputs()`` is the method)
    mapping: dict[str, str] = Field(default_factory=dict, alias="outputs")

    @field_validator("flow")
    @classmethod
    def _flow_ref(cls, value: Any) -> Any:
        if isinstance(value, str) and not value.strip():
            raise ValueError("flow must name a flow file, hold an inline flow, or be a Flow")
        if not isinstance(value, (str, Mapping)) and not hasattr(value, "spec"):
            raise ValueError(f"flow must be a path, a mapping or a Flow, got {type(value).__name__}")
        return value

    def prepare(self, ctx: NodeCheck) -> Any:
        return ctx.subflow(self.flow, ("flow",))

    def check(self, ctx: NodeCheck) -> None:
        child = ctx.subflow(self.flow, ("flow",))
        for key, value in self.inputs.items():
            ctx.literal(value, ("inputs", key), "subflow input")
        if child is None:
            for parent_field in self.mapping.values():
                ctx.write(parent_field, Any, ("outputs",))
            return
        declared = child.spec.inputs
        missing = [name for name in declared if name not in self.inputs]
        unknown = [name for name in self.inputs if name not in declared]
        name = child.spec.name
        if missing:
            ctx.error(
                f"subflow '{name}' needs input(s) {', '.join(missing)}: map them under "
                f'inputs (e.g. inputs: {{{missing[0]}: "{{{{ ... }}}}"}})',
                ("inputs",),
            )
        for key in unknown:
            ctx.error(
                f"subflow '{name}' has no input '{key}'; its inputs: {', '.join(declared) or 'none'}",
                ("inputs", key),
            )
        for child_field, parent_field in self.mapping.items():
            if child_field not in child.field_types:
                known = ", ".join(sorted(child.field_types)) or "none"
                ctx.error(
                    f"subflow '{name}' has no state field '{child_field}' to map out; its fields: {known}",
                    ("outputs", child_field),
                )
                ctx.write(parent_field, Any, ("outputs", child_field))
            else:
                ctx.write(parent_field, child.field_types[child_field], ("outputs", child_field))

    def execute(self, ctx: StepContext) -> dict[str, Any]:
        compiled = ctx.resource()
        inputs = {key: self._input(key, value, ctx) for key, value in self.inputs.items()}
        result = ctx.subflow(compiled, inputs)
        mapped: dict[str, Any] = {}
        child_values = result.values
        for child_field, parent_field in self.mapping.items():
            if child_field in child_values:  # a field the child's path never wrote stays unset
                ctx.write(parent_field, child_values[child_field])
                mapped[parent_field] = child_values[child_field]
        return mapped

    @staticmethod
    def _input(key: str, raw: Any, ctx: StepContext) -> Any:
        """An exact ``{{ expr }}`` passes the value itself (a list stays a list), other strings
        are rendered, other YAML values are literals."""
        if single_expression(raw) is not None:
            try:
                return evaluate_native(raw, ctx.values())
            except TemplateError as exc:
                raise FlowRuntimeError(f"subflow input '{key}': {exc}") from None
        return ctx.render_value(raw)

    def outputs(self) -> list[str]:
        return list(self.mapping.values())

    def detail(self) -> str:
        if isinstance(self.flow, str):
            return Path(self.flow).name
        if isinstance(self.flow, Mapping):
            return str(self.flow.get("name", "inline flow"))
        return str(getattr(self.flow, "name", "flow"))
