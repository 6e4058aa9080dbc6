"""Validation and compilation of a flow, before any model loads.

:func:`compile_flow` checks everything that can be known statically and returns every problem
found (each a :class:`FlowDefinitionError` naming file, line and node), or a
:class:`CompiledFlow`: the routing table, the networkx graph, the typed state model, the resolved
tools and intrinsic specs. The runner only ever runs compiled flows, so a flow with an unsafe
condition or template never executes a single node.

Checked: node/field names, unknown nodes in edges, ``start`` and ``on_error``, more than one
outgoing edge per node, conditional edges without exactly one trailing ``default``, unsafe
conditions and templates, conditions and templates that read unknown state fields (and unknown
attributes of intrinsic outputs, e.g. ``certainty.scor``), conditions whose operand types cannot
work (``certainty < 0.5`` on an intrinsic's output object, ``answer > 3`` on a str), intrinsics not
declared under ``intrinsics:`` or unknown to the registry, tools that cannot be imported, a field
written with two different types, nodes unreachable from START, and nodes with no path to END.

Subflows (``flow:`` nodes) are compiled here too, recursively: their problems keep the child's
file and line and name the node as ``parent/child``; a subflow that includes itself, and an
intrinsic name bound to two different adapters by a flow and its subflow, are errors.
"""

from __future__ import annotations

import difflib
import hashlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import networkx as nx
from pydantic import BaseModel, ValidationError

from alora_flows.errors import AloraFlowsError, FlowDefinitionError, FlowInputError
from alora_flows.flow.catalog import CatalogLike, Intrinsic, IntrinsicCatalog, as_catalog
from alora_flows.flow.nodes import Node
from alora_flows.flow.spec import (
    END,
    START,
    ConditionalEdge,
    DefaultBranch,
    FlowSpec,
    WhenBranch,
    check_field_name,
    check_node_name,
)
from alora_flows.flow.state import INPUT_TYPES, build_state_model, field_type, merge_types, type_name
from alora_flows.flow.tools import resolve_tool
from alora_flows.flow.yaml_io import SourceMap, load_yaml, parse_spec
from alora_flows.sandbox.expressions import check_expression, check_types
from alora_flows.sandbox.templates import check_template, map_strings


@dataclass(frozen=True)
class Route:
    """One way out of a node: taken when ``condition`` holds (None: always / default)."""

    to: str
    condition: str | Callable[[Any], bool] | None = None
    label: str = ""  # the expression, the callable's name, "default", or "" (plain edge)
    path: tuple[Any, ...] = ()


@dataclass
class CompiledFlow:
    """A validated flow, ready to run."""

    spec: FlowSpec
    graph: nx.DiGraph
    routes: dict[str, list[Route]]
    field_types: dict[str, Any]
    state_model: type[BaseModel]
    resources: dict[str, Any] = field(default_factory=dict)  # node -> Node.prepare() result
    specs: dict[str, Intrinsic] = field(default_factory=dict)  # intrinsic -> spec
    #: every intrinsic this flow and its subflows invoke: name -> (source, the directory a
    #: relative source is relative to; None: the top flow's, as its caller decides)
    intrinsic_sources: dict[str, tuple[str, Path | None]] = field(default_factory=dict)
    #: subflow files read while compiling (resolved path -> sha256 of the text), recursively
    subflow_files: dict[str, str] = field(default_factory=dict)

    def new_state(self, inputs: Mapping[str, Any]) -> BaseModel:
        """The initial state: exactly the declared inputs, validated against their types."""
        declared = set(self.spec.inputs)
        missing = sorted(declared - set(inputs))
        unknown = sorted(set(inputs) - declared)
        if missing:
            raise FlowInputError(
                f"flow '{self.spec.name}' needs input(s) {', '.join(missing)} (e.g. --input {missing[0]}=...)"
            )
        if unknown:
            raise FlowInputError(
                f"flow '{self.spec.name}' has no input(s) {', '.join(unknown)}; "
                f"declared inputs: {', '.join(sorted(declared)) or 'none'}"
            )
        try:
            return self.state_model(**dict(inputs))
        except ValidationError as exc:
            err = exc.errors()[0]
            raise FlowInputError(f"input '{err['loc'][0]}': {err['msg']}") from None


