"""Validation and compilation of a flow, before any model loads.

:func:`compile_flow` checks everything that can be known statically and returns every problem
found (each a :class:`FlowDefinitionError` naming file, line and node), or a
:class:`CompiledFlow`: the routing table, the networkx graph, the typed state model, the resolved
tools and intrinsic specs. The runner only ever runs compiled flows, so a flow with an unsafe
condition or template never executes a single node.

Checked: node/field names, unknown nodes in edges and ``start``, more than one outgoing edge per
node, conditional edges without exactly one trailing ``default``, unsafe conditions and templates,
conditions and templates that read unknown state fields (and unknown attributes of intrinsic
outputs, e.g. ``certainty.scor``), intrinsics not declared under ``intrinsics:`` or unknown to the
registry, tools that cannot be imported, a field written with two different types, nodes
unreachable from START, and nodes with no path to END.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
from pydantic import BaseModel, ValidationError

from alora_flows.errors import AloraFlowsError, FlowDefinitionError
from alora_flows.flow.expressions import check_expression
from alora_flows.flow.spec import (END, START, ConditionalEdge, DefaultBranch, FlowSpec,
                                   GenerateNode, IntrinsicNode, MessageNode, SetNode, ToolNode,
                                   WhenBranch, check_field_name, check_node_name, node_outputs)
from alora_flows.flow.state import (INPUT_TYPES, attribute_known, build_state_model,
                                    literal_type, merge_types, type_name)
from alora_flows.flow.templates import check_template, is_template
from alora_flows.flow.tools import resolve_tool, return_type, tool_label
from alora_flows.flow.yaml_io import SourceMap

#: How a flow finds intrinsic specs: a mapping, a ``name -> spec`` function, or None for the
#: ``intrinsics`` package registry.
IntrinsicSpecs = Mapping[str, Any] | Callable[[str], Any] | None


class FlowInputError(AloraFlowsError):
    """The inputs given to a run do not match the flow's ``inputs:`` (missing, unknown, bad type)."""

    exit_code = 2


@dataclass(frozen=True)
class Route:
    """One way out of a node: taken when ``condition`` holds (None: always / default)."""

    to: str
    condition: str | Callable[[Any], bool] | None = None
    label: str = ""          # the expression, the callable's name, "default", or "" (plain edge)
    path: tuple[Any, ...] = ()


@dataclass
class CompiledFlow:
    """A validated flow, ready to run."""

    spec: FlowSpec
    graph: nx.DiGraph
    routes: dict[str, list[Route]]
    field_types: dict[str, Any]
    state_model: type[BaseModel]
    tools: dict[str, Callable[..., Any]] = field(default_factory=dict)  # node -> callable
    specs: dict[str, Any] = field(default_factory=dict)                 # intrinsic -> spec

    def new_state(self, inputs: Mapping[str, Any]) -> BaseModel:
        """The initial state: exactly the declared inputs, validated against their types."""
        declared = set(self.spec.inputs)
        missing = sorted(declared - set(inputs))
        unknown = sorted(set(inputs) - declared)
        if missing:
            raise FlowInputError(f"flow '{self.spec.name}' needs input(s) {', '.join(missing)} "
                                 f"(e.g. --input {missing[0]}=...)")
        if unknown:
            raise FlowInputError(f"flow '{self.spec.name}' has no input(s) {', '.join(unknown)}; "
                                 f"declared inputs: {', '.join(sorted(declared)) or 'none'}")
        try:
            return self.state_model(**dict(inputs))
        except ValidationError as exc:
            err = exc.errors()[0]
            raise FlowInputError(f"input '{err['loc'][0]}': {err['msg']}") from None


