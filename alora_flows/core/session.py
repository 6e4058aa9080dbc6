"""The KV-cache session: one conversation's tokens, the cache that matches them, and call statistics.

Invariant (reuse mode): after every public call, the cache holds exactly the KV of
``self._cached_ids``, a prefix of the rendering of ``self.messages``. Each call re-renders what it
needs, keeps the longest common prefix with the cached tokens (cropping on divergence) and runs
only the rest, in one forward: new turns and the generation prompt go together, and the tokens
that close a generated turn (end of turn, template suffix) wait for the next call, because a
forward of a few tokens costs about as much as a decode step. Intrinsic calls add their input turn
and invocation tokens on top, decode with the adapter, then roll back to the snapshot taken
before, keeping only the KV of what they computed *of the conversation itself*: an aLoRA adapter
changes nothing before its invocation, so those positions are exact base-model KV. The
conversation is unchanged, and the call cost only its own tokens.

Rewinding (:meth:`Session.mark`, :meth:`Session.rewind`) uses the same property the other way:
the conversation up to a mark renders to a prefix of today's tokens, so going back to it crops the
cache to that prefix (views of the cached tensors, no copy) and runs no forward pass. A flow's
retry then starts from the question, not after its failed attempt, at no cost.

Why snapshots are free: a shallow copy of a cache layer is an exact snapshot. The backend's
default layer (``core.kvcache``) appends in place into spare capacity but never writes a position
another live copy still holds (it moves to a new buffer first: copy-on-write); transformers'
``DynamicLayer`` appends with ``torch.cat``, never writing into old tensors at all. Restoring a
snapshot is a list assignment, and a fork shares every cached position with its parent. Other
layer kinds fall back to a deep copy.
"""

from __future__ import annotations

import copy
import hashlib
import json
import time
from contextlib import contextmanager
from typing import Any, Callable, Iterator, Literal, Mapping, Sequence

import torch
from pydantic import BaseModel, Field

from alora_flows.core.backend import Backend
from alora_flows.core.chat import ChatRenderer
from alora_flows.core.decoding import Decoded, TextStream, decode, detokenize
from alora_flows.core.documents import DocsAs, Document, DocumentSet, DocumentsLike, as_documents
from alora_flows.errors import AdapterError, AloraFlowsError, ContextLengthError, DocumentError

ROLES = ("system", "user", "assistant", "tool")
#: ``(tokens generated so far, scores of the next token) -> scores``: a constraint (masked scores)
#: or an observer (e.g. recording log-probabilities), called at every step of an intrinsic's decoding.
LogitsProcessor = Callable[[list[int], torch.Tensor], torch.Tensor]


class CallStats(BaseModel):
    """What one session call cost. ``prefill_tokens`` ran through the model for the prompt;
    ``reused_tokens`` had their KV taken from the session cache; generated tokens are apart."""

    kind: Literal["extend", "generate", "invoke", "rewind"]
    adapter: str | None = None
    prefill_tokens: int = 0
    reused_tokens: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0


class Invocation(BaseModel):
    """The tokens of an adapter call: the conversation's ``prompt`` tokens first, the adapter
    active on the last ``adapted`` (:meth:`Session.invocation`)."""

    ids: list[int]
    prompt: int
    adapted: int


class SessionMark(BaseModel):
    """A point in a conversation to return to (:meth:`Session.rewind`): how many messages and
    documents it had, how they were rendered, and a digest of them (a rewind refuses a
    conversation whose part before the mark has changed since). Plain data, so a flow keeps it in
    its state and a resumed run can still rewind."""

    messages: int
    documents: int
    documents_as: DocsAs | None = None
    tokens: int = 0
    digest: str


def _digest(messages: Sequence[Mapping[str, str]], documents: Sequence[Document]) -> str:
    payload = json.dumps(
        [[dict(m) for m in messages], [d.model_dump() for d in documents]], ensure_ascii=False, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:16]


class GenerateResult(BaseModel):
    text: str
    token_ids: list[int]
    stats: CallStats


class InvokeResult(GenerateResult):
    #: Probabilities at the first output position over ``allowed_token_ids`` (renormalised).
    probs: dict[int, float] | None = None
    #: Raw logits at the first output position, when asked for (``return_logits=True``).
    logits: Any = Field(default=None, exclude=True, repr=False)
    #: Stopped before its end because a packed group no longer needed it
    #: (:func:`~alora_flows.core.parallel.invoke_parallel`'s ``stop_when``): not to be parsed.
    cancelled: bool = False