def _suggest(name: str, options: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(options), n=1)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _adapter_key(source: str, base_dir: Path | None) -> str:
    """What an intrinsic source names, comparable across flows in different directories."""
    local = (base_dir or Path.cwd()) / source
    return str(local.resolve()) if local.exists() else source


def _nested_error(exc: FlowDefinitionError, node: str) -> FlowDefinitionError:
    """A subflow's problem as the parent reports it: the child's file and line, ``node/child``."""
    nested = exc.with_detail(exc.detail)
    nested.node = f"{node}/{exc.node}" if exc.node else node
    return nested


def _sub_source(source: SourceMap, prefix: tuple[Any, ...]) -> SourceMap:
    """The lines of an inline subflow: the parent's entries under ``prefix``, re-rooted."""
    sub = SourceMap(file=source.file)
    for key, where in source.entries.items():
        if key[: len(prefix)] == prefix and len(key) > len(prefix):
            sub.entries[key[len(prefix) :]] = where
    return sub


class _Checker:
    def __init__(
        self, spec: FlowSpec, source: SourceMap, ancestors: tuple[str, ...] = (), catalog: Any = None
    ) -> None:
        self.spec, self.source = spec, source
        self.errors: list[FlowDefinitionError] = []
        self.base_dir = Path(source.file).parent if source.file else None
        self.ancestors = ancestors  # the flows that include this one (cycle detection)
        self.catalog: Any = catalog
        self.subflows: dict[int, CompiledFlow | None] = {}
        self.subflow_files: dict[str, str] = {}
        self.intrinsic_sources: dict[str, tuple[str, Path | None]] = {
            name: (src, None) for name, src in spec.intrinsics.items()
        }
        self.writers: dict[str, list[tuple[str, Any, tuple[Any, ...]]]] = {}
        self.reads: list[tuple[str, tuple[Any, ...], frozenset[str]]] = []
        self.resources: dict[str, Any] = {}
        self.specs: dict[str, Intrinsic | None] = {}
        self.spec_errors: dict[str, str] = {}
        self.tools: dict[int, Callable[..., Any] | None] = {}

    def error(
        self,
        message: str,
        path: tuple[Any, ...] = (),
        node: str | None = None,
        cls: type[FlowDefinitionError] = FlowDefinitionError,
    ) -> None:
        self.errors.append(self.source.error(message, path, node, cls))

    def wrap(self, exc: FlowDefinitionError, path: tuple[Any, ...], node: str | None, what: str) -> None:
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
                    self.error(
                        f"conditional edge from '{frm}' needs exactly one 'default' branch "
                        f"(found {len(defaults)}): the target when no 'when' holds",
                        ("edges", i),
                        frm,
                    )
                elif defaults[0] != len(edge.branches) - 1:
                    self.error(
                        "the 'default' branch must be the last one",
                        ("edges", i, "branches", defaults[0]),
                        frm,
                    )
                for j, branch in enumerate(edge.branches):
                    path = ("edges", i, "branches", j)
                    if isinstance(branch, WhenBranch):
                        self.check_condition(branch.when, path + ("when",), frm)
                        label = (
                            branch.when
                            if isinstance(branch.when, str)
                            else getattr(branch.when, "__name__", "condition")
                        )
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
                self.error(f"edge from unknown node '{frm}'{_suggest(frm, known)}", ("edges", i), frm)
                continue
            if frm in routes:
                line = self.source.locate(first_path[frm])[1]
                where = f" (first one at line {line})" if line else ""
                self.error(
                    f"has more than one outgoing edge{where}; use one "
                    "conditional edge with branches to choose the next node",
                    ("edges", i),
                    frm,
                )
                continue
            routes[frm], first_path[frm] = out, ("edges", i)

        if spec.start is not None:
            if START in routes:
                self.error("the flow sets both 'start:' and an edge from START; keep one", ("start",))
            elif spec.start not in known:
                self.error(
                    f"start node '{spec.start}' is not a node{_suggest(spec.start, known)}", ("start",)
                )
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
    def nodes(self, catalog: IntrinsicCatalog, routes: dict[str, list[Route]]) -> None:
        """Let every node check itself; collect the fields written and the templates read."""
        for name, tp in self.spec.inputs.items():
            if why := check_field_name(name):
                self.error(why, ("inputs", name))
            self.writers.setdefault(name, []).append(("inputs", INPUT_TYPES[tp], ("inputs", name)))
        for name, node in self.spec.nodes.items():
            base = ("nodes", name)
            if why := check_node_name(name):
                self.error(why, base, name)
            if name not in routes:
                self.error("has no outgoing edge; add one (to the next node or to END)", base, name)
            view = _NodeView(self, catalog, name, node)
            self.resources[name] = node.prepare(view)
            node.check(view)
            handler = node.error_route()
            if handler is not None:
                path = base + ("on_error",)
                if handler.to == START or (handler.to != END and handler.to not in self.spec.nodes):
                    self.error(
                        f"on_error leads to unknown node '{handler.to}'{_suggest(handler.to, self.spec.nodes)}",
                        path,
                        name,
                    )

    def resolve_intrinsic(self, catalog: IntrinsicCatalog, name: str) -> Intrinsic | None:
        """The spec of intrinsic ``name`` (looked up once per flow); None when unknown."""
        if name not in self.specs:
            source = self.spec.intrinsics.get(name)
            try:
                self.specs[name] = catalog.spec(name, source, self.base_dir)
            except AloraFlowsError as exc:
                self.specs[name] = None
                self.spec_errors[name] = exc.detail
        return self.specs[name]

    # ------------------------------------------------------------------ subflows
    def compile_child(self, view: _NodeView, ref: Any, path: tuple[Any, ...]) -> CompiledFlow | None:
        """Load and compile the subflow ``ref`` names; report its problems; None if it has any."""
        full = view.base + path
        try:
            if isinstance(ref, str):
                local = Path(ref) if Path(ref).is_absolute() else (self.base_dir or Path.cwd()) / ref
                key = str(local.resolve())
                self.check_cycle(key, str(local))
                try:
                    text = local.read_text(encoding="utf-8")
                except OSError as exc:
                    raise FlowDefinitionError(f"cannot read subflow file {local}: {exc.strerror or exc}").at(
                        file=self.source.locate(full)[0], line=self.source.locate(full)[1]
                    ) from None
                data, source = load_yaml(text, file=str(local))
                spec = parse_spec(data, source)
                self.subflow_files[key] = hashlib.sha256(text.encode("utf-8")).hexdigest()
            elif isinstance(ref, Mapping):
                key = ""
                source = _sub_source(self.source, full)
                spec = parse_spec(ref, source)
            else:  # a Flow built in Python
                key = f"<flow {ref.spec.name} at {id(ref):#x}>"
                self.check_cycle(key, f"flow '{ref.spec.name}'")
                spec, source = ref.spec, ref.source
        except FlowDefinitionError as exc:
            self.errors.append(
                _nested_error(exc, view.name) if exc.line else self.source.error(exc.detail, full, view.name)
            )
            return None
        ancestors = self.ancestors + ((key,) if key else ())
        errors, compiled = compile_flow(spec, source, intrinsic_specs=self.catalog, _ancestors=ancestors)
        where = self.source.locate(full)
        for problem in errors:
            nested = _nested_error(problem, view.name)
            if nested.line is None:
                nested.file, nested.line = where
            self.errors.append(nested)
        if compiled is None:
            return None
        self.subflow_files.update(compiled.subflow_files)
        child_dir = Path(source.file).parent if source.file else None
        for name, (src, where_dir) in compiled.intrinsic_sources.items():
            theirs = (src, where_dir or child_dir)
            mine = self.intrinsic_sources.get(name)
            if mine is None:
                self.intrinsic_sources[name] = theirs
            elif _adapter_key(mine[0], mine[1] or self.base_dir) != _adapter_key(*theirs):
                view.error(
                    f"intrinsic '{name}' is '{mine[0]}' in this flow but '{src}' in subflow "
                    f"'{spec.name}': one session holds one adapter per name; rename one of them",
                    path,
                )
        return compiled

    def check_cycle(self, key: str, label: str) -> None:
        if key in self.ancestors:
            raise FlowDefinitionError(f"subflow {label} includes itself (directly or through other subflows)")

    # ------------------------------------------------------------------ fields
    def field_types(self) -> dict[str, Any]:
        types: dict[str, Any] = {}
        for field_name, entries in self.writers.items():
            node0, current, _ = entries[0]
            for node, tp, path in entries[1:]:
                merged = merge_types(current, tp)
                if merged is None:
                    self.error(
                        f"field '{field_name}' is written as {type_name(tp)} here but as "
                        f"{type_name(current)} by {_who(node0)}; one field must keep one "
                        "type (use another output name)",
                        path,
                        node if node != "inputs" else None,
                    )
                    break
                current = merged
            types[field_name] = current
        return types

    def check_reads(self, routes: dict[str, list[Route]], types: dict[str, Any]) -> None:
        for node, path, names in self.reads:
            unknown = sorted(names - set(types))
            if unknown:
                self.error(
                    f"template reads unknown state field(s) {', '.join(unknown)}"
                    f"{_suggest(unknown[0], types)}; known: "
                    f"{', '.join(sorted(types)) or 'none'}",
                    path,
                    node,
                )
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
                    self.error(
                        f"condition {route.condition!r} reads unknown state field(s) "
                        f"{', '.join(unknown)}{_suggest(unknown[0], types)}; known: "
                        f"{', '.join(sorted(types)) or 'none'}",
                        route.path + ("when",),
                        frm,
                    )
                if unknown:
                    continue
                concrete = {name: field_type(tp) for name, tp in types.items()}
                for problem in check_types(route.condition, concrete):
                    self.error(f"condition {route.condition!r}: {problem}", route.path + ("when",), frm)

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
                    self.error("is unreachable from START (no edge leads to it)", ("nodes", name), name)
            elif name not in can_end and not (({name} | nx.descendants(graph, name)) & broken):
                self.error(
                    "has no path to END: every way out of it loops or "
                    "stops; add a branch that leaves the loop",
                    ("nodes", name),
                    name,
                )
        return graph


