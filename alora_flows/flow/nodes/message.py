"""``message``: append a fixed (templated) turn to the session without generating.

``documents: "{{ documents }}"`` also hands the session documents (a list of texts or of
``{doc_id, text}``), rendered the way the model's chat template renders documents: how a flow
feeds Granite intrinsics the documents they read.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from alora_flows.errors import FlowDefinitionError, FlowRuntimeError
from alora_flows.flow.nodes.base import Node, NodeCheck, Params, StepContext, register_node_kind
from alora_flows.sandbox.templates import TemplateError, evaluate_native, single_expression


class MessageParams(Params):
    role: Literal["system", "user", "assistant"]
    content: str
    documents: str | None = None  # an exact ``{{ expr }}`` naming a list of documents


@register_node_kind
class MessageNode(Node):
    kind: ClassVar[str] = "message"
    style: ClassVar[str] = "green"
    shape: ClassVar[tuple[str, str]] = ('>"', '"]')
    uses_session: ClassVar[bool] = True

    message: MessageParams

    def check(self, ctx: NodeCheck) -> None:
        ctx.template(self.message.content, ("message", "content"), "message template")
        documents = self.message.documents
        if documents is not None:
            if single_expression(documents) is None:
                ctx.error(
                    "documents must be one {{ expression }} naming a list of documents, "
                    f"e.g. '{{{{ documents }}}}' (got {documents!r})",
                    ("message", "documents"),
                    FlowDefinitionError,
                )
            else:
                ctx.template(documents, ("message", "documents"), "documents template")

    def execute(self, ctx: StepContext) -> str:
        content = ctx.render(self.message.content, "message")
        turn = [{"role": self.message.role, "content": content}]
        if self.message.documents is None:
            ctx.session.extend(turn)
            return content
        try:
            documents: Any = evaluate_native(self.message.documents, ctx.values())
        except TemplateError as exc:
            raise FlowRuntimeError(f"documents: {exc}") from None
        ctx.session.extend(turn, documents=documents)
        return content

    def detail(self) -> str:
        return self.message.role
