"""``interrupt``: pause the run until a person supplies values (approve an answer, fix a query).

    approve:
      interrupt:
        prompt: "Approve this answer? {{ answer }}"
        fields: {approved: bool, note: str}

The first time the run reaches the node it stops: ``flow.run`` returns a result with
``status == "interrupted"`` (``result.interrupt`` says what it waits for), a run directory records
status ``waiting``. Continuing with values (``result.resume({"approved": True})``,
``alora-flows resume DIR --set approved=true``) runs the node again: it checks and converts the
values to the declared types, writes them into the state and the run goes on. The node runs no
model, so waiting costs nothing but the session kept (or rebuilt once from a run directory).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Mapping
from functools import lru_cache
from typing import Any, ClassVar

from pydantic import Field, TypeAdapter, ValidationError, field_validator

from alora_flows.errors import FlowInputError
from alora_flows.flow.nodes.base import Node, NodeCheck, Params, Pause, StepContext, register_node_kind
from alora_flows.flow.state import INPUT_TYPES
from alora_flows.flow.trace import InterruptRequest


class InterruptParams(Params):
    """``prompt`` (a template shown to the person) and the typed ``fields`` they fill in."""

    prompt: str
    fields: dict[str, str] = Field(min_length=1)

    @field_validator("fields")
    @classmethod
    def _types(cls, value: dict[str, str]) -> dict[str, str]:
        for name, tp in value.items():
            if tp not in INPUT_TYPES:
                raise ValueError(f"field '{name}': type must be one of {', '.join(INPUT_TYPES)}, got {tp!r}")
        return value


@lru_cache(maxsize=16)
def _adapter(type_name: str) -> TypeAdapter[Any]:
    return TypeAdapter(INPUT_TYPES[type_name])


def coerce_values(fields: Mapping[str, str], values: Mapping[str, Any], where: str = "") -> dict[str, Any]:
    """``values`` checked against ``fields`` (name -> type name) and converted to those types.

    Text from a command line (``--set approved=true``) becomes the declared type: ``"true"`` a
    bool, ``"3"`` an int, ``'["a", "b"]'`` a list (JSON); a ``str`` field keeps the text as is.
    """
    prefix = f"{where}: " if where else ""
    missing = sorted(set(fields) - set(values))
    unknown = sorted(set(values) - set(fields))
    expected = ", ".join(f"{k} ({t})" for k, t in fields.items())
    if missing or unknown:
        problems = [f"missing {', '.join(missing)}"] if missing else []
        for name in unknown:
            close = difflib.get_close_matches(name, list(fields), n=1)
            problems.append(f"unknown {name}" + (f" (did you mean '{close[0]}'?)" if close else ""))
        raise FlowInputError(
            f"{prefix}values do not match the fields asked for ({'; '.join(problems)}); expected: {expected}"
        )
    out: dict[str, Any] = {}
    for name, tp in fields.items():
        value = values[name]
        adapter = _adapter(tp)
        try:
            if isinstance(value, str) and tp not in ("str", "any"):
                try:
                    out[name] = adapter.validate_json(value)
                    continue
                except ValidationError:
                    pass  # e.g. 'yes' for a bool: not JSON, but pydantic's lax parsing takes it
            out[name] = adapter.validate_python(value)
        except (ValidationError, json.JSONDecodeError) as exc:
            msg = exc.errors()[0]["msg"] if isinstance(exc, ValidationError) else str(exc)
            raise FlowInputError(f"{prefix}value for '{name}' must be {tp}: {msg}") from None
    return out


@register_node_kind
class InterruptNode(Node):
    kind: ClassVar[str] = "interrupt"
    style: ClassVar[str] = "bold red"
    shape: ClassVar[tuple[str, str]] = ('(["', '"])')

    interrupt: InterruptParams

    def check(self, ctx: NodeCheck) -> None:
        ctx.template(self.interrupt.prompt, ("interrupt", "prompt"), "prompt template")
        for name, tp in self.interrupt.fields.items():
            ctx.write(name, INPUT_TYPES[tp], ("interrupt", "fields", name))

    def execute(self, ctx: StepContext) -> dict[str, Any]:
        values = ctx.take_values()
        if values is None:
            prompt = ctx.render(self.interrupt.prompt, "prompt")
            raise Pause(
                InterruptRequest(
                    node=ctx.name, path=list(ctx.path), prompt=prompt, fields=dict(self.interrupt.fields)
                )
            )
        checked = coerce_values(self.interrupt.fields, values)
        for name, value in checked.items():
            ctx.write(name, value)
        return checked

    def outputs(self) -> list[str]:
        return list(self.interrupt.fields)

    def detail(self) -> str:
        return ", ".join(self.interrupt.fields)
