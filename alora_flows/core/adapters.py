"""Read and check aLoRA adapter directories before they touch the model.

Why check ourselves instead of letting PEFT fail: PEFT's failures are either deep tracebacks
(shape mismatch in ``load_state_dict``) or, worse, silence (an aLoRA without invocation tokens, or
a plain LoRA, just runs as something else). Every check here ends in a typed error with a fix.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch
from pydantic import BaseModel, ConfigDict

from alora_flows.errors import AdapterError, AdapterMismatchError, NotAnALoRAError

WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
_PEFT_PREFIX = "base_model.model."


class AdapterInfo(BaseModel):
    """What the backend knows about one loaded adapter."""

    model_config = ConfigDict(frozen=True)

    name: str
    path: str
    invocation_tokens: list[int]
    invocation_string: str | None = None
    target_modules: list[str]
    rank: int
    base_model: str | None = None


class AdapterFiles(BaseModel):
    """A validated adapter directory: its config, weights and recovered invocation tokens."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    info: AdapterInfo
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]


def read_adapter(name: str, path: str | Path, tokenizer, *, model_id: str | None) -> AdapterFiles:
    """Read ``path`` and check it is a usable aLoRA adapter (format and recorded base model)."""
    path = Path(path)
    config_file = path / "adapter_config.json"
    if not config_file.is_file():
        raise AdapterError(
            f"adapter '{name}': no adapter_config.json in {path} "
            "(expected a PEFT adapter directory written by save_pretrained)"
        )
    weights = next((path / f for f in WEIGHT_FILES if (path / f).is_file()), None)
    if weights is None:
        raise AdapterError(
            f"adapter '{name}': no {' or '.join(WEIGHT_FILES)} in {path}; "
            "the directory is incomplete (re-copy or re-train the adapter)"
        )
    try:
        config = json.loads(config_file.read_text())
    except json.JSONDecodeError as exc:
        raise AdapterError(f"adapter '{name}': {config_file} is not valid JSON ({exc})") from exc
    if config.get("peft_type", "LORA") != "LORA":
        raise NotAnALoRAError(
            f"adapter '{name}' is a {config.get('peft_type')} adapter; "
            "only (activated) LoRA adapters can be invoked"
        )

    tokens = config.get("alora_invocation_tokens")
    invocation_string = config.get("invocation_string")
    if not tokens and invocation_string:
        # Older `alora` package format: only the string is stored; tokenize it the way it was trained.
        tokens = tokenizer(invocation_string, add_special_tokens=False)["input_ids"]
    if not tokens:
        raise NotAnALoRAError(
            f"adapter '{name}' at {path} is a plain LoRA (no alora_invocation_tokens or "
            "invocation_string in adapter_config.json): it would silently run as a full LoRA. "
            "Retrain it as an aLoRA (alora-flows train, without --lora)."
        )
    if invocation_string is None:
        invocation_string = tokenizer.decode(tokens)

    _check_base_model(name, config.get("base_model_name_or_path"), model_id)
    state = _load_weights(weights)
    target_modules = config.get("target_modules") or []
    if isinstance(target_modules, str):
        target_modules = [target_modules]
    info = AdapterInfo(
        name=name,
        path=str(path),
        invocation_tokens=[int(t) for t in tokens],
        invocation_string=invocation_string,
        target_modules=sorted(target_modules),
        rank=int(config.get("r", 8)),
        base_model=config.get("base_model_name_or_path"),
    )
    return AdapterFiles(info=info, config=config, state_dict=state)


def _normalise(model_name: str) -> str:
    return model_name.rstrip("/").split("/")[-1].lower()


def _check_base_model(name: str, recorded: str | None, model_id: str | None) -> None:
    if not recorded:
        warnings.warn(
            f"adapter '{name}' does not record its base model; assuming it fits "
            f"'{model_id}'. Check its outputs.",
            stacklevel=3,
        )
        return
    if model_id and _normalise(recorded) != _normalise(model_id):
        raise AdapterMismatchError(
            f"adapter '{name}' was trained for base model '{recorded}', but the loaded model is "
            f"'{model_id}'. Load the matching base model, or train the adapter on this one."
        )


def _load_weights(weights: Path) -> dict[str, torch.Tensor]:
    if weights.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(weights))
    return torch.load(weights, map_location="cpu", weights_only=True)


def check_fits(name: str, state: dict[str, torch.Tensor], model: torch.nn.Module) -> None:
    """Every LoRA matrix must land on an existing Linear of matching shape, before PEFT sees it."""
    modules = dict(model.named_modules())
    for key, tensor in state.items():
        module_path, _, kind = key.removeprefix(_PEFT_PREFIX).rpartition(".lora_")
        target = modules.get(module_path)
        if target is None:
            raise AdapterMismatchError(
                f"adapter '{name}' targets module '{module_path}', which the base model does not "
                "have: it was trained for a different architecture"
            )
        if not hasattr(target, "in_features"):
            raise AdapterMismatchError(
                f"adapter '{name}' targets '{module_path}', which is not a Linear layer in this base model"
            )
        if kind.startswith("A.") and tensor.shape[1] != target.in_features:
            raise AdapterMismatchError(
                f"adapter '{name}': '{module_path}' expects input size {tensor.shape[1]}, the base "
                f"model has {target.in_features}: it was trained for a different model size"
            )
        if kind.startswith("B.") and tensor.shape[0] != target.out_features:
            raise AdapterMismatchError(
                f"adapter '{name}': '{module_path}' produces size {tensor.shape[0]}, the base "
                f"model has {target.out_features}: it was trained for a different model size"
            )


def lora_config(files: AdapterFiles):
    """Build a ``LoraConfig`` from the stored config, keeping only fields this PEFT knows."""
    from peft import LoraConfig

    known = {f.name for f in fields(LoraConfig)}
    kwargs = {k: v for k, v in files.config.items() if k in known}
    kwargs["alora_invocation_tokens"] = files.info.invocation_tokens
    kwargs["inference_mode"] = True
    return LoraConfig(**kwargs)
