"""io.yaml output rules: each turns the parsed JSON output, and its JSON schema, into the next.

Rules (granite-common's names and arguments; ``input_path`` is a list of keys, indices and
``null`` for "any", matched against every path of the current value, the root being ``[]``):

- ``likelihood`` (``categories_to_values``): a categorical value -> its expected value under the
  model's probabilities at that value (:mod:`intrinsics.granite.likelihood`).
- ``decode_sentences`` (``source``: ``last_message``/``documents``/``all_but_last_message`` or a
  list, ``output_names``: ``begin``/``end``/``text``/``document_id``/``message_index`` -> field
  names): a sentence number -> fields locating that sentence in the untagged text.
- ``explode`` (``target_field``): each record with a list field -> one record per element.
- ``drop_duplicates`` (``target_fields``): one record per key (the last one, at the first's place).
- ``project`` (``retained_fields``: a list, or a mapping old -> new name): keep (and rename) fields.
- ``nest`` (``field_name``): a value -> ``{field_name: value}``.
- ``merge_spans`` (``group_fields``, ``begin_field``, ``end_field``, ``text_field``): adjacent
  spans of a group -> one span.

Each rule also rewrites the JSON schema the same way (:meth:`Rule.schema`), so the processed
output's schema — and from it the typed output model — follows from ``response_format`` and the
rules, never from the intrinsic's name. Errors are :class:`IntrinsicSpecError` for a malformed
rule (at load) and ``ValueError`` for an output the rule cannot process (the parser turns those
into :class:`~alora_flows.errors.IntrinsicOutputError` naming the adapter, the rule and the path).
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from alora_flows.errors import IntrinsicSpecError
from intrinsics.granite.inputs import GraniteRequest, Sentence, untag
from intrinsics.granite.io_yaml import SENTENCE_LOCATIONS, IoConfig
from intrinsics.granite.jsonpos import Literal, parse_with_positions
from intrinsics.granite.likelihood import TokenLogprob, expected_value

Path = tuple[Any, ...]


@dataclass
class OutputContext:
    """What rules may read besides the value: the raw text, its tokens and the request sent."""

    text: str
    io: IoConfig
    tokens: Sequence[TokenLogprob] | None = None
    request: GraniteRequest | None = None
    _positions: Any = field(default=None, repr=False)

    @property
    def positions(self) -> Any:
        if self._positions is None:
            self._positions = parse_with_positions(self.text)
        return self._positions


# ---------------------------------------------------------------------------------- paths
def all_paths(value: Any) -> list[Path]:
    out: list[Path] = [()]
    if isinstance(value, dict):
        for key, item in value.items():
            out += [(key, *p) for p in all_paths(item)]
    elif isinstance(value, list):
        for i, item in enumerate(value):
            out += [(i, *p) for p in all_paths(item)]
    return out


def fetch(value: Any, path: Path) -> Any:
    for part in path:
        value = value[part]
    return value


def replace(value: Any, path: Path, new: Any) -> Any:
    if not path:
        return new
    fetch(value, path[:-1])[path[-1]] = new
    return value


def schema_at(schema: dict[str, Any], path: Sequence[Any]) -> dict[str, Any]:
    for part in path:
        schema = (
            (schema.get("properties") or {}).get(part, {})
            if isinstance(part, str)
            else schema.get("items", {})
        )
    return schema


def schema_replace(schema: dict[str, Any], path: Sequence[Any], new: dict[str, Any]) -> dict[str, Any]:
    if not path:
        return new
    schema = copy.deepcopy(schema)
    parent = schema_at(schema, path[:-1])
    if isinstance(path[-1], str):
        parent.setdefault("properties", {})[path[-1]] = new
    else:
        parent["items"] = new
    return schema


def inline_refs(schema: Any, defs: dict[str, Any] | None = None) -> Any:
    """``schema`` with local ``#/$defs/X`` (and ``#/definitions/X``) references replaced by X."""
    if isinstance(schema, dict):
        if defs is None:
            defs = {**(schema.get("definitions") or {}), **(schema.get("$defs") or {})}
        ref = schema.get("$ref")
        if isinstance(ref, str) and ref.startswith(("#/$defs/", "#/definitions/")):
            target = defs.get(ref.rsplit("/", 1)[-1])
            if target is None:
                raise IntrinsicSpecError(f"response_format: unresolved reference {ref}")
            return inline_refs(target, defs)
        return {k: inline_refs(v, defs) for k, v in schema.items() if k not in ("$defs", "definitions")}
    if isinstance(schema, list):
        return [inline_refs(v, defs) for v in schema]
    return schema


