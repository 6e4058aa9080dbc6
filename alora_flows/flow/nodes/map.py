"""``map``: one node run for every item of a list, as branches of one fan-out (LangGraph's
``Send`` / map-reduce), results in item order.

    per_doc:
      map:
        over: "{{ documents }}"        # a list in the state (or a literal list, or range(n))
        as: doc                        # the item's name inside the node's templates
        max_items: 8                   # the bound (default 8); more items: an error ...
        truncate: false                # ... unless declared: then the first max_items
        node: {intrinsic: answerability, input: "{{ doc }}"}
      output: per_doc                  # list of the node's results, in item order

The items are branches of :func:`~alora_flows.flow.nodes.parallel.run_branches`, the machinery of
the ``parallel`` node, not a second implementation: intrinsic items run as one packed forward
per decoding step over the cached conversation, ``generate`` items too (each with its own seed,
so N samples of one prompt differ; their common prompt runs once), ``tool`` items one after the
other. Each item sees the conversation as it was at the fan-out.

Why ``max_items`` has a default rather than being required: the list usually comes from a tool
(retrieval with a ``k`` from the state), so its length is known only at run time, and every item
is one more row of the packed pass (its tokens, its KV, its decoding). A bound by default keeps
an unexpectedly long list from multiplying a step's cost unnoticed, and going over it is an
error unless ``truncate: true`` says that dropping the tail is intended, so no item is ever
dropped silently.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field, SerializeAsAny, field_validator, model_validator

from alora_flows.errors import FlowRuntimeError
from alora_flows.flow.nodes.base import (
    Node,
    NodeCheck,
    Params,
    PathParts,
    StepContext,
    parse_node,
    register_node_kind,
)
from alora_flows.flow.nodes.parallel import Branch, _BranchCheck, run_branches
from alora_flows.sandbox.templates import TemplateError, evaluate_native, single_expression

#: The most items a map may declare as its bound.
MAX_ITEMS = 64


class MapParams(Params):
    """What to map over and which node runs for each item."""

    over: str | list[Any]  # an exact ``{{ expr }}`` naming a list (or range(n)), or a literal list
    as_: str = Field(alias="as", pattern=r"^[A-Za-z][A-Za-z0-9_]*$")
    max_items: int = Field(8, ge=1, le=MAX_ITEMS)
    truncate: bool = False
    node: SerializeAsAny[Node]  # dumped as its own kind

    model_config = Params.model_config | {"populate_by_name": True}

    @field_validator("node", mode="before")
    @classmethod
    def _node(cls, value: Any) -> Any:
        return parse_node(value, lambda v: v)

    @model_validator(mode="after")
    def _mappable(self) -> MapParams:
        node = self.node
        if "output" not in type(node).model_fields or node.branches or node.nests:
            raise ValueError(
                f"a map runs one intrinsic, generate or tool node per item, not a {node.kind} node"
            )
        if getattr(node, "output", None):
            raise ValueError(
                "the map's node writes no state field: its results, in item order, are the map's "
                f"output (drop 'output: {node.output}' here)"  # type: ignore[attr-defined]
            )
        return self


@register_node_kind
class MapNode(Node):
    kind: ClassVar[str] = "map"
    style: ClassVar[str] = "bright_magenta"
    shape: ClassVar[tuple[str, str]] = ('[["', '"]]')
    uses_session: ClassVar[bool] = True
    branches: ClassVar[bool] = True

    map: MapParams
    output: str | None = None

    # ------------------------------------------------------------------ validation
    def _probe(self) -> Node:
        """The item node with an output, so that its check declares the type of one result."""
        return self.map.node.model_copy(update={"output": self.output or "result"})

    def check(self, ctx: NodeCheck) -> None:
        over = self.map.over
        if isinstance(over, str):
            if single_expression(over) is None:
                ctx.error(
                    "over must be one {{ expression }} naming a list, e.g. '{{ documents }}' or "
                    f"'{{{{ range(3) }}}}', or a literal list (got {over!r})",
                    ("map", "over"),
                )
            else:
                ctx.template(over, ("map", "over"), "over template")
        else:
            ctx.literal(over, ("map", "over"), "over item")
            if len(over) > self.map.max_items and not self.map.truncate:
                ctx.error(
                    f"over lists {len(over)} items but max_items is {self.map.max_items}", ("map", "over")
                )
        writes: dict[str, list[tuple[str, Any, PathParts]]] = {}
        item = _BranchCheck(
            ctx, "node", writes, prefix=("map", "node"), label="map node", local=frozenset({self.map.as_})
        )
        probe = self._probe()
        probe.check(item)
        result = writes.pop(probe.output, [])  # type: ignore[attr-defined]
        for field, [(_, _, path), *_] in writes.items():
            ctx.error(f"map node: writes '{field}': a map's node writes no state field", path)
        tp = result[0][1] if result else Any
        ctx.write(self.output, list[tp], ("output",))  # type: ignore[valid-type]

    def prepare(self, ctx: NodeCheck) -> Any:
        item = _BranchCheck(
            ctx, "node", {}, prefix=("map", "node"), label="map node", local=frozenset({self.map.as_})
        )
        return self._probe().prepare(item)

    def detail(self) -> str:
        over = self.map.over
        source = (single_expression(over) or over) if isinstance(over, str) else f"{len(over)} items"
        return f"{self.map.as_} in {source}"  # no braces: the label goes into drawings

    # ------------------------------------------------------------------ running
    def items(self, ctx: StepContext) -> list[Any]:
        """The list to map over, bounded by ``max_items`` (an error, or the first ones)."""
        over = self.map.over
        if isinstance(over, str):
            try:
                value = evaluate_native(over, ctx.values())
            except TemplateError as exc:
                raise FlowRuntimeError(f"over: {exc}") from None
        else:
            value = ctx.render_value(over)
        if isinstance(value, (str, bytes, dict)) or not hasattr(value, "__iter__"):
            raise FlowRuntimeError(f"over: expected a list, got {type(value).__name__}")
        items = list(value)
        if len(items) > self.map.max_items:
            if not self.map.truncate:
                raise FlowRuntimeError(
                    f"over has {len(items)} items, more than max_items ({self.map.max_items}); raise "
                    "max_items, shorten the list, or declare truncate: true to keep the first ones"
                )
            items = items[: self.map.max_items]
        return items

    def execute(self, ctx: StepContext) -> dict[str, Any]:
        name = self.map.as_
        branches = [
            Branch(f"{name}[{i}]", self.map.node, i, local={name: item}, resource=ctx.resource())
            for i, item in enumerate(self.items(ctx))
        ]
        writes: dict[str, list[Any]] = {}
        outputs = run_branches(ctx, branches, writes)
        ctx.write(self.output, list(outputs.values()))
        return outputs

    def adapter(self) -> str | None:
        return self.map.node.adapter()


__all__ = ["MAX_ITEMS", "MapNode", "MapParams"]
