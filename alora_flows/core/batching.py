"""Continuous batching: the forwards of many sessions on one backend, run as one forward per step.

Why: a decode step feeds one token, and on a CPU its cost is reading every weight of the model
(the embedded model is ~0.5 GB of float32 weights per step). Sessions that share a backend in
threads take turns under its lock, so eight sessions decoding read the weights eight times per
step. Batched, the weights are read once for all eight tokens.

How: each session's thread hands its forward (tokens, its own KV cache, adapter, adapted count) to
a :class:`ForwardScheduler` and waits. One worker thread takes every request that is ready and
runs them as **one** forward (:func:`forward_batch`):

- the requests' new tokens are packed into one row, each with its own position ids, so the linear
  layers (QKV, MLP, LM head: nearly all of the work) run once over every request's tokens;
- attention runs per request, against that request's own cache: the model sees a routing cache
  (:class:`_RaggedCache`) that appends each request's new keys and values to its session's cache
  (the same ``Cache.update`` a lone forward makes), and an attention function registered with
  transformers (:data:`ATTENTION`) that calls the model's own attention implementation once per
  request with the mask a lone forward would use. Nobody's KV is copied into a batch tensor or
  padded: a padded batch would copy every session's cache per step;
- aLoRA adapters apply per token (:class:`~alora_flows.core.lora_deltas.ALoRADeltas`, the mechanism of
  packed intrinsic calls), so base-model rows and rows of any adapters mix in one forward.

A packed forward that fails is cut back and its requests rerun one by one
(:func:`run_batch`), so one session's fault fails that session only.

Sessions use it transparently: :class:`BatchedBackend` is the same backend (same model, adapters
and lock) whose ``forward`` goes through the scheduler; a :class:`~alora_flows.core.session.Session`
built on it needs nothing else. The results equal the lone forwards (tests: logits within 1e-4,
same greedy tokens); ``benchmarks/batching.py`` measures the throughput.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from alora_flows.core.backend import Backend
from alora_flows.errors import AloraFlowsError

#: The attention implementation a batched forward switches the model to, for its duration.
ATTENTION = "alora_ragged"
#: Attention implementations whose per-request masks :func:`forward_batch` knows how to build;
#: a model using another one (e.g. flash attention on a GPU) runs its requests one by one.
SUPPORTED_ATTENTION = ("sdpa", "eager")


@dataclass
class ForwardRequest:
    """One session's forward: what :meth:`Backend.forward` takes."""

    input_ids: list[int]
    cache: Any
    adapter: str | None = None
    adapted: int = 0
    thread: threading.Thread | None = None
    done: threading.Event = field(default_factory=threading.Event)
    logits: torch.Tensor | None = None
    error: BaseException | None = None


def check_request(backend: Backend, input_ids: Sequence[int], adapter: str | None, adapted: int) -> None:
    """:meth:`Backend.check_forward`, plus a non-empty request, in the caller's thread (one bad
    request must fail its own session, not the batch it would have joined)."""
    if not input_ids:
        raise AloraFlowsError("a forward needs at least one token")
    backend.check_forward(input_ids, adapter, adapted)