# ---------------------------------------------------------------------------------- rules
class Rule:
    """One transformation. Subclasses set ``name`` and the arguments they take."""

    name: ClassVar[str]
    arguments: ClassVar[tuple[str, ...]] = ()
    required: ClassVar[tuple[str, ...]] = ()

    def __init__(self, spec: dict[str, Any], io: IoConfig, adapter: str) -> None:
        self.adapter = adapter
        self.io = io
        unknown = sorted(set(spec) - {"type", "input_path", *self.arguments})
        missing = [a for a in self.required if a not in spec]
        if unknown or missing or not isinstance(spec.get("input_path"), list):
            what = (
                f"unknown argument(s) {unknown}"
                if unknown
                else f"missing argument '{missing[0]}'"
                if missing
                else "'input_path' must be a list"
            )
            raise IntrinsicSpecError(f"intrinsic '{adapter}': io.yaml rule '{self.name}': {what}")
        self.path_expr: list[Any] = spec["input_path"]
        self.args = {k: v for k, v in spec.items() if k not in ("type", "input_path")}
        self.setup()

    def setup(self) -> None:
        """Check and store this rule's arguments."""

    def fail(self, message: str) -> IntrinsicSpecError:
        return IntrinsicSpecError(f"intrinsic '{self.adapter}': io.yaml rule '{self.name}': {message}")

    def matches(self, path: Path) -> bool:
        return len(path) == len(self.path_expr) and all(
            e is None or e == p for e, p in zip(self.path_expr, path)
        )

    def apply(self, value: Any, ctx: OutputContext) -> Any:
        paths = [p for p in all_paths(value) if self.matches(p)]
        result = copy.deepcopy(value)
        prepared = self.prepare(ctx) if paths else None
        for path in paths:
            try:
                result = self.apply_at(result, path, ctx, prepared)
            except (KeyError, IndexError, TypeError, ValueError) as exc:
                raise ValueError(f"rule '{self.name}' at path {list(path)}: {exc}") from None
        return result

    def prepare(self, ctx: OutputContext) -> Any:
        return None

    def apply_at(self, value: Any, path: Path, ctx: OutputContext, prepared: Any) -> Any:
        raise NotImplementedError

    def schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        """The schema of the output after this rule, given the schema before."""
        return schema


class Likelihood(Rule):
    name = "likelihood"
    arguments = ("categories_to_values",)
    required = ("categories_to_values",)

    def setup(self) -> None:
        cats = self.args["categories_to_values"]
        if (
            not isinstance(cats, dict)
            or not cats
            or not all(isinstance(v, (int, float)) for v in cats.values())
        ):
            raise self.fail("categories_to_values must map each category to a number")
        self.categories = cats

    def apply_at(self, value: Any, path: Path, ctx: OutputContext, prepared: Any) -> Any:
        if ctx.tokens is None:
            raise ValueError("needs the output's token log-probabilities, which this call did not record")
        literal = fetch(ctx.positions, path)
        if not isinstance(literal, Literal) or literal.value != fetch(value, path):
            raise ValueError("the value is not the one the model emitted (a rule before this one changed it)")
        return replace(value, path, expected_value(literal, ctx.tokens, self.categories))

    def schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        values = [float(v) for v in self.categories.values()]
        number = {"type": "number", "minimum": min(values), "maximum": max(values)}
        return _map_schema(schema, self.path_expr, lambda _old: number)


