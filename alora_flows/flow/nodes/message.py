"""``message``: append a fixed (templated) turn to the session without generating."""

from __future__ import annotations

from typing import ClassVar, Literal

from alora_flows.flow.nodes.base import Node, NodeCheck, Params, StepContext, register_node_kind


class MessageParams(Params):
    role: Literal["system", "user", "assistant"]
    content: str


@register_node_kind
class MessageNode(Node):
    kind: ClassVar[str] = "message"
    style: ClassVar[str] = "green"
    shape: ClassVar[tuple[str, str]] = ('>"', '"]')
    uses_session: ClassVar[bool] = True

    message: MessageParams

    def check(self, ctx: NodeCheck) -> None:
        ctx.template(self.message.content, ("message", "content"), "message template")

    def execute(self, ctx: StepContext) -> str:
        content = ctx.render(self.message.content, "message")
        ctx.session.extend([{"role": self.message.role, "content": content}])
        return content

    def detail(self) -> str:
        return self.message.role
