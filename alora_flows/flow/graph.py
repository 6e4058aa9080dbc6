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

Beyond ``run``: ``stream`` (an iterator of typed events), ``astream`` / ``arun`` (the same without
blocking an event loop), and builders for subflows (``subflow``), human input (``interrupt``) and
retry policies (``retry=`` / ``on_error=`` on ``generate`` and ``tool``).
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
    InterruptNode,
    InterruptParams,
    IntrinsicNode,
    MessageNode,
    MessageParams,
    Node,
    RetryPolicy,
    SetNode,
    SubflowNode,
    ToolNode,
)
from alora_flows.flow.spec import END, START, ConditionalEdge, DefaultBranch, FlowSpec, WhenBranch
from alora_flows.flow.state import INPUT_TYPES
from alora_flows.flow.tools import tool_ref
from alora_flows.flow.trace import Listener
from alora_flows.flow.validation import CompiledFlow, build_graph, compile_flow, compile_routes
from alora_flows.flow.yaml_io import SourceMap, dump_yaml, load_yaml, parse_spec, read_flow_file

Condition = str | Callable[[Any], bool]
Retry = RetryPolicy | Mapping[str, Any] | int | None


def _retry(retry: Retry) -> RetryPolicy | None:
    return retry if retry is None or isinstance(retry, RetryPolicy) else RetryPolicy.model_validate(retry)


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
        retry: Retry = None,
        on_error: str | None = None,
        error_output: str | None = None,
    ) -> Flow:
        """A base-model turn: append the (templated) system/user messages, then generate.

        ``retry`` (a :class:`RetryPolicy`, its fields as a dict, or a number of attempts) and
        ``on_error`` (the node to go to when the last try failed) as in :mod:`~.nodes.retry`.
        """
        params = GenerateParams(
            system=system, user=user, max_new_tokens=max_new_tokens, temperature=temperature
        )
        node = GenerateNode(
            generate=params, output=output, retry=_retry(retry), on_error=on_error, error_output=error_output
        )
        return self._add(name, node)

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
        retry: Retry = None,
        on_error: str | None = None,
        error_output: str | None = None,
    ) -> Flow:
        """Call ``fn(**args)``; string args are templates over the state. ``retry``/``on_error``
        as for :meth:`generate`."""
        node = ToolNode(
            tool=fn,
            args=dict(args or {}),
            output=output,
            retry=_retry(retry),
            on_error=on_error,
            error_output=error_output,
        )
        return self._add(name, node)

    def set(self, name: str, values: Mapping[str, Any] | None = None, /, **more: Any) -> Flow:
        """Assign state fields: strings are templates, other values literals."""
        return self._add(name, SetNode(set={**dict(values or {}), **more}))

    def message(self, name: str, role: str, content: str) -> Flow:
        """Append a fixed (templated) turn to the session without generating."""
        return self._add(name, MessageNode(message=MessageParams(role=role, content=content)))

    def subflow(
        self,
        name: str,
        flow: Flow | str | Path,
        *,
        inputs: Mapping[str, Any] | None = None,
        outputs: Mapping[str, str] | None = None,
    ) -> Flow:
        """Run ``flow`` (a Flow, or a flow file's path) as one step on the same session.

        ``inputs`` maps each of the child's inputs to a template over this flow's state (an
        exact ``{{ expr }}`` passes the value itself); ``outputs`` maps child fields to fields of
        this flow (``{"answer": "checked_answer"}``).
        """
        ref: Any = str(flow) if isinstance(flow, Path) else flow
        node = SubflowNode(flow=ref, inputs=dict(inputs or {}), mapping=dict(outputs or {}))
        return self._add(name, node)

    def interrupt(self, name: str, prompt: str, fields: Mapping[str, Any]) -> Flow:
        """Pause the run until a person supplies ``fields`` (name -> type: ``bool``, ``"str"``...).

        ``flow.run`` then returns a result with ``status == "interrupted"``; continue it with
        ``result.resume({...})``. ``prompt`` is a template shown to the person.
        """
        params = InterruptParams(prompt=prompt, fields=_input_types(dict(fields)))
        return self._add(name, InterruptNode(interrupt=params))

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
        if isinstance(node, SubflowNode) and isinstance(node.flow, Flow):
            node = node.model_copy(update={"flow": node.flow.to_dict()})  # written inline
        data = node.model_dump(by_alias=True, exclude_defaults=True, exclude_none=True)
        return data if node.kind in data else {node.kind: {}, **data}  # e.g. a generate with defaults

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
            if isinstance(node, SubflowNode) and not isinstance(node.flow, str):
                child = node.flow if isinstance(node.flow, Flow) else Flow.from_dict(node.flow)
                return node.model_copy(update={"flow": child._canonical()})
            return node

        spec = self.spec
        return spec.model_copy(update={"nodes": {k: norm(v) for k, v in spec.nodes.items()}})

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Flow):
            return NotImplemented
        return self._canonical() == other._canonical()

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __deepcopy__(self, memo: dict[int, Any]) -> Flow:
        """A copy of the definition only (a subflow inside a spec snapshot), not its compile cache."""
        import copy

        return Flow.from_spec(copy.deepcopy(self.spec, memo), self.source)

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

    def stream(
        self,
        session: Any,
        inputs: Mapping[str, Any] | None = None,
        *,
        seed: int | None = None,
        listeners: Iterable[Listener] = (),
        intrinsic_specs: CatalogLike = None,
        **more_inputs: Any,
    ) -> Any:
        """The run's typed events as an iterator (``StepStarted``, ``TokenStreamed``,
        ``StepFinished``, ``BranchTaken``, ``Interrupted``, ``RunFinished``, ...).

        The flow is validated (and its inputs checked) now; the run starts when iteration does
        and advances as the events are read. ``stream.result`` is the RunResult at the end.
        """
        from alora_flows.flow.stream import RunStream

        return RunStream(self._starter(session, inputs, seed, listeners, intrinsic_specs, more_inputs))

    def astream(
        self,
        session: Any,
        inputs: Mapping[str, Any] | None = None,
        *,
        seed: int | None = None,
        listeners: Iterable[Listener] = (),
        intrinsic_specs: CatalogLike = None,
        **more_inputs: Any,
    ) -> Any:
        """:meth:`stream` for ``async for``: the model runs in a worker thread, the loop stays free."""
        from alora_flows.flow.stream import AsyncRunStream

        return AsyncRunStream(self._starter(session, inputs, seed, listeners, intrinsic_specs, more_inputs))

    async def arun(
        self,
        session: Any,
        inputs: Mapping[str, Any] | None = None,
        *,
        seed: int | None = None,
        listeners: Iterable[Listener] = (),
        intrinsic_specs: CatalogLike = None,
        **more_inputs: Any,
    ) -> Any:
        """``await flow.arun(...)``: :meth:`run` without blocking the event loop."""
        from alora_flows.flow.stream import run_async

        return await run_async(self._starter(session, inputs, seed, listeners, intrinsic_specs, more_inputs))

    def _starter(
        self,
        session: Any,
        inputs: Mapping[str, Any] | None,
        seed: int | None,
        listeners: Iterable[Listener],
        intrinsic_specs: CatalogLike,
        more_inputs: Mapping[str, Any],
    ) -> Callable[[list[Any]], Any]:
        """Validate now (errors surface where the stream is made), run when called."""
        from alora_flows.flow.runner import Runner

        compiled = self.compiled(intrinsic_specs)
        values = {**dict(inputs or {}), **more_inputs}
        compiled.new_state(values)
        own = list(listeners)

        def start(extra: list[Any]) -> Any:
            return Runner(compiled, session, seed=seed, listeners=[*own, *extra]).run(values)

        return start

    def intrinsic_sources(
        self, base_dir: Path | None = None, *, intrinsic_specs: CatalogLike = None
    ) -> dict[str, tuple[str, Path | None]]:
        """Every intrinsic the flow and its subflows invoke: name -> (source, the directory a
        relative source is relative to). The adapters a run must load."""
        sources = self.compiled(intrinsic_specs).intrinsic_sources
        return {name: (src, where or base_dir) for name, (src, where) in sources.items()}


__all__ = ["END", "START", "Flow"]
