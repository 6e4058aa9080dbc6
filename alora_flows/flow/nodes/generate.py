"""``generate``: append templated system/user turns, then let the base model answer."""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, field_validator

from alora_flows.flow.nodes.base import NodeCheck, Params, Retryable, StepContext, register_node_kind


class GenerateParams(Params):
    """A base-model turn: optional system/user messages (templates) appended, then generation."""

    system: str | None = None
    user: str | None = None
    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0.0)


@register_node_kind
class GenerateNode(Retryable):
    kind: ClassVar[str] = "generate"
    style: ClassVar[str] = "cyan"
    uses_session: ClassVar[bool] = True

    generate: GenerateParams = GenerateParams()
    output: str | None = None

    @field_validator("generate", mode="before")
    @classmethod
    def _none_is_default(cls, value: Any) -> Any:
        return {} if value is None else value

    def check(self, ctx: NodeCheck) -> None:
        for part in ("system", "user"):
            text = getattr(self.generate, part)
            if text is not None:
                ctx.template(text, ("generate", part), f"{part} template")
        ctx.write(self.output, str, ("output",))
        self.check_errors(ctx)

    def execute(self, ctx: StepContext) -> str:
        params = self.generate
        messages = [
            {"role": role, "content": ctx.render(text, role)}
            for role, text in (("system", params.system), ("user", params.user))
            if text is not None
        ]
        seed = None if ctx.seed is None else ctx.seed + ctx.index
        result = ctx.session.generate(
            params.max_new_tokens,
            messages=messages,
            temperature=params.temperature,
            seed=seed,
            on_token=ctx.stream,
        )
        ctx.write(self.output, result.text)
        return str(result.text)
