"""Several intrinsic calls on one cached conversation, in one forward pass per decoding step.

Why packing instead of a batch: a batch of B rows over a cached prefix needs the prefix's KV in
every row (B copies, or an expand that the cache's concatenation materialises). Here the rows
are *segments of one sequence* after the shared prefix: each segment sees the prefix and itself,
never the other segments (a custom 4D attention mask), and its positions continue from the
prefix as if it were alone (``position_ids``). The prefix's KV is stored once and read once per
layer for all rows, and the cache of the conversation is rolled back afterwards as for one call.

Why our own LoRA application: PEFT activates one adapter per row (``adapter_names``) and one
offset per row (``alora_offsets``); segments of one row need *per-token* adapters. The aLoRA
adapters stay loaded in PEFT (same weights, same modules); with no ``alora_offsets`` PEFT's aLoRA
layers add nothing, and a forward hook installed once per LoRA layer adds each segment's delta
``B(A(x)) * scaling`` on exactly that segment's adapted tokens: the same arithmetic as PEFT's
``ALoraLinearVariant``, gathered by token instead of by row.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch

from alora_flows.core.session import CallStats, InvokeResult, Session
from alora_flows.errors import AdapterError


@dataclass
class IntrinsicCall:
    """One intrinsic call of a parallel group: what :meth:`Session.invoke` would take."""

    adapter: str
    messages: Sequence[dict[str, str]] = ()
    adapted_input: Sequence[int] = ()
    max_new_tokens: int = 32
    allowed_token_ids: Sequence[int] | None = None
    return_probs: bool = False


@dataclass
class _Row:
    call: IntrinsicCall
    segment: list[int]  # tokens after the shared prefix (input turn, invocation, adapted input)
    adapted: int  # how many of the segment's last tokens the adapter covers
    kv: list[int] = field(default_factory=list)  # cache positions this row's tokens occupy
    tokens: list[int] = field(default_factory=list)
    probs: dict[int, float] | None = None
    done: bool = False


class PackedLoRA:
    """Per-token multi-adapter LoRA deltas, through hooks installed once on PEFT's LoRA layers."""

    def __init__(self, peft_model: Any) -> None:
        from peft.tuners.lora import LoraLayer

        self.plan: list[tuple[str, int, int]] = []  # (adapter, first token, end): contiguous spans
        self.layers: list[Any] = [m for m in peft_model.modules() if isinstance(m, LoraLayer)]
        for layer in self.layers:
            layer.register_forward_hook(self._hook)

    def _hook(self, module: Any, args: tuple[Any, ...], output: torch.Tensor) -> torch.Tensor | None:
        if not self.plan:
            return None
        x = args[0][0]  # one packed row: (tokens, features)
        out = output[0]
        for adapter, start, end in self.plan:
            if adapter not in module.lora_A:
                continue
            lora_a, lora_b = module.lora_A[adapter], module.lora_B[adapter]
            picked = x[start:end].to(lora_a.weight.dtype)
            delta = lora_b(lora_a(module.lora_dropout[adapter](picked))) * module.scaling[adapter]
            out[start:end] += delta.to(out.dtype)
        return output

    @contextmanager
    def active(self, plan: list[tuple[str, int, int]]) -> Any:
        self.plan = plan
        try:
            yield
        finally:
            self.plan = []


def _packed_lora(backend: Any) -> PackedLoRA:
    packed = getattr(backend, "_packed_lora", None)
    if packed is None or packed.model is not backend.model:
        packed = PackedLoRA(backend.model)
        packed.model = backend.model  # type: ignore[attr-defined]
        backend._packed_lora = packed
    return packed


