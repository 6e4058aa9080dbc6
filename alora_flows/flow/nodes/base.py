"""The node interface: what a node reads, what it writes, how it runs, how it is drawn and shown.

Every node kind is one :class:`Node` subclass in one module, registered with
:func:`register_node_kind` under the key that names it in a flow file (``generate``, ``tool``,
...). Validation, the runner, drawing and the live view loop over nodes through this interface
and never ask which kind a node is, so adding a kind touches its own module and its tests::

    @register_node_kind
    class Shout(Node):
        kind: ClassVar[str] = "shout"
        shout: str                     # the kind key holds the node's main option
        output: str | None = None

        def check(self, ctx: NodeCheck) -> None:
            ctx.template(self.shout, ("shout",), "shout template")
            ctx.write(self.output, str, ("output",))

        def execute(self, ctx: StepContext) -> Any:
            text = ctx.render(self.shout, "shout").upper()
            ctx.write(self.output, text)
            return text
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict

from alora_flows.errors import FlowDefinitionError

if TYPE_CHECKING:
    from alora_flows.flow.catalog import Intrinsic

PathParts = tuple[Any, ...]


class NodeCheck(Protocol):
    """What a node may ask of the validator while it checks itself (paths are relative to the
    node's own YAML mapping, so errors land on the right line)."""

    name: str
    flow: Any  # the FlowSpec being validated
    base_dir: Path | None

    def error(
        self, message: str, path: PathParts = (), cls: type[FlowDefinitionError] = FlowDefinitionError
    ) -> None: ...
    def wrap(self, exc: FlowDefinitionError, path: PathParts, what: str) -> None: ...
    def template(self, source: Any, path: PathParts, what: str) -> None: ...
    def literal(self, value: Any, path: PathParts, what: str) -> None: ...
    def write(self, field: str | None, tp: Any, path: PathParts) -> None: ...
    def intrinsic(self, name: str, path: PathParts) -> Intrinsic | None: ...
    def tool(self, ref: Any, path: PathParts) -> Callable[..., Any] | None: ...


class StepContext(Protocol):
    """What a node may use while it runs (one step of one run)."""

    name: str
    index: int
    state: BaseModel
    session: Any
    seed: int | None

    def values(self) -> dict[str, Any]: ...
    def render(self, source: str, what: str) -> str: ...
    def render_value(self, value: Any) -> Any: ...
    def write(self, field: str | None, value: Any) -> None: ...
    def resource(self) -> Any: ...
    def intrinsic(self, name: str) -> Intrinsic: ...
    def stream(self, text: str) -> None: ...


class Params(BaseModel):
    """Base of a node's option groups (``generate: {...}``): unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class Node(BaseModel):
    """Base class of node kinds. Subclasses set :attr:`kind` and implement :meth:`execute`."""

    model_config = ConfigDict(extra="forbid", arbitrary_types_allowed=True, populate_by_name=True)

    #: The key that names this kind in a flow file (exactly one kind key per node).
    kind: ClassVar[str] = ""
    #: Colour of the kind in the live view (a rich style).
    style: ClassVar[str] = "white"
    #: Mermaid shape delimiters (left, right) in ``alora-flows draw``.
    shape: ClassVar[tuple[str, str]] = ('["', '"]')
    #: Whether the step runs the model on the session (its trace then counts context tokens).
    uses_session: ClassVar[bool] = False

    def check(self, ctx: NodeCheck) -> None:
        """Report templates read, fields written and problems to ``ctx`` (no model loaded)."""

    def execute(self, ctx: StepContext) -> Any:
        """Run the step; write outputs with ``ctx.write``; return what the trace shows."""
        raise NotImplementedError

    def outputs(self) -> list[str]:
        """State fields this node writes (for drawing; :meth:`check` declares their types)."""
        output = getattr(self, "output", None)
        return [output] if isinstance(output, str) and output else []

    def detail(self) -> str:
        """A short label for drawings (the intrinsic, the tool, the role)."""
        return ""

    def adapter(self) -> str | None:
        """The adapter this node invokes, if any (shown in the trace)."""
        return None

    def prepare(self, ctx: NodeCheck) -> Any:
        """A resource resolved at validation and handed back at run time (a tool's callable)."""
        return None


NODE_KINDS: dict[str, type[Node]] = {}


def register_node_kind(cls: type[Node]) -> type[Node]:
    """Make ``cls`` usable in flows under ``cls.kind`` (a class decorator)."""
    if not cls.kind or not cls.kind.isidentifier():
        raise TypeError(f"{cls.__name__}.kind must be an identifier, got {cls.kind!r}")
    current = NODE_KINDS.get(cls.kind)
    if current is not None and current is not cls:
        raise TypeError(f"node kind '{cls.kind}' is already registered by {current.__name__}")
    NODE_KINDS[cls.kind] = cls
    return cls


def kind_keys() -> str:
    return " / ".join(NODE_KINDS)


def parse_node(value: Any, handler: Callable[[Any], Any]) -> Node:
    """Pydantic wrap validator for a node value: a Node as-is, a mapping by its kind key."""
    if isinstance(value, Node):
        return value
    if isinstance(value, Mapping):
        kinds = [key for key in value if key in NODE_KINDS]
        if len(kinds) == 1:
            return NODE_KINDS[kinds[0]].model_validate(dict(value))
    raise ValueError(f"a node needs exactly one of the keys {kind_keys()}")
