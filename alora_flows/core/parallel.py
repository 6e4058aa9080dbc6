"""Several intrinsic calls (or base-model generations) on one cached conversation, in one forward
pass per decoding step.

Why packing instead of a batch: a batch of B rows over a cached prefix needs the prefix's KV in
every row (B copies, or an expand that the cache's concatenation materialises). Here the rows
are *segments of one sequence* after the shared prefix: each segment sees the prefix and itself,
never the other segments (a custom 4D attention mask), and its positions continue from the
prefix as if it were alone (``position_ids``). The prefix's KV is stored once and read once per
layer for all rows, and the cache of the conversation is rolled back afterwards as for one call.
When the rows *start* with the same base-model tokens (three checks re-reading one answer turn,
N samples of one prompt, a generated turn's closing tokens still waiting), those tokens join the
shared prefix: they run once, in the first forward, and every row sees them (:func:`hoistable`);
a row's adapted span is never hoisted, since it must run under the row's own adapter.

Why our own LoRA application: PEFT activates one adapter per row (``adapter_names``) and one
offset per row (``alora_offsets``); segments of one row need *per-token* adapters. The aLoRA
adapters stay loaded in PEFT (same weights, same modules); the LoRA layers are switched off
(:meth:`Backend.select_adapter`: they pass straight to the layers they wrap), and the backend's
forward hooks, installed once per LoRA layer (:mod:`alora_flows.core.lora_deltas`), add each segment's delta ``B(A(x)) * scaling`` on exactly that
segment's adapted tokens: the same arithmetic as PEFT's
``ALoraLinearVariant``, gathered by token instead of by row. Base-model rows (generations:
:func:`generate_parallel`) simply get no delta. The same hooks serve the batched forwards of
many sessions (:mod:`alora_flows.core.batching`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from alora_flows.core.decoding import sampling_generator
from alora_flows.core.session import CallStats, GenerateResult, InvokeResult, Session
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
class GenerateCall:
    """One base-model generation of a parallel group: what ``fork.extend(messages)`` then
    ``fork.generate(...)`` would do on a fork of the session (a sample, a branch's answer)."""

    messages: Sequence[dict[str, str]] = ()
    max_new_tokens: int = 256
    temperature: float = 0.0
    seed: int | None = None


@dataclass
class _Row:
    segment: list[int]  # tokens after the shared prefix (input turn, invocation, adapted input)
    adapter: str | None  # None: a base-model row
    adapted: int  # how many of the segment's last tokens the adapter covers
    max_new_tokens: int
    choose: Callable[[torch.Tensor, bool], int]  # (logits, first position?) -> the next token
    kv: list[int] = field(default_factory=list)  # cache positions this row's tokens occupy
    tokens: list[int] = field(default_factory=list)
    probs: dict[int, float] | None = None
    done: bool = False


#: Called as calls finish, with every finished call's result by its index in ``calls``; True
#: stops the calls still running (their results come back with ``cancelled=True``).
StopWhen = Callable[[dict[int, InvokeResult]], bool]


def invoke_parallel(
    session: Session, calls: Sequence[IntrinsicCall], *, stop_when: StopWhen | None = None
) -> list[InvokeResult]:
    """Run ``calls`` on the session's conversation as one packed forward per decoding step.

    Equivalent to ``[session.invoke(c.adapter, ...) for c in calls]`` (same greedy tokens; the
    tests check logits to 1e-4), and like ``invoke`` it leaves the conversation and its cache
    exactly as they were. Each result's ``stats`` counts its own segment's tokens as prefilled and
    the whole conversation as reused; ``seconds`` is the group's wall time, shared.

    ``stop_when`` lets a short call decide that a long one is not needed (a low certainty makes
    a faithfulness check moot): it is asked after each step in which calls finished, and when it
    says so the rest stop where they are, as cancelled results (without reuse, where calls run
    one after the other, the rest never start).
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
        return _one_by_one(session, calls, stop_when)
    start = time.perf_counter()
    prefix = list(session._cached_ids)
    rows: list[_Row] = []
    targets: list[list[int]] = []
    stop = backend.stop_token_ids
    for call in calls:
        # the very tokens Session.invoke would run (inline documents included)
        plan = session.invocation(call.adapter, messages=call.messages, adapted_input=call.adapted_input)
        target = plan.ids
        session._check_context(len(target), call.max_new_tokens)
        if target[: len(prefix)] != prefix or len(target) == len(prefix):
            return _one_by_one(session, calls, stop_when)  # the rendering diverged: no shared prefix
        row = _Row(target[len(prefix) :], call.adapter, plan.adapted, call.max_new_tokens, _greedy)
        row.choose = _constrained(row, call, stop)
        rows.append(row)
        targets.append(target)
    finished: dict[int, InvokeResult] = {}

    def result(row: _Row, cancelled: bool = False) -> InvokeResult:
        return InvokeResult(
            text=session._text(row.tokens),
            token_ids=row.tokens,
            probs=row.probs,
            stats=CallStats(kind="invoke", adapter=row.adapter),
            cancelled=cancelled,
        )

    def on_done(done: list[int]) -> bool:
        for i in done:
            finished[i] = result(rows[i])
        return stop_when is not None and stop_when(dict(finished))

    shared = _decode_packed(session, rows, targets, on_done=on_done)
    seconds = time.perf_counter() - start
    results = []
    for i, row in enumerate(rows):
        stats = CallStats(
            kind="invoke",
            adapter=row.adapter,
            prefill_tokens=len(row.segment) + (shared if i == 0 else 0),
            reused_tokens=len(prefix) + (shared if i else 0),
            generated_tokens=len(row.tokens),
            seconds=seconds,
        )
        session.history.append(stats)
        results.append(result(row, cancelled=not row.done).model_copy(update={"stats": stats}))
    return results


def _one_by_one(
    session: Session, calls: Sequence[IntrinsicCall], stop_when: StopWhen | None
) -> list[InvokeResult]:
    finished: dict[int, InvokeResult] = {}
    for i, call in enumerate(calls):
        if stop_when is not None and finished and stop_when(dict(finished)):
            break
        finished[i] = _sequential(session, call)
    cancelled = [
        InvokeResult(text="", token_ids=[], stats=CallStats(kind="invoke", adapter=c.adapter), cancelled=True)
        for c in calls
    ]
    return [finished.get(i, cancelled[i]) for i in range(len(calls))]


def generate_parallel(session: Session, calls: Sequence[GenerateCall]) -> list[GenerateResult]:
    """Base-model generations as branches of the session's conversation, one packed forward per
    decoding step: N samples for self-consistency, or several prompts over one context.

    Each row is what a fork would do: ``f = session.fork(); f.extend(call.messages);
    f.generate(call.max_new_tokens, temperature=call.temperature, seed=call.seed)``, with the same
    tokens (greedy, or sampled with the row's own seeded generator drawing as :func:`decode`
    does); the session, its conversation and its cache are as they were afterwards (the answers
    are returned, not appended). Rows that start alike (N samples of one prompt) run their common
    start once (:func:`hoistable`). Each result's ``stats`` counts the row's own messages and
    generation prompt as prefilled and the conversation as reused (hoisted tokens: prefilled by
    the first row, reused by the others); ``seconds`` is shared.
    """
    if not calls:
        return []
    if not session.reuse:
        return [_generate_sequential(session, call) for call in calls]
    start = time.perf_counter()
    prefix = list(session._cached_ids)
    device = session.backend.device
    rows: list[_Row] = []
    targets: list[list[int]] = []
    documents = session._documents()  # as Session.generate renders them (``inline`` included)
    for call in calls:
        target = session._renderer.ids(
            session.messages + [dict(m) for m in call.messages],
            add_generation_prompt=True,
            documents=documents,
        )
        session._check_context(len(target), call.max_new_tokens)
        if target[: len(prefix)] != prefix or len(target) == len(prefix):
            return [_generate_sequential(session, c) for c in calls]
        choose = _sampler(call.temperature, call.seed, device)
        rows.append(_Row(target[len(prefix) :], None, 0, call.max_new_tokens, choose))
        targets.append(target)
    shared = _decode_packed(session, rows, targets)
    seconds = time.perf_counter() - start
    results = []
    for i, row in enumerate(rows):
        stats = CallStats(
            kind="generate",
            prefill_tokens=len(row.segment) + (shared if i == 0 else 0),
            reused_tokens=len(prefix) + (shared if i else 0),
            generated_tokens=len(row.tokens),
            seconds=seconds,
        )
        session.history.append(stats)
        results.append(GenerateResult(text=session._text(row.tokens), token_ids=row.tokens, stats=stats))
    return results


def _generate_sequential(session: Session, call: GenerateCall) -> GenerateResult:
    fork = session.fork()
    before = len(fork.history)
    if call.messages:
        fork.extend(call.messages)
    result = fork.generate(call.max_new_tokens, temperature=call.temperature, seed=call.seed)
    session.history.extend(fork.history[before:])
    return result


def hoistable(prefix_len: int, targets: Sequence[Sequence[int]], rows: Sequence[_Row]) -> int:
    """How many tokens after the cached prefix every row's target shares *and* runs with base
    weights: they are computed once, as part of the shared prefix, instead of once per row.

    Why the cap: a row's adapted span (its last ``adapted`` tokens: the invocation from its
    activation on, and the adapted input) must run under its own adapter, so no hoisted token may
    reach into it, even when several rows have the same tokens there. Each row also keeps at least
    one token of its own, whose logits start its decoding.
    """
    if not targets:
        return 0
    first = targets[0]
    limit = min(len(t) - max(row.adapted, 1) for t, row in zip(targets, rows))
    n = prefix_len
    while n < limit and all(t[n] == first[n] for t in targets):
        n += 1
    return max(0, n - prefix_len)


def _decode_packed(
    session: Session,
    rows: list[_Row],
    targets: Sequence[Sequence[int]],
    on_done: Callable[[list[int]], bool] | None = None,
) -> int:
    """Decode every row to its end (a stop token, or its ``max_new_tokens``) on the session's
    cache, one packed forward per step, then roll the cache back. Returns how many tokens were
    hoisted (:func:`hoistable`): the rows' common base-model start, run once in the first forward
    as part of the shared prefix (the conversation's own tokens among them, e.g. a generated
    turn's closing tokens, stay cached afterwards, as :meth:`Session.invoke` keeps them; the rest
    is cropped away). ``on_done`` gets the indices of the rows that finished at a step; True
    stops the others there (they keep ``done`` False)."""
    backend = session.backend
    prefix_len = len(session._cached_ids)
    stop = backend.stop_token_ids
    hoist = hoistable(prefix_len, targets, rows)
    shared = list(targets[0][prefix_len : prefix_len + hoist])
    for row in rows:
        row.segment = row.segment[hoist:]
    with session._rollback(keep=list(targets[0][: prefix_len + hoist])):
        cache = session._cache
        feeds = [(row, row.segment, row.adapted) for row in rows]
        first = True
        while feeds:
            logits = _forward_packed(backend, cache, prefix_len + hoist, feeds, shared if first else [])
            next_feeds, done = [], []
            for (row, _, _), row_logits in zip(feeds, logits):
                token = row.choose(row_logits, first)
                row.tokens.append(token)
                if token not in stop and len(row.tokens) < row.max_new_tokens:
                    next_feeds.append((row, [token], 1 if row.adapter else 0))
                else:
                    row.done = True
                    done.append(rows.index(row))
            if done and next_feeds and on_done is not None and on_done(done):
                next_feeds = []
            feeds, first = next_feeds, False
    return hoist


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
    cache: Any,
    prefix_len: int,
    feeds: list[tuple[_Row, list[int], int]],
    shared: Sequence[int] = (),
) -> list[torch.Tensor]:
    """One forward over every row's new tokens; returns each row's last-position logits.

    ``prefix_len`` is the length of the prefix every row sees. ``shared`` (first step only) are
    its last tokens, not cached yet: they go first, seeing the cache and themselves causally,
    and every row sees them."""
    device = backend.device
    past = cache.get_seq_length()
    ids: list[int] = [int(t) for t in shared]
    positions: list[int] = list(range(prefix_len - len(ids), prefix_len))
    ends: list[int] = []
    plan: list[tuple[str, int, int]] = []  # each row's adapted tokens are the tail of its feed
    for row, tokens, adapted in feeds:
        base = prefix_len + len(row.kv)  # the row's own position, as if it ran alone
        ids.extend(tokens)
        positions.extend(range(base, base + len(tokens)))
        if row.adapter is not None:
            plan.append((row.adapter, len(ids) - adapted, len(ids)))
        ends.append(len(ids) - 1)
    q = len(ids)
    # visibility: the shared prefix, the row's earlier tokens, and its new tokens causally
    mask = torch.zeros((1, 1, q, past + q), dtype=torch.bool, device=device)
    mask[..., :prefix_len] = True
    cursor = len(shared)
    if cursor:  # the hoisted tokens see the cache and themselves, causally
        causal = torch.ones((cursor, cursor), dtype=torch.bool, device=device).tril()
        mask[0, 0, :cursor, past : past + cursor] = causal
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
    with backend.lock, torch.inference_mode(), backend._deltas.active(plan):
        backend.select_adapter(None)  # LoRA layers pass through; the hooks add each span's delta
        out = model(
            input_ids=torch.tensor([ids], dtype=torch.long, device=device),
            position_ids=torch.tensor([positions], dtype=torch.long, device=device),
            attention_mask=mask,
            use_cache=True,
            logits_to_keep=torch.tensor(ends, device=device),
            **kwargs,
        )
    return list(out.logits[0])


def _greedy(logits: torch.Tensor, first: bool) -> int:
    return int(torch.argmax(logits.float()))


def _constrained(row: _Row, call: IntrinsicCall, stop: frozenset[int]) -> Callable[[torch.Tensor, bool], int]:
    """Greedy choice under the call's constraints (as :meth:`Session.invoke` decodes); records the
    first position's probabilities on ``row`` when the call asks for them."""

    def choose(logits: torch.Tensor, first: bool) -> int:
        scores = logits.float()
        allowed = call.allowed_token_ids
        if allowed:
            keep = torch.tensor(sorted(set(allowed) | (set() if first else set(stop))), device=scores.device)
            if first and call.return_probs:
                idx = torch.tensor(sorted(set(allowed)), device=scores.device)
                p = torch.softmax(scores[idx], dim=-1)
                row.probs = {int(t): float(v) for t, v in zip(idx.tolist(), p.tolist())}
            masked = torch.full_like(scores, float("-inf"))
            masked[keep] = scores[keep]
            scores = masked
        elif first and call.return_probs:
            p = torch.softmax(scores, dim=-1)
            top = torch.topk(p, k=min(10, p.numel()))
            row.probs = {int(t): float(v) for t, v in zip(top.indices.tolist(), top.values.tolist())}
        return int(torch.argmax(scores))

    return choose


def _sampler(
    temperature: float, seed: int | None, device: torch.device
) -> Callable[[torch.Tensor, bool], int]:
    """A row's own choice: greedy, or one draw per token from its own generator, exactly as
    :func:`~alora_flows.core.decoding.decode` draws (so a seeded row equals its sequential run)."""
    generator = sampling_generator(temperature, seed, device)

    def choose(logits: torch.Tensor, first: bool) -> int:
        scores = logits.float()
        if generator is None:
            return int(torch.argmax(scores))
        dist = torch.softmax(scores / temperature, dim=-1)
        return int(torch.multinomial(dist, 1, generator=generator))

    return choose
