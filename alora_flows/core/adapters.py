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
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict

from alora_flows.core.models import model_key
from alora_flows.errors import (
    AdapterError,
    AdapterMismatchError,
    InvocationMismatchError,
    InvocationNotFoundError,
    NotAnALoRAError,
)

WEIGHT_FILES = ("adapter_model.safetensors", "adapter_model.bin")
_PEFT_PREFIX = "base_model.model."


ADAPTER_CONFIG = "adapter_config.json"


class AdapterInfo(BaseModel):
    """What the backend knows about one loaded adapter.

    ``invocation_tokens`` are appended after the conversation to call the adapter; the adapter's
    weights apply from ``invocation_tokens[activation_offset:]`` on (see :class:`Activation`).
    """

    model_config = ConfigDict(frozen=True)

    name: str
    path: str
    invocation_tokens: list[int]
    activation_offset: int = 0
    invocation_string: str | None = None
    target_modules: list[str]
    rank: int
    base_model: str | None = None

    @property
    def adapter_tokens(self) -> list[int]:
        """The tokens the adapter is active on: PEFT's ``alora_invocation_tokens``."""
        return self.invocation_tokens[self.activation_offset :]


class AdapterFiles(BaseModel):
    """A validated adapter directory: its config, weights and recovered invocation tokens."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    info: AdapterInfo
    config: dict[str, Any]
    state_dict: dict[str, torch.Tensor]


# ---------------------------------------------------------------------------------- config
def read_adapter_config(path: str | Path, *, name: str | None = None) -> dict[str, Any]:
    """``adapter_config.json`` of the adapter directory ``path``: the one place it is read.

    Typed errors name the adapter (``name``, else the directory) and say what is wrong.
    """
    path = Path(path)
    who = f"adapter '{name}'" if name else f"adapter {path}"
    file = path / ADAPTER_CONFIG
    try:
        config = json.loads(file.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise AdapterError(
            f"{who}: no {ADAPTER_CONFIG} in {path} (expected a PEFT adapter directory written by save_pretrained)"
        ) from exc
    except OSError as exc:
        raise AdapterError(f"{who}: {file} cannot be read: {exc}") from exc
    except json.JSONDecodeError as exc:
        raise AdapterError(f"{who}: {file} is not valid JSON ({exc})") from exc
    if not isinstance(config, dict):
        raise AdapterError(f"{who}: {file} must hold a JSON object")
    return config


def is_activated(config: dict[str, Any]) -> bool:
    """An aLoRA (either invocation record present), not a plain LoRA."""
    return bool(config.get("alora_invocation_tokens") or config.get("invocation_string"))


class Activation(BaseModel):
    """Where an adapter was trained to switch on, for both config formats.

    ``tokens`` are appended after the conversation to call the adapter; the first ``offset`` of
    them still run with the base weights. PEFT configs (``alora_invocation_tokens`` only) switch
    on at the first of their tokens (offset 0). Configs written by the older ``alora`` package
    record only ``invocation_string``: that package appended the whole string and applied the
    adapter to all of its tokens but the first (``alora_offsets = [len(tokens) - 1]`` in its
    ``tokenize_alora``), so those adapters switch on one token after the first token of the
    tokenized string (offset 1). IBM's converted configs record exactly those later tokens
    (Granite 3.2 certainty: ``[6989, 24933, 49153]`` for ``<|start_of_role|>certainty<|end_of_role|>``,
    without ``<|start_of_role|>``), and llama.cpp's converter drops the first token for the same
    reason. A config with both keys is accepted when they agree under that rule.
    """

    model_config = ConfigDict(frozen=True)

    tokens: list[int]
    offset: int = 0
    source: Literal["alora_invocation_tokens", "invocation_string", "both"]
    invocation_string: str | None = None

    @property
    def adapter_tokens(self) -> list[int]:
        return self.tokens[self.offset :]


def activation(
    config: dict[str, Any], tokenizer, *, name: str, path: str | Path | None = None
) -> Activation | None:
    """The :class:`Activation` of an adapter config; ``None`` for a plain LoRA.

    Raises :class:`InvocationMismatchError` when the two records disagree and
    :class:`InvocationNotFoundError` when the invocation cannot be placed with this tokenizer.
    """
    where = f" ({path})" if path else ""
    tokens = config.get("alora_invocation_tokens")
    string = config.get("invocation_string")
    if not tokens and not string:
        return None
    if tokens is not None and (
        not isinstance(tokens, list)
        or not all(isinstance(t, int) and not isinstance(t, bool) for t in tokens)
    ):
        raise InvocationNotFoundError(
            f"adapter '{name}'{where}: alora_invocation_tokens must be a list of token ids, got {tokens!r}"
        )
    if string is not None and not isinstance(string, str):
        raise InvocationNotFoundError(f"adapter '{name}'{where}: invocation_string must be a string")
    vocab = len(tokenizer)
    if tokens and any(t < 0 or t >= vocab for t in tokens):
        raise InvocationNotFoundError(
            f"adapter '{name}'{where}: alora_invocation_tokens {tokens} are outside this tokenizer's "
            f"vocabulary ({vocab} tokens): the adapter belongs to another tokenizer"
        )
    if not string:
        return Activation(tokens=[int(t) for t in tokens or []], source="alora_invocation_tokens")
    full = [int(t) for t in tokenizer(string, add_special_tokens=False)["input_ids"]]
    if len(full) < 2:
        raise InvocationNotFoundError(
            f"adapter '{name}'{where}: invocation_string {string!r} tokenizes to {full}: an old-format "
            "adapter switches on after the first token of its string, so it needs at least two tokens "
            "(is this the tokenizer of the adapter's base model?)"
        )
    if not tokens:
        return Activation(tokens=full, offset=1, source="invocation_string", invocation_string=string)
    if list(tokens) == full[1:]:
        return Activation(tokens=full, offset=1, source="both", invocation_string=string)
    raise InvocationMismatchError(
        f"adapter '{name}'{where}: adapter_config.json records invocation_string {string!r} "
        f"(tokens {full}) and alora_invocation_tokens {list(tokens)}; an adapter trained from that "
        f"string switches on at {full[1:]} (all its tokens but the first), so the two records name "
        "different activation points. Remove the one that is wrong."
    )


def read_adapter(name: str, path: str | Path, tokenizer, *, model_id: str | None) -> AdapterFiles:
    """Read ``path`` and check it is a usable aLoRA adapter (format and recorded base model)."""
    path = Path(path)
    config = read_adapter_config(path, name=name)
    weights = next((path / f for f in WEIGHT_FILES if (path / f).is_file()), None)
    if weights is None:
        raise AdapterError(
            f"adapter '{name}': no {' or '.join(WEIGHT_FILES)} in {path}; "
            "the directory is incomplete (re-copy or re-train the adapter)"
        )
    if config.get("peft_type", "LORA") != "LORA":
        raise NotAnALoRAError(
            f"adapter '{name}' is a {config.get('peft_type')} adapter; "
            "only (activated) LoRA adapters can be invoked"
        )
    act = activation(config, tokenizer, name=name, path=path)
    if act is None:
        raise NotAnALoRAError(
            f"adapter '{name}' at {path} is a plain LoRA (no alora_invocation_tokens or "
            "invocation_string in adapter_config.json): it would silently run as a full LoRA. "
            "Retrain it as an aLoRA (alora-flows train, without --lora)."
        )
    _check_base_model(name, config.get("base_model_name_or_path"), model_id)
    state = _load_weights(weights)
    target_modules = config.get("target_modules") or []
    if isinstance(target_modules, str):
        target_modules = [target_modules]
    info = AdapterInfo(
        name=name,
        path=str(path),
        invocation_tokens=act.tokens,
        activation_offset=act.offset,
        invocation_string=act.invocation_string or tokenizer.decode(act.tokens),
        target_modules=sorted(target_modules),
        rank=int(config.get("r", 8)),
        base_model=config.get("base_model_name_or_path"),
    )
    return AdapterFiles(info=info, config=config, state_dict=state)


def _check_base_model(name: str, recorded: str | None, model_id: str | None) -> None:
    if not recorded:
        warnings.warn(
            f"adapter '{name}' does not record its base model; assuming it fits "
            f"'{model_id}'. Check its outputs.",
            stacklevel=3,
        )
        return
    if model_id and model_key(recorded) != model_key(model_id):
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
    kwargs["alora_invocation_tokens"] = files.info.adapter_tokens
    kwargs["inference_mode"] = True
    return LoraConfig(**kwargs)