def _who(node: str) -> str:
    return "the flow inputs" if node == "inputs" else f"node '{node}'"


def build_graph(spec: FlowSpec, routes: Mapping[str, list[Route]]) -> nx.DiGraph:
    """The flow as a networkx DiGraph: START, END and the nodes; edges carry their conditions."""
    graph = nx.DiGraph(name=spec.name)
    graph.add_node(START, kind="start")
    graph.add_node(END, kind="end")
    for name, node in spec.nodes.items():
        graph.add_node(name, kind=node.kind, outputs=node.outputs(), detail=node.detail(), shape=node.shape)
    for frm, out in routes.items():
        for order, route in enumerate(out):
            if route.to in graph and frm in graph and not graph.has_edge(frm, route.to):
                graph.add_edge(frm, route.to, label=route.label, order=order, condition=route.condition)
    for name, node in spec.nodes.items():  # where a step that failed for good sends the run
        handler = node.error_route()
        if handler is not None and handler.to in graph and not graph.has_edge(name, handler.to):
            graph.add_edge(
                name, handler.to, label="on_error", order=len(routes.get(name, ())), condition=None
            )
    return graph


def compile_routes(
    spec: FlowSpec, source: SourceMap | None = None
) -> tuple[dict[str, list[Route]], list[FlowDefinitionError]]:
    """Structure only (edges, start): enough to draw a flow that may not fully validate."""
    checker = _Checker(spec, source or SourceMap())
    return checker.routes(), checker.errors