class DecodeSentences(Rule):
    name = "decode_sentences"
    arguments = ("source", "output_names")
    required = ("source", "output_names")
    FIELDS: ClassVar[dict[str, dict[str, Any]]] = {
        "begin": {"type": "integer"},
        "end": {"type": "integer"},
        "text": {"type": "string"},
        "document_id": {"type": ["string", "null"]},
        "message_index": {"type": ["integer", "null"]},
    }

    def setup(self) -> None:
        source = self.args["source"]
        self.sources = [source] if isinstance(source, str) else list(source)
        bounds = self.io.sentence_boundaries or {}
        for src in self.sources:
            if src not in SENTENCE_LOCATIONS:
                raise self.fail(f"unknown source '{src}' (known: {', '.join(SENTENCE_LOCATIONS)})")
            if not bounds.get(src):
                raise self.fail(f"source '{src}' is not tagged: sentence_boundaries has no '{src}' entry")
        names = self.args["output_names"]
        if not isinstance(names, dict) or not all(k in self.FIELDS for k in names):
            raise self.fail(f"output_names must map some of {list(self.FIELDS)} to field names")
        self.output_names: dict[str, str] = names

    def prepare(self, ctx: OutputContext) -> list[Sentence]:
        if ctx.request is None:
            raise ValueError("needs the request that was sent")
        bounds = self.io.sentence_boundaries or {}
        sentences: list[Sentence] = []
        for src in self.sources:
            tag = bounds[src]
            if src == "last_message":
                sentences += untag(ctx.request.sent[-1]["content"], tag, len(sentences))
            elif src == "documents":
                for doc in ctx.request.sent_documents:
                    found = untag(doc.text, tag, len(sentences))
                    sentences += [s.model_copy(update={"document_id": doc.doc_id}) for s in found]
            else:
                for i, message in enumerate(ctx.request.sent[:-1]):
                    found = untag(message["content"], tag, len(sentences))
                    sentences += [s.model_copy(update={"message_index": i}) for s in found]
        return sentences

    def apply_at(self, value: Any, path: Path, ctx: OutputContext, prepared: Any) -> Any:
        number = fetch(value, path)
        if isinstance(number, bool) or not isinstance(number, int):
            raise ValueError(f"expected a sentence number, got {number!r}")
        if not 0 <= number < len(prepared):
            raise ValueError(f"sentence {number} does not exist (the input has {len(prepared)})")
        sentence = prepared[number]
        parent = fetch(value, path[:-1])
        if not isinstance(parent, dict):
            raise ValueError("a sentence number must be a field of a record")
        parent.update({name: getattr(sentence, role) for role, name in self.output_names.items()})
        return value

    def schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        def add(parent: dict[str, Any]) -> dict[str, Any]:
            props = dict(parent.get("properties") or {})
            required = list(parent.get("required") or [])
            for role, name in self.output_names.items():
                props[name] = self.FIELDS[role]
                required.append(name)
            return {
                **parent,
                "type": "object",
                "properties": props,
                "required": list(dict.fromkeys(required)),
            }

        return _map_schema(schema, self.path_expr[:-1], add)


class Explode(Rule):
    name = "explode"
    arguments = ("target_field",)
    required = ("target_field",)

    def apply_at(self, value: Any, path: Path, ctx: OutputContext, prepared: Any) -> Any:
        records = fetch(value, path)
        if not isinstance(records, list):
            raise ValueError("expected a list of records")
        target = self.args["target_field"]
        out = []
        for record in records:
            if not isinstance(record, dict) or not isinstance(record.get(target), list):
                raise ValueError(f"every record needs a list field '{target}', got {record!r:.80}")
            out += [{k: (item if k == target else v) for k, v in record.items()} for item in record[target]]
        return replace(value, path, out)

    def schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        target = self.args["target_field"]

        def explode(array: dict[str, Any]) -> dict[str, Any]:
            items = dict(array.get("items") or {})
            props = dict(items.get("properties") or {})
            props[target] = (props.get(target) or {}).get("items", {})
            return {**array, "items": {**items, "properties": props}}

        return _map_schema(schema, self.path_expr, explode)


class DropDuplicates(Rule):
    name = "drop_duplicates"
    arguments = ("target_fields",)
    required = ("target_fields",)

    def apply_at(self, value: Any, path: Path, ctx: OutputContext, prepared: Any) -> Any:
        records = fetch(value, path)
        if not isinstance(records, list):
            raise ValueError("expected a list of records")
        keep: dict[Any, Any] = {}
        for record in records:
            key = tuple(_hashable(record[f]) for f in self.args["target_fields"])
            keep[key] = record
        return replace(value, path, list(keep.values()))


