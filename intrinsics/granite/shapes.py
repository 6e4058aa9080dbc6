"""What a Granite intrinsic is, read from its output schema — never from its name — and the
typed output model its processed output follows.

:func:`shape_of` labels the raw ``response_format`` (with the io.yaml around it) as one of the
shapes IBM's libraries use; the label says how to call the intrinsic (which turn the conversation
must end with, whether it reads documents) and is what ``alora-flows intrinsics check`` prints.
The processing itself never depends on it: every adapter's output goes through its own io.yaml
rules, and :func:`model_from_schema` builds the pydantic model of the processed schema
(:func:`~intrinsics.granite.transformations.output_schema`). An unknown shape is ``generic``:
processed and typed the same way.
"""

from __future__ import annotations

import keyword
import re
from typing import Any, Literal, Optional

from pydantic import BaseModel, ConfigDict, Field, RootModel, create_model

from intrinsics.granite.io_yaml import IoConfig
from intrinsics.granite.transformations import inline_refs

DIGITS = [str(d) for d in range(10)]
RELEVANCE = {"relevant", "irrelevant", "partially relevant"}


class ShapeInfo(BaseModel):
    """A shape label and the call conventions that go with it."""

    model_config = ConfigDict(frozen=True)

    name: str
    #: Role the conversation must end with (None: either).
    last_role: Literal["user", "assistant"] | None = None
    needs_documents: bool = False
    summary: str = ""


def _enum(schema: dict[str, Any]) -> list[str] | None:
    values = schema.get("enum")
    return (
        [str(v) if not isinstance(v, bool) else str(v).lower() for v in values]
        if isinstance(values, list)
        else None
    )


def _single_property(schema: dict[str, Any]) -> tuple[str, dict[str, Any]] | None:
    props = schema.get("properties") or {}
    if schema.get("type") == "object" and len(props) == 1:
        return next(iter(props.items()))
    return None


def _value_enum(schema: dict[str, Any]) -> list[str] | None:
    """The enum of a scalar schema, or of the one property of an object schema."""
    enum = _enum(schema)
    if enum is not None:
        return enum
    single = _single_property(schema)
    return _enum(single[1]) if single else None


def _nested_field(io: IoConfig) -> str | None:
    """The field a root-level ``nest`` rule wraps the output in (its name in the processed output)."""
    for rule in io.transformations or []:
        if rule.get("type") == "nest" and rule.get("input_path") == []:
            return str(rule.get("field_name"))
    return None


def shape_of(io: IoConfig | None) -> ShapeInfo:
    """The shape of an intrinsic's output (see the module docstring)."""
    if io is None or io.response_format is None:
        return ShapeInfo(name="text", summary="free text (no response_format: output is not constrained)")
    schema = inline_refs(io.response_format)
    enum = _value_enum(schema)
    props = set((schema.get("properties") or {}).keys())
    items = schema.get("items") or {}
    item_props = set((items.get("properties") or {}).keys())
    bounds = io.sentence_boundaries or {}
    if enum and sorted(enum) == DIGITS:
        return ShapeInfo(
            name="uncertainty", last_role="assistant", summary="certainty of the last answer (digit 0-9)"
        )
    if enum and {"answerable", "unanswerable"} <= set(enum):
        return ShapeInfo(
            name="answerability",
            last_role="user",
            needs_documents=True,
            summary="whether the documents answer the last question",
        )
    if enum and set(enum) <= RELEVANCE and len(enum) >= 2:
        return ShapeInfo(
            name="context_relevance", last_role="user", summary="relevance of a document to the last question"
        )
    if schema.get("type") == "array" and {"r", "f"} <= item_props:
        return ShapeInfo(
            name="hallucination_detection",
            last_role="assistant",
            needs_documents=True,
            summary="faithfulness of each sentence of the last answer",
        )
    if schema.get("type") == "array" and {"r", "c"} <= item_props:
        if "all_but_last_message" in bounds:
            return ShapeInfo(
                name="context_attribution",
                last_role="assistant",
                summary="context sentences behind each answer sentence",
            )
        return ShapeInfo(
            name="citations",
            last_role="assistant",
            needs_documents=True,
            summary="document sentences cited by each answer sentence",
        )
    if "rewritten_question" in props:
        return ShapeInfo(
            name="query_rewrite", last_role="user", summary="standalone rewrite of the last question"
        )
    if "clarification" in props:
        return ShapeInfo(
            name="query_clarification",
            last_role="user",
            summary="clarifying question, if the last question is ambiguous",
        )
    if "answer_relevance_judgment" in props:
        return ShapeInfo(
            name="answer_relevance_classifier",
            last_role="assistant",
            summary="whether the last answer addresses the question",
        )
    if "answer_relevance_rewrite" in props:
        return ShapeInfo(
            name="answer_relevance_rewriter",
            last_role="assistant",
            summary="the last answer, rewritten to address the question",
        )
    if "correction" in props:
        return ShapeInfo(
            name="factuality_correction", last_role="assistant", summary="the last answer, corrected"
        )
    if enum and {"yes", "no", "ambiguous"} <= {e.lower() for e in enum} and props & {"label", "score"}:
        return ShapeInfo(name="policy", summary="compliance with a policy (Yes/No/Ambiguous)")
    if enum and sorted(e.lower() for e in enum) == ["no", "yes"]:
        nested = _nested_field(io)
        if nested == "requirement_check":
            return ShapeInfo(
                name="requirement_check",
                last_role="assistant",
                summary="whether the last answer meets a requirement",
            )
        return ShapeInfo(
            name=nested or "yes_no", summary=f"yes/no judgement{f' ({nested})' if nested else ''}"
        )
    return ShapeInfo(name="generic", summary="output typed from its schema")


