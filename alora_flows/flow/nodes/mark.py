"""``mark``: remember this point of the conversation, so that a ``rewind`` node can return to it.

``{mark: asked}`` stores a :class:`~alora_flows.core.session.SessionMark` (how many messages and
documents the session holds now, and a digest of them) in the state field ``asked``. Keeping it
in the state, not in the session, is what lets a run that was interrupted and resumed (the
session then rebuilt from its messages) still rewind.
"""

from __future__ import annotations

from typing import ClassVar

from alora_flows.core.session import SessionMark
from alora_flows.flow.nodes.base import Node, NodeCheck, StepContext, register_node_kind


@register_node_kind
class MarkNode(Node):
    kind: ClassVar[str] = "mark"
    style: ClassVar[str] = "bright_blue"
    shape: ClassVar[tuple[str, str]] = ('[/"', '"\\]')

    mark: str  # the state field that holds the mark

    def check(self, ctx: NodeCheck) -> None:
        ctx.write(self.mark, SessionMark, ("mark",))

    def execute(self, ctx: StepContext) -> dict[str, int]:
        mark = ctx.session.mark()
        ctx.write(self.mark, mark)
        return {"messages": mark.messages, "documents": mark.documents, "tokens": mark.tokens}

    def outputs(self) -> list[str]:
        return [self.mark]

    def detail(self) -> str:
        return self.mark
