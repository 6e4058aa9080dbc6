"""``tool``: call a Python callable (``"package.module:function"`` in YAML, a callable in Python)."""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache
from typing import Any, ClassVar

from pydantic import TypeAdapter, ValidationError, field_validator

from alora_flows.errors import AloraFlowsError, FlowRuntimeError
from alora_flows.flow.nodes.base import NodeCheck, Retryable, StepContext, register_node_kind
from alora_flows.flow.state import type_name
from alora_flows.flow.tools import TOOL_REF_RE, parameter_types, return_type, tool_label, wants_value
from alora_flows.sandbox.templates import TemplateError, evaluate_native, single_expression


@lru_cache(maxsize=256)
def _adapter(annotation: Any) -> TypeAdapter[Any]:
    return TypeAdapter(annotation)


@register_node_kind
class ToolNode(Retryable):
    kind: ClassVar[str] = "tool"
    style: ClassVar[str] = "yellow"
    shape: ClassVar[tuple[str, str]] = ('[/"', '"/]')

    tool: str | Callable[..., Any]
    args: dict[str, Any] = {}
    output: str | None = None

    @field_validator("tool")
    @classmethod
    def _check_ref(cls, value: Any) -> Any:
        if isinstance(value, str) and not TOOL_REF_RE.match(value):
            raise ValueError(
                f"tool must look like 'package.module:function' (got {value!r}); "
                "names starting with '_' are not allowed"
            )
        return value

    def prepare(self, ctx: NodeCheck) -> Callable[..., Any] | None:
        return ctx.tool(self.tool, ("tool",))

    def check(self, ctx: NodeCheck) -> None:
        ctx.literal(self.args, ("args",), "tool argument")
        if self.output:
            fn = ctx.tool(self.tool, ("tool",))
            ctx.write(self.output, return_type(fn) if fn is not None else Any, ("output",))
        self.check_errors(ctx)

    def execute(self, ctx: StepContext) -> Any:
        fn = ctx.resource()
        args = self._args(fn, ctx)
        try:
            value = fn(**args)
        except AloraFlowsError:
            raise
        except Exception as exc:
            raise FlowRuntimeError(
                f"tool {tool_label(self.tool)} raised {type(exc).__name__}: {exc}"
            ) from exc
        ctx.write(self.output, value)
        return value

    def _args(self, fn: Any, ctx: StepContext) -> dict[str, Any]:
        """Render arguments; a parameter annotated with a non-text type gets the value itself
        for an exact ``{{ expr }}`` and is validated/coerced to its annotation (``"3"`` -> 3)."""
        types = parameter_types(fn)
        args: dict[str, Any] = {}
        for key, raw in self.args.items():
            annotation = types.get(key)
            if wants_value(annotation) and single_expression(raw) is not None:
                try:
                    value = evaluate_native(raw, ctx.values())
                except TemplateError as exc:
                    raise FlowRuntimeError(f"argument '{key}': {exc}") from None
            else:
                value = ctx.render_value(raw)
            if wants_value(annotation):
                try:
                    value = _adapter(annotation).validate_python(value)
                except ValidationError as exc:
                    raise FlowRuntimeError(
                        f"argument '{key}' must be {type_name(annotation)}: {exc.errors()[0]['msg']}"
                    ) from None
            args[key] = value
        return args

    def detail(self) -> str:
        return tool_label(self.tool)
