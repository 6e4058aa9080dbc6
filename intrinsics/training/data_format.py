"""The training/evaluation JSONL format and its exact tokenization.

One example a line (the format ``alora-flows train`` reads; docs/intrinsics.md)::

    {"intrinsic": "rewrite", "messages": [{"role": "user", "content": "..."}], "output": "<target text>"}

``messages`` is the conversation exactly as the session holds it when the intrinsic is invoked,
including the intrinsic's own input turn (use :meth:`IntrinsicSpec.training_messages`), and
``output`` is the target text (use :meth:`IntrinsicSpec.format_output`). Extra keys are kept in
``meta`` (e.g. ``{"correct": true}`` for certainty calibration in evaluation).

Why tokenize pieces separately: the sequence is ``render(messages) + invocation + output + end``,
each tokenized on its own and concatenated as ids. Tokenizing the joined text could merge tokens
across the boundaries, and then the invocation ids the adapter learns would differ from the ones
the session appends at inference. ``render`` is the session's own :class:`ChatRenderer`, so
training and inference see identical prompt tokens. An intrinsic with an adapted input (text after
the invocation) gets ``render(messages) + invocation + adapted input + output + end``.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from alora_flows.core.decoding import end_of_turn_id
from alora_flows.errors import AloraFlowsError


class DataError(AloraFlowsError, ValueError):
    """A training/evaluation data file is missing or malformed (names the file and line)."""


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "user", "assistant", "tool"]
    content: str


class Example(BaseModel):
    """One JSONL line. Unknown keys go to ``meta``."""

    model_config = ConfigDict(extra="allow")

    intrinsic: str | None = None
    messages: list[ChatMessage] = Field(min_length=1)
    output: str

    @property
    def meta(self) -> dict[str, Any]:
        extra = dict(self.__pydantic_extra__ or {})
        nested = extra.pop("meta", None)
        return {**extra, **(nested if isinstance(nested, dict) else {})}

    def message_dicts(self) -> list[dict[str, str]]:
        return [{"role": m.role, "content": m.content} for m in self.messages]


def read_jsonl(path: str | Path, *, intrinsic: str | Iterable[str] | None = None) -> list[Example]:
    """Examples from ``path``; with ``intrinsic``, only lines for that name (or names).

    Lines without an ``intrinsic`` key are kept (single-intrinsic files need not repeat it).
    """
    path = Path(path)
    names = {intrinsic} if isinstance(intrinsic, str) else set(intrinsic or ())
    if not path.is_file():
        raise DataError(f"{path}: no such data file")
    examples = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                example = Example.model_validate(json.loads(line))
            except json.JSONDecodeError as exc:
                raise DataError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from exc
            except ValidationError as exc:
                problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
                raise DataError(f"{path}:{lineno}: {problems}") from exc
            if names and example.intrinsic is not None and example.intrinsic not in names:
                continue
            examples.append(example)
    return examples


def write_jsonl(path: str | Path, examples: Iterable[Example | dict[str, Any]]) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", encoding="utf-8") as fh:
        for ex in examples:
            data = ex.model_dump(exclude_none=True) if isinstance(ex, BaseModel) else ex
            fh.write(json.dumps(data, ensure_ascii=False) + "\n")
    return path


def end_token_id(tokenizer) -> int:
    """The end-of-turn token the adapter learns to emit after its output: one of the session's
    stop tokens by construction (:func:`alora_flows.core.decoding.end_of_turn_id`)."""
    tid = end_of_turn_id(tokenizer)
    if tid is None:
        raise DataError("the tokenizer has no end-of-turn or EOS token to end intrinsic outputs with")
    return tid


class Encoded(BaseModel):
    """Token ids of one example; ``invocation_start`` indexes the first invocation token."""

    input_ids: list[int]
    labels: list[int]
    invocation_start: int

    @property
    def prompt_length(self) -> int:
        return sum(1 for label in self.labels if label == -100)


class Encoder:
    """Tokenizes examples the way sessions render conversations (see module docstring).

    ``adapted_input`` (messages, meta) -> ids gives the tokens that follow the invocation, as
    ``IntrinsicSpec.adapted_input_template`` renders them at inference (:meth:`for_spec`).
    """

    def __init__(
        self,
        tokenizer,
        invocation_ids: Sequence[int],
        adapted_input: Callable[[Sequence[dict[str, str]], dict[str, Any]], list[int]] | None = None,
    ) -> None:
        from alora_flows.core.chat import ChatRenderer

        self.tokenizer = tokenizer
        self.renderer = ChatRenderer(tokenizer)
        self.invocation_ids = list(invocation_ids)
        self.adapted_input = adapted_input
        self.end_id = end_token_id(tokenizer)

    @classmethod
    def for_spec(cls, tokenizer, spec) -> Encoder:
        """The encoder of ``spec`` (an :class:`~intrinsics.spec.IntrinsicSpec`): its invocation and,
        when it has one, its adapted input rendered from each example as :meth:`IntrinsicSpec.run` would."""

        def adapted(messages: Sequence[dict[str, str]], meta: dict[str, Any]) -> list[int]:
            return spec.adapted_input_ids(tokenizer, spec.example_context(messages, meta)[1])

        return cls(
            tokenizer,
            spec.invocation_ids(tokenizer),
            adapted if spec.adapted_input_template is not None else None,
        )

    def prompt(
        self, messages: Sequence[dict[str, str]], meta: dict[str, Any] | None = None
    ) -> tuple[list[int], int]:
        """``render(messages) + invocation [+ adapted input]`` and the invocation's start index."""
        conv = self.renderer.ids(list(messages))
        after = self.adapted_input(messages, meta or {}) if self.adapted_input else []
        return conv + self.invocation_ids + after, len(conv)

    def encode(
        self, messages: Sequence[dict[str, str]], output: str, meta: dict[str, Any] | None = None
    ) -> Encoded:
        prompt, start = self.prompt(messages, meta)
        out = self.tokenizer(output, add_special_tokens=False)["input_ids"] + [self.end_id]
        return Encoded(input_ids=prompt + out, labels=[-100] * len(prompt) + out, invocation_start=start)
