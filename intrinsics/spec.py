"""The intrinsic spec: everything needed to call one aLoRA adapter and turn its output into data.

An intrinsic is *not* the adapter weights. It is the contract around them: which invocation
sequence activates the adapter, which (optional) input turn is appended first, what (optional)
text follows the invocation for the adapter itself to read, how decoding is constrained, and how
the raw text/probabilities become a typed pydantic object. Keeping the spec
separate from the weights lets one spec serve the shipped adapter, a user-trained one, a standard
LoRA baseline and a Granite adapter alike.

Why parsers never crash: a flow branches on intrinsic outputs. A parser either returns the typed
output (possibly a documented fallback such as ``RewriteOutput(fallback=True)``) or raises
:class:`~alora_flows.errors.IntrinsicOutputError`, which the runner reports with the node name.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from alora_flows.core.chat import escaper, tokenizer_cache
from alora_flows.errors import IntrinsicOutputError, IntrinsicSpecError

Role = Literal["system", "user", "assistant", "tool"]
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class RawOutput(BaseModel):
    """What the adapter produced, before parsing. Parsers receive exactly this.

    ``label_probs`` is filled when decoding was constrained to ``allowed_outputs`` and the labels
    could be told apart by their first token: it maps each label to its probability at the first
    output position (renormalised over the labels). ``context`` is the template context the input
    turn was rendered from (flow state + conversation helpers), so parsers can fall back on it.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    text: str
    token_ids: list[int] = Field(default_factory=list)
    label_probs: dict[str, float] | None = None
    context: dict[str, Any] = Field(default_factory=dict)


Parser = Callable[[RawOutput], BaseModel]
Formatter = Callable[[BaseModel], str]


class DecodingPlan(BaseModel):
    """How to decode one intrinsic with one tokenizer (computed once per tokenizer).

    When every allowed output starts with a distinct token, decoding one token is enough: the
    label is read off that token and ``return_probs`` gives a calibrated distribution over labels
    for free. Otherwise decoding is constrained to the union of the labels' tokens (plus the stop
    token) and the text is matched against the labels afterwards.
    """

    max_new_tokens: int
    allowed_token_ids: list[int] | None = None
    return_probs: bool = False
    first_token_labels: dict[int, str] | None = None


def _state_dict(state: Any) -> dict[str, Any]:
    """Flow state as a plain mapping, keeping values as objects (``str(rewrite)`` must still work)."""
    if state is None:
        return {}
    if isinstance(state, Mapping):
        return dict(state)
    if isinstance(state, BaseModel):
        data = {k: getattr(state, k) for k in type(state).model_fields}
        data.update(getattr(state, "__pydantic_extra__", None) or {})
        return data
    raise IntrinsicSpecError(
        f"intrinsic state must be a mapping or a pydantic model, got {type(state).__name__}"
    )


#: The parser-context key holding the texts of the conversation's documents (the session's
#: first-class documents), the only text a hallucination evidence check may quote. Absent: unknown.
SOURCE_DOCUMENTS = "source_documents"


def conversation_context(messages: Sequence[Mapping[str, str]]) -> dict[str, Any]:
    """Helpers every input template can use: the conversation and its last user/assistant turns."""
    msgs = [dict(m) for m in messages]
    last = {
        role: next((m["content"] for m in reversed(msgs) if m.get("role") == role), "")
        for role in ("user", "assistant")
    }
    return {"messages": msgs, "last_user": last["user"], "last_assistant": last["assistant"]}


def layout_documents(messages: Sequence[Mapping[str, str]]) -> list[str]:
    """The documents of a data file's conversation, read from the embedded model's RAG layout.

    Training and evaluation JSONL files hold conversations as rendered, with the documents in a
    user turn ``"<documents>\n\nQuestion: <question>"`` (the ``inline`` rendering of
    :mod:`alora_flows.core.documents`); there that layout marks them. Live sessions never use
    this: they know their documents.
    """
    from alora_flows.core.documents import split_inline

    out = []
    for m in messages:
        parts = split_inline(m["content"]) if m.get("role") == "user" else None
        if parts is not None:
            out.append(parts[0])
    return out


