"""A single aLoRA call without PEFT's per-forward set-up: the adapter's delta on the last positions.

Why: ``PeftModel(..., alora_offsets=[n])`` walks every module of the model and registers (then
removes) a forward pre-hook on each LoRA layer on *every* forward, only to hand each layer the
number ``n``; each LoRA layer then builds a position mask (``torch.tensor``, ``arange``, a
compare) and gathers and scatters the masked rows. For a call of a few tokens on a cached
conversation that is pure overhead on top of the matrix products (``benchmarks/invoke_breakdown.py``
measures it).

Here the LoRA layers stay switched off in PEFT (they pass straight to the layer they wrap, as
for a base forward), and one forward hook per LoRA layer, installed once, adds
``lora_B(lora_A(x)) * scaling`` to the output positions ``[start:end]`` of each span of the
current :meth:`ALoRADeltas.active` plan, nothing when no plan is set. A single call's plan is
one span, its last ``n`` positions; packed intrinsic calls (``core.parallel``) and batched
forwards of many sessions (``core.batching``) give one span per row, each with its own adapter:
per-token adapters, which PEFT's per-row ``adapter_names`` cannot express. For the aLoRA span of a
call (its last ``n`` positions) that is exactly the arithmetic of PEFT's ``ALoraLinearVariant``
(same products, same order, eval mode so no dropout): the tests check the logits against PEFT's
path to 1e-5.

Only plain aLoRA ``Linear`` layers qualify (:func:`supported`); anything else (DoRA, other layer
types) keeps PEFT's path in :class:`~alora_flows.core.backend.Backend`.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F


def supported(layers: list[Any], adapter: str) -> bool:
    """Whether every LoRA layer holding ``adapter`` is a plain aLoRA ``Linear`` (the arithmetic
    the hook reproduces)."""
    from peft.tuners.lora.layer import Linear
    from peft.tuners.lora.variants import ALoraLinearVariant

    found = False
    for layer in layers:
        if adapter not in getattr(layer, "lora_A", {}):
            continue
        found = True
        if type(layer) is not Linear or not isinstance(layer.lora_variant.get(adapter), ALoraLinearVariant):
            return False
        if layer.use_dora.get(adapter, False) or layer.merged:
            return False
    return found


#: ``(adapter, start, end)``: positions ``[start:end]`` of a forward's tokens (negative ``start``
#: and ``end=None`` count from the end: ``(name, -n, None)`` is the last ``n``).
Span = tuple[str, int, int | None]


class ALoRADeltas:
    """Forward hooks on PEFT's LoRA layers that add adapters' deltas on spans of positions."""

    def __init__(self) -> None:
        self.plan: list[Span] = []
        self._hooked: set[int] = set()
        self._handles: list[Any] = []

    def install(self, layers: list[Any]) -> None:
        """Hook every layer of ``layers`` not hooked yet (adapters added later bring none: PEFT
        reuses the same LoRA layer objects for every adapter of a module)."""
        for layer in layers:
            if id(layer) not in self._hooked:
                self._hooked.add(id(layer))
                self._handles.append(layer.register_forward_hook(self._hook))

    @contextmanager
    def active(self, plan: Sequence[Span]) -> Iterator[None]:
        """Apply each span's adapter on its positions in every forward inside the block."""
        self.plan = list(plan)
        try:
            yield
        finally:
            self.plan = []

    def _hook(self, module: Any, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
        if not self.plan:
            return None
        for adapter, start, end in self.plan:
            if adapter not in module.lora_A:
                continue
            lora_a = module.lora_A[adapter]
            lora_b = module.lora_B[adapter]
            x = args[0][..., start:end, :].to(lora_a.weight.dtype)
            delta = F.linear(F.linear(x, lora_a.weight, lora_a.bias), lora_b.weight, lora_b.bias)
            output[..., start:end, :] += (delta * module.scaling[adapter]).to(output.dtype)
        return output