class Project(Rule):
    name = "project"
    arguments = ("retained_fields",)
    required = ("retained_fields",)

    def setup(self) -> None:
        fields = self.args["retained_fields"]
        if isinstance(fields, list):
            fields = {f: f for f in fields}
        if not isinstance(fields, dict):
            raise self.fail("retained_fields must be a list of fields or a mapping old -> new name")
        self.fields: dict[str, str] = fields

    def _one(self, record: Any) -> dict[str, Any]:
        if not isinstance(record, dict):
            raise ValueError(f"expected a record, got {record!r:.80}")
        return {new: record.get(old) for old, new in self.fields.items()}

    def apply_at(self, value: Any, path: Path, ctx: OutputContext, prepared: Any) -> Any:
        target = fetch(value, path)
        new = [self._one(r) for r in target] if isinstance(target, list) else self._one(target)
        return replace(value, path, new)

    def schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        def project(obj: dict[str, Any]) -> dict[str, Any]:
            if obj.get("type") == "array":
                return {**obj, "items": project(obj.get("items") or {})}
            props = obj.get("properties") or {}
            required = set(obj.get("required") or [])
            out_props, out_required = {}, []
            for old, new in self.fields.items():
                if old in required:
                    out_props[new] = props.get(old, {})
                    out_required.append(new)
                else:
                    out_props[new] = _nullable(props.get(old, {}))
            return {"type": "object", "properties": out_props, "required": out_required}

        return _map_schema(schema, self.path_expr, project)


class Nest(Rule):
    name = "nest"
    arguments = ("field_name",)
    required = ("field_name",)

    def setup(self) -> None:
        if not isinstance(self.args["field_name"], str):
            raise self.fail("field_name must be a string")

    def apply_at(self, value: Any, path: Path, ctx: OutputContext, prepared: Any) -> Any:
        return replace(value, path, {self.args["field_name"]: fetch(value, path)})

    def schema(self, schema: dict[str, Any]) -> dict[str, Any]:
        name = self.args["field_name"]
        return _map_schema(
            schema,
            self.path_expr,
            lambda old: {"type": "object", "properties": {name: old}, "required": [name]},
        )


class MergeSpans(Rule):
    name = "merge_spans"
    arguments = ("group_fields", "begin_field", "end_field", "text_field")
    required = ("group_fields", "begin_field", "end_field")

    def apply_at(self, value: Any, path: Path, ctx: OutputContext, prepared: Any) -> Any:
        records = fetch(value, path)
        if not isinstance(records, list):
            raise ValueError("expected a list of records")
        groups, begin, end = self.args["group_fields"], self.args["begin_field"], self.args["end_field"]
        text = self.args.get("text_field")
        allowed = {*groups, begin, end, *([text] if text else [])}
        for record in records:
            extra = set(record) - allowed
            if extra:
                raise ValueError(f"a record has fields other than the group and span fields: {sorted(extra)}")
            if record.get(begin) is None or record.get(end) is None:
                raise ValueError(f"a record has no span: {record!r:.80}")
        ordered = sorted(records, key=lambda r: (tuple(_sort_key(r.get(g)) for g in groups), r[begin]))
        out: list[dict[str, Any]] = []
        for record in ordered:
            last = out[-1] if out else None
            if last is not None and all(last.get(g) == record.get(g) for g in groups):
                if record[begin] < last[end]:
                    raise ValueError(f"overlapping spans at {record[begin]}")
                if record[begin] == last[end]:
                    last[end] = record[end]
                    if text:
                        last[text] += record[text]
                    continue
            out.append(dict(record))
        return replace(value, path, out)


RULES: dict[str, type[Rule]] = {
    cls.name: cls for cls in (Likelihood, DecodeSentences, Explode, DropDuplicates, Project, Nest, MergeSpans)
}


def build_rules(io: IoConfig, adapter: str) -> list[Rule]:
    rules = []
    for spec in io.transformations or []:
        cls = RULES.get(spec["type"])
        if cls is None:
            raise IntrinsicSpecError(
                f"intrinsic '{adapter}': unknown io.yaml rule '{spec['type']}' (known: {', '.join(RULES)})"
            )
        rules.append(cls(spec, io, adapter))
    return rules


def output_schema(io: IoConfig, rules: Sequence[Rule]) -> dict[str, Any] | None:
    """The JSON schema of the processed output (``response_format`` through every rule)."""
    if io.response_format is None:
        return None
    schema = inline_refs(io.response_format)
    for rule in rules:
        schema = rule.schema(schema)
    return schema


# ---------------------------------------------------------------------------------- helpers
def _map_schema(
    schema: dict[str, Any], path_expr: Sequence[Any], change: Callable[[dict[str, Any]], dict[str, Any]]
) -> dict[str, Any]:
    return schema_replace(schema, path_expr, change(copy.deepcopy(schema_at(schema, path_expr))))


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {"anyOf": [schema, {"type": "null"}]} if schema else {}


def _hashable(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_hashable(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _hashable(v)) for k, v in value.items()))
    return value


def _sort_key(value: Any) -> tuple[int, Any]:
    return (0, "") if value is None else (1, value)