class PreparedCall(BaseModel):
    """One intrinsic call, ready to run: the session call, its decoding plan, the parser context."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    call: Any  # alora_flows.core.parallel.IntrinsicCall
    plan: DecodingPlan
    context: dict[str, Any]


class IntrinsicSpec(BaseModel):
    """One intrinsic: invocation, optional input turn, decoding constraints, output type, parser.

    ``invocation`` is the text whose tokens (tokenized *without* added special tokens) activate the
    adapter. For the embedded ChatML model it begins with ``<|im_start|>`` so that it always starts
    a fresh token, e.g. ``"<|im_start|>certainty\\n"``.
    ``input_template`` (Jinja, sandboxed, strict) renders a turn appended before the invocation;
    like the invocation it is rolled back after the call. The base model reads that turn.
    ``adapted_input_template`` renders text placed right *after* the invocation tokens, so the
    adapter reads it with its own weights: the one way an aLoRA can re-represent part of the
    conversation (say, the answer it rates), which the base model's cache fixes before the
    invocation. Its tokens are paid on every call, and they are still independent of the
    conversation's length. Also rolled back. ``allowed_outputs`` constrains decoding.
    ``formatter`` turns an output object into the exact target text the adapter is trained on.
    ``input_once``: the input turn is the conversation's latest question (rewrite). Without a
    ``question`` in the flow state, the template's ``question`` is the conversation's last turn
    of ``input_role``. When that turn already holds the input turn's content, the call runs on
    the conversation up to it and appends nothing: the adapter sees the question once, as
    trained, whether or not the flow had already added it.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    name: str
    invocation: str
    kind: str = "custom"
    description: str = ""
    input_template: str | None = None
    input_role: Role = "user"
    input_once: bool = False
    adapted_input_template: str | None = None
    max_new_tokens: int = Field(32, ge=1, le=4096)
    allowed_outputs: tuple[str, ...] | None = None
    output_model: type[BaseModel]
    parser: Parser
    formatter: Formatter | None = None
    base_prompt: str | None = None  # instruction for prompting the base model without an adapter

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            # it usually doubles as the PEFT adapter name, which must be a Python identifier
            raise ValueError(f"intrinsic name {value!r} must be an identifier (letters, digits, _)")
        return value

    @field_validator("invocation")
    @classmethod
    def _check_invocation(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("the invocation string must not be empty")
        return value

    @field_validator("allowed_outputs")
    @classmethod
    def _check_outputs(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None and (not value or any(not v for v in value) or len(set(value)) != len(value)):
            raise ValueError("allowed_outputs must be distinct, non-empty strings")
        return value

    # ------------------------------------------------------------------ tokens
    def invocation_ids(self, tokenizer) -> list[int]:
        """The adapter's invocation tokens: the invocation tokenized without added special tokens
        (once per tokenizer and invocation string; a fresh list each call)."""
        cache = tokenizer_cache(tokenizer)
        key = ("invocation_ids", self.invocation)
        ids = cache.get(key)
        if ids is None:
            ids = tuple(tokenizer(self.invocation, add_special_tokens=False)["input_ids"])
            if not ids:
                raise IntrinsicSpecError(
                    f"intrinsic '{self.name}': invocation {self.invocation!r} tokenizes to nothing"
                )
            cache[key] = ids
        return list(ids)

    def decoding_plan(self, tokenizer) -> DecodingPlan:
        """Turn ``allowed_outputs`` into token constraints for ``tokenizer`` (see :class:`DecodingPlan`).

        Computed once per tokenizer and (``allowed_outputs``, ``max_new_tokens``): intrinsic calls
        ask for it on every invocation. Returns a copy, so callers cannot alter the cached plan.
        """
        cache = tokenizer_cache(tokenizer)
        key = ("decoding_plan", self.allowed_outputs, self.max_new_tokens)
        plan = cache.get(key)
        if plan is None:
            plan = cache[key] = self._plan(tokenizer)
        return plan.model_copy(deep=True)

    def _plan(self, tokenizer) -> DecodingPlan:
        if not self.allowed_outputs:
            return DecodingPlan(max_new_tokens=self.max_new_tokens)
        encoded = {
            label: tokenizer(label, add_special_tokens=False)["input_ids"] for label in self.allowed_outputs
        }
        empty = [label for label, ids in encoded.items() if not ids]
        if empty:
            raise IntrinsicSpecError(f"intrinsic '{self.name}': outputs {empty} tokenize to nothing")
        firsts = [ids[0] for ids in encoded.values()]
        if len(set(firsts)) == len(firsts):
            return DecodingPlan(
                max_new_tokens=1,
                allowed_token_ids=firsts,
                return_probs=True,
                first_token_labels={ids[0]: label for label, ids in encoded.items()},
            )
        union = sorted({t for ids in encoded.values() for t in ids})
        longest = max(len(ids) for ids in encoded.values())
        return DecodingPlan(max_new_tokens=max(longest + 1, 2), allowed_token_ids=union)

    # ------------------------------------------------------------------ input turn
    def template_context(
        self,
        state: Any = None,
        conversation: Sequence[Mapping[str, str]] = (),
        documents: Sequence[Any] | None = None,
    ) -> dict[str, Any]:
        """Context for the input template: conversation helpers, overridden by flow-state fields.

        ``documents`` (the session's :class:`~alora_flows.core.documents.Document` objects or
        texts) go under :data:`SOURCE_DOCUMENTS`, after the state, so no state field can pose
        as documents.
        """
        context = {**conversation_context(conversation), **_state_dict(state)}
        if self.input_once and context.get("question") is None:
            # no question from the flow: the conversation's last turn of input_role is the question
            context["question"] = next(
                (m["content"] for m in reversed(conversation) if m.get("role") == self.input_role), ""
            )
        if documents is not None:
            context[SOURCE_DOCUMENTS] = [getattr(d, "text", d) for d in documents]
        return context

    def render_input(self, context: Mapping[str, Any]) -> str | None:
        """Render the input turn's content, or ``None`` when the intrinsic has no input turn."""
        if self.input_template is None:
            return None
        from alora_flows.sandbox.templates import render_template

        return render_template(self.input_template, context, what=f"intrinsic '{self.name}' input_template")

    def render_adapted_input(self, context: Mapping[str, Any]) -> str:
        """The text after the invocation (see the class docstring); empty without a template."""
        if self.adapted_input_template is None:
            return ""
        from alora_flows.sandbox.templates import render_template

        return render_template(
            self.adapted_input_template, context, what=f"intrinsic '{self.name}' adapted_input_template"
        )

    def adapted_input_ids(self, tokenizer, context: Mapping[str, Any]) -> list[int]:
        """Token ids of :meth:`render_adapted_input`; ``[]`` without a template.

        The text is tokenized as plain text: special-token strings in it are broken exactly as
        in message content (:meth:`ChatRenderer.escape`), so an answer that quotes
        ``<|im_start|>`` can neither forge a turn nor fake an invocation where the adapter reads it.
        """
        text = self.render_adapted_input(context)
        if not text:
            return []
        return list(tokenizer(escaper(tokenizer)(text), add_special_tokens=False)["input_ids"])

    def example_context(
        self, messages: Sequence[Mapping[str, str]], state: Any = None
    ) -> tuple[list[dict[str, str]], dict[str, Any]]:
        """Split training/evaluation ``messages`` (conversation + this intrinsic's input turn, as
        :meth:`training_messages` writes them) into the conversation and the template context
        that :meth:`run` would have built for it, ``input`` included."""
        msgs = [{"role": m["role"], "content": m["content"]} for m in messages]
        has_input = self.input_template is not None and len(msgs) > 1
        conversation = msgs[:-1] if has_input else msgs
        context = self.template_context(state, conversation, documents=layout_documents(conversation))
        context["input"] = msgs[-1]["content"] if has_input else None
        return conversation, context

    def input_messages(
        self,
        state: Any = None,
        conversation: Sequence[Mapping[str, str]] = (),
        input_override: str | Sequence[Mapping[str, str]] | None = None,
    ) -> list[dict[str, str]]:
        """The turns appended before the invocation (and rolled back with it).

        ``input_override`` replaces the rendered template: a string becomes the content of the
        input turn, a list of messages is used as-is (an empty list means no input turn).
        """
        if input_override is not None:
            if isinstance(input_override, str):
                return [{"role": self.input_role, "content": input_override}]
            return [{"role": m["role"], "content": m["content"]} for m in input_override]
        content = self.render_input(self.template_context(state, conversation))
        return [] if content is None else [{"role": self.input_role, "content": content}]

    def _asked_at(self, conversation: Sequence[Mapping[str, str]], extra: list[dict[str, str]]) -> int | None:
        """With :attr:`input_once`: the index of the conversation's last ``input_role`` turn when
        it already holds the input turn's content (the call then runs up to it, appending
        nothing), else None."""
        if not self.input_once or len(extra) != 1:
            return None
        index = next(
            (i for i in range(len(conversation) - 1, -1, -1) if conversation[i]["role"] == self.input_role),
            None,
        )
        if index is None or conversation[index]["content"].strip() != extra[0]["content"].strip():
            return None
        return index

    def training_messages(
        self, conversation: Sequence[Mapping[str, str]], state: Any = None
    ) -> list[dict[str, str]]:
        """``messages`` for a training JSONL line: the conversation plus this intrinsic's input turn."""
        conv = [{"role": m["role"], "content": m["content"]} for m in conversation]
        return conv + self.input_messages(state, conv)

    def format_output(self, output: BaseModel | Mapping[str, Any]) -> str:
        """The exact target text for training (so data generators and parsers agree)."""
        if isinstance(output, Mapping):
            output = self.output_model.model_validate(output)
        if self.formatter is None:
            raise IntrinsicSpecError(f"intrinsic '{self.name}' has no formatter; write target texts yourself")
        return self.formatter(output)

    # ------------------------------------------------------------------ parse / run
    def parse(self, raw: RawOutput) -> BaseModel:
        """Run the parser; anything it raises becomes an :class:`IntrinsicOutputError`."""
        try:
            out = self.parser(raw)
        except IntrinsicOutputError:
            raise
        except Exception as exc:  # user parsers: never let a bad output crash the flow
            raise IntrinsicOutputError(
                f"intrinsic '{self.name}' could not parse output {raw.text[:120]!r}: {exc}"
            ) from exc
        if not isinstance(out, self.output_model):
            raise IntrinsicOutputError(
                f"intrinsic '{self.name}': parser returned {type(out).__name__}, "
                f"expected {self.output_model.__name__}"
            )
        return out

    def raw_from_tokens(
        self,
        text: str,
        token_ids: Sequence[int],
        probs: Mapping[int, float] | None,
        plan: DecodingPlan,
        context: dict[str, Any] | None = None,
    ) -> RawOutput:
        """Build the :class:`RawOutput` for decoded tokens (maps first-token probs to labels)."""
        label_probs = None
        if plan.first_token_labels:
            if probs:
                label_probs = {
                    label: float(probs.get(tid, 0.0)) for tid, label in plan.first_token_labels.items()
                }
            if token_ids and token_ids[0] in plan.first_token_labels:
                text = plan.first_token_labels[token_ids[0]]
        return RawOutput(text=text, token_ids=list(token_ids), label_probs=label_probs, context=context or {})

    def prepare(
        self,
        session,
        adapter_name: str,
        state: Any = None,
        input_override: str | Sequence[Mapping[str, str]] | None = None,
    ) -> PreparedCall | None:
        """The call :meth:`run` makes, without making it: several prepared calls can share one
        packed forward (:func:`alora_flows.core.parallel.invoke_parallel`); :meth:`finish` parses.
        None when this intrinsic's call cannot be packed (a subclass whose :meth:`run` needs more
        than a plain invocation); the caller then uses :meth:`run`."""
        prepared, upto = self._prepare(session, adapter_name, state, input_override)
        return prepared if upto is None else None

    def _prepare(
        self,
        session,
        adapter_name: str,
        state: Any = None,
        input_override: str | Sequence[Mapping[str, str]] | None = None,
    ) -> tuple[PreparedCall, int | None]:
        """The prepared call, and (``input_once``) how many turns of the conversation it runs on
        when that is fewer than all of them (None: all)."""
        from alora_flows.core.parallel import IntrinsicCall

        tokenizer = session.backend.tokenizer
        context = self.template_context(
            state, session.messages, documents=getattr(session, "documents", None)
        )
        extra = self.input_messages(state, session.messages, input_override)
        context["input"] = extra[-1]["content"] if extra else None
        upto = None
        asked = self._asked_at(session.messages, extra)
        if asked is not None:
            extra = []
            upto = None if asked == len(session.messages) - 1 else asked + 1
        plan = self.decoding_plan(tokenizer)
        call = IntrinsicCall(
            adapter=adapter_name,
            messages=extra,
            adapted_input=self.adapted_input_ids(tokenizer, context),
            max_new_tokens=plan.max_new_tokens,
            allowed_token_ids=plan.allowed_token_ids,
            return_probs=plan.return_probs,
        )
        return PreparedCall(call=call, plan=plan, context=context), upto

    def finish(self, prepared: PreparedCall, result: Any) -> BaseModel:
        """The typed output of a prepared call, given the session's ``InvokeResult``."""
        raw = self.raw_from_tokens(
            result.text, result.token_ids, result.probs, prepared.plan, prepared.context
        )
        return self.parse(raw)

    def run(
        self,
        session,
        adapter_name: str,
        state: Any = None,
        input_override: str | Sequence[Mapping[str, str]] | None = None,
    ) -> tuple[BaseModel, Any]:
        """Invoke the adapter on the session's conversation and parse. Returns ``(output, CallStats)``.

        The session's conversation and cache are unchanged afterwards (``Session.invoke`` rolls
        back the input turn, the invocation and the adapted input).
        """
        prepared, upto = IntrinsicSpec._prepare(self, session, adapter_name, state, input_override)
        call = prepared.call
        result = session.invoke(
            call.adapter,
            messages=call.messages,
            adapted_input=call.adapted_input,
            max_new_tokens=call.max_new_tokens,
            allowed_token_ids=call.allowed_token_ids,
            return_probs=call.return_probs,
            conversation=None if upto is None else session.messages[:upto],
        )
        return self.finish(prepared, result), result.stats

    def replace(self, **changes: Any) -> IntrinsicSpec:
        """A validated copy with some fields changed (e.g. another invocation for another model)."""
        return type(self).model_validate(
            {**{k: getattr(self, k) for k in type(self).model_fields}, **changes}
        )
