"""KV caches for a :class:`~alora_flows.core.backend.Backend`: appended in place, and exact
(``kv_dtype="auto"``, the default: the model's dtype) or half precision (``kv_dtype="float16"``,
an option with a measured accuracy cost).

Why in place: transformers' ``DynamicLayer.update`` concatenates, i.e. copies a layer's whole
cache on every forward; for an intrinsic call on a long conversation that copy is a large share
of the call (``benchmarks/invoke_breakdown.py``). :func:`arena_layer_class` appends into spare
capacity instead, with copy-on-write between the layers that share it, so a session's rollback
snapshots and forks stay free and exact.

Why a half-precision option: on a CPU such a call is bound by memory traffic, and the KV cache is
most of what grows with the conversation. Storing keys and values as float16 halves those bytes,
as llama.cpp's default f16 KV cache does (measured on the development CPU with torch's SDPA: no
consistent speed-up over the exact in-place cache, ``benchmarks/results/fastcall_notes.md``; the
memory is halved). The cache's ``update`` rounds new keys and values to
float16 before storing them; attention then runs on them through the ``sdpa_kv`` attention
function, which casts the query to the cache's dtype, calls transformers' SDPA path and casts the
output back (torch's CPU kernel accumulates half inputs in float32). Every position, prompt and
cached, attends over the rounded keys and values, so a prefill and a cached call see the same
numbers. With an exact cache the model keeps transformers' ``sdpa`` attention untouched.
"""

from __future__ import annotations

import functools
from typing import Any, Literal

import torch

from alora_flows.errors import AloraFlowsError

KVDtype = Literal["auto", "float16"]
#: ``kv_dtype`` values: ``"auto"`` (the default) stores keys and values in the model's own dtype,
#: float32 on a CPU: exact; ``"float16"`` stores them in half precision.
KV_DTYPES: tuple[str, ...] = ("auto", "float16")
ATTENTION = "sdpa_kv"


def check_kv_dtype(kv_dtype: str) -> KVDtype:
    if kv_dtype not in KV_DTYPES:
        raise AloraFlowsError(f"kv_dtype must be one of {', '.join(KV_DTYPES)}, got {kv_dtype!r}")
    return kv_dtype  # type: ignore[return-value]


