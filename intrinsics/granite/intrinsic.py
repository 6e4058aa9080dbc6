"""A Granite intrinsic as an :class:`~intrinsics.spec.IntrinsicSpec`: input and output processed
by its ``io.yaml`` exactly as granite-common and mellea do, on our KV-cache session.

What a call does (:meth:`GraniteSpec.run`):

1. builds the request (:mod:`intrinsics.granite.inputs`) from the session's conversation, the
   documents (the call's ``documents`` argument, else the session's) and the call's arguments (the
   flow state): sentence tags, documents as turns, the instruction turn;
2. checks the conversation ends where the adapter reads it (its shape's ``last_role``) and that
   documents are there when it reads them — else :class:`~alora_flows.errors.IntrinsicInputError`;
3. invokes the adapter with ``response_format`` as a decoding constraint, io.yaml's decoding
   parameters, and log-probabilities recorded when a ``likelihood`` rule needs them;
4. parses the JSON output, applies the rules, and validates the result against the model built
   from the processed schema (:mod:`intrinsics.granite.shapes`). Invalid JSON, a rule that cannot
   apply, a field that does not fit: :class:`~alora_flows.errors.IntrinsicOutputError` naming the
   adapter and the field. Nothing is replaced by a default.

An adapter directory without ``io.yaml`` (Granite 3.x adapters saved by the ``alora`` package)
loads as free text: its output is not constrained and ``TextOutput`` holds it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError

from alora_flows.core.adapters import activation, read_adapter_config
from alora_flows.core.documents import Document, as_documents
from alora_flows.errors import (
    AloraFlowsError,
    IntrinsicInputError,
    IntrinsicOutputError,
    IntrinsicSpecError,
    NotAnALoRAError,
)
from intrinsics.granite.decoding import DecodeProcessor, compile_schema
from intrinsics.granite.inputs import GraniteRequest, build_request, instruction_template
from intrinsics.granite.io_yaml import IoConfig, read_io_yaml
from intrinsics.granite.likelihood import TokenLogprob
from intrinsics.granite.shapes import ShapeInfo, model_from_schema, shape_of
from intrinsics.granite.transformations import OutputContext, Rule, build_rules, output_schema
from intrinsics.outputs import TextOutput
from intrinsics.spec import IntrinsicSpec, RawOutput, conversation_context

#: Token budget when io.yaml sets none (granite-common leaves it to the server).
DEFAULT_MAX_NEW_TOKENS = 1024


def _snippet(text: str) -> str:
    return repr(text[:100] + ("..." if len(text) > 100 else ""))


class GraniteParser:
    """Raw output -> typed output, by the io.yaml rules (picklable, comparable)."""

    def __init__(self, name: str, io: IoConfig | None, rules: Sequence[Rule], model: type[BaseModel]) -> None:
        self.name, self.io, self.rules, self.model = name, io, list(rules), model

    def __call__(self, raw: RawOutput) -> BaseModel:
        if self.io is None:
            return TextOutput(text=raw.text.strip())
        ctx = raw.context or {}
        max_tokens = ctx.get("max_new_tokens")
        try:
            value = json.loads(raw.text)
        except json.JSONDecodeError as exc:
            cut = (
                f" (decoding stopped at the {max_tokens}-token limit of io.yaml's max_completion_tokens)"
                if ctx.get("truncated")
                else ""
            )
            raise IntrinsicOutputError(
                f"intrinsic '{self.name}': output is not valid JSON ({exc.msg}){cut}: {_snippet(raw.text)}"
            ) from None
        tokens = ctx.get("granite_logprobs")
        if tokens is not None:
            tokens = [t if isinstance(t, TokenLogprob) else TokenLogprob.model_validate(t) for t in tokens]
        request = ctx.get("granite_request")
        if isinstance(request, Mapping):
            request = GraniteRequest.model_validate(request)
        octx = OutputContext(text=raw.text, io=self.io, tokens=tokens, request=request)
        for rule in self.rules:
            try:
                value = rule.apply(value, octx)
            except ValueError as exc:
                raise IntrinsicOutputError(
                    f"intrinsic '{self.name}': {exc}; output {_snippet(raw.text)}"
                ) from None
        try:
            return self.model.model_validate(value)
        except ValidationError as exc:
            error = exc.errors()[0]
            field = ".".join(str(p) for p in error["loc"]) or "output"
            raise IntrinsicOutputError(
                f"intrinsic '{self.name}': field '{field}' of the processed output: {error['msg']} "
                f"(got {json.dumps(value)[:120]})"
            ) from None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, GraniteParser) and (other.name, other.io, other.model) == (
            self.name,
            self.io,
            self.model,
        )

    def __hash__(self) -> int:
        return hash(self.name)

    def __repr__(self) -> str:
        return f"GraniteParser({self.name!r})"


@lru_cache(maxsize=256)
def _grammar(schema_json: str, adapter: str) -> str:
    return compile_schema(json.loads(schema_json), adapter=adapter)


class GraniteSpec(IntrinsicSpec):
    """An intrinsic described by a Granite ``io.yaml`` (see the module docstring)."""

    model_config = ConfigDict(arbitrary_types_allowed=True, frozen=True)

    io: IoConfig | None = None
    shape: ShapeInfo = ShapeInfo(name="text")
    #: The invocation as token ids, when the config records only ids (and no tokenizer decoded them).
    invocation_token_ids: list[int] | None = None
    #: Tokens of the invocation that run with the base weights (old-format adapters: 1).
    activation_offset: int = 0
    #: JSON schema of the processed output (None: free text).
    output_schema: dict[str, Any] | None = None
    source: str | None = None

    def invocation_ids(self, tokenizer) -> list[int]:
        if self.invocation_token_ids is not None:
            return list(self.invocation_token_ids)
        return super().invocation_ids(tokenizer)

    # ------------------------------------------------------------------ one call
    def call_documents(
        self, arguments: Mapping[str, Any], session_documents: Sequence[Document]
    ) -> tuple[list[Document], bool]:
        """The documents of a call: its ``documents`` argument, else the session's."""
        given = arguments.get("documents")
        if given is None:
            return list(session_documents), False
        try:
            return as_documents(given), True
        except AloraFlowsError as exc:
            raise IntrinsicInputError(
                f"intrinsic '{self.name}': argument 'documents': {exc.detail}"
            ) from None

    def check_call(self, conversation: Sequence[Mapping[str, str]], documents: Sequence[Document]) -> None:
        """The conversation ends where the adapter reads it; documents are there if it reads them."""
        want = self.shape.last_role
        if want and (not conversation or conversation[-1]["role"] != want):
            got = conversation[-1]["role"] if conversation else "nothing"
            what = "the user's question" if want == "user" else "the assistant's answer it judges"
            raise IntrinsicInputError(
                f"intrinsic '{self.name}' ({self.shape.name}) reads a conversation that ends with {what} "
                f"(a '{want}' turn), but it ends with {got}"
            )
        if self.shape.needs_documents and not documents:
            raise IntrinsicInputError(
                f"intrinsic '{self.name}' ({self.shape.name}) reads documents, and there are none: add them to "
                "the session (Session.extend(documents=...)) or pass a 'documents' argument"
            )

    def build_request(
        self,
        conversation: Sequence[Mapping[str, str]],
        documents: Sequence[Document],
        arguments: Mapping[str, Any],
        *,
        documents_overridden: bool = False,
        input_override: str | Sequence[Mapping[str, str]] | None = None,
    ) -> GraniteRequest:
        io = self.io or IoConfig()
        instruction = instruction_template(io.instruction, self.name) if io.instruction is not None else None
        return build_request(
            io,
            conversation,
            documents,
            arguments,
            adapter=self.name,
            documents_overridden=documents_overridden,
            input_override=input_override,
            instruction=instruction,
        )

    def decode_processor(self, tokenizer, stop_ids) -> DecodeProcessor:
        io = self.io or IoConfig()
        params = io.parameters or {}
        grammar = (
            _grammar(json.dumps(io.response_format, sort_keys=True), self.name)
            if io.response_format is not None
            else None
        )
        return DecodeProcessor(
            tokenizer,
            stop_ids=stop_ids,
            grammar=grammar,
            record_logprobs=io.needs_logprobs,
            temperature=io.temperature,
            top_k=params.get("top_k"),
            top_p=params.get("top_p"),
            adapter=self.name,
        )

    def prepare(self, session, adapter_name: str, state: Any = None, input_override: Any = None) -> None:
        """Granite calls need their own documents, conversation and a logits processor per call,
        which a packed forward does not carry: they run one by one (:meth:`run`)."""
        return None

    def run(
        self,
        session,
        adapter_name: str,
        state: Any = None,
        input_override: str | Sequence[Mapping[str, str]] | None = None,
    ) -> tuple[BaseModel, Any]:
        """Invoke the adapter as its io.yaml says and process the output (module docstring)."""
        arguments = self.template_context(state, session.messages)
        documents, overridden = self.call_documents(arguments, session.documents)
        self.check_call(session.messages, documents)
        request = self.build_request(
            session.messages,
            documents,
            arguments,
            documents_overridden=overridden,
            input_override=input_override,
        )
        backend = session.backend
        processor = self.decode_processor(backend.tokenizer, backend.stop_token_ids)
        io = self.io or IoConfig()
        result = session.invoke(
            adapter_name,
            messages=list(request.extra),
            conversation=None if request.conversation is None else list(request.conversation),
            documents=request.documents,
            max_new_tokens=self.max_new_tokens,
            temperature=io.temperature,
            seed=(io.parameters or {}).get("seed"),
            logits_processor=processor,
        )
        stopped = bool(result.token_ids) and result.token_ids[-1] in backend.stop_token_ids
        raw = RawOutput(
            text=result.text,
            token_ids=result.token_ids,
            context={
                **conversation_context(session.messages),
                "granite_request": request,
                "granite_logprobs": processor.logprobs(result.token_ids) if processor.record else None,
                "truncated": not stopped and len(result.token_ids) >= self.max_new_tokens,
                "max_new_tokens": self.max_new_tokens,
            },
        )
        return self.parse(raw), result.stats


