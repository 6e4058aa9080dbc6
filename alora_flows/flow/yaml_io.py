"""Reading and writing flow YAML, keeping the line of every key so errors can point at it.

ruamel.yaml's round-trip loader records positions on every mapping and sequence and constructs
only plain data (no arbitrary Python objects, unlike PyYAML's unsafe loader). The loaded document
is converted to plain dicts/lists and a :class:`SourceMap` (path -> line) is kept beside it, so
shape errors from pydantic and graph errors from the validator both name file, line and node.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.scalarstring import DoubleQuotedScalarString, LiteralScalarString

from alora_flows.errors import FlowDefinitionError
from alora_flows.flow.spec import FlowSpec

Path_ = tuple[Any, ...]


@dataclass
class SourceMap:
    """Where each part of a flow definition came from: ``(key, key, index, ...) -> (file, line)``.

    Filled from YAML positions, or (Python API) from the line that called ``flow.generate(...)``.
    """

    file: str | None = None
    entries: dict[Path_, tuple[str | None, int]] = field(default_factory=dict)

    def add(self, path: Path_, line: int, file: str | None = None) -> None:
        self.entries[path] = (file if file is not None else self.file, line)

    def locate(self, path: Sequence[Any]) -> tuple[str | None, int | None]:
        """File and line of the deepest known part of ``path``.

        Components unknown to the map (pydantic's union tags such as ``'plain'``) are skipped.
        """
        prefixes = {key[:i] for key in self.entries for i in range(1, len(key) + 1)}
        best: tuple[str | None, int | None] = (self.file, None)
        prefix: Path_ = ()
        for component in path:
            candidate = prefix + (component,)
            if candidate in prefixes:
                prefix = candidate
                if candidate in self.entries:
                    best = self.entries[candidate]
        return best

    def error(
        self,
        message: str,
        path: Sequence[Any] = (),
        node: str | None = None,
        cls: type[FlowDefinitionError] = FlowDefinitionError,
    ) -> FlowDefinitionError:
        file, line = self.locate(path)
        return cls(message, file=file, line=line, node=node)


def _yaml() -> YAML:
    yaml = YAML(typ="rt")
    yaml.allow_duplicate_keys = False
    return yaml


def _line(lookup: Any, key: Any) -> int | None:
    """1-based line of a key/item, or None where ruamel records none (merge keys, tagged nodes)."""
    try:
        return lookup(key)[0] + 1
    except (KeyError, IndexError, TypeError):
        return None


def _plain(value: Any, path: Path_, source: SourceMap, memo: dict[int, Any]) -> Any:
    """Convert ruamel's round-trip objects to plain data, recording the line of every key/item."""
    if id(value) in memo:  # aliases: share, never expand (no "billion laughs")
        return memo[id(value)]
    if isinstance(value, CommentedMap):
        out: dict[Any, Any] = {}
        memo[id(value)] = out
        for key in value:
            k = str(key) if isinstance(key, str) else key
            line = _line(value.lc.key, key)
            if line is not None:
                source.add(path + (k,), line)
            out[k] = _plain(value[key], path + (k,), source, memo)
        return out
    if isinstance(value, CommentedSeq):
        items: list[Any] = []
        memo[id(value)] = items
        for i, item in enumerate(value):
            line = _line(value.lc.item, i)
            if line is not None:
                source.add(path + (i,), line)
            items.append(_plain(item, path + (i,), source, memo))
        return items
    if isinstance(value, bool) or value is None:
        return value
    for kind in (str, int, float):
        if isinstance(value, kind):
            return kind(value)
    return value


def load_yaml(text: str, file: str | None = None) -> tuple[dict[str, Any], SourceMap]:
    """Parse YAML text into plain data plus its :class:`SourceMap`."""
    source = SourceMap(file=file)
    try:
        doc = _yaml().load(text)
    except MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        problem = " ".join(str(p) for p in (exc.context, exc.problem) if p) or str(exc)
        raise FlowDefinitionError(f"invalid YAML: {problem}", file=file, line=line) from None
    except YAMLError as exc:
        raise FlowDefinitionError(f"invalid YAML: {exc}", file=file) from None
    except (TypeError, ValueError, KeyError, RecursionError) as exc:  # e.g. an unhashable key
        raise FlowDefinitionError(f"invalid YAML: {type(exc).__name__}: {exc}", file=file) from None
    if not isinstance(doc, CommentedMap):
        raise FlowDefinitionError(
            "a flow file must be a YAML mapping (name:, nodes:, edges:, ...)", file=file, line=1
        )
    return _plain(doc, (), source, {}), source


def _display_path(loc: Sequence[Any], data: Any) -> str:
    """``edges[2].branches[0].when`` for a pydantic error location, without union tags."""
    text, current = "", data
    for i, part in enumerate(loc):
        if isinstance(current, Mapping) and part in current:
            text, current = f"{text}.{part}" if text else str(part), current[part]
        elif isinstance(current, list) and isinstance(part, int) and 0 <= part < len(current):
            text, current = f"{text}[{part}]", current[part]
        elif i == len(loc) - 1:  # a missing or unknown key: name it
            text = f"{text}.{part}" if text else str(part)
    return text


def _describe(error: Mapping[str, Any], data: Mapping[str, Any]) -> str:
    where = _display_path(error["loc"], data)
    message = {"missing": "missing required key", "extra_forbidden": "unknown key"}.get(
        error["type"], error["msg"]
    )
    return f"{where}: {message}" if where else message


def _node_of(loc: Sequence[Any], data: Mapping[str, Any]) -> str | None:
    if len(loc) >= 2 and loc[0] == "nodes":
        return str(loc[1])
    if len(loc) >= 2 and loc[0] == "edges" and isinstance(loc[1], int):
        edges = data.get("edges")
        if isinstance(edges, list) and loc[1] < len(edges):
            edge = edges[loc[1]]
            if isinstance(edge, list) and edge:
                return str(edge[0])
            if isinstance(edge, dict) and "from" in edge:
                return str(edge["from"])
    return None


def parse_spec(data: Mapping[str, Any], source: SourceMap | None = None) -> FlowSpec:
    """Validate plain data into a :class:`FlowSpec`; the first shape error names its line/node."""
    source = source or SourceMap()
    try:
        return FlowSpec.model_validate(data)
    except ValidationError as exc:
        errors = exc.errors()
        first = errors[0]
        more = (
            f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
            if len(errors) > 1
            else ""
        )
        raise source.error(
            _describe(first, data) + more, first["loc"], node=_node_of(first["loc"], data)
        ) from None


def read_flow_file(path: str | Path) -> tuple[FlowSpec, SourceMap]:
    """Read and shape-check a flow YAML file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise FlowDefinitionError(f"cannot read flow file: {exc.strerror or exc}", file=str(path)) from None
    data, source = load_yaml(text, file=str(path))
    return parse_spec(data, source), source


# ---------------------------------------------------------------------- writing
def _styled(value: Any, depth: int = 0) -> Any:
    """Plain data -> ruamel objects with a readable layout (multi-line strings as ``|`` blocks)."""
    if isinstance(value, str):
        printable = all(c.isprintable() or c == "\n" for c in value)
        if not printable:  # control/odd line-break characters: escaped in double quotes
            return DoubleQuotedScalarString(value)
        return LiteralScalarString(value) if "\n" in value else value
    if isinstance(value, Mapping):
        out = CommentedMap()
        for k, v in value.items():
            out[k] = _styled(v, depth + 1)
        return out
    if isinstance(value, (list, tuple)):
        seq = CommentedSeq(_styled(v, depth + 1) for v in value)
        if all(isinstance(v, (str, int, float, bool)) and "\n" not in str(v) for v in value):
            seq.fa.set_flow_style()
        return seq
    return value


def _flat(value: Mapping[str, Any]) -> bool:
    return all(
        isinstance(v, (str, int, float, bool)) and "\n" not in str(v) and len(str(v)) < 60
        for v in value.values()
    )


def dump_yaml(data: Mapping[str, Any]) -> str:
    """Write a flow's plain data as YAML (short nodes as ``{intrinsic: x, output: y}``)."""
    doc = _styled(data)
    nodes = doc.get("nodes")
    if isinstance(nodes, CommentedMap):
        for node in nodes.values():
            if isinstance(node, CommentedMap) and _flat(node):
                node.fa.set_flow_style()
    edges = doc.get("edges")
    if isinstance(edges, CommentedSeq):
        for edge in edges:
            if isinstance(edge, CommentedMap):
                for branch in edge.get("branches", []):
                    if isinstance(branch, CommentedMap):
                        branch.fa.set_flow_style()
    yaml = _yaml()
    yaml.width = 100
    yaml.indent(mapping=2, sequence=4, offset=2)
    buffer = io.StringIO()
    yaml.dump(doc, buffer)
    return buffer.getvalue()
