"""IBM Granite intrinsics as IBM ships them: adapter directories with an ``io.yaml``, alone or in
a library, processed as granite-common and mellea process them, on the engine's KV-cache session.

- :mod:`~intrinsics.granite.io_yaml`: the io.yaml keys.
- :mod:`~intrinsics.granite.inputs`: sentence tags, documents as turns, the instruction turn.
- :mod:`~intrinsics.granite.decoding`: ``response_format`` as a constraint (llguidance),
  log-probabilities, sampling parameters.
- :mod:`~intrinsics.granite.transformations` and :mod:`~intrinsics.granite.likelihood`: output rules.
- :mod:`~intrinsics.granite.shapes`: the shape of an intrinsic and its typed output, from its schema.
- :mod:`~intrinsics.granite.intrinsic`: :class:`GraniteSpec`, :func:`load_granite_spec`.
- :mod:`~intrinsics.granite.library`: libraries on disk, ``alora-flows intrinsics check``.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import fields
from pathlib import Path

from alora_flows.core.adapters import activation, read_adapter_config
from intrinsics.granite.intrinsic import GraniteSpec, is_granite_dir, load_granite_spec
from intrinsics.granite.io_yaml import IO_FILE, IoConfig, io_file, read_io_yaml
from intrinsics.granite.library import check_adapter, check_library, resolve_in_library, scan_library
from intrinsics.granite.shapes import shape_of

__all__ = [
    "IO_FILE",
    "GraniteSpec",
    "IoConfig",
    "check_adapter",
    "check_library",
    "convert_granite_adapter",
    "is_granite_dir",
    "load_granite_spec",
    "read_io_yaml",
    "resolve_in_library",
    "scan_library",
    "shape_of",
]


def convert_granite_adapter(
    path: str | Path, tokenizer, out_dir: str | Path, *, name: str | None = None
) -> Path:
    """Copy a Granite adapter into a directory any PEFT tool loads: ``alora_invocation_tokens``
    set to where the adapter switches on (an old-format adapter keeps its ``invocation_string``
    beside them, agreeing under the activation rule, as IBM's converted configs do), keys unknown
    to this PEFT dropped, and its ``io.yaml`` copied."""
    from peft import LoraConfig

    path, out = Path(path), Path(out_dir)
    config = read_adapter_config(path, name=name)
    act = activation(config, tokenizer, name=name or path.name, path=path)
    if act is None:
        from alora_flows.errors import NotAnALoRAError

        raise NotAnALoRAError(f"{path} holds a plain LoRA: there is no invocation to convert")
    known = {f.name for f in fields(LoraConfig)}
    converted = {k: v for k, v in config.items() if k in known}
    converted.update(peft_type="LORA", alora_invocation_tokens=act.adapter_tokens)
    if act.offset:
        converted["invocation_string"] = act.invocation_string
    out.mkdir(parents=True, exist_ok=True)
    for file in path.iterdir():
        if file.is_file() and file.name.startswith("adapter_model"):
            shutil.copy2(file, out / file.name)
    (out / "adapter_config.json").write_text(json.dumps(converted, indent=2))
    source = io_file(path)
    if source is not None:
        shutil.copy2(source, out / IO_FILE)
    return out
