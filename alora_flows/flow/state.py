"""Typed flow state: one pydantic model per flow, built from its inputs and node outputs.

Why typed: a condition like ``certainty.score < 0.4`` or a template like ``{{ query }}`` must find
the object an intrinsic produced, and a tool returning the wrong type should fail at the step
that wrote it, not three steps later. Each field's type comes from whoever writes it:

- an input: its declared type (``str`` unless the YAML says otherwise);
- a ``generate`` output: ``str``; an ``intrinsic`` output: the spec's ``output_model``;
- a ``tool`` output: its return annotation (``Any`` without one);
- a ``set`` value: the literal's type; a *template* string takes the type of the field's other
  writers (so ``{set: {n: "{{ n + 1 }}"}}`` after ``{set: {n: 0}}`` stays an ``int``), else ``str``.

Fields no node has written yet are *unset*: templates and conditions that read them fail with a
clear error instead of seeing ``None``.
"""

from __future__ import annotations

import re
import typing
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, create_model


class _Templated:
    """Type marker of a rendered template string: adopts the field's other writers' type."""

    def __repr__(self) -> str:
        return "template"


TEMPLATED: Any = _Templated()

INPUT_TYPES: dict[str, Any] = {
    "str": str,
    "int": int,
    "float": float,
    "bool": bool,
    "list": list,
    "dict": dict,
    "any": Any,
}


def literal_type(value: Any, *, templated: bool) -> Any:
    """The type a ``set`` literal gives its field (``templated``: the string is a template)."""
    if isinstance(value, str):
        return TEMPLATED if templated else str
    if value is None:
        return Any
    for kind in (bool, int, float, list, dict):
        if isinstance(value, kind):
            return kind
    return type(value)


def merge_types(a: Any, b: Any) -> Any | None:
    """The common type of two writers of one field, or None when they conflict."""
    if a == b:
        return a
    for x, y in ((a, b), (b, a)):
        if x is TEMPLATED or x is Any:
            return y
        if isinstance(x, type) and typing.get_origin(y) is x:  # list vs list[str]
            return y
    return None


def type_name(tp: Any) -> str:
    """Readable name of a type for error messages (``str``, ``list[str]``, ``UncertaintyOutput``)."""
    if tp is TEMPLATED:
        return "template"
    if tp is Any:
        return "Any"
    if isinstance(tp, type) and not typing.get_args(tp):
        return tp.__name__
    return re.sub(r"\btyping\.", "", repr(tp))


def field_type(tp: Any) -> Any:
    """The concrete annotation for a state field (a lone template is a ``str``)."""
    return str if tp is TEMPLATED else tp


def build_state_model(flow_name: str, fields: dict[str, Any]) -> type[BaseModel]:
    """A pydantic model with one optional field per state name, validated on every assignment."""
    camel = "".join(part.capitalize() for part in re.split(r"[^A-Za-z0-9]+", flow_name) if part)
    definitions: dict[str, Any] = {}
    for name, tp in fields.items():
        tp = field_type(tp)
        definitions[name] = (tp if tp is Any else Optional[tp], None)
    return create_model(
        f"{camel or 'Flow'}State",
        __config__=ConfigDict(validate_assignment=True, arbitrary_types_allowed=True, extra="forbid"),
        **definitions,
    )


def state_values(state: BaseModel) -> dict[str, Any]:
    """The fields some node (or the caller) has set, as objects: the scope of templates/conditions."""
    return {name: getattr(state, name) for name in type(state).model_fields if name in state.model_fields_set}
