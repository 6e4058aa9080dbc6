"""``intrinsic``: invoke an aLoRA intrinsic on the conversation; its typed output joins the state."""

from __future__ import annotations

from typing import Any, ClassVar

from alora_flows.flow.nodes.base import Node, NodeCheck, StepContext, register_node_kind


@register_node_kind
class IntrinsicNode(Node):
    """``input`` (a template) overrides the intrinsic's own input turn."""

    kind: ClassVar[str] = "intrinsic"
    style: ClassVar[str] = "magenta"
    shape: ClassVar[tuple[str, str]] = ('{{"', '"}}')
    uses_session: ClassVar[bool] = True

    intrinsic: str
    input: str | None = None
    output: str | None = None

    def check(self, ctx: NodeCheck) -> None:
        spec = ctx.intrinsic(self.intrinsic, ("intrinsic",))
        if self.input is not None:
            ctx.template(self.input, ("input",), "input template")
        if self.output:
            ctx.write(self.output, getattr(spec, "output_model", None) or Any, ("output",))

    def execute(self, ctx: StepContext) -> Any:
        spec = ctx.intrinsic(self.intrinsic)
        override = None if self.input is None else ctx.render(self.input, "input")
        output, _stats = spec.run(ctx.session, self.intrinsic, ctx.values(), input_override=override)
        ctx.write(self.output, output)
        return output

    def detail(self) -> str:
        return self.intrinsic

    def adapter(self) -> str | None:
        return self.intrinsic
