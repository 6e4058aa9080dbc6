"""``intrinsic.yaml``: the small spec file that travels next to an adapter's weights.

Why a file next to the adapter: an adapter directory is then self-describing — a flow can point at
``./adapters/politeness`` and get both the weights and the way to call and parse them, without any
Python. The trainer writes it; users can write it by hand::

    name: politeness
    kind: choice                 # uncertainty | hallucination | rewrite | answerability | choice | json | text | custom
    invocation: "<|im_start|>politeness\\n"
    labels: [polite, rude]       # choice only
    input_template: null         # Jinja, rendered from flow state; appended as a turn, rolled back
    adapted_input_template: null # Jinja; text after the invocation, read by the adapter itself
    max_new_tokens: 4
    # kind custom: parser: "my_pkg.parsers:parse_politeness", output_model: "my_pkg.parsers:Politeness"
"""

from __future__ import annotations

import importlib
import io
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from alora_flows.errors import IntrinsicSpecError
from intrinsics.builtin import KINDS, make_spec
from intrinsics.known import get_spec, has_spec
from intrinsics.spec import IntrinsicSpec, Role

SPEC_FILE = "intrinsic.yaml"
#: Template keys where an explicit ``null`` means "none", overriding the kind's default.
NULLABLE_TEMPLATES = ("input_template", "adapted_input_template")


class IntrinsicFile(BaseModel):
    """The schema of ``intrinsic.yaml`` (unknown keys are errors: they are usually typos)."""

    model_config = ConfigDict(extra="forbid")

    name: str
    kind: str = "custom"
    invocation: str
    description: str | None = None
    input_template: str | None = None
    input_role: Role | None = None
    adapted_input_template: str | None = None
    max_new_tokens: int | None = None
    labels: list[str] | None = None
    parser: str | None = None
    output_model: str | None = None
    formatter: str | None = None
    base_prompt: str | None = None
    adapter: dict[str, Any] | None = None  # written by the trainer: type, base model, tokens, metrics


def _import(ref: str, what: str, file: Path | None) -> Any:
    module, _, attr = ref.partition(":")
    if not module or not attr:
        raise IntrinsicSpecError(
            f"{file or 'spec'}: {what} must look like 'package.module:name', got {ref!r}"
        )
    try:
        obj: Any = importlib.import_module(module)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise IntrinsicSpecError(f"{file or 'spec'}: cannot import {what} {ref!r}: {exc}") from exc
    return obj


def _ref(obj: Any) -> str | None:
    """``module:qualname`` if ``obj`` can be imported back, else None."""
    module, qual = getattr(obj, "__module__", None), getattr(obj, "__qualname__", None)
    if not module or not qual or "<" in qual or module == "__main__":
        return None
    return f"{module}:{qual}"


def spec_from_data(data: IntrinsicFile, *, file: Path | None = None) -> IntrinsicSpec:
    """Build an :class:`IntrinsicSpec` from a validated file."""
    options: dict[str, Any] = {
        k: v
        for k, v in {
            "description": data.description,
            "input_template": data.input_template,
            "input_role": data.input_role,
            "adapted_input_template": data.adapted_input_template,
            "max_new_tokens": data.max_new_tokens,
            "base_prompt": data.base_prompt,
        }.items()
        if v is not None
    }
    for key in NULLABLE_TEMPLATES:
        if key in data.model_fields_set and getattr(data, key) is None:
            options[key] = None  # explicit null: none, even for kinds with a default
    if data.kind in KINDS:
        if data.kind == "choice":
            options["labels"] = data.labels
        elif data.labels:
            options["allowed_outputs"] = tuple(data.labels)
        try:
            return make_spec(data.kind, data.name, data.invocation, **options)
        except IntrinsicSpecError as exc:
            raise IntrinsicSpecError(f"{file}: {exc}" if file else str(exc)) from exc
    if data.kind != "custom":
        raise IntrinsicSpecError(
            f"{file or 'spec'}: unknown kind '{data.kind}' (known: {', '.join(sorted(KINDS))}, custom)"
        )
    if not data.parser or not data.output_model:
        if has_spec(data.name):  # registered from Python: the file only changes invocation/options
            return get_spec(data.name).replace(invocation=data.invocation, **options)
        raise IntrinsicSpecError(
            f"{file or 'spec'}: kind 'custom' needs 'parser' and 'output_model' ('module:name'), or a spec "
            f"named '{data.name}' registered from Python with intrinsics.register_spec"
        )
    extra: dict[str, Any] = {}
    if data.labels:
        extra["allowed_outputs"] = tuple(data.labels)
    if data.formatter:
        extra["formatter"] = _import(data.formatter, "formatter", file)
    try:
        return IntrinsicSpec(
            name=data.name,
            invocation=data.invocation,
            kind="custom",
            parser=_import(data.parser, "parser", file),
            output_model=_import(data.output_model, "output_model", file),
            **options,
            **extra,
        )
    except ValidationError as exc:
        raise IntrinsicSpecError(f"{file or 'spec'}: {exc}") from exc


def spec_to_data(spec: IntrinsicSpec, adapter: dict[str, Any] | None = None) -> IntrinsicFile:
    """The file form of ``spec`` (custom parsers are stored as import references)."""
    data: dict[str, Any] = {
        "name": spec.name,
        "kind": spec.kind if spec.kind in KINDS else "custom",
        "invocation": spec.invocation,
        "description": spec.description or None,
        "input_template": spec.input_template,
        "input_role": spec.input_role,
        "adapted_input_template": spec.adapted_input_template,
        "max_new_tokens": spec.max_new_tokens,
        "labels": list(spec.allowed_outputs)
        if spec.kind in ("choice", "custom") and spec.allowed_outputs
        else None,
        "adapter": adapter,
    }
    if data["kind"] == "custom":
        data.update(
            parser=_ref(spec.parser),
            output_model=_ref(spec.output_model),
            formatter=_ref(spec.formatter) if spec.formatter else None,
        )
    return IntrinsicFile(**data)


def _yaml():
    from ruamel.yaml import YAML

    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    return yaml


def read_spec_file(path: str | Path) -> IntrinsicSpec:
    """Load ``intrinsic.yaml`` (or a directory containing one). Errors name the file."""
    path = Path(path)
    if path.is_dir():
        path = path / SPEC_FILE
    try:
        raw = _yaml().load(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise IntrinsicSpecError(f"{path}: no such spec file") from exc
    except Exception as exc:  # ruamel's YAMLError family
        raise IntrinsicSpecError(f"{path}: invalid YAML: {exc}") from exc
    if not isinstance(raw, dict):
        raise IntrinsicSpecError(f"{path}: expected a mapping with name/kind/invocation")
    try:
        data = IntrinsicFile.model_validate(raw)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        raise IntrinsicSpecError(f"{path}: {problems}") from exc
    return spec_from_data(data, file=path)


def write_spec_file(
    spec: IntrinsicSpec, directory: str | Path, *, adapter: dict[str, Any] | None = None
) -> Path:
    """Write ``directory/intrinsic.yaml`` for ``spec``; returns the file path."""
    path = Path(directory) / SPEC_FILE
    data = spec_to_data(spec, adapter).model_dump(exclude_none=True)
    for key in NULLABLE_TEMPLATES:
        if getattr(spec, key) is None:
            data[key] = None  # explicit: none, so a kind's default never creeps in on reading
    buffer = io.StringIO()
    _yaml().dump(data, buffer)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(buffer.getvalue(), encoding="utf-8")
    return path
