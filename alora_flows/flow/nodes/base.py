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
from alora_flows.flow.nodes.retry import ErrorRoute, RetryPolicy

if TYPE_CHECKING:
    from alora_flows.flow.catalog import Intrinsic
    from alora_flows.flow.trace import InterruptRequest

PathParts = tuple[Any, ...]


class Pause(Exception):
    """Raised by a node that must wait for a person (an ``interrupt``): the runner stops the run
    there, keeps where it stands (``frames``, filled in by each enclosing runner on the way up)
    and returns a paused result. Never an error: no listener sees ``RunFailed`` for it."""

    def __init__(self, request: InterruptRequest) -> None:
        super().__init__(request.prompt)
        self.request = request
        self.frames: list[Any] = []


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
    def template(self, source: Any, path: PathParts, what: str, local: frozenset[str] = frozenset()) -> None:
        """Check a template and record the state fields it reads (``local``: names the node binds
        itself, e.g. a ``map``'s item, which are not state fields)."""
        ...

    def literal(self, value: Any, path: PathParts, what: str) -> None: ...
    def write(self, field: str | None, tp: Any, path: PathParts) -> None: ...
    def intrinsic(self, name: str, path: PathParts) -> Intrinsic | None: ...
    def tool(self, ref: Any, path: PathParts) -> Callable[..., Any] | None: ...
    def subflow(self, ref: Any, path: PathParts) -> Any | None:
        """The compiled child flow ``ref`` names (a path relative to this flow's file, an inline
        mapping, or a Flow), validated recursively; its errors are reported where they are."""
        ...


class StepContext(Protocol):
    """What a node may use while it runs (one step of one run)."""

    name: str
    index: int
    state: BaseModel
    session: Any
    seed: int | None
    path: list[str]  # the subflow nodes this step runs inside, outermost first

    def values(self) -> dict[str, Any]: ...
    def render(self, source: str, what: str) -> str: ...
    def render_value(self, value: Any) -> Any: ...
    def write(self, field: str | None, value: Any) -> None: ...
    def resource(self) -> Any: ...
    def intrinsic(self, name: str) -> Intrinsic: ...
    def stream(self, text: str) -> None: ...
    def subflow(self, compiled: Any, inputs: Mapping[str, Any]) -> Any:
        """Run a compiled flow as part of this step, on the same session; returns its RunResult.
        Its steps become this step's ``steps`` in the trace; a resumed run continues inside it."""
        ...

    def take_values(self) -> dict[str, Any] | None:
        """Values a person supplied when the paused run was resumed (once; None otherwise)."""
        ...


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
    #: Whether the step runs a nested flow (a checkpoint may point inside it).
    nests: ClassVar[bool] = False
    #: Whether the step's output maps branch names to their outputs (``parallel``, ``map``): the
    #: live view then shows the branches side by side, one line each, under the step.
    branches: ClassVar[bool] = False

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

    def retry_policy(self) -> RetryPolicy | None:
        """How the runner retries this step when it fails (None: it does not)."""
        return None

    def error_route(self) -> ErrorRoute | None:
        """Where the run goes when this step fails for good (None: the run fails)."""
        return None


class Retryable(Node):
    """Base of node kinds that accept ``retry``, ``on_error`` and ``error_output`` (see
    :mod:`.retry`): steps that can fail for reasons outside the flow (a tool, the model)."""

    retry: RetryPolicy | None = None
    on_error: str | None = None
    error_output: str | None = None

    def check_errors(self, ctx: NodeCheck) -> None:
        """Declare the error field (the ``on_error`` target is checked with the edges)."""
        if self.error_output is not None:
            if self.on_error is None:
                ctx.error("error_output needs on_error (the node that reads it)", ("error_output",))
            ctx.write(self.error_output, str, ("error_output",))

    def retry_policy(self) -> RetryPolicy | None:
        return self.retry

    def error_route(self) -> ErrorRoute | None:
        return None if self.on_error is None else ErrorRoute(to=self.on_error, output=self.error_output)


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
