"""Use IBM Granite intrinsic adapters (aLoRA, Granite 3.x) that a user has on disk.

A Granite intrinsic directory holds a PEFT ``adapter_config.json`` — with ``alora_invocation_tokens``
(native PEFT) or, from the older ``alora`` package, only an ``invocation_string`` — and often an
``io.yaml`` (granite-common) with the output JSON schema, an instruction and decoding parameters.
We map it onto the same specs as our own intrinsics, so a flow that says ``uncertainty`` works
with the embedded model's adapter and with Granite's ``certainty`` adapter alike.

Mapping: the output schema decides the kind when it is recognisable (digit enum -> uncertainty,
answerable/unanswerable -> answerability, ``rewritten_question`` -> rewrite, list of r/e/f ->
hallucination, other string enum -> choice); otherwise the directory/intrinsic name does
(``certainty``, ``hallucination_detection``, ``query_rewrite``, ``context_relevance`` ...).
Granite's ``instruction`` becomes the input turn, ``max_completion_tokens`` the token budget.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

from alora_flows.errors import AdapterError, IntrinsicSpecError
from intrinsics.builtin import make_spec
from intrinsics.spec import IntrinsicSpec

IO_FILE = "io.yaml"
#: Name fragments -> kind, checked against the intrinsic name and the directory path.
NAME_HINTS = (
    ("uncertainty", "uncertainty"),
    ("certainty", "uncertainty"),
    ("hallucination", "hallucination"),
    ("rewrite", "rewrite"),
    ("answerability", "answerability"),
    ("context_relevance", "context_relevance"),
    ("relevance", "context_relevance"),
)
CONTEXT_RELEVANCE_LABELS = ("relevant", "partially relevant", "irrelevant")


def adapter_config(path: Path) -> dict[str, Any]:
    file = Path(path) / "adapter_config.json"
    try:
        return json.loads(file.read_text())
    except FileNotFoundError as exc:
        raise AdapterError(f"{path}: no adapter_config.json (not a PEFT adapter directory)") from exc
    except json.JSONDecodeError as exc:
        raise AdapterError(f"{file}: invalid JSON ({exc})") from exc


def is_granite_dir(path: str | Path) -> bool:
    """Has Granite metadata (io.yaml, or the old ``alora`` package's ``invocation_string``)."""
    path = Path(path)
    if (path / IO_FILE).is_file():
        return True
    try:
        return "invocation_string" in adapter_config(path)
    except AdapterError:
        return False


def read_io_yaml(path: str | Path) -> dict[str, Any] | None:
    """``io.yaml`` as a dict with ``response_format`` parsed from its JSON string, or None."""
    file = Path(path) / IO_FILE
    if not file.is_file():
        return None
    from ruamel.yaml import YAML

    try:
        data = YAML(typ="safe", pure=True).load(file.read_text(encoding="utf-8")) or {}
    except Exception as exc:
        raise IntrinsicSpecError(f"{file}: invalid YAML: {exc}") from exc
    if not isinstance(data, dict):
        raise IntrinsicSpecError(f"{file}: expected a mapping")
    fmt = data.get("response_format")
    if isinstance(fmt, str):
        try:
            data["response_format"] = json.loads(fmt)
        except json.JSONDecodeError as exc:
            raise IntrinsicSpecError(f"{file}: response_format is not valid JSON ({exc})") from exc
    return data


def _schema_props(schema: dict[str, Any]) -> set[str]:
    """Property names of an object schema, following one local ``$ref`` (``#/$defs/X``)."""
    if "$ref" in schema:
        return set()
    return set((schema.get("properties") or {}).keys())


def kind_from_schema(schema: Any) -> tuple[str | None, dict[str, Any]]:
    """Recognise the built-in output shapes from a JSON schema. Returns (kind, options)."""
    if not isinstance(schema, dict):
        return None, {}
    enum = schema.get("enum")
    if enum is not None:
        values = [str(v) for v in enum]
        if sorted(values) == [str(d) for d in range(10)]:
            return "uncertainty", {}
        if set(values) == {"answerable", "unanswerable"}:
            return "answerability", {}
        return "choice", {"labels": values}
    kind = schema.get("type")
    if kind == "object" and "rewritten_question" in _schema_props(schema):
        return "rewrite", {}
    if kind == "array":
        items = schema.get("items") or {}
        props = _schema_props(items)
        ref = items.get("$ref", "")
        if ref.startswith("#/$defs/"):
            props = _schema_props((schema.get("$defs") or {}).get(ref.rsplit("/", 1)[-1], {}))
        if {"r", "f"} <= props:
            return "hallucination", {}
    if kind in ("object", "array"):
        return "json", {}
    return None, {}


def kind_from_name(*hints: str) -> str | None:
    text = " ".join(h.lower().replace("-", "_") for h in hints if h)
    for fragment, kind in NAME_HINTS:
        if fragment in text:
            return kind
    return None


def invocation_of(path: Path, config: dict[str, Any], tokenizer=None) -> str:
    """The invocation string: stored (old ``alora`` package) or decoded from the stored tokens."""
    if config.get("invocation_string"):
        return str(config["invocation_string"])
    tokens = config.get("alora_invocation_tokens")
    if not tokens:
        raise AdapterError(
            f"{path}: adapter_config.json has neither alora_invocation_tokens nor "
            "invocation_string: this is a plain LoRA, not an activated LoRA"
        )
    if tokenizer is None:
        raise IntrinsicSpecError(
            f"{path}: only invocation token ids are stored; pass the base model's "
            "tokenizer to recover the invocation string"
        )
    return tokenizer.decode(tokens)


def _safe_name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in text).strip("_")
    return cleaned if cleaned and not cleaned[0].isdigit() else f"i_{cleaned}"