def compile_flow(
    spec: FlowSpec,
    source: SourceMap | None = None,
    *,
    intrinsic_specs: CatalogLike = None,
    _ancestors: tuple[str, ...] = (),
) -> tuple[list[FlowDefinitionError], CompiledFlow | None]:
    """Check everything; return ``(problems, None)`` or ``([], CompiledFlow)``.

    ``intrinsic_specs``: an :class:`~alora_flows.flow.catalog.IntrinsicCatalog`, a plain
    ``name -> spec`` mapping, or None for the installed intrinsic libraries.
    """
    catalog = as_catalog(intrinsic_specs)
    checker = _Checker(spec, source or SourceMap(), _ancestors, catalog)
    routes = checker.routes()
    checker.nodes(catalog, routes)
    types = checker.field_types()
    checker.check_reads(routes, types)
    graph = checker.graph(routes)
    if checker.errors:
        return checker.errors, None
    try:
        model = build_state_model(spec.name, types)
    except Exception as exc:
        return [checker.source.error(f"cannot build the state model: {exc}")], None
    specs = {name: s for name, s in checker.specs.items() if s is not None}
    return [], CompiledFlow(
        spec=spec,
        graph=graph,
        routes=routes,
        field_types=types,
        state_model=model,
        resources=checker.resources,
        specs=specs,
        intrinsic_sources=checker.intrinsic_sources,
        subflow_files=checker.subflow_files,
    )


