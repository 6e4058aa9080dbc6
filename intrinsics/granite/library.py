"""Granite intrinsic libraries on local disk, and what ``alora-flows intrinsics check`` reports.

IBM publishes its intrinsics as libraries: one folder per intrinsic, then ``alora``/``lora``, then
one folder per base model, each an adapter directory with its ``io.yaml`` (the layout of
``rag-intrinsics-lib``); the newer libraries swap the last two levels (``<intrinsic>/<model>/
<alora|lora>``). Both are read. :func:`scan_library` finds every adapter directory under a root,
:func:`check_adapter` says for each what loads and how it is interpreted (shape, invocation,
activation offset, output schema) or why not, and :func:`resolve_in_library` picks the aLoRA of
one intrinsic for one base model, so a flow may name an intrinsic's folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel

from alora_flows.core.adapters import ADAPTER_CONFIG, is_activated, read_adapter_config
from alora_flows.errors import AdapterError, AloraFlowsError
from intrinsics.granite.intrinsic import GraniteSpec, load_granite_spec

ADAPTER_TYPES = ("alora", "lora")


class LibraryEntry(BaseModel):
    """One adapter directory of a library."""

    path: Path
    intrinsic: str
    adapter_type: Literal["alora", "lora"] | None = None
    model: str | None = None


def _normalise(model: str) -> str:
    return model.rstrip("/").split("/")[-1].lower()


def scan_library(root: str | Path, *, intrinsic: str | None = None) -> list[LibraryEntry]:
    """Every adapter directory under ``root`` (sorted), located in the library layout. With
    ``intrinsic``, ``root`` is that intrinsic's folder (its subfolders are types and models)."""
    root = Path(root)
    entries = []
    for config in sorted(root.rglob(ADAPTER_CONFIG)):
        folder = config.parent
        parts = folder.relative_to(root).parts
        adapter_type = next((p for p in parts if p in ADAPTER_TYPES), None)
        others = [p for p in parts if p not in ADAPTER_TYPES]
        if intrinsic is not None:
            name, model = intrinsic, (others[-1] if others else None)
        else:
            name = others[0] if others else folder.name
            model = others[-1] if len(others) > 1 else None
        entries.append(
            LibraryEntry(
                path=folder,
                intrinsic=name,
                adapter_type=adapter_type,
                model=model,
            )
        )
    return entries


def resolve_in_library(folder: str | Path, model_id: str | None) -> Path | None:
    """The aLoRA adapter directory for ``model_id`` under an intrinsic's ``folder`` (either
    layout); None when ``folder`` is not laid out that way. With no model given, the folder must
    hold exactly one aLoRA."""
    folder = Path(folder)
    if (folder / ADAPTER_CONFIG).is_file():
        return folder
    candidates = [
        e
        for e in scan_library(folder, intrinsic=folder.name)
        if e.adapter_type == "alora" or (e.adapter_type is None and is_activated(_config(e.path)))
    ]
    if not candidates:
        return None
    if model_id is not None:
        key = _normalise(model_id)
        matching = [e for e in candidates if e.model and _normalise(e.model) == key]
        if matching:
            return matching[0].path
        models = ", ".join(sorted({e.model or e.path.name for e in candidates}))
        raise AdapterError(
            f"{folder} has no aLoRA for base model '{key}' (it has: {models}); load one of those base "
            "models, or point the flow at the adapter directory itself"
        )
    if len(candidates) == 1:
        return candidates[0].path
    models = ", ".join(sorted({e.model or e.path.name for e in candidates}))
    raise AdapterError(f"{folder} holds aLoRAs for several base models ({models}): name the model")


def _config(path: Path) -> dict[str, Any]:
    try:
        return read_adapter_config(path)
    except AloraFlowsError:
        return {}


class CheckReport(BaseModel):
    """What ``intrinsics check`` says about one adapter directory."""

    path: str
    intrinsic: str
    adapter_type: str | None = None
    model: str | None = None
    loads: bool
    shape: str | None = None
    invocation: str | None = None
    invocation_tokens: list[int] | None = None
    activation_offset: int | None = None
    activation: str | None = None
    conversation: str | None = None
    documents: str | None = None
    instruction_arguments: list[str] = []
    decoding: str | None = None
    output_schema: dict[str, Any] | None = None
    output_fields: str | None = None
    problem: str | None = None


def _fields(schema: dict[str, Any] | None) -> str:
    if schema is None:
        return "free text"
    if schema.get("type") == "array":
        return "list of " + _fields(schema.get("items") or {})
    props = schema.get("properties")
    if props:
        return "{" + ", ".join(f"{k}: {_type_name(v)}" for k, v in props.items()) + "}"
    return _type_name(schema)


def _type_name(schema: dict[str, Any]) -> str:
    if "enum" in schema:
        return "|".join(str(v) for v in schema["enum"])
    if "anyOf" in schema:
        return " or ".join(_type_name(s) for s in schema["anyOf"])
    kind = schema.get("type", "any")
    if kind == "array":
        return f"list[{_type_name(schema.get('items') or {})}]"
    if kind == "object":
        return _fields(schema)
    return "|".join(kind) if isinstance(kind, list) else str(kind)