# ---------------------------------------------------------------------- the batched forward
class _RaggedCache:
    """The cache the model sees during a batched forward.

    ``update`` (called by every attention layer with the packed row's new keys and values) appends
    each request's slice to that request's own cache and keeps the full keys and values it returns
    for :func:`_ragged_attention`; the packed tensors go back to the layer unchanged.
    """

    def __init__(
        self, segments: list[tuple[int, int, int, Any]], inner: Callable | None, masks: list[Any]
    ) -> None:
        self.segments = segments  # (first token in the row, tokens, cached before, cache) per request
        self.inner = inner  # the attention function the model uses otherwise (None: its eager one)
        self.masks = masks
        self.kv: list[tuple[torch.Tensor, torch.Tensor]] = []

    def update(
        self, key_states: torch.Tensor, value_states: torch.Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[torch.Tensor, torch.Tensor]:
        self.kv = [
            cache.update(key_states[:, :, s : s + n], value_states[:, :, s : s + n], layer_idx)
            for s, n, _, cache in self.segments
        ]
        return key_states, value_states


def _ragged_attention(
    module: Any,
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    attention_mask: Any,
    **kwargs: Any,
) -> tuple[torch.Tensor, None]:
    """Attention of each request's queries over its own cache only, by the model's own function."""
    ragged = kwargs.pop("alora_ragged", None)
    if not isinstance(ragged, _RaggedCache):
        raise AloraFlowsError(f"the '{ATTENTION}' attention runs only inside a batched forward")
    inner = ragged.inner
    if inner is None:  # eager attention is defined by each model's own module
        inner = ragged.inner = vars(sys.modules[type(module).__module__])["eager_attention_forward"]
    outputs = []
    for (start, n, _, _), (keys, values), mask in zip(ragged.segments, ragged.kv, ragged.masks):
        out, _ = inner(module, query[:, :, start : start + n], keys, values, mask, **kwargs)
        outputs.append(out)  # (1, n, heads, head_dim): transformers' attention output layout
    return torch.cat(outputs, dim=1), None


_registered = False


def _register_attention() -> None:
    global _registered
    if not _registered:
        from transformers import AttentionInterface

        AttentionInterface.register(ATTENTION, _ragged_attention)
        _registered = True


def _mask(kind: str, n: int, past: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor | None:
    """The mask a lone forward of ``n`` tokens after ``past`` cached ones uses with ``kind``
    attention: none for one token; for SDPA none without a past (it runs causally), else a
    boolean mask; eager attention adds a float mask."""
    if n == 1 or (kind == "sdpa" and past == 0):
        return None
    visible = torch.arange(past + n, device=device)[None, :] <= torch.arange(n, device=device)[:, None] + past
    if kind == "sdpa":
        return visible.view(1, 1, n, past + n)
    return torch.zeros((1, 1, n, past + n), dtype=dtype, device=device).masked_fill(
        ~visible, torch.finfo(dtype).min
    )


def batchable(backend: Backend) -> bool:
    """Whether :func:`forward_batch` can pack this backend's model (its attention is one it knows)."""
    return getattr(backend.base_model.config, "_attn_implementation", None) in SUPPORTED_ATTENTION


def forward_batch(backend: Backend, requests: Sequence[ForwardRequest]) -> list[torch.Tensor]:
    """Run ``requests`` (each on its own cache, which it updates) as one forward; return each
    one's last-position logits, as :meth:`Backend.forward` would have.

    The caches must be distinct objects. One request, or a model whose attention is not in
    :data:`SUPPORTED_ATTENTION`, runs through :meth:`Backend.forward` itself.
    """
    if len(requests) == 1 or not batchable(backend):
        return [backend.forward(r.input_ids, r.cache, adapter=r.adapter, adapted=r.adapted) for r in requests]
    if len({id(r.cache) for r in requests}) < len(requests):
        raise AloraFlowsError("requests of one batched forward need caches of their own")
    _register_attention()
    device, model = backend.device, backend.base_model
    config = model.config
    kind = config._attn_implementation
    ids: list[int] = []
    positions: list[int] = []
    ends: list[int] = []
    plan: list[tuple[str, int, int]] = []  # adapter spans in the row: each request's adapted tail
    segments: list[tuple[int, int, int, Any]] = []
    masks: list[Any] = []
    for r in requests:
        past, n = r.cache.get_seq_length(), len(r.input_ids)
        segments.append((len(ids), n, past, r.cache))
        masks.append(_mask(kind, n, past, backend.dtype, device))
        ids.extend(r.input_ids)
        positions.extend(range(past, past + n))
        ends.append(len(ids) - 1)
        if r.adapter is not None:
            plan.append((r.adapter, len(ids) - r.adapted, len(ids)))
    from transformers import AttentionInterface

    inner = None if kind == "eager" else AttentionInterface().get_interface(kind, _ragged_attention)
    ragged = _RaggedCache(segments, inner, masks)
    with backend.lock, torch.inference_mode():
        backend.select_adapter(None)  # LoRA layers pass through; the hooks add each span's delta
        config._attn_implementation = ATTENTION
        try:
            with backend._deltas.active(plan):
                out = _run(backend, ids, positions, ends, ragged)
        finally:
            config._attn_implementation = kind
    return list(out.logits[0])


def run_batch(backend: Backend, requests: Sequence[ForwardRequest]) -> bool:
    """Run ``requests`` as one forward and give each its logits or its error; returns whether the
    packed forward failed and the requests were run one by one instead.

    Why the fallback: one request's fault (a cache that cannot take its keys, memory for the packed
    row) must fail that request's session only, not the unrelated sessions that happened to be ready
    at the same moment. A failed packed forward may have appended keys and values to some of the
    caches (layer by layer), so each cache is first cut back to its length before the forward (and
    a request that fails alone too leaves its cache at that length).
    """
    pasts = [r.cache.get_seq_length() for r in requests]
    try:
        logits = forward_batch(backend, requests)
    except Exception as exc:
        if len(requests) == 1:
            requests[0].error = exc
            return False
    else:
        for request, row in zip(requests, logits):
            request.logits = row
        return False
    for request, past in zip(requests, pasts):
        try:
            _truncate(request.cache, past)
            request.logits = backend.forward(
                request.input_ids, request.cache, adapter=request.adapter, adapted=request.adapted
            )
        except Exception as exc:
            request.error = exc
            _truncate(request.cache, past)  # as it was before its forward
    return True


def _truncate(cache: Any, length: int) -> None:
    """Cut every layer of ``cache`` back to ``length`` tokens (layers may differ after a forward
    that failed half way through the model)."""
    for layer in cache.layers:
        extra = layer.get_seq_length() - length
        if extra > 0:
            layer.crop(-extra)


def _run(
    backend: Backend, ids: list[int], positions: list[int], ends: list[int], ragged: _RaggedCache
) -> Any:
    device = backend.device
    return backend.base_model(
        input_ids=torch.tensor([ids], dtype=torch.long, device=device),
        position_ids=torch.tensor([positions], dtype=torch.long, device=device),
        use_cache=True,
        logits_to_keep=torch.tensor(ends, device=device),
        alora_ragged=ragged,
        **{backend._cache_kwarg: ragged},
    )


# ---------------------------------------------------------------------- the scheduler
@dataclass
class BatchingStats:
    """What the scheduler ran: forwards, the requests (rows) in them, the largest batch."""

    forwards: int = 0
    rows: int = 0
    tokens: int = 0
    max_rows: int = 0
    seconds: float = 0.0  # in batched forwards
    #: packed forwards that failed and whose requests ran one by one (:func:`run_batch`)
    isolated: int = 0
    #: rows -> [forwards of that many rows, seconds they took]
    by_rows: dict[int, list[float]] = field(default_factory=dict)

    @property
    def mean_rows(self) -> float:
        return self.rows / self.forwards if self.forwards else 0.0


class ForwardScheduler:
    """Takes forwards from session threads and runs the ready ones together on one worker thread.

    When to run: as soon as every thread of the previous batch has sent its next request, or when
    the wait for them reaches ``gather_seconds`` or ``gather_fraction`` of the last forward's time
    (whichever is longer), counted from the first waiting request. Between two decode steps a
    thread's own work is short, but at a node boundary (rendering, tokenising, a tool) it can take
    tens of milliseconds with eight threads sharing the GIL: waiting a tenth of a forward for it
    costs less than running a forward without it. A thread that went off to a long tool or
    finished its run costs one such wait, then is no longer expected. At most ``max_batch_tokens``
    tokens run in one forward (a request larger than that runs alone); the rest wait for the next.
    """

    def __init__(
        self,
        backend: Backend,
        *,
        max_batch_tokens: int = 4096,
        gather_seconds: float = 0.01,
        gather_fraction: float = 0.1,
    ) -> None:
        if max_batch_tokens < 1 or gather_seconds < 0 or gather_fraction < 0:
            raise AloraFlowsError("max_batch_tokens must be >= 1, gather_seconds and gather_fraction >= 0")
        self.backend = backend
        self.max_batch_tokens = max_batch_tokens
        self.gather_seconds = gather_seconds
        self.gather_fraction = gather_fraction
        self._last_seconds = 0.0
        self.stats = BatchingStats()
        self._queue: list[ForwardRequest] = []
        self._cond = threading.Condition()
        self._last: set[threading.Thread] = set()
        self._closed = False
        self._worker: threading.Thread | None = None

    # ------------------------------------------------------------------ session side
    def forward(
        self, input_ids: list[int], cache: Any, *, adapter: str | None = None, adapted: int = 0
    ) -> torch.Tensor:
        """:meth:`Backend.forward`, batched with the other sessions' forwards that are ready.

        A model whose attention cannot be packed (:func:`batchable`) runs the forward right here,
        under the backend's lock: through the worker thread it would only add a hand-over and a
        gather wait to forwards that run one by one anyway.
        """
        if not batchable(self.backend):
            if self._closed:
                raise AloraFlowsError("the batching scheduler is closed")
            return self.backend.forward(input_ids, cache, adapter=adapter, adapted=adapted)
        check_request(self.backend, input_ids, adapter, adapted)
        request = ForwardRequest(
            list(input_ids), cache, adapter, adapted if adapter else 0, thread=threading.current_thread()
        )
        with self._cond:
            if self._closed:
                raise AloraFlowsError("the batching scheduler is closed")
            if self._worker is None:
                self._worker = threading.Thread(target=self._loop, name="alora-batching", daemon=True)
                self._worker.start()
            self._queue.append(request)
            self._cond.notify_all()
        request.done.wait()
        if request.error is not None:
            raise request.error
        assert request.logits is not None
        return request.logits

    def close(self) -> None:
        """Stop the worker thread; requests still waiting fail (runs should have ended first)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()
            worker = self._worker
        if worker is not None and worker is not threading.current_thread():
            worker.join()

    # ------------------------------------------------------------------ worker side
    def _loop(self) -> None:
        while True:
            batch = self._next_batch()
            if batch is None:
                return
            started = time.perf_counter()
            try:
                isolated = run_batch(self.backend, batch)
            except BaseException as exc:  # every request of the batch fails with it; the worker goes on
                isolated = False
                for request in batch:
                    request.error = exc
            self._record(batch, time.perf_counter() - started)
            self.stats.isolated += isolated
            self._last = {r.thread for r in batch if r.thread is not None}
            for request in batch:
                request.done.set()

    def _next_batch(self) -> list[ForwardRequest] | None:
        with self._cond:
            while not self._queue and not self._closed:
                self._cond.wait()
            if self._closed:
                failed, self._queue = self._queue, []
                for request in failed:
                    request.error = AloraFlowsError(
                        "the batching scheduler was closed before this forward ran"
                    )
                    request.done.set()
                return None
            expected = {t for t in self._last if t.is_alive()}
            wait = max(self.gather_seconds, self.gather_fraction * self._last_seconds)
            deadline = time.monotonic() + wait
            while not self._closed:
                waiting = {r.thread for r in self._queue}
                left = deadline - time.monotonic()
                if expected <= waiting or left <= 0:
                    break
                self._cond.wait(left)
            return self._take()

    def _take(self) -> list[ForwardRequest]:
        """The first requests that fit the token budget, one per cache (FIFO)."""
        batch: list[ForwardRequest] = []
        rest: list[ForwardRequest] = []
        tokens = 0
        caches: set[int] = set()
        for request in self._queue:
            n = len(request.input_ids)
            fits = not batch or tokens + n <= self.max_batch_tokens
            if fits and id(request.cache) not in caches:
                batch.append(request)
                caches.add(id(request.cache))
                tokens += n
            else:
                rest.append(request)
        self._queue = rest
        return batch

    def _record(self, batch: list[ForwardRequest], seconds: float) -> None:
        stats = self.stats
        stats.forwards += 1
        stats.rows += len(batch)
        stats.tokens += sum(len(r.input_ids) for r in batch)
        stats.max_rows = max(stats.max_rows, len(batch))
        stats.seconds += seconds
        entry = stats.by_rows.setdefault(len(batch), [0, 0.0])
        entry[0] += 1
        entry[1] += seconds
        self._last_seconds = seconds


class BatchedBackend(Backend):
    """``backend`` itself (its model, adapters, lock and settings, shared, not copied: an adapter
    added to either is in both), with ``forward`` batched across threads by a
    :class:`ForwardScheduler`. Give it to every :class:`~alora_flows.core.session.Session` that
    should batch; close it when their runs are over (or use it as a context manager).
    """

    __slots__ = ("_scheduler",)  # the view's own state; everything else is the backend's

    def __init__(
        self,
        backend: Backend,
        *,
        max_batch_tokens: int = 4096,
        gather_seconds: float = 0.01,
        gather_fraction: float = 0.1,
    ) -> None:
        # Share the instance's attributes rather than copy them, so that nothing can go stale.
        self.__dict__ = backend.__dict__
        self._scheduler = ForwardScheduler(
            backend,
            max_batch_tokens=max_batch_tokens,
            gather_seconds=gather_seconds,
            gather_fraction=gather_fraction,
        )

    def forward(
        self, input_ids: list[int], cache: Any, *, adapter: str | None = None, adapted: int = 0
    ) -> torch.Tensor:
        return self._scheduler.forward(input_ids, cache, adapter=adapter, adapted=adapted)

    @property
    def stats(self) -> BatchingStats:
        return self._scheduler.stats

    def close(self) -> None:
        self._scheduler.close()

    def __enter__(self) -> BatchedBackend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
