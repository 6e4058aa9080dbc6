"""``set``: assign state fields; strings are templates, other YAML values literals."""

from __future__ import annotations

from typing import Any, ClassVar

from alora_flows.flow.nodes.base import Node, NodeCheck, StepContext, register_node_kind
from alora_flows.flow.state import literal_type
from alora_flows.sandbox.templates import is_template


@register_node_kind
class SetNode(Node):
    kind: ClassVar[str] = "set"
    style: ClassVar[str] = "blue"

    set: dict[str, Any]

    def check(self, ctx: NodeCheck) -> None:
        for key, value in self.set.items():
            ctx.literal(value, ("set", key), "set value")
            templated = isinstance(value, str) and is_template(value)
            ctx.write(key, literal_type(value, templated=templated), ("set", key))

    def execute(self, ctx: StepContext) -> dict[str, Any]:
        values = {key: ctx.render_value(value) for key, value in self.set.items()}
        for key, value in values.items():
            ctx.write(key, value)
        return {key: getattr(ctx.state, key) for key in values}

    def outputs(self) -> list[str]:
        return list(self.set)