def sdpa_kv_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: torch.Tensor | None,
    **kwargs: Any,
) -> tuple[torch.Tensor, Any]:
    """transformers' SDPA attention on keys/values of another dtype than the query (a
    half-precision cache): the query is cast to theirs, the output back to the query's."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    if key.dtype == query.dtype:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    if attention_mask is not None and attention_mask.dtype.is_floating_point:
        attention_mask = attention_mask.to(key.dtype)
    out, weights = sdpa_attention_forward(module, query.to(key.dtype), key, value, attention_mask, **kwargs)
    return out.to(query.dtype), weights


def register_attention() -> None:
    """Make ``sdpa_kv`` a transformers attention implementation (masks as for ``sdpa``)."""
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface
    from transformers.modeling_utils import ALL_ATTENTION_FUNCTIONS, AttentionInterface

    if ATTENTION not in ALL_ATTENTION_FUNCTIONS:
        AttentionInterface.register(ATTENTION, sdpa_kv_attention)
    if ATTENTION not in ALL_MASK_ATTENTION_FUNCTIONS:
        AttentionMaskInterface.register(ATTENTION, ALL_MASK_ATTENTION_FUNCTIONS["sdpa"])


def use_half_kv(model: Any) -> None:
    """Switch ``model`` (a transformers model using SDPA) to the ``sdpa_kv`` attention."""
    config = model.config
    current = getattr(config, "_attn_implementation", None)
    if current == ATTENTION:
        return
    if current != "sdpa":
        raise AloraFlowsError(
            f"kv_dtype='float16' needs the model's SDPA attention, but it uses {current!r}: "
            "load the model with attn_implementation='sdpa' or keep kv_dtype='auto'"
        )
    register_attention()
    for sub in model.modules():  # the text config may be a nested config of its own
        cfg = getattr(sub, "config", None)
        if cfg is not None and getattr(cfg, "_attn_implementation", None) == "sdpa":
            cfg._attn_implementation = ATTENTION


def cache_class(half: bool, in_place: bool) -> type:
    """The cache class for a storage dtype and append strategy (built once each, lazily)."""
    key = (half, in_place)
    if key not in _CLASSES:
        from transformers import DynamicCache
        from transformers.cache_utils import DynamicLayer

        layer = arena_layer_class() if in_place else DynamicLayer

        class KVCache(DynamicCache):
            """A ``DynamicCache`` whose layers are ``layer`` and that stores keys and values as
            ``storage_dtype`` (``None``: as the model computes them)."""

            storage_dtype = torch.float16 if half else None

            def __init__(self) -> None:
                super().__init__()
                self.layer_class_to_replicate = layer

            def update(
                self,
                key_states: torch.Tensor,
                value_states: torch.Tensor,
                layer_idx: int,
                *args: Any,
                **kwargs: Any,
            ) -> tuple[torch.Tensor, torch.Tensor]:
                if self.storage_dtype is not None:
                    key_states = key_states.to(self.storage_dtype)
                    value_states = value_states.to(self.storage_dtype)
                return super().update(key_states, value_states, layer_idx, *args, **kwargs)

        KVCache.__name__ = KVCache.__qualname__ = (
            ("Half" if half else "") + ("Arena" if in_place else "") + "KVCache"
        )
        _CLASSES[key] = KVCache
    return _CLASSES[key]


_CLASSES: dict[tuple[bool, bool], type] = {}


def new_cache(kv_dtype: KVDtype = "auto", *, in_place: bool = True) -> Any:
    """An empty cache: exact or half precision (``kv_dtype``), appending in place into spare
    capacity (``in_place``, :func:`arena_layer_class`) or by concatenation (transformers'
    ``DynamicLayer``)."""
    from transformers import DynamicCache

    if kv_dtype == "auto" and not in_place:
        return DynamicCache()
    return cache_class(kv_dtype == "float16", in_place)()


# ----------------------------------------------------------------------------- in-place appends
@functools.cache
def arena_layer_class() -> type:
    """``ArenaLayer``: a ``DynamicLayer`` that appends into spare capacity instead of
    concatenating (defined lazily: transformers is imported on first use)."""
    import threading
    import weakref

    from transformers.cache_utils import DynamicLayer

    class _Arena:
        """Preallocated keys/values ``(batch, heads, capacity, dim)`` shared by the layers (a
        session's, its snapshots', its forks') that hold a prefix of it. The lock guards the set
        of holders: sessions of other threads may copy a layer (a fork) while one writes."""

        __slots__ = ("keys", "values", "holders", "lock", "__weakref__")

        def __init__(self, keys: torch.Tensor, values: torch.Tensor) -> None:
            self.keys, self.values = keys, values
            self.holders: weakref.WeakSet[Any] = weakref.WeakSet()
            self.lock = threading.Lock()

        def add(self, layer: Any) -> None:
            with self.lock:
                self.holders.add(layer)

        def discard(self, layer: Any) -> None:
            with self.lock:
                self.holders.discard(layer)

        def others_within(self, layer: Any, at: int) -> bool:
            """Whether every other live holder holds at most ``at`` positions."""
            with self.lock:
                return all(h is layer or h.length <= at for h in list(self.holders))

    class ArenaLayer(DynamicLayer):
        """Appends new keys/values into its arena's spare capacity, in place, and returns views.

        Why: ``DynamicLayer.update`` concatenates, i.e. copies the whole cache of the layer on
        every forward, which at 8k tokens is a large share of an intrinsic call
        (``benchmarks/invoke_breakdown.py``).

        Why snapshots and forks stay free and exact: a copy of a layer (``copy.copy`` /
        ``copy.deepcopy``, what ``Session`` takes for its rollback snapshot and its forks) shares
        the arena and holds its own length. A layer writes at position ``n`` in place only when no
        other live layer of the arena holds more than ``n`` positions, i.e. nobody can see what it
        overwrites; otherwise it moves to a new arena first (copy-on-write). Positions below every
        holder's length are never written. A snapshot restored after an intrinsic call finds the
        call's layer gone (garbage-collected) and appends in place again.
        """

        #: Spare positions allocated on a move: at least this many, or an eighth of the length.
        SPARE = 256

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            self.arena: _Arena | None = None
            self.length = 0

        def _views(self) -> None:
            assert self.arena is not None
            self.keys = self.arena.keys[..., : self.length, :]
            self.values = self.arena.values[..., : self.length, :]

        def _writable(self, at: int, needed: int) -> bool:
            arena = self.arena
            if arena is None or needed > arena.keys.shape[-2]:
                return False
            return arena.others_within(self, at)

        def _move(self, needed: int, key_states: torch.Tensor, value_states: torch.Tensor) -> None:
            """A new arena of capacity ``needed`` + spare holding this layer's positions."""
            capacity = needed + max(self.SPARE, needed // 8)
            keys = key_states.new_empty((*key_states.shape[:-2], capacity, key_states.shape[-1]))
            values = value_states.new_empty((*value_states.shape[:-2], capacity, value_states.shape[-1]))
            if self.length and self.keys is not None and self.values is not None:
                keys[..., : self.length, :].copy_(self.keys)
                values[..., : self.length, :].copy_(self.values)
            if self.arena is not None:
                self.arena.discard(self)
            self.arena = _Arena(keys, values)
            self.arena.add(self)

        def update(
            self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any, **kwargs: Any
        ) -> tuple[torch.Tensor, torch.Tensor]:
            if not self.is_initialized:
                self.lazy_initialization(key_states, value_states)
            at, new = self.length, key_states.shape[-2]
            if not self._writable(at, at + new):
                self._move(at + new, key_states, value_states)
            arena = self.arena
            assert arena is not None
            arena.keys[..., at : at + new, :].copy_(key_states)
            arena.values[..., at : at + new, :].copy_(value_states)
            self.length = at + new
            keys, values = arena.keys[..., : self.length, :], arena.values[..., : self.length, :]
            self.keys, self.values = keys, values
            return keys, values

        def get_seq_length(self) -> int:
            return self.length

        def crop(self, tokens_to_remove: int) -> None:
            if tokens_to_remove > 0:
                raise ValueError("crop takes a negative number of tokens to remove")
            if tokens_to_remove == 0 or not self.is_initialized:
                return
            self.length = max(0, self.length + tokens_to_remove)
            if self.arena is None:  # detached (batch reshaping): plain tensors
                super().crop(tokens_to_remove)
            else:
                self._views()

        def reset(self) -> None:
            if self.arena is not None:
                self.arena.discard(self)
            self.arena, self.length = None, 0
            super().reset()

        def _detach(self) -> None:
            """Leave the arena for plain tensors (batch reshaping: rare, never on our paths)."""
            if self.arena is not None and self.keys is not None and self.values is not None:
                self.arena.discard(self)
                self.keys, self.values = self.keys.clone(), self.values.clone()
                self.arena = None

        def batch_repeat_interleave(self, repeats: int) -> None:
            self._detach()
            super().batch_repeat_interleave(repeats)

        def batch_select_indices(self, indices: torch.Tensor) -> None:
            self._detach()
            super().batch_select_indices(indices)

        def reorder_cache(self, beam_idx: torch.LongTensor) -> None:
            self._detach()
            super().reorder_cache(beam_idx)

        def __copy__(self) -> ArenaLayer:
            twin = type(self).__new__(type(self))
            twin.__dict__.update(self.__dict__)
            if twin.arena is not None:
                twin.arena.add(twin)
            return twin

        def __deepcopy__(self, memo: dict) -> ArenaLayer:
            return self.__copy__()

    return ArenaLayer
