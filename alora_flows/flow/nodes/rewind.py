"""``rewind``: return the conversation to a ``mark``, dropping every turn and document added since.

Why: a retry should start from the question, not after its failed attempt. Kept in the
conversation, the failed answer steers the second one and is "evidence" for it. Rewinding costs
nothing: the conversation up to the mark is a prefix of the cached tokens, so the session crops
its cache there and runs no forward pass (:meth:`~alora_flows.core.session.Session.rewind`). The
trace shows it: the step's ``reused_tokens`` are the tokens kept, ``prefill_tokens`` 0, and the
next model step reuses the whole conversation up to the mark.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ValidationError

from alora_flows.core.session import SessionMark
from alora_flows.errors import FlowRuntimeError
from alora_flows.flow.nodes.base import Node, NodeCheck, StepContext, register_node_kind


@register_node_kind
class RewindNode(Node):
    kind: ClassVar[str] = "rewind"
    style: ClassVar[str] = "bright_blue"
    shape: ClassVar[tuple[str, str]] = ('[\\"', '"/]')
    uses_session: ClassVar[bool] = True

    rewind: str  # the state field a ``mark`` node wrote

    def check(self, ctx: NodeCheck) -> None:
        ctx.template("{{ " + self.rewind + " }}", ("rewind",), "rewind (the field a mark node writes)")

    def execute(self, ctx: StepContext) -> dict[str, Any]:
        value = getattr(ctx.state, self.rewind, None)
        if value is None:
            raise FlowRuntimeError(
                f"rewind: no mark in '{self.rewind}' yet (a 'mark: {self.rewind}' node must run first)"
            )
        try:
            mark = SessionMark.model_validate(value)
        except ValidationError:
            raise FlowRuntimeError(f"rewind: '{self.rewind}' does not hold a mark") from None
        before = len(ctx.session.ids)
        stats = ctx.session.rewind(mark)
        return {
            "to": self.rewind,
            "kept_tokens": stats.reused_tokens + stats.prefill_tokens,
            "dropped_tokens": before - mark.tokens,
            "recomputed_tokens": stats.prefill_tokens,
        }

    def detail(self) -> str:
        return self.rewind