def check_adapter(entry: LibraryEntry, tokenizer=None) -> CheckReport:
    """Load ``entry`` as the engine would and describe the result (never raises on bad input)."""
    report = CheckReport(
        path=str(entry.path),
        intrinsic=entry.intrinsic,
        adapter_type=entry.adapter_type,
        model=entry.model,
        loads=False,
    )
    try:
        config = read_adapter_config(entry.path)
        if not is_activated(config):
            report.adapter_type = "lora"
            report.problem = (
                "plain LoRA (no alora_invocation_tokens or invocation_string): it would re-run the whole "
                "conversation with its weights, so the engine does not invoke it; use the aLoRA folder"
            )
            return report
        report.adapter_type = "alora"
        spec: GraniteSpec = load_granite_spec(entry.path, name=entry.intrinsic, tokenizer=tokenizer)
    except AloraFlowsError as exc:
        report.problem = f"{type(exc).__name__}: {exc}"
        return report
    io = spec.io
    report.loads = True
    report.shape = f"{spec.shape.name}: {spec.shape.summary}"
    report.invocation = spec.invocation
    report.invocation_tokens = spec.invocation_token_ids
    report.activation_offset = spec.activation_offset
    if config.get("invocation_string") and config.get("alora_invocation_tokens"):
        source = "invocation_string and alora_invocation_tokens (they agree)"
    elif config.get("invocation_string"):
        source = "invocation_string only (old alora package format)"
    else:
        source = "alora_invocation_tokens (PEFT format)"
    where = "after the first invocation token" if spec.activation_offset else "at the first invocation token"
    report.activation = f"{source}: the adapter switches on {where}"
    if tokenizer is None and config.get("alora_invocation_tokens") and not config.get("invocation_string"):
        report.activation += " (pass --model to see the tokens as text)"
    if spec.shape.last_role:
        article = "an" if spec.shape.last_role == "assistant" else "a"
        report.conversation = f"must end with {article} '{spec.shape.last_role}' turn"
    bounds = (io.sentence_boundaries if io else None) or {}
    docs = "required" if spec.shape.needs_documents else "optional"
    how = f"as turns ({io.docs_as_message})" if io and io.docs_as_message else "by the chat template"
    tagged = f"; sentences tagged in {', '.join(f'{k} <{v}N>' for k, v in bounds.items())}" if bounds else ""
    report.documents = f"{docs}, rendered {how}{tagged}"
    if io and io.instruction is not None:
        from intrinsics.granite.inputs import LAST_MESSAGE, instruction_template

        _, names = instruction_template(io.instruction, spec.name)
        report.instruction_arguments = [n for n in names if n != LAST_MESSAGE]
    constraint = (
        "constrained to response_format (llguidance)" if io and io.response_format else "unconstrained"
    )
    temperature = io.temperature if io else 0.0
    rules = ", ".join(r.get("type", "?") for r in (io.transformations or [])) if io else ""
    report.decoding = (
        f"{constraint}; max {spec.max_new_tokens} tokens; "
        f"{'greedy' if temperature == 0 else f'temperature {temperature}'}"
        f"{'; log-probabilities recorded' if io and io.needs_logprobs else ''}"
        f"{f'; rules: {rules}' if rules else ''}"
    )
    report.output_schema = spec.output_schema
    report.output_fields = f"{spec.output_model.__name__} {_fields(spec.output_schema)}"
    return report


def check_library(root: str | Path, tokenizer=None) -> list[CheckReport]:
    """:func:`check_adapter` for every adapter directory under ``root``."""
    return [check_adapter(entry, tokenizer) for entry in scan_library(root)]


def format_report(report: CheckReport) -> str:
    """Plain-text lines of one report, as ``intrinsics check`` prints them."""
    head = f"{report.intrinsic} [{report.adapter_type or '?'}{', ' + report.model if report.model else ''}]"
    status = "ok  " if report.loads else "skip" if report.adapter_type == "lora" else "FAIL"
    lines = [f"{status} {head}", f"     path: {report.path}"]
    if not report.loads:
        lines.append(f"     why not: {report.problem}")
        return "\n".join(lines)
    lines += [
        f"     shape: {report.shape}",
        f"     invocation: {report.invocation!r}"
        + (f" tokens {report.invocation_tokens}" if report.invocation_tokens is not None else ""),
        f"     activation: {report.activation}",
    ]
    if report.conversation:
        lines.append(f"     conversation: {report.conversation}")
    lines.append(f"     documents: {report.documents}")
    if report.instruction_arguments:
        lines.append(f"     arguments: {', '.join(report.instruction_arguments)} (instruction placeholders)")
    lines += [f"     decoding: {report.decoding}", f"     output: {report.output_fields}"]
    return "\n".join(lines)