def _as_message(message: Mapping[str, str] | BaseModel) -> dict[str, str]:
    data = message.model_dump() if isinstance(message, BaseModel) else dict(message)
    role, content = data.get("role"), data.get("content")
    if role not in ROLES or not isinstance(content, str):
        raise AloraFlowsError(f"a message needs role in {ROLES} and string content, got {data!r}")
    return {"role": role, "content": content}


def _common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    n = min(len(a), len(b))
    if a[:n] == b[:n]:
        return n
    lo, hi = 0, n  # binary search on equal prefixes: lists compare fast in C
    while lo < hi:
        mid = (lo + hi + 1) // 2
        if a[:mid] == b[:mid]:
            lo = mid
        else:
            hi = mid - 1
    return lo


class Session:
    """A conversation with its KV cache, shared by every step of a flow run."""

    def __init__(
        self,
        backend: Backend,
        *,
        reuse: bool = True,
        messages: Sequence[Mapping[str, str]] = (),
        documents: DocumentsLike = (),
    ) -> None:
        self.backend = backend
        self.reuse = reuse
        self.messages: list[dict[str, str]] = []
        #: The conversation's documents, rendered by the chat template (``core.documents``).
        self.documents: list[Document] = []
        #: How they are rendered (``DocumentSet.render_as``; None: the chat template's way).
        self.documents_as: DocsAs | None = None
        self.history: list[CallStats] = []
        self._renderer = ChatRenderer(backend.tokenizer)
        self._cache = backend.new_cache()
        self._cached_ids: list[int] = []
        if messages or documents:
            self.extend(messages, documents=documents)

    # ------------------------------------------------------------------ views
    @property
    def ids(self) -> list[int]:
        """The rendered conversation (without a generation prompt)."""
        return self._renderer.ids(self.messages, documents=self._documents())

    @property
    def cached_tokens(self) -> int:
        return len(self._cached_ids)

    def kv_bytes(self) -> int:
        """Bytes of KV tensors this session references (forks share them with their parent)."""
        return sum(
            t.numel() * t.element_size()
            for layer in self._cache.layers
            for t in (getattr(layer, "keys", None), getattr(layer, "values", None))
            if isinstance(t, torch.Tensor)
        )

    def totals(self) -> dict[str, float]:
        keys = ("prefill_tokens", "reused_tokens", "generated_tokens", "seconds")
        return {k: sum(getattr(s, k) for s in self.history) for k in keys}

    # ------------------------------------------------------------------ public calls
    def extend(
        self,
        messages: Sequence[Mapping[str, str]],
        *,
        documents: DocumentsLike = (),
        prefill: bool = True,
    ) -> CallStats:
        """Append turns (and documents); in reuse mode prefill only the tokens not already cached.

        ``documents`` as a :class:`~alora_flows.core.documents.DocumentSet` with ``render_as``
        sets how the session renders its documents (one way per session); ``inline`` documents
        belong to the first of ``messages`` (the user turn they came with).

        ``prefill=False`` leaves the new tokens for the next model call, which runs them in its
        own forward: one larger forward instead of two (a flow's ``message`` step, followed by a
        ``generate`` or an intrinsic, does this). The recorded call then ran nothing.
        """
        start = time.perf_counter()
        new = self.messages + [_as_message(m) for m in messages]
        incoming = as_documents(documents)
        how = self._documents_as(documents, incoming)
        if how == "inline":
            anchor = len(self.messages)
            incoming = [d if d.turn is not None else d.model_copy(update={"turn": anchor}) for d in incoming]
        docs = self.documents + incoming
        target = self._renderer.ids(new, documents=self._documents(docs, how))
        self._check_context(len(target), 0)
        self.messages, self.documents, self.documents_as = new, docs, how
        reused = computed = 0
        if self.reuse and prefill:
            reused, computed = self._sync(target)
        elif self.reuse:
            self._settle(target)
        return self._record(
            CallStats(
                kind="extend",
                prefill_tokens=computed,
                reused_tokens=reused,
                seconds=time.perf_counter() - start,
            )
        )

    def generate(
        self,
        max_new_tokens: int = 256,
        *,
        messages: Sequence[Mapping[str, str]] = (),
        temperature: float = 0.0,
        seed: int | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> GenerateResult:
        """Append ``messages`` (if any), answer with the base model (adapters off) and append the
        answer as an assistant turn. The new turns and the generation prompt run as one forward,
        where ``extend`` then ``generate`` would run two."""
        start = time.perf_counter()
        new = self.messages + [_as_message(m) for m in messages]
        target = self._renderer.ids(new, add_generation_prompt=True, documents=self._documents())
        self._check_context(len(target), max_new_tokens)
        self.messages = new
        cache = self._cache if self.reuse else self.backend.new_cache()
        cached = self._cached_ids if self.reuse else []
        reused, logits = self._feed(cache, cached, target, adapter=None, adapted=0)
        prefill = len(target) - reused
        stream = (
            None
            if on_token is None
            else TextStream(self.backend.tokenizer, self.backend.stop_token_ids, on_token)
        )
        tokens, fed, _ = self._decode(
            cache,
            logits,
            adapter=None,
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            seed=seed,
            on_token=stream,
        )
        text = self._text(tokens)
        self.messages.append({"role": "assistant", "content": text})
        if self.reuse:
            # The turn's closing tokens are fed by the next call, together with its own tokens.
            self._cached_ids = target + fed
        return GenerateResult(
            text=text,
            token_ids=tokens,
            stats=self._record(
                CallStats(
                    kind="generate",
                    prefill_tokens=prefill,
                    reused_tokens=reused,
                    generated_tokens=len(tokens),
                    seconds=time.perf_counter() - start,
                )
            ),
        )

    def invoke(
        self,
        adapter: str,
        *,
        messages: Sequence[Mapping[str, str]] = (),
        adapted_input: Sequence[int] = (),
        max_new_tokens: int = 32,
        allowed_token_ids: Sequence[int] | None = None,
        return_probs: bool = False,
        return_logits: bool = False,
        temperature: float = 0.0,
        seed: int | None = None,
        conversation: Sequence[Mapping[str, str]] | None = None,
        documents: DocumentsLike = None,
        logits_processor: LogitsProcessor | None = None,
    ) -> InvokeResult:
        """Run an aLoRA adapter after the conversation (plus ``messages``), then roll back.

        The adapter is active from its invocation tokens on (after the first
        ``activation_offset`` of them, see ``core.adapters.Activation``); everything before is
        base-model KV, which in reuse mode comes from the session cache. ``adapted_input`` (token
        ids) follows the invocation and is read by the adapter
        (``IntrinsicSpec.adapted_input_template``). ``conversation`` / ``documents`` replace the
        session's for this call only (an intrinsic that reads sentence-tagged turns); the cache is
        reused up to where the two renderings diverge. ``logits_processor`` sees (and may mask)
        the scores of every decoded token.
        """
        start = time.perf_counter()
        plan = self.invocation(
            adapter,
            messages=messages,
            adapted_input=adapted_input,
            conversation=conversation,
            documents=documents,
        )
        target = plan.ids
        self._check_context(len(target), max_new_tokens)
        with self._rollback(keep=target[: plan.prompt]):
            cache = self._cache if self.reuse else self.backend.new_cache()
            cached = self._cached_ids if self.reuse else []
            reused, logits = self._feed(cache, cached, target, adapter=adapter, adapted=plan.adapted)
            prefill = len(target) - reused
            first_logits = logits.detach().clone() if return_logits else None
            tokens, _, probs = self._decode(
                cache,
                logits,
                adapter=adapter,
                max_new_tokens=max_new_tokens,
                allowed=allowed_token_ids,
                temperature=temperature,
                seed=seed,
                want_probs=return_probs,
                processor=logits_processor,
            )
        return InvokeResult(
            text=self._text(tokens),
            token_ids=tokens,
            probs=probs,
            logits=first_logits,
            stats=self._record(
                CallStats(
                    kind="invoke",
                    adapter=adapter,
                    prefill_tokens=prefill,
                    reused_tokens=reused,
                    generated_tokens=len(tokens),
                    seconds=time.perf_counter() - start,
                )
            ),
        )

    def invocation(
        self,
        adapter: str,
        *,
        messages: Sequence[Mapping[str, str]] = (),
        adapted_input: Sequence[int] = (),
        conversation: Sequence[Mapping[str, str]] | None = None,
        documents: DocumentsLike = None,
    ) -> Invocation:
        """The tokens :meth:`invoke` runs for these arguments, without running them: for systems
        that must see the very same prompt (a standard-LoRA twin in an evaluation)."""
        info = self.backend.adapters.get(adapter)
        if info is None:
            raise AdapterError(
                f"no adapter named '{adapter}' is loaded (loaded: {sorted(self.backend.adapters) or 'none'})"
            )
        extra = [_as_message(m) for m in messages]
        base = self.messages if conversation is None else [_as_message(m) for m in conversation]
        if documents is None:
            # inline documents stay with their turns: a shorter conversation keeps only its own
            kept = [d for d in self.documents if d.turn is None or d.turn < len(base)]
            call_documents = self._documents(kept if conversation is not None else None, self.documents_as)
        else:
            call_documents = documents
        prompt = self._renderer.ids(base + extra, documents=call_documents)
        lead = info.invocation_tokens[: info.activation_offset]  # base weights, as trained
        adapted = info.adapter_tokens + [int(t) for t in adapted_input]
        return Invocation(ids=prompt + lead + adapted, prompt=len(prompt), adapted=len(adapted))

    def fork(self) -> Session:
        """An independent branch. Shares cached tensors with this session until either appends."""
        twin = Session.__new__(Session)
        twin.backend, twin.reuse = self.backend, self.reuse
        twin.messages = [dict(m) for m in self.messages]
        twin.documents = list(self.documents)
        twin.documents_as = self.documents_as
        twin.history = list(self.history)
        twin._renderer = self._renderer.copy()
        twin._cache = copy.copy(self._cache)
        twin._cache.layers = self._copy_layers()
        twin._cached_ids = list(self._cached_ids)
        return twin

    def mark(self) -> SessionMark:
        """This point of the conversation, to :meth:`rewind` to later."""
        return SessionMark(
            messages=len(self.messages),
            documents=len(self.documents),
            documents_as=self.documents_as,
            tokens=len(self.ids),
            digest=_digest(self.messages, self.documents),
        )

    def rewind(self, mark: SessionMark) -> CallStats:
        """Return to ``mark``: drop the messages and documents added since.

        In reuse mode the cache is cropped to the tokens the conversation keeps (they are a
        prefix of what is cached) and no forward runs: the recorded call has ``reused_tokens`` =
        the kept tokens and ``prefill_tokens`` = 0. (Where a template renders the shorter
        conversation differently, the differing tail is dropped too and the next call runs it.)
        Raises :class:`AloraFlowsError` when the conversation before the mark has changed since.
        """
        start = time.perf_counter()
        messages, documents = self.messages[: mark.messages], self.documents[: mark.documents]
        if (
            len(self.messages) < mark.messages
            or len(self.documents) < mark.documents
            or _digest(messages, documents) != mark.digest
        ):
            raise AloraFlowsError(
                f"cannot rewind to a mark of {mark.messages} messages and {mark.documents} documents: "
                "the conversation before it has changed since the mark was set"
            )
        self.messages, self.documents, self.documents_as = messages, documents, mark.documents_as
        reused = self._settle(self.ids) if self.reuse else 0
        return self._record(
            CallStats(
                kind="rewind",
                reused_tokens=reused,
                seconds=time.perf_counter() - start,
            )
        )

    # ------------------------------------------------------------------ internals
    def _documents_as(self, documents: DocumentsLike, incoming: list[Document]) -> DocsAs | None:
        """The session's rendering after adding ``incoming`` (one rendering per session)."""
        asked = documents.render_as if isinstance(documents, DocumentSet) else None
        if asked is None or not incoming:
            return self.documents_as
        if self.documents and asked != self.documents_as:
            raise DocumentError(
                f"this session renders its documents as {self.documents_as or 'the chat template does'}; "
                f"documents rendered as {asked!r} cannot join them (one rendering per session)"
            )
        return asked

    def _documents(
        self, documents: Sequence[Document] | None = None, how: DocsAs | None = None
    ) -> DocumentsLike:
        """What the renderer gets: the documents, with the session's rendering when it has one."""
        docs = self.documents if documents is None else documents
        how = self.documents_as if documents is None else how
        return list(docs) if how is None else DocumentSet(documents=tuple(docs), render_as=how)

    def _record(self, stats: CallStats) -> CallStats:
        self.history.append(stats)
        return stats

    def _check_context(self, prompt_tokens: int, max_new_tokens: int) -> None:
        limit = self.backend.max_context
        if prompt_tokens + max_new_tokens > limit:
            raise ContextLengthError(
                f"the conversation is {prompt_tokens} tokens and {max_new_tokens} more may be "
                f"generated, but the model's context is {limit} tokens: shorten the documents or "
                "history (e.g. retrieve fewer documents), lower max_new_tokens, or start a new session"
            )

    def _plain_layers(self) -> bool:
        """Whether every cache layer is one whose shallow copy is a free, exact snapshot and
        whose ``crop`` keeps a prefix: transformers' ``DynamicLayer`` (appends by concatenation)
        or our in-place ``ArenaLayer`` (copy-on-write). Other layer kinds (sliding windows, ...)
        are deep-copied and restored whole."""
        from transformers.cache_utils import DynamicLayer

        from alora_flows.core.kvcache import arena_layer_class

        kinds = (DynamicLayer, arena_layer_class())
        return all(type(layer) in kinds for layer in self._cache.layers)

    def _copy_layers(self) -> list:
        layers = self._cache.layers
        if self._plain_layers():
            return [copy.copy(layer) for layer in layers]
        return copy.deepcopy(layers)

    @contextmanager
    def _rollback(self, keep: Sequence[int] = ()) -> Iterator[None]:
        """Restore the cache after the block; but where the block's cache starts with ``keep``
        (base-model tokens it fed) further into the conversation than the snapshot did, keep that
        much of it instead: the next call need not run those tokens again."""
        layers, ids = self._copy_layers(), list(self._cached_ids)
        try:
            yield
        except BaseException:
            self._cache.layers, self._cached_ids = layers, ids
            raise
        conversation = self.ids if self.reuse and len(keep) > len(ids) else []
        kept = min(_common_prefix(list(keep), conversation), self._cache.get_seq_length())
        if kept > len(ids) and conversation[: len(ids)] == ids and self._plain_layers():
            self._crop(self._cache, kept)
            self._cached_ids = conversation[:kept]
        else:
            self._cache.layers, self._cached_ids = layers, ids

    def _crop(self, cache, keep: int) -> None:
        remove = cache.get_seq_length() - keep
        if remove > 0:
            cache.crop(-remove)

    def _settle(self, target: list[int]) -> int:
        """Crop the cache to its longest common prefix with ``target`` and run nothing: the rest
        of ``target`` is fed by the next model call. Returns the tokens kept."""
        kept = _common_prefix(self._cached_ids, target)
        self._crop(self._cache, kept)
        self._cached_ids = self._cached_ids[:kept]
        return kept

    def _sync(self, target: list[int]) -> tuple[int, int]:
        """Make the persistent cache hold ``target`` (base model). Returns (reused, prefilled)."""
        reused = _common_prefix(self._cached_ids, target)
        self._crop(self._cache, reused)
        self._cached_ids = self._cached_ids[:reused]
        if reused < len(target):
            self.backend.forward(target[reused:], self._cache)
        self._cached_ids = list(target)
        return reused, len(target) - reused

    def _feed(
        self, cache, cached: list[int], target: list[int], *, adapter: str | None, adapted: int
    ) -> tuple[int, torch.Tensor]:
        """Run the uncached tail of ``target`` on ``cache``; return (reused, last logits).

        Positions under an adapter (the last ``adapted`` of ``target``) are never reused: their
        KV must come from the adapter, not from base-model cache entries.
        """
        reused = min(_common_prefix(cached, target), len(target) - max(adapted, 1))
        self._crop(cache, reused)
        logits = self.backend.forward(target[reused:], cache, adapter=adapter, adapted=adapted)
        return reused, logits

    def _decode(self, cache, logits: torch.Tensor, *, adapter: str | None, **options: Any) -> Decoded:
        """The shared decode loop (:func:`~alora_flows.core.decoding.decode`) on ``cache``; an
        adapter stays active on every generated token, as it is on its invocation."""

        def step(token: int) -> torch.Tensor:
            return self.backend.forward([token], cache, adapter=adapter, adapted=1 if adapter else 0)

        return decode(step, logits, stop=self.backend.stop_token_ids, **options)

    def _text(self, tokens: list[int]) -> str:
        return detokenize(self.backend.tokenizer, tokens, self.backend.stop_token_ids)
