"""The local backend: one base causal LM plus any number of named aLoRA adapters (PEFT).

Thread safety: one ``RLock`` per backend. Every forward pass, and every switch of the active
adapter, happens under it, so several sessions (threads) can share one backend and each call sees
a consistent adapter state. Here calls are serialised; :class:`~alora_flows.core.batching.BatchedBackend`
wraps a backend so that the forwards concurrent sessions have ready run as one (each session keeps
its own cache).

Why base steps pay nothing for loaded adapters: PEFT's ``disable_adapter()`` context walks every
module of the model twice per forward (status, then disable/enable), which made a base decode step
1.6-1.9x slower with the four shipped adapters loaded (``benchmarks/base_generate_overhead.py``).
Instead, the LoRA layers' own switch is set only when the wanted state changes
(:meth:`Backend.select_adapter`): a base generation turns the adapters off once, and every LoRA
layer then passes straight to the layer it wraps; base forwards also call the wrapped transformers
model directly, skipping PEFT's per-call hook set-up.

Why adapter calls skip PEFT's forward too: ``PeftModel(..., alora_offsets=[n])`` registers and
removes a pre-hook on every LoRA layer on every forward, and each layer then masks and gathers
positions. Adapter forwards now also run with the LoRA layers off and call the transformers model
directly; hooks installed once (:class:`~alora_flows.core.lora_deltas.ALoRADeltas`) add the
adapter's delta on the last ``adapted`` positions: PEFT's aLoRA arithmetic without its per-call
set-up (``benchmarks/invoke_breakdown.py``). Adapters that are not plain aLoRA ``Linear`` layers
keep PEFT's path.

The KV cache (:meth:`Backend.new_cache`) is exact by default; ``kv_dtype="float16"`` stores keys
and values in half precision (``core.kvcache``), an option with a measured accuracy cost.
"""

from __future__ import annotations

import functools
import inspect
import threading
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from alora_flows.core import models
from alora_flows.core.adapters import AdapterInfo, check_fits, lora_config, read_adapter
from alora_flows.core.decoding import stop_token_ids
from alora_flows.core.kvcache import KVDtype, check_kv_dtype, new_cache, use_half_kv
from alora_flows.core.lora_deltas import ALoRADeltas, supported
from alora_flows.errors import AdapterError, AdapterMismatchError


def cache_kwarg(model) -> str:
    """The forward keyword for the KV cache: transformers renamed ``past_key_values`` to
    ``cache`` during 5.x (the old name goes away in 5.40); use what this version takes."""
    params = inspect.signature(type(model).forward).parameters
    return "cache" if "cache" in params else "past_key_values"