# ---------------------------------------------------------------------------------- loading
def _safe_name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in text).strip("_")
    return cleaned if cleaned and not cleaned[0].isdigit() else f"i_{cleaned}"


def is_granite_dir(path: str | Path) -> bool:
    """Has Granite metadata: an ``io.yaml``, or the old ``alora`` package's ``invocation_string``."""
    from intrinsics.granite.io_yaml import io_file

    path = Path(path)
    if io_file(path) is not None:
        return True
    try:
        return "invocation_string" in read_adapter_config(path)
    except AloraFlowsError:
        return False


def load_granite_spec(path: str | Path, *, name: str | None = None, tokenizer=None) -> GraniteSpec:
    """A :class:`GraniteSpec` for a Granite adapter directory.

    With a ``tokenizer`` the invocation is placed exactly (:func:`core.adapters.activation`:
    typed errors when the config's records disagree); without one, a config recording only token
    ids keeps them as ids.
    """
    path = Path(path)
    config = read_adapter_config(path, name=name)
    io = read_io_yaml(path)
    spec_name = _safe_name(name or (io.name if io and io.name else "") or shape_of(io).name)
    string, tokens = config.get("invocation_string"), config.get("alora_invocation_tokens")
    offset = 0
    if not string and not tokens:
        raise NotAnALoRAError(
            f"intrinsic '{spec_name}': {path} holds a plain LoRA (no alora_invocation_tokens or "
            "invocation_string): it cannot reuse the conversation's cache; use the library's aLoRA "
            "folder for this intrinsic"
        )
    if tokenizer is not None:
        act = activation(config, tokenizer, name=spec_name, path=path)
        assert act is not None
        invocation, ids, offset = (
            act.invocation_string or tokenizer.decode(act.tokens),
            act.tokens,
            act.offset,
        )
    elif string:
        invocation, ids, offset = string, None, 1
    else:
        invocation, ids = f"<invocation tokens {tokens}>", [int(t) for t in tokens or []]
    shape = shape_of(io)
    rules = build_rules(io, spec_name) if io else []
    schema = output_schema(io, rules) if io else None
    if io is None:
        model: type[BaseModel] = TextOutput
    else:
        model = model_from_schema(schema, f"granite_{spec_name}")
    if io is not None and io.instruction is not None:
        instruction_template(io.instruction, spec_name)  # placeholders checked at load
    if io is not None and io.response_format is not None:
        _grammar(json.dumps(io.response_format, sort_keys=True), spec_name)
    max_new = (io.max_new_tokens if io else None) or DEFAULT_MAX_NEW_TOKENS
    try:
        return GraniteSpec(
            name=spec_name,
            invocation=invocation,
            kind="granite",
            description=f"Granite intrinsic ({shape.name}: {shape.summary}) from {path}",
            max_new_tokens=max(1, min(int(max_new), 4096)),
            output_model=model,
            parser=GraniteParser(spec_name, io, rules, model),
            io=io,
            shape=shape,
            invocation_token_ids=ids,
            activation_offset=offset,
            output_schema=schema,
            source=str(path),
        )
    except ValidationError as exc:
        raise IntrinsicSpecError(f"{path}: {exc.errors()[0]['msg']}") from None
