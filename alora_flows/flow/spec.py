"""Pydantic models of a flow definition: the YAML contract, validated field by field.

These models check *shape* only (right keys, right types). Whether the flow makes sense as a
graph (known nodes, reachable END, known state fields, consistent output types) is checked by
:mod:`alora_flows.flow.graph`, which also knows the YAML line of every part for its errors.

A node is a mapping with exactly one *kind key* (``generate``, ``intrinsic``, ``tool``, ``set``,
``message``, or any kind registered in :mod:`alora_flows.flow.nodes`) plus that kind's options; an edge is either ``[a, b]`` or
``{from: a, branches: [{when: "expr", to: b}, ..., {default: c}]}``. In the Python API a tool may
be a callable and a ``when`` may be a callable ``(state) -> bool``.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, Union

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    SerializeAsAny,
    Tag,
    WrapValidator,
    field_validator,
)

from alora_flows.flow.nodes import Node
from alora_flows.flow.nodes.base import parse_node

START = "START"
END = "END"
RESERVED_NODE_NAMES = frozenset({START, END})
NODE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
FIELD_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")

#: Type names an input may declare in YAML (``inputs: {question: str, k: int}``).
InputType = Literal["str", "int", "float", "bool", "list", "dict", "any"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, populate_by_name=True)


NodeSpec = Annotated[SerializeAsAny[Node], WrapValidator(parse_node)]

Condition = Union[str, Callable[[Any], bool]]


class WhenBranch(_Model):
    when: Condition
    to: str


class DefaultBranch(_Model):
    default: str


def _branch_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        return "default" if "default" in value else "when"
    return "default" if isinstance(value, DefaultBranch) else "when"


Branch = Annotated[
    Union[Annotated[WhenBranch, Tag("when")], Annotated[DefaultBranch, Tag("default")]],
    Discriminator(_branch_kind),
]


class ConditionalEdge(_Model):
    """``{from: a, branches: [...]}``: the first ``when`` that holds wins, else ``default``."""

    from_: str = Field(alias="from")
    branches: list[Branch] = Field(min_length=1)

    @property
    def default(self) -> str | None:
        return next((b.default for b in self.branches if isinstance(b, DefaultBranch)), None)


def _edge_kind(value: Any) -> str | None:
    if isinstance(value, (list, tuple)):
        return "plain"
    if isinstance(value, (dict, ConditionalEdge)):
        return "conditional"
    return None


Edge = Annotated[
    Union[Annotated[tuple[str, str], Tag("plain")], Annotated[ConditionalEdge, Tag("conditional")]],
    Discriminator(
        _edge_kind,
        custom_error_type="edge_kind",
        custom_error_message="an edge is [from, to] or {from: ..., branches: [...]}",
    ),
]


class FlowSpec(_Model):
    """A whole flow definition: the top level of a flow YAML file."""

    name: str = Field(min_length=1)
    model: str = "embedded"
    intrinsics: dict[str, str] = {}
    inputs: dict[str, InputType] = {}
    max_steps: int = Field(50, ge=1)
    start: str | None = None
    nodes: dict[str, NodeSpec] = {}
    edges: list[Edge] = []

    @field_validator("inputs", mode="before")
    @classmethod
    def _inputs_list(cls, value: Any) -> Any:
        if isinstance(value, (list, tuple)):
            if not all(isinstance(v, str) for v in value):
                raise ValueError("inputs must be a list of names or a {name: type} mapping")
            return {name: "str" for name in value}
        return {} if value is None else value


def check_field_name(name: str) -> str | None:
    """Why ``name`` cannot be a state field, or None if it can."""
    if not isinstance(name, str) or not FIELD_NAME_RE.match(name):
        return f"{name!r} is not a valid state field name (letters, digits, '_'; letter first)"
    if keyword.iskeyword(name) or name in ("True", "False", "None"):
        return f"{name!r} is a Python keyword and cannot be a state field"
    if hasattr(BaseModel, name):
        return f"{name!r} clashes with a pydantic BaseModel attribute; pick another field name"
    return None


def check_node_name(name: str) -> str | None:
    """Why ``name`` cannot be a node name, or None if it can."""
    if name in RESERVED_NODE_NAMES:
        return f"{name!r} is reserved (START/END are the implicit entry and exit)"
    if not isinstance(name, str) or not NODE_NAME_RE.match(name):
        return f"{name!r} is not a valid node name (letters, digits, '_' or '-'; letter first)"
    return None