class Backend:
    """A base model and its aLoRA adapters, with one forward primitive used by sessions."""

    def __init__(
        self,
        model,
        tokenizer,
        *,
        model_id: str,
        model_key: str | None = None,
        kv_dtype: KVDtype | str = "auto",
    ) -> None:
        self.base_model = model.eval()
        self.model = self.base_model  # becomes a PeftModel when the first adapter is added
        self.tokenizer = tokenizer
        self.model_id = model_id
        self.model_key = model_key or models.model_key(model_id)
        self.adapters: dict[str, AdapterInfo] = {}
        self.lock = threading.RLock()
        self.device = next(model.parameters()).device
        self.dtype = next(model.parameters()).dtype
        self.max_context = int(getattr(model.config, "max_position_embeddings", 0) or 1 << 30)
        self._lora_layers: list[Any] = []  # PEFT's LoRA layers, switched by select_adapter
        self._cache_kwarg = cache_kwarg(model)
        #: How sessions on this backend store keys and values (``core.kvcache``).
        self.kv_dtype: KVDtype = check_kv_dtype(kv_dtype)
        #: Append to the cache in place (``core.kvcache.arena_layer_class``) rather than by
        #: concatenation; both exact (benchmarks compare them).
        self.kv_in_place = True
        if self.kv_dtype == "float16":
            use_half_kv(self.base_model)
        self._deltas = ALoRADeltas()
        self._fast: dict[str, bool] = {}  # adapter -> runs through self._deltas
        for param in self.base_model.parameters():
            param.requires_grad_(False)

    # ------------------------------------------------------------------ construction
    @classmethod
    def load(
        cls,
        model: str = "embedded",
        *,
        device: str | None = None,
        dtype: torch.dtype | None = None,
        progress: bool = True,
        kv_dtype: KVDtype | str = "auto",
    ) -> Backend:
        """Load ``model`` ("embedded", a local HF directory, or a hub id); ``kv_dtype`` as in
        :mod:`~alora_flows.core.kvcache`."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        resolved = models.resolve_model(model, progress=progress)
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        dtype = dtype or (torch.bfloat16 if device.startswith("cuda") else torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(resolved.path)
        lm = AutoModelForCausalLM.from_pretrained(resolved.path, dtype=dtype).to(device)  # type: ignore[arg-type]
        return cls(lm, tokenizer, model_id=resolved.model_id, model_key=resolved.key, kv_dtype=kv_dtype)

    def add_adapter(self, name: str, path: str | Path) -> AdapterInfo:
        """Load an aLoRA adapter under ``name``. Checked fully before the model is touched."""
        if name in self.adapters:
            raise AdapterError(f"an adapter named '{name}' is already loaded")
        if not name.isidentifier() or name in "lora_":
            # PEFT builds parameter names from it; a substring of its 'lora_' prefix corrupts loading.
            raise AdapterError(
                f"adapter name '{name}' is not usable: use a Python identifier "
                "that is not part of 'lora_' (e.g. 'certainty')"
            )
        files = read_adapter(name, path, self.tokenizer, model_id=self.model_id)
        check_fits(name, files.state_dict, self.base_model)
        config = lora_config(files)
        with self.lock:
            self._inject(name, config, files.state_dict)
            self.adapters[name] = files.info
        return files.info

    def _inject(self, name: str, config, state: dict[str, torch.Tensor]) -> None:
        from peft import PeftModel, get_peft_model, set_peft_model_state_dict

        state = {k: v.to(device=self.device, dtype=self.dtype) for k, v in state.items()}
        with warnings.catch_warnings():
            # PEFT warns about base-model names and re-wrapping; read_adapter checked both already.
            warnings.simplefilter("ignore")
            if isinstance(self.model, PeftModel):
                self.model.add_adapter(name, config)
            else:
                self.model = get_peft_model(self.base_model, config, adapter_name=name)
        result: Any = set_peft_model_state_dict(self.model, state, adapter_name=name)
        missing = [k for k in result.missing_keys if f".{name}." in k and "lora_" in k]
        if result.unexpected_keys or missing:
            self.model.delete_adapter(name)
            raise AdapterMismatchError(
                f"adapter '{name}' does not fit the base model: "
                f"{len(missing)} LoRA weights missing, {len(result.unexpected_keys)} unexpected "
                f"(e.g. {(missing + list(result.unexpected_keys))[:2]})"
            )
        self.model.eval()
        from peft.tuners.lora import LoraLayer

        self._lora_layers = [m for m in self.base_model.modules() if isinstance(m, LoraLayer)]
        self._deltas.install(self._lora_layers)
        self._fast = {a: supported(self._lora_layers, a) for a in [*self.adapters, name]}
        self.select_adapter(None)

    def select_adapter(self, adapter: str | None) -> None:
        """Make the LoRA layers apply ``adapter`` (``None``: none, the base model); a no-op when
        they already do, so consecutive forwards in one state pay nothing for the switch.

        The state is read off a LoRA layer rather than remembered, so code that drives
        ``backend.model`` through PEFT's own API (``set_adapter``, ``disable_adapter()``) cannot
        leave it stale. Such code must hold :attr:`lock` and call this before running the model.
        """
        if not self._lora_layers:
            return
        with self.lock:
            probe = self._lora_layers[0]
            if adapter is None:
                if not probe.disable_adapters:
                    for layer in self._lora_layers:
                        layer.enable_adapters(False)
            elif probe.disable_adapters or probe.active_adapters != [adapter]:
                self.model.set_adapter(adapter)
                for layer in self._lora_layers:
                    layer.enable_adapters(True)

    # ------------------------------------------------------------------ compute
    def forward(
        self, input_ids: list[int], cache, *, adapter: str | None = None, adapted: int = 0
    ) -> torch.Tensor:
        """Run ``input_ids`` on top of ``cache`` (updated in place); return last-position logits.

        ``adapter=None`` runs the base model (adapters disabled). With an adapter, its weights are
        applied to the last ``adapted`` positions of ``input_ids`` only (the aLoRA offset, passed
        explicitly so PEFT never searches for it and never silently falls back to the base model).
        """
        ids = torch.tensor([input_ids], dtype=torch.long, device=self.device)
        with self.lock, torch.inference_mode():
            if adapter is None:
                self.select_adapter(None)
                # The transformers model itself (PEFT injected its layers there): no PEFT wrapper.
                out = self.base_model(
                    input_ids=ids, use_cache=True, logits_to_keep=1, **{self._cache_kwarg: cache}
                )
            else:
                self.check_forward(input_ids, adapter, adapted)
                if self._fast.get(adapter):
                    # LoRA layers off, the adapter's delta on the last `adapted` positions added by
                    # the hooks installed once (core.lora_deltas): no PEFT set-up per forward.
                    self.select_adapter(None)
                    with self._deltas.active([(adapter, -adapted, None)]):
                        out = self.base_model(
                            input_ids=ids, use_cache=True, logits_to_keep=1, **{self._cache_kwarg: cache}
                        )
                else:
                    self.select_adapter(adapter)
                    out = self.model(
                        input_ids=ids,
                        use_cache=True,
                        logits_to_keep=1,
                        alora_offsets=[adapted],
                        **{self._cache_kwarg: cache},
                    )
        return out.logits[0, -1]

    def check_forward(self, input_ids: Sequence[int], adapter: str | None, adapted: int) -> None:
        """What :meth:`forward` refuses: an adapter that is not loaded, or one active on no
        position or on more positions than the call has. Callable apart, so a batched caller
        (``core.batching``) fails the one bad request in its own thread, not the batch."""
        if adapter is None:
            return
        if adapter not in self.adapters:
            raise AdapterError(
                f"no adapter named '{adapter}' is loaded (loaded: {sorted(self.adapters) or 'none'})"
            )
        if not 0 < adapted <= len(input_ids):
            raise AdapterError(
                f"adapter '{adapter}' must be active on 1..{len(input_ids)} positions of this call, got {adapted}"
            )

    def new_cache(self):
        """An empty KV cache for a session: exact, or half precision (``kv_dtype``)."""
        return new_cache(self.kv_dtype, in_place=self.kv_in_place)

    @functools.cached_property
    def stop_token_ids(self) -> frozenset[int]:
        """End-of-turn tokens (:func:`~alora_flows.core.decoding.stop_token_ids`)."""
        return stop_token_ids(self.tokenizer, getattr(self.base_model, "generation_config", None))