def invoke_parallel(session: Session, calls: Sequence[IntrinsicCall]) -> list[InvokeResult]:
    """Run ``calls`` on the session's conversation as one packed forward per decoding step.

    Equivalent to ``[session.invoke(c.adapter, ...) for c in calls]`` (same greedy tokens; the
    tests check logits to 1e-4), and like ``invoke`` it leaves the conversation and its cache
    exactly as they were. Each result's ``stats`` counts its own segment's tokens as prefilled and
    the whole conversation as reused; ``seconds`` is the group's wall time, shared.
    """
    if not calls:
        return []
    backend = session.backend
    for call in calls:
        if call.adapter not in backend.adapters:
            raise AdapterError(
                f"no adapter named '{call.adapter}' is loaded (loaded: {sorted(backend.adapters) or 'none'})"
            )
    if not session.reuse:  # nothing cached to share: the no-reuse baseline runs them one by one
        return [_sequential(session, call) for call in calls]
    start = time.perf_counter()
    renderer = session._renderer
    if session.cached_tokens < len(session.ids):
        # A generated turn's closing tokens wait for the next call: run them once, for every row.
        reused, prefilled = session._sync(session.ids)
        session._record(
            CallStats(
                kind="extend",
                prefill_tokens=prefilled,
                reused_tokens=reused,
                seconds=time.perf_counter() - start,
            )
        )
    prefix = list(session._cached_ids)
    rows: list[_Row] = []
    for call in calls:
        info = backend.adapters[call.adapter]
        prompt = renderer.ids(session.messages + [dict(m) for m in call.messages])
        lead = info.invocation_tokens[: info.activation_offset]  # base weights, as trained
        adapted = info.adapter_tokens + [int(t) for t in call.adapted_input]
        target = prompt + lead + adapted
        session._check_context(len(target), call.max_new_tokens)
        if target[: len(prefix)] != prefix or len(target) == len(prefix):
            return [_sequential(session, c) for c in calls]  # the rendering diverged: no shared prefix
        rows.append(_Row(call=call, segment=target[len(prefix) :], adapted=len(adapted)))
    packed = _packed_lora(backend)
    stop = backend.stop_token_ids
    with session._rollback():
        cache = session._cache
        feeds = [(row, row.segment, row.adapted) for row in rows]
        first = True
        while feeds:
            logits = _forward_packed(backend, packed, cache, len(prefix), rows, feeds)
            next_feeds = []
            for (row, _, _), row_logits in zip(feeds, logits):
                token = _choose(row, row_logits, first, stop)
                row.tokens.append(token)
                if token in stop or len(row.tokens) >= row.call.max_new_tokens:
                    row.done = True
                else:
                    next_feeds.append((row, [token], 1))
            feeds, first = next_feeds, False
    seconds = time.perf_counter() - start
    results = []
    for row in rows:
        stats = CallStats(
            kind="invoke",
            adapter=row.call.adapter,
            prefill_tokens=len(row.segment),
            reused_tokens=len(prefix),
            generated_tokens=len(row.tokens),
            seconds=seconds,
        )
        session.history.append(stats)
        results.append(
            InvokeResult(text=session._text(row.tokens), token_ids=row.tokens, probs=row.probs, stats=stats)
        )
    return results


def _sequential(session: Session, call: IntrinsicCall) -> InvokeResult:
    return session.invoke(
        call.adapter,
        messages=call.messages,
        adapted_input=call.adapted_input,
        max_new_tokens=call.max_new_tokens,
        allowed_token_ids=call.allowed_token_ids,
        return_probs=call.return_probs,
    )


def _forward_packed(
    backend: Any,
    packed: PackedLoRA,
    cache: Any,
    prefix_len: int,
    rows: list[_Row],
    feeds: list[tuple[_Row, list[int], int]],
) -> list[torch.Tensor]:
    """One forward over every row's new tokens; returns each row's last-position logits."""
    device = backend.device
    past = cache.get_seq_length()
    ids: list[int] = []
    positions: list[int] = []
    ends: list[int] = []
    plan: list[tuple[str, int, int]] = []  # each row's adapted tokens are the tail of its feed
    for row, tokens, adapted in feeds:
        base = prefix_len + len(row.kv)  # the row's own position, as if it ran alone
        ids.extend(tokens)
        positions.extend(range(base, base + len(tokens)))
        plan.append((row.call.adapter, len(ids) - adapted, len(ids)))
        ends.append(len(ids) - 1)
    q = len(ids)
    # visibility: the shared prefix, the row's earlier tokens, and its new tokens causally
    mask = torch.zeros((1, 1, q, past + q), dtype=torch.bool, device=device)
    mask[..., :prefix_len] = True
    cursor = 0
    for row, tokens, _ in feeds:
        n = len(tokens)
        if row.kv:
            mask[0, 0, cursor : cursor + n, torch.tensor(row.kv, device=device)] = True
        own = torch.ones((n, n), dtype=torch.bool, device=device).tril()
        mask[0, 0, cursor : cursor + n, past + cursor : past + cursor + n] = own
        row.kv.extend(range(past + cursor, past + cursor + n))
        cursor += n
    model = backend.model.get_base_model() if backend.adapters else backend.model
    kwargs = {backend._cache_kwarg: cache}
    with backend.lock, torch.inference_mode(), packed.active(plan):
        out = model(
            input_ids=torch.tensor([ids], dtype=torch.long, device=device),
            position_ids=torch.tensor([positions], dtype=torch.long, device=device),
            attention_mask=mask,
            use_cache=True,
            logits_to_keep=torch.tensor(ends, device=device),
            **kwargs,
        )
    return list(out.logits[0])


def _choose(row: _Row, logits: torch.Tensor, first: bool, stop: frozenset[int]) -> int:
    """Greedy choice under the call's constraints (as :meth:`Session.invoke` decodes)."""
    scores = logits.float()
    allowed = row.call.allowed_token_ids
    if allowed:
        keep = torch.tensor(sorted(set(allowed) | (set() if first else set(stop))), device=scores.device)
        if first and row.call.return_probs:
            idx = torch.tensor(sorted(set(allowed)), device=scores.device)
            p = torch.softmax(scores[idx], dim=-1)
            row.probs = {int(t): float(v) for t, v in zip(idx.tolist(), p.tolist())}
        masked = torch.full_like(scores, float("-inf"))
        masked[keep] = scores[keep]
        scores = masked
    elif first and row.call.return_probs:
        p = torch.softmax(scores, dim=-1)
        top = torch.topk(p, k=min(10, p.numel()))
        row.probs = {int(t): float(v) for t, v in zip(top.indices.tolist(), top.values.tolist())}
    return int(torch.argmax(scores))