def load_granite_spec(path: str | Path, *, name: str | None = None, tokenizer=None) -> IntrinsicSpec:
    """An :class:`IntrinsicSpec` for a Granite intrinsic directory (see module docstring)."""
    path = Path(path)
    config = adapter_config(path)
    io = read_io_yaml(path) or {}
    invocation = invocation_of(path, config, tokenizer)
    kind, options = kind_from_schema(io.get("response_format"))
    model_field = io.get("model") if isinstance(io.get("model"), str) else ""
    if kind in (None, "json"):  # the schema is authoritative when it names a shape; else the name decides
        hinted = kind_from_name(name or "", model_field, *path.parts[-4:])
        if hinted == "context_relevance":
            kind, options = "choice", {"labels": list(CONTEXT_RELEVANCE_LABELS)}
        elif hinted:
            kind, options = hinted, {}
    if kind is None:
        if not io:
            raise IntrinsicSpecError(
                f"{path}: cannot tell which intrinsic this is (no io.yaml, name {name!r}); name it after "
                "a known intrinsic (certainty, hallucination, rewrite, answerability) or add an intrinsic.yaml"
            )
        kind = "text"
    instruction = io.get("instruction")
    if isinstance(instruction, str) and instruction.strip():
        options["input_template"] = "{% raw %}" + instruction.strip() + "{% endraw %}"
    elif kind == "hallucination":  # Granite's reads the answer itself, not our numbered-sentences turn
        options["input_template"] = None
    options["adapted_input_template"] = None  # Granite adapters decode right after their invocation
    params = io.get("parameters") or {}
    if (
        isinstance(params, dict)
        and isinstance(params.get("max_completion_tokens"), int)
        and kind not in ("uncertainty", "answerability")
    ):
        options["max_new_tokens"] = max(1, int(params["max_completion_tokens"]))
    spec_name = _safe_name(name or model_field or kind)
    options.setdefault("description", f"Granite intrinsic from {path}")
    return make_spec(kind, spec_name, invocation, **options)


def convert_granite_adapter(
    path: str | Path, tokenizer, out_dir: str | Path, *, name: str | None = None
) -> Path:
    """Copy a Granite adapter into a native-PEFT aLoRA directory (``alora_invocation_tokens`` set,
    keys unknown to this PEFT dropped) with an ``intrinsic.yaml``, so any PEFT tool can load it."""
    from dataclasses import fields

    from peft import LoraConfig

    from intrinsics.specfile import write_spec_file

    path, out = Path(path), Path(out_dir)
    config = adapter_config(path)
    spec = load_granite_spec(path, name=name, tokenizer=tokenizer)
    tokens = config.get("alora_invocation_tokens") or spec.invocation_ids(tokenizer)
    known = {f.name for f in fields(LoraConfig)}
    converted = {k: v for k, v in config.items() if k in known}
    converted.update(peft_type="LORA", alora_invocation_tokens=[int(t) for t in tokens])
    out.mkdir(parents=True, exist_ok=True)
    for file in path.iterdir():
        if file.is_file() and file.name.startswith("adapter_model"):
            shutil.copy2(file, out / file.name)
    (out / "adapter_config.json").write_text(json.dumps(converted, indent=2))
    write_spec_file(
        spec,
        out,
        adapter={"type": "alora", "source": str(path), "base_model": config.get("base_model_name_or_path")},
    )
    return out