class _NodeView:
    """The :class:`~alora_flows.flow.nodes.NodeCheck` a node sees: the checker, scoped to it."""

    def __init__(self, checker: _Checker, catalog: IntrinsicCatalog, name: str, node: Node) -> None:
        self.checker, self.catalog, self.name, self.node = checker, catalog, name, node
        self.flow, self.base_dir = checker.spec, checker.base_dir
        self.base: tuple[Any, ...] = ("nodes", name)

    def error(
        self, message: str, path: tuple[Any, ...] = (), cls: type[FlowDefinitionError] = FlowDefinitionError
    ) -> None:
        self.checker.error(message, self.base + path, self.name, cls)

    def wrap(self, exc: FlowDefinitionError, path: tuple[Any, ...], what: str) -> None:
        self.error(f"{what}: {exc.detail}", path, type(exc))

    def template(
        self, source: Any, path: tuple[Any, ...], what: str, local: frozenset[str] = frozenset()
    ) -> None:
        try:
            names = check_template(source).names - local
            self.checker.reads.append((self.name, self.base + path, names))
        except FlowDefinitionError as exc:
            self.wrap(exc, path, what)

    def literal(self, value: Any, path: tuple[Any, ...], what: str) -> None:
        map_strings(value, lambda text, at: self.template(text, path + at, what))

    def write(self, field_name: str | None, tp: Any, path: tuple[Any, ...]) -> None:
        if not field_name:
            return
        if why := check_field_name(field_name):
            self.error(why, path)
            return
        self.checker.writers.setdefault(field_name, []).append((self.name, tp, self.base + path))

    def intrinsic(self, name: str, path: tuple[Any, ...]) -> Intrinsic | None:
        declared = self.flow.intrinsics
        if name not in declared:
            self.error(
                f"intrinsic '{name}' is not declared under 'intrinsics:' "
                f"(add '{name}: builtin' or a path to its adapter)"
                f"{_suggest(name, declared)}",
                path,
            )
        spec = self.checker.resolve_intrinsic(self.catalog, name)
        if spec is None:
            self.error(self.checker.spec_errors[name], path)
        return spec

    def subflow(self, ref: Any, path: tuple[Any, ...]) -> CompiledFlow | None:
        """The compiled subflow ``ref`` names (compiled and reported once per node)."""
        key = id(self.node)
        if key not in self.checker.subflows:
            self.checker.subflows[key] = self.checker.compile_child(self, ref, path)
        return self.checker.subflows[key]

    def tool(self, ref: Any, path: tuple[Any, ...]) -> Callable[..., Any] | None:
        """The callable ``ref`` names (resolved and reported once per node)."""
        key = id(self.node)
        if key not in self.checker.tools:
            fn: Callable[..., Any] | None = None
            if callable(ref) and not isinstance(ref, str):
                fn = ref
            else:
                try:
                    fn = resolve_tool(ref, base_dir=self.base_dir)
                except FlowDefinitionError as exc:
                    self.wrap(exc, path, "tool")
            self.checker.tools[key] = fn
        return self.checker.tools[key]
