"""The :class:`Flow`: build a flow in Python or load it from YAML, validate, draw, run.

A Flow is a thin, mutable wrapper around a :class:`FlowSpec` (the same model the YAML loads
into) plus a :class:`SourceMap`, so both front ends share one validator and one runner, and a
Python flow written with :meth:`Flow.to_yaml` reads back equal (when its tools are importable).
In the Python API, errors point at the line that added the offending node or edge.

    flow = Flow("rag", inputs=["question"], max_steps=20)
    flow.intrinsic("rewrite", "rewrite", output="query")
    flow.tool("retrieve", retrieve, args={"query": "{{ query }}"}, output="documents")
    flow.generate("answer", user="{{ documents | join('\\n') }}\\n\\n{{ question }}", output="answer")
    flow.intrinsic("certainty", "uncertainty", output="certainty")
    flow.set("abstain", answer="I don't know.")
    flow.edge("rewrite", "retrieve").edge("retrieve", "answer").edge("answer", "certainty")
    flow.branch("certainty", [("certainty.score < 0.4", "abstain")], default=END)
    flow.edge("abstain", END)
    result = flow.run(session, {"question": "..."}, seed=0)
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import networkx as nx

from alora_flows.errors import FlowDefinitionError
from alora_flows.flow.catalog import CatalogLike
from alora_flows.flow.nodes import (
    GenerateNode,
    GenerateParams,
    IntrinsicNode,
    MessageNode,
    MessageParams,
    Node,
    SetNode,
    ToolNode,
)
from alora_flows.flow.spec import END, START, ConditionalEdge, DefaultBranch, FlowSpec, WhenBranch
from alora_flows.flow.state import INPUT_TYPES
from alora_flows.flow.tools import tool_ref
from alora_flows.flow.trace import Listener
from alora_flows.flow.validation import CompiledFlow, build_graph, compile_flow, compile_routes
from alora_flows.flow.yaml_io import SourceMap, dump_yaml, load_yaml, parse_spec, read_flow_file

Condition = str | Callable[[Any], bool]


def _caller() -> tuple[str | None, int]:
    """File and line of the user code that called a Flow builder method."""
    frame = sys._getframe(1)
    while frame.f_back is not None and frame.f_code.co_filename == __file__:
        frame = frame.f_back
    return frame.f_code.co_filename, frame.f_lineno


def _input_types(inputs: Iterable[str] | Mapping[str, Any]) -> dict[str, str]:
    if isinstance(inputs, Mapping):
        names = {v: k for k, v in INPUT_TYPES.items()}
        out = {}
        for name, tp in inputs.items():
            if isinstance(tp, str) and tp in INPUT_TYPES:
                out[name] = tp
            elif tp in names:
                out[name] = names[tp]
            else:
                raise FlowDefinitionError(
                    f"input '{name}': type must be one of {', '.join(INPUT_TYPES)}, got {tp!r}"
                )
        return out
    if isinstance(inputs, str):
        inputs = [inputs]
    return {name: "str" for name in inputs}


class Flow:
    """A flow of nodes and edges; see the module docstring for an example."""

    def __init__(
        self,
        name: str,
        *,
        inputs: Iterable[str] | Mapping[str, Any] = (),
        max_steps: int = 50,
        model: str = "embedded",
        intrinsics: Mapping[str, str] | None = None,
        start: str | None = None,
    ) -> None:
        self.spec = FlowSpec(
            name=name,
            inputs=_input_types(inputs),
            max_steps=max_steps,
            model=model,
            intrinsics=dict(intrinsics or {}),
            start=start,
        )
        self.source = SourceMap()
        # (spec snapshot, catalog, compiled): reused by run() while neither changes
        self._compiled: tuple[FlowSpec, Any, CompiledFlow] | None = None

    # ------------------------------------------------------------------ loading
    @classmethod
    def from_spec(cls, spec: FlowSpec, source: SourceMap | None = None) -> Flow:
        flow = cls.__new__(cls)
        flow.spec, flow.source = spec, source or SourceMap()
        flow._compiled = None
        return flow

    @classmethod
    def from_yaml(cls, path: str | Path) -> Flow:
        """Load a flow file; shape errors raise :class:`FlowDefinitionError` with file and line."""
        return cls.from_spec(*read_flow_file(path))

    @classmethod
    def from_yaml_text(cls, text: str, *, file: str | None = None) -> Flow:
        data, source = load_yaml(text, file=file)
        return cls.from_spec(parse_spec(data, source), source)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Flow:
        return cls.from_spec(parse_spec(data))

    # ------------------------------------------------------------------ building
    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def nodes(self) -> dict[str, Any]:
        return self.spec.nodes

    @property
    def edges(self) -> list[Any]:
        return self.spec.edges

    def add(self, name: str, node: Node) -> Flow:
        """Add a node of any kind (built-in or registered with ``register_node_kind``)."""
        return self._add(name, node)

    def _add(self, name: str, node: Node) -> Flow:
        file, line = _caller()
        if name in self.spec.nodes:
            raise FlowDefinitionError("a node with this name already exists", file=file, line=line, node=name)
        self.spec.nodes[name] = node
        self.source.add(("nodes", name), line, file)
        return self

    def generate(
        self,
        name: str,
        *,
        system: str | None = None,
        user: str | None = None,
        output: str | None = None,
        max_new_tokens: int = 256,
        temperature: float = 0.0,
    ) -> Flow:
        """A base-model turn: append the (templated) system/user messages, then generate."""
        params = GenerateParams(
            system=system, user=user, max_new_tokens=max_new_tokens, temperature=temperature
        )
        return self._add(name, GenerateNode(generate=params, output=output))

    def intrinsic(
        self,
        name: str,
        intrinsic: str | None = None,
        *,
        output: str | None = None,
        input: str | None = None,  # noqa: A002 - the YAML key
        source: str = "builtin",
    ) -> Flow:
        """Invoke intrinsic ``intrinsic`` (default: the node name). Unless already declared, it
        is added to ``intrinsics:`` with ``source`` ("builtin" or an adapter path)."""
        intrinsic = intrinsic or name
        self.spec.intrinsics.setdefault(intrinsic, source)
        return self._add(name, IntrinsicNode(intrinsic=intrinsic, input=input, output=output))

    def tool(
        self,
        name: str,
        fn: Callable[..., Any] | str,
        *,
        args: Mapping[str, Any] | None = None,
        output: str | None = None,
    ) -> Flow:
        """Call ``fn(**args)``; string args are templates over the state."""
        return self._add(name, ToolNode(tool=fn, args=dict(args or {}), output=output))

    def set(self, name: str, values: Mapping[str, Any] | None = None, /, **more: Any) -> Flow:
        """Assign state fields: strings are templates, other values literals."""
        return self._add(name, SetNode(set={**dict(values or {}), **more}))

    def message(self, name: str, role: str, content: str) -> Flow:
        """Append a fixed (templated) turn to the session without generating."""
        return self._add(name, MessageNode(message=MessageParams(role=role, content=content)))

    def edge(self, frm: str, to: str) -> Flow:
        """Always go from ``frm`` to ``to`` (``START``/``END`` allowed)."""
        file, line = _caller()
        self.source.add(("edges", len(self.spec.edges)), line, file)
        self.spec.edges.append((frm, to))
        return self

    def branch(self, frm: str, branches: Sequence[tuple[Condition, str]], *, default: str) -> Flow:
        """From ``frm``, go to the first target whose condition holds, else to ``default``.

        A condition is a safe expression over the state (``"certainty.score < 0.4"``) or a
        Python callable ``(state) -> bool`` (not writable to YAML).
        """
        file, line = _caller()
        self.source.add(("edges", len(self.spec.edges)), line, file)
        items: list[Any] = [WhenBranch(when=cond, to=to) for cond, to in branches]
        items.append(DefaultBranch(default=default))
        self.spec.edges.append(ConditionalEdge(from_=frm, branches=items))
        return self

    # ------------------------------------------------------------------ checking
    def problems(self, *, intrinsic_specs: CatalogLike = None) -> list[FlowDefinitionError]:
        """Every validation problem (empty when the flow is valid)."""
        return compile_flow(self.spec, self.source, intrinsic_specs=intrinsic_specs)[0]

    def validate(self, *, intrinsic_specs: CatalogLike = None) -> CompiledFlow:
        """Check the flow without loading a model; raise the first problem, else compile it.

        ``intrinsic_specs`` maps intrinsic names to specs (default: the ``intrinsics`` registry).
        """
        errors, compiled = compile_flow(self.spec, self.source, intrinsic_specs=intrinsic_specs)
        if errors:
            first = errors[0]
            if len(errors) > 1:
                more = len(errors) - 1
                first = type(first)(
                    f"{first.detail} (and {more} more problem{'s' if more > 1 else ''})",
                    file=first.file,
                    line=first.line,
                    node=first.node,
                )
            raise first
        return compiled  # type: ignore[return-value]

    def compiled(self, intrinsic_specs: CatalogLike = None) -> CompiledFlow:
        """:meth:`validate`, reused while neither the flow nor the catalog has changed.

        Validation costs milliseconds on large graphs, so runs reuse it; the flow is compared
        with a snapshot taken at compile time (so direct edits of ``flow.spec`` are seen too)
        and the catalog by identity, or by value for a plain mapping.
        """
        catalog = dict(intrinsic_specs) if isinstance(intrinsic_specs, Mapping) else intrinsic_specs
        cached = self._compiled
        if (
            cached is not None
            and cached[0] == self.spec
            and (cached[1] is catalog or (isinstance(catalog, dict) and cached[1] == catalog))
        ):
            return cached[2]
        compiled = self.validate(intrinsic_specs=intrinsic_specs)
        self._compiled = (self.spec.model_copy(deep=True), catalog, compiled)
        return compiled

    def to_networkx(self) -> nx.DiGraph:
        """The graph (START, nodes, END; edges labelled with their conditions)."""
        routes, errors = compile_routes(self.spec, self.source)
        if errors:
            raise errors[0]
        return build_graph(self.spec, routes)

    def to_mermaid(self) -> str:
        """A mermaid ``flowchart`` of the flow (what ``alora-flows draw`` prints)."""
        from alora_flows.flow.draw import to_mermaid

        return to_mermaid(self.to_networkx())

    # ------------------------------------------------------------------ writing
    def to_dict(self) -> dict[str, Any]:
        """Plain data in the YAML layout. Tools must be importable; conditions must be strings."""
        spec = self.spec
        data: dict[str, Any] = {"name": spec.name}
        if spec.model != "embedded":
            data["model"] = spec.model
        if spec.intrinsics:
            data["intrinsics"] = dict(spec.intrinsics)
        if spec.inputs:
            typed = any(tp != "str" for tp in spec.inputs.values())
            data["inputs"] = dict(spec.inputs) if typed else list(spec.inputs)
        data["max_steps"] = spec.max_steps
        if spec.start is not None:
            data["start"] = spec.start
        data["nodes"] = {name: self._node_dict(name, node) for name, node in spec.nodes.items()}
        data["edges"] = [self._edge_dict(edge) for edge in spec.edges]
        return data

    def _node_dict(self, name: str, node: Any) -> dict[str, Any]:
        if isinstance(node, ToolNode) and not isinstance(node.tool, str):
            ref = tool_ref(node.tool)
            if ref is None:
                raise FlowDefinitionError(
                    f"tool {node.tool!r} cannot be written to YAML: it must be a module-level "
                    "function importable as 'package.module:function' (not a lambda, closure "
                    "or __main__ function)",
                    node=name,
                )
            node = node.model_copy(update={"tool": ref})
        return node.model_dump(by_alias=True, exclude_defaults=True, exclude_none=True)

    @staticmethod
    def _edge_dict(edge: Any) -> Any:
        if isinstance(edge, tuple):
            return list(edge)
        branches = []
        for branch in edge.branches:
            if isinstance(branch, WhenBranch):
                if not isinstance(branch.when, str):
                    raise FlowDefinitionError(
                        "a Python callable condition cannot be written to YAML; use an expression string",
                        node=edge.from_,
                    )
                branches.append({"when": branch.when, "to": branch.to})
            else:
                branches.append({"default": branch.default})
        return {"from": edge.from_, "branches": branches}

    def to_yaml(self, path: str | Path | None = None) -> str:
        """The flow as YAML text; also written to ``path`` when given."""
        text = dump_yaml(self.to_dict())
        if path is not None:
            Path(path).write_text(text, encoding="utf-8")
        return text

    def _canonical(self) -> Any:
        def norm(node: Any) -> Any:
            if isinstance(node, ToolNode) and not isinstance(node.tool, str):
                return node.model_copy(update={"tool": tool_ref(node.tool) or node.tool})
            return node

        spec = self.spec
        return spec.model_copy(update={"nodes": {k: norm(v) for k, v in spec.nodes.items()}})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Flow):
            return NotImplemented
        return self._canonical() == other._canonical()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return f"Flow({self.spec.name!r}, nodes={list(self.spec.nodes)})"

    # ------------------------------------------------------------------ running
    def run(
        self,
        session: Any,
        inputs: Mapping[str, Any] | None = None,
        *,
        seed: int | None = None,
        listeners: Iterable[Listener] = (),
        intrinsic_specs: CatalogLike = None,
        **more_inputs: Any,
    ) -> Any:
        """Validate, then run on ``session``; returns :class:`RunResult` (``.state``, ``.trace``).

        Inputs may be given as a mapping or as keywords (``flow.run(s, question="...")``).
        ``seed`` is passed to every base-model generation (offset by the step index).
        """
        from alora_flows.flow.runner import Runner

        compiled = self.compiled(intrinsic_specs)
        runner = Runner(compiled, session, seed=seed, listeners=listeners)
        return runner.run({**dict(inputs or {}), **more_inputs})


__all__ = ["END", "START", "Flow"]
