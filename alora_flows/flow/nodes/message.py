"""``message``: append a fixed (templated) turn to the session without generating.

``documents: "{{ documents }}"`` also hands the session documents (a list of texts or of
``{doc_id, text}``), rendered the way the model's chat template renders documents: how a flow
feeds Granite intrinsics the documents they read. ``documents_as`` picks another rendering
(:mod:`alora_flows.core.documents`); ``inline`` puts them in front of this very turn, the layout
the embedded model's intrinsics were trained on, while the session still knows them as documents
(the hallucination intrinsic's evidence must be found in them).

The turn's tokens are not prefilled here: the next model step (``generate``, an intrinsic) runs
them in its own forward, so a flow that builds its prompt from several messages pays one forward,
as a no-reuse run does, instead of one per message. The trace shows the message step with no
tokens computed and the next step with them.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from alora_flows.core.documents import DocsAs, DocumentSet, as_documents
from alora_flows.errors import DocumentError, FlowDefinitionError, FlowRuntimeError
from alora_flows.flow.nodes.base import Node, NodeCheck, Params, StepContext, register_node_kind
from alora_flows.sandbox.templates import TemplateError, evaluate_native, single_expression


class MessageParams(Params):
    role: Literal["system", "user", "assistant"]
    content: str
    documents: str | None = None  # an exact ``{{ expr }}`` naming a list of documents
    documents_as: DocsAs | None = None  # how the session renders them (None: the chat template's way)


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
        if documents is None and self.message.documents_as is not None:
            ctx.error("documents_as needs documents", ("message", "documents_as"), FlowDefinitionError)
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
            ctx.session.extend(turn, prefill=False)
            return content
        try:
            documents: Any = evaluate_native(self.message.documents, ctx.values())
        except TemplateError as exc:
            raise FlowRuntimeError(f"documents: {exc}") from None
        if self.message.documents_as is not None:
            try:
                documents = DocumentSet(
                    documents=tuple(as_documents(documents)), render_as=self.message.documents_as
                )
            except DocumentError as exc:
                raise FlowRuntimeError(f"documents: {exc}") from None
        ctx.session.extend(turn, documents=documents, prefill=False)
        return content

    def detail(self) -> str:
        return self.message.role