# ---------------------------------------------------------------------------------- typed outputs
class GraniteOutput(BaseModel):
    """Base of the processed outputs of object shape. A one-field output converts like its value:
    ``float(out)`` for a number, ``str(out)`` for a string."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True, frozen=True)

    def _only(self) -> Any:
        fields = type(self).model_fields
        return getattr(self, next(iter(fields))) if len(fields) == 1 else None

    def __float__(self) -> float:
        value = self._only()
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        raise TypeError(f"{type(self).__name__} is not a single number")

    def __str__(self) -> str:
        value = self._only()
        return value if isinstance(value, str) else super().__str__()


class GraniteList(RootModel[list[Any]]):
    """A processed output that is a list of records (citations, hallucination detection)."""

    model_config = ConfigDict(frozen=True)

    def __iter__(self):
        return iter(self.root)

    def __len__(self) -> int:
        return len(self.root)

    def __getitem__(self, index: int) -> Any:
        return self.root[index]


class GraniteValue(RootModel[Any]):
    """A processed output that is a bare value."""

    model_config = ConfigDict(frozen=True)

    def __str__(self) -> str:
        return str(self.root)

    def __float__(self) -> float:
        return float(self.root)


def _class_name(text: str) -> str:
    parts = re.split(r"[^0-9A-Za-z]+", text)
    name = "".join(p[:1].upper() + p[1:] for p in parts if p) or "Output"
    return name if name[0].isalpha() else f"Output{name}"


def _type(schema: dict[str, Any], name: str) -> Any:
    if not schema:
        return Any
    if "anyOf" in schema or "oneOf" in schema:
        options = schema.get("anyOf") or schema.get("oneOf") or []
        non_null = [o for o in options if o.get("type") != "null"]
        inner = _type(non_null[0], name) if len(non_null) == 1 else Any
        return Optional[inner] if len(non_null) < len(options) else inner
    enum = schema.get("enum")
    if isinstance(enum, list) and enum and all(isinstance(v, (str, int, bool)) for v in enum):
        return Literal[tuple(enum)]
    kind = schema.get("type")
    if isinstance(kind, list):
        non_null = [k for k in kind if k != "null"]
        inner = _type({**schema, "type": non_null[0]}, name) if len(non_null) == 1 else Any
        return Optional[inner] if "null" in kind else inner
    if kind == "string":
        return str
    if kind == "integer":
        return int
    if kind == "number":
        return float
    if kind == "boolean":
        return bool
    if kind == "null":
        return type(None)
    if kind == "array":
        return list[_type(schema.get("items") or {}, name + "Item")]  # type: ignore[misc]
    if kind == "object" or "properties" in schema:
        return _object_model(schema, name)
    return Any


def _object_model(schema: dict[str, Any], name: str) -> type[BaseModel]:
    props = schema.get("properties") or {}
    if not props:
        return dict[str, Any]  # type: ignore[return-value]
    required = set(schema.get("required") or [])
    fields: dict[str, Any] = {}
    for i, (key, sub) in enumerate(props.items()):
        annotation = _type(sub or {}, name + _class_name(key))
        attr = (
            key
            if key.isidentifier() and not keyword.iskeyword(key) and not key.startswith("_")
            else f"field_{i}"
        )
        if key in required:
            fields[attr] = (annotation, Field(alias=key) if attr != key else ...)
        else:
            fields[attr] = (Optional[annotation], Field(None, alias=key))
    return create_model(_class_name(name), __base__=GraniteOutput, **fields)


def model_from_schema(schema: dict[str, Any] | None, name: str) -> type[BaseModel]:
    """The pydantic model of a processed output schema (records -> models, enums -> Literals)."""
    if schema is None:
        return GraniteValue
    schema = inline_refs(schema)
    if schema.get("type") == "object" or "properties" in schema:
        model = _object_model(schema, name)
        return model if isinstance(model, type) and issubclass(model, BaseModel) else GraniteValue
    root = _type(schema, name)
    base = GraniteList if schema.get("type") == "array" else GraniteValue
    return create_model(_class_name(name), __base__=base, root=(root, ...))