def lookup_spec(specs: IntrinsicSpecs, name: str, source: str | None = None,
                base_dir: Path | None = None) -> Any:
    """The spec of intrinsic ``name``; None when no registry is available at all.

    With the default registry (``specs`` None) and a ``source`` that is an adapter directory, the
    spec that travels with the adapter (``intrinsic.yaml``) wins, as it will when the flow runs.
    """
    if specs is None:
        try:
            import intrinsics  # the registry package; optional for the engine itself
        except ImportError:
            return None
        if source and source != "builtin" and hasattr(intrinsics, "spec_for_adapter"):
            path = Path(source).expanduser()
            if not path.is_absolute() and base_dir is not None:
                path = base_dir / path
            if path.is_dir():
                return intrinsics.spec_for_adapter(name, path)
            raise FileNotFoundError(
                f"the adapter directory {path} of intrinsic '{name}' does not exist: fix the path "
                "under intrinsics:, or use 'builtin'")
        get_spec = getattr(intrinsics, "get_spec", None)
        return get_spec(name) if get_spec is not None else None
    if isinstance(specs, Mapping):
        if name not in specs:
            raise KeyError(f"unknown intrinsic '{name}' (known: {', '.join(sorted(specs))})")
        return specs[name]
    return specs(name)


def _suggest(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


class _Checker:
    def __init__(self, spec: FlowSpec, source: SourceMap) -> None:
        self.spec, self.source = spec, source
        self.errors: list[FlowDefinitionError] = []
        self.base_dir = Path(source.file).parent if source.file else None

    def error(self, message: str, path: tuple[Any, ...] = (), node: str | None = None,
              cls: type[FlowDefinitionError] = FlowDefinitionError) -> None:
        self.errors.append(self.source.error(message, path, node, cls))

    def wrap(self, exc: FlowDefinitionError, path: tuple[Any, ...], node: str | None,
             what: str) -> None:
        self.error(f"{what}: {exc.detail}", path, node, type(exc))

    # ------------------------------------------------------------------ routes
    def routes(self) -> dict[str, list[Route]]:
        spec, known = self.spec, set(self.spec.nodes)
        routes: dict[str, list[Route]] = {}
        first_path: dict[str, tuple[Any, ...]] = {}

        def check_target(to: str, path: tuple[Any, ...], frm: str) -> None:
            if to == START:
                self.error("an edge cannot lead to START", path, frm)
            elif to != END and to not in known:
                self.error(f"edge to unknown node '{to}'{_suggest(to, known)}", path, frm)

        for i, edge in enumerate(spec.edges):
            if isinstance(edge, ConditionalEdge):
                frm, out = edge.from_, []
                defaults = [j for j, b in enumerate(edge.branches) if isinstance(b, DefaultBranch)]
                if len(defaults) != 1:
                    self.error(f"conditional edge from '{frm}' needs exactly one 'default' branch "
                               f"(found {len(defaults)}): the target when no 'when' holds",
                               ("edges", i), frm)
                elif defaults[0] != len(edge.branches) - 1:
                    self.error("the 'default' branch must be the last one", ("edges", i, "branches",
                                                                             defaults[0]), frm)
                for j, branch in enumerate(edge.branches):
                    path = ("edges", i, "branches", j)
                    if isinstance(branch, WhenBranch):
                        self.check_condition(branch.when, path + ("when",), frm)
                        label = branch.when if isinstance(branch.when, str) else \
                            getattr(branch.when, "__name__", "condition")
                        check_target(branch.to, path + ("to",), frm)
                        out.append(Route(branch.to, branch.when, label, path))
                    else:
                        check_target(branch.default, path + ("default",), frm)
                        out.append(Route(branch.default, None, "default", path))
            else:
                frm, to = edge
                check_target(to, ("edges", i, 1), frm)
                out = [Route(to, None, "", ("edges", i))]
            if frm == END:
                self.error("END has no outgoing edges", ("edges", i), frm)
                continue
            if frm != START and frm not in known:
                self.error(f"edge from unknown node '{frm}'{_suggest(frm, known)}", ("edges", i),
                           frm)
                continue
            if frm in routes:
                line = self.source.locate(first_path[frm])[1]
                where = f" (first one at line {line})" if line else ""
                self.error(f"has more than one outgoing edge{where}; use one "
                           "conditional edge with branches to choose the next node",
                           ("edges", i), frm)
                continue
            routes[frm], first_path[frm] = out, ("edges", i)

        if spec.start is not None:
            if START in routes:
                self.error("the flow sets both 'start:' and an edge from START; keep one",
                           ("start",))
            elif spec.start not in known:
                self.error(f"start node '{spec.start}' is not a node{_suggest(spec.start, known)}",
                           ("start",))
            else:
                routes[START] = [Route(spec.start, None, "", ("start",))]
        elif START not in routes:
            if known:
                routes[START] = [Route(next(iter(spec.nodes)), None, "", ("nodes",))]
            else:
                self.error("the flow has no nodes", ("nodes",))
        return routes

    def check_condition(self, condition: Any, path: tuple[Any, ...], node: str) -> None:
        if callable(condition) and not isinstance(condition, str):
            return
        try:
            check_expression(condition)
        except FlowDefinitionError as exc:
            self.wrap(exc, path, node, "condition")

    # ------------------------------------------------------------------ nodes
    def nodes(self, specs: IntrinsicSpecs, routes: dict[str, list[Route]]
              ) -> tuple[dict[str, list[tuple[str, Any, tuple[Any, ...]]]],
                         list[tuple[str, tuple[Any, ...], frozenset[str]]],
                         dict[str, Callable[..., Any]], dict[str, Any]]:
        spec = self.spec
        writers: dict[str, list[tuple[str, Any, tuple[Any, ...]]]] = {}
        reads: list[tuple[str, tuple[Any, ...], frozenset[str]]] = []
        tools: dict[str, Callable[..., Any]] = {}
        found_specs: dict[str, Any] = {}

        for name, tp in spec.inputs.items():
            if why := check_field_name(name):
                self.error(why, ("inputs", name))
            writers.setdefault(name, []).append(("inputs", INPUT_TYPES[tp], ("inputs", name)))

        def template(source: Any, path: tuple[Any, ...], node: str, what: str) -> None:
            try:
                reads.append((node, path, check_template(source).names))
            except FlowDefinitionError as exc:
                self.wrap(exc, path, node, what)

        def write(field_name: str, tp: Any, path: tuple[Any, ...], node: str) -> None:
            if why := check_field_name(field_name):
                self.error(why, path, node)
                return
            writers.setdefault(field_name, []).append((node, tp, path))

        def literal(value: Any, path: tuple[Any, ...], node: str, what: str) -> None:
            if isinstance(value, str):
                template(value, path, node, what)
            elif isinstance(value, Mapping):
                for k, v in value.items():
                    literal(v, path + (k,), node, what)
            elif isinstance(value, (list, tuple)):
                for i, v in enumerate(value):
                    literal(v, path + (i,), node, what)

        for name, node in spec.nodes.items():
            base = ("nodes", name)
            if why := check_node_name(name):
                self.error(why, base, name)
            if name not in routes:
                self.error("has no outgoing edge; add one (to the next node or "
                           "to END)", base, name)
            if isinstance(node, GenerateNode):
                for part in ("system", "user"):
                    text = getattr(node.generate, part)
                    if text is not None:
                        template(text, base + ("generate", part), name, f"{part} template")
                if node.output:
                    write(node.output, str, base + ("output",), name)
            elif isinstance(node, IntrinsicNode):
                self.intrinsic(name, node, specs, found_specs, write)
                if node.input is not None:
                    template(node.input, base + ("input",), name, "input template")
            elif isinstance(node, ToolNode):
                fn = self.tool(name, node)
                if fn is not None:
                    tools[name] = fn
                literal(node.args, base + ("args",), name, "tool argument")
                if node.output:
                    write(node.output, return_type(fn) if fn is not None else Any,
                          base + ("output",), name)
            elif isinstance(node, SetNode):
                for key, value in node.set.items():
                    literal(value, base + ("set", key), name, "set value")
                    write(key, literal_type(value, templated=isinstance(value, str)
                                            and is_template(value)), base + ("set", key), name)
            elif isinstance(node, MessageNode):
                template(node.message.content, base + ("message", "content"), name,
                         "message template")
        return writers, reads, tools, found_specs

    def intrinsic(self, name: str, node: IntrinsicNode, specs: IntrinsicSpecs,
                  found: dict[str, Any], write: Callable[..., None]) -> None:
        path = ("nodes", name, "intrinsic")
        declared = self.spec.intrinsics
        if node.intrinsic not in declared:
            self.error(f"intrinsic '{node.intrinsic}' is not declared under 'intrinsics:' "
                       f"(add '{node.intrinsic}: builtin' or a path to its adapter)"
                       f"{_suggest(node.intrinsic, declared)}", path, name)
        spec_obj = found.get(node.intrinsic)
        if node.intrinsic not in found:
            try:
                spec_obj = lookup_spec(specs, node.intrinsic, declared.get(node.intrinsic),
                                       self.base_dir)
            except Exception as exc:  # noqa: BLE001 - the registry's own "unknown" error
                message = str(exc.args[0] if isinstance(exc, KeyError) and exc.args else exc)
                if f"intrinsic '{node.intrinsic}'" not in message:
                    message = f"unknown intrinsic '{node.intrinsic}': {message}"
                self.error(message, path, name)
                spec_obj = None
            found[node.intrinsic] = spec_obj
        if node.output:
            output_type = getattr(spec_obj, "output_model", None) or Any
            write(node.output, output_type, ("nodes", name, "output"), name)

    def tool(self, name: str, node: ToolNode) -> Callable[..., Any] | None:
        if callable(node.tool) and not isinstance(node.tool, str):
            return node.tool
        try:
            return resolve_tool(node.tool)
        except FlowDefinitionError as exc:
            self.wrap(exc, ("nodes", name, "tool"), name, "tool")
            return None

    # ------------------------------------------------------------------ fields
    def field_types(self, writers: dict[str, list[tuple[str, Any, tuple[Any, ...]]]]
                    ) -> dict[str, Any]:
        types: dict[str, Any] = {}
        for field_name, entries in writers.items():
            node0, current, _ = entries[0]
            for node, tp, path in entries[1:]:
                merged = merge_types(current, tp)
                if merged is None:
                    self.error(f"field '{field_name}' is written as {type_name(tp)} here but as "
                               f"{type_name(current)} by {_who(node0)}; one field must keep one "
                               "type (use another output name)", path,
                               node if node != "inputs" else None)
                    break
                current = merged
            types[field_name] = current
        return types

    def reads(self, reads: list[tuple[str, tuple[Any, ...], frozenset[str]]],
              routes: dict[str, list[Route]], types: dict[str, Any]) -> None:
        for node, path, names in reads:
            unknown = sorted(names - set(types))
            if unknown:
                self.error(f"template reads unknown state field(s) {', '.join(unknown)}"
                           f"{_suggest(unknown[0], types)}; known: "
                           f"{', '.join(sorted(types)) or 'none'}", path, node)
        for frm, out in routes.items():
            for route in out:
                if not isinstance(route.condition, str):
                    continue
                try:
                    info = check_expression(route.condition)
                except FlowDefinitionError:
                    continue  # already reported
                unknown = sorted(info.names - set(types))
                if unknown:
                    self.error(f"condition {route.condition!r} reads unknown state field(s) "
                               f"{', '.join(unknown)}{_suggest(unknown[0], types)}; known: "
                               f"{', '.join(sorted(types)) or 'none'}", route.path + ("when",),
                               frm)
                for name, attr in sorted(info.attributes):
                    if name in types and attribute_known(types[name], attr) is False:
                        tp = types[name]
                        fields = ", ".join(getattr(tp, "model_fields", {}))
                        self.error(f"condition {route.condition!r}: '{name}' is a "
                                   f"{type_name(tp)}, which has no attribute '{attr}'"
                                   f"{_suggest(attr, getattr(tp, 'model_fields', {}))} "
                                   f"(fields: {fields})", route.path + ("when",), frm)

    # ------------------------------------------------------------------ graph
    def graph(self, routes: dict[str, list[Route]]) -> nx.DiGraph:
        graph = build_graph(self.spec, routes)
        reachable = nx.descendants(graph, START)
        can_end = nx.ancestors(graph, END)
        # nodes with an edge to an unknown node (already reported): no knock-on END errors
        broken = {n for n, out in routes.items() if any(r.to not in graph for r in out)}
        broken |= {n for n in self.spec.nodes if n not in routes}
        unreachable = [n for n in self.spec.nodes if n not in reachable]
        # report where unreachable regions begin, not every node behind them
        roots = [n for n in unreachable if not any(p in unreachable for p in graph.predecessors(n))]
        for name in self.spec.nodes:
            if name not in reachable:
                if name in roots or (not roots and name == unreachable[0]):
                    self.error("is unreachable from START (no edge leads to it)",
                               ("nodes", name), name)
            elif name not in can_end and not (
                    ({name} | nx.descendants(graph, name)) & broken):
                self.error("has no path to END: every way out of it loops or "
                           "stops; add a branch that leaves the loop", ("nodes", name), name)
        return graph


def _who(node: str) -> str:
    return "the flow inputs" if node == "inputs" else f"node '{node}'"


def build_graph(spec: FlowSpec, routes: Mapping[str, list[Route]]) -> nx.DiGraph:
    """The flow as a networkx DiGraph: START, END and the nodes; edges carry their conditions."""
    graph = nx.DiGraph(name=spec.name)
    graph.add_node(START, kind="start")
    graph.add_node(END, kind="end")
    for name, node in spec.nodes.items():
        graph.add_node(name, kind=node.kind, outputs=node_outputs(node),
                       detail=_node_detail(node))
    for frm, out in routes.items():
        for order, route in enumerate(out):
            if route.to in graph and frm in graph and not graph.has_edge(frm, route.to):
                graph.add_edge(frm, route.to, label=route.label, order=order,
                               condition=route.condition)
    return graph


def _node_detail(node: Any) -> str:
    if isinstance(node, IntrinsicNode):
        return node.intrinsic
    if isinstance(node, ToolNode):
        return tool_label(node.tool)
    if isinstance(node, MessageNode):
        return node.message.role
    return ""


def compile_routes(spec: FlowSpec, source: SourceMap | None = None
                   ) -> tuple[dict[str, list[Route]], list[FlowDefinitionError]]:
    """Structure only (edges, start): enough to draw a flow that may not fully validate."""
    checker = _Checker(spec, source or SourceMap())
    return checker.routes(), checker.errors


def compile_flow(spec: FlowSpec, source: SourceMap | None = None, *,
                 intrinsic_specs: IntrinsicSpecs = None
                 ) -> tuple[list[FlowDefinitionError], CompiledFlow | None]:
    """Check everything; return ``(problems, None)`` or ``([], CompiledFlow)``."""
    checker = _Checker(spec, source or SourceMap())
    routes = checker.routes()
    writers, reads, tools, specs = checker.nodes(intrinsic_specs, routes)
    types = checker.field_types(writers)
    checker.reads(reads, routes, types)
    graph = checker.graph(routes)
    if checker.errors:
        return checker.errors, None
    try:
        model = build_state_model(spec.name, types)
    except Exception as exc:  # noqa: BLE001 - a type pydantic cannot build a field from
        return [checker.source.error(f"cannot build the state model: {exc}")], None
    return [], CompiledFlow(spec=spec, graph=graph, routes=routes, field_types=types,
                            state_model=model, tools=tools, specs=specs)
