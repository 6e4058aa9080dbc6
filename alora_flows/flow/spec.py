"""Pydantic models of a flow definition: the YAML contract, validated field by field.

These models check *shape* only (right keys, right types). Whether the flow makes sense as a
graph (known nodes, reachable END, known state fields, consistent output types) is checked by
:mod:`alora_flows.flow.graph`, which also knows the YAML line of every part for its errors.

A node is a mapping with exactly one *kind key* (``generate``, ``intrinsic``, ``tool``, ``set``,
``message``) plus that kind's options; an edge is either ``[a, b]`` or
``{from: a, branches: [{when: "expr", to: b}, ..., {default: c}]}``. In the Python API a tool may
be a callable and a ``when`` may be a callable ``(state) -> bool``.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, field_validator

START = "START"
END = "END"
RESERVED_NODE_NAMES = frozenset({START, END})
NODE_KINDS = ("generate", "intrinsic", "tool", "set", "message")
NODE_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
FIELD_NAME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")
TOOL_REF_RE = re.compile(r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)*:[A-Za-z]\w*$")

#: Type names an input may declare in YAML (``inputs: {question: str, k: int}``).
InputType = Literal["str", "int", "float", "bool", "list", "dict", "any"]


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True,
                              populate_by_name=True)


class GenerateParams(_Model):
    """A base-model turn: optional system/user messages (templates) appended, then generation."""

    system: str | None = None
    user: str | None = None
    max_new_tokens: int = Field(256, ge=1)
    temperature: float = Field(0.0, ge=0.0)


class GenerateNode(_Model):
    generate: GenerateParams = GenerateParams()
    output: str | None = None

    @field_validator("generate", mode="before")
    @classmethod
    def _none_is_default(cls, value: Any) -> Any:
        return {} if value is None else value

    @property
    def kind(self) -> str:
        return "generate"


class IntrinsicNode(_Model):
    """An aLoRA intrinsic invoked on the conversation; ``input`` overrides its input turn."""

    intrinsic: str
    input: str | None = None
    output: str | None = None

    @property
    def kind(self) -> str:
        return "intrinsic"


class ToolNode(_Model):
    """A Python callable: ``"package.module:function"`` in YAML, or a callable in Python."""

    tool: Union[str, Callable[..., Any]]
    args: dict[str, Any] = {}
    output: str | None = None

    @field_validator("tool")
    @classmethod
    def _check_ref(cls, value: Any) -> Any:
        if isinstance(value, str) and not TOOL_REF_RE.match(value):
            raise ValueError(
                f"tool must look like 'package.module:function' (got {value!r}); "
                "names starting with '_' are not allowed")
        return value

    @property
    def kind(self) -> str:
        return "tool"


class SetNode(_Model):
    """Assigns state fields: strings are templates, other YAML values are literals."""

    set: dict[str, Any]

    @property
    def kind(self) -> str:
        return "set"


class MessageParams(_Model):
    role: Literal["system", "user", "assistant"]
    content: str


class MessageNode(_Model):
    """Appends a fixed (templated) turn to the session without generating."""

    message: MessageParams

    @property
    def kind(self) -> str:
        return "message"


def _node_kind(value: Any) -> str | None:
    if isinstance(value, dict):
        kinds = [k for k in NODE_KINDS if k in value]
        return kinds[0] if len(kinds) == 1 else None
    return getattr(value, "kind", None)


NodeSpec = Annotated[
    Union[
        Annotated[GenerateNode, Tag("generate")],
        Annotated[IntrinsicNode, Tag("intrinsic")],
        Annotated[ToolNode, Tag("tool")],
        Annotated[SetNode, Tag("set")],
        Annotated[MessageNode, Tag("message")],
    ],
    Discriminator(
        _node_kind, custom_error_type="node_kind",
        custom_error_message="a node needs exactly one of the keys "
                             "generate / intrinsic / tool / set / message",
    ),
]

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
    Union[Annotated[tuple[str, str], Tag("plain")],
          Annotated[ConditionalEdge, Tag("conditional")]],
    Discriminator(_edge_kind, custom_error_type="edge_kind",
                  custom_error_message="an edge is [from, to] or {from: ..., branches: [...]}"),
]

AnyNode = Union[GenerateNode, IntrinsicNode, ToolNode, SetNode, MessageNode]


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


def node_outputs(node: AnyNode) -> list[str]:
    """State fields a node writes."""
    if isinstance(node, SetNode):
        return list(node.set)
    output = getattr(node, "output", None)
    return [output] if output else []
