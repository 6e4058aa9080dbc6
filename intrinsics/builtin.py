"""The built-in intrinsics and the *kinds* that intrinsic.yaml files can name.

A kind is a factory ``(name, invocation, **options) -> IntrinsicSpec``: it fixes the output type,
parser, formatter and defaults, while the name, invocation string and template can vary. That is
how a YAML file next to an adapter says "this is a certainty intrinsic with invocation X", and how
a Granite adapter maps onto the same specs.

Conversation shape each built-in expects when invoked (and in its training data):

- ``uncertainty``: the conversation ends with the assistant answer to rate. No input turn; the
  adapter re-reads that answer after its invocation (:data:`UNCERTAINTY_ADAPTED_INPUT`): the
  base model's cache fixes how the answer was represented when it was written, while a
  standard LoRA re-represents every token; reading the answer again with the adapter's weights
  is the aLoRA's way to do the same (what it measured: ``adapters/<model>/BUILD.md``). A spec file with
  ``adapted_input_template: null`` gives adapters trained without it (and Granite adapters)
  nothing after the invocation.
- ``hallucination``: the documents are in the conversation, it ends with the assistant answer.
  Input turn :data:`HALLUCINATION_NUMBERED_INPUT` lists that answer's sentences, numbered as ``r``
  (:func:`~alora_flows.sandbox.text.split_sentences`): without it, a small model loses count of the
  sentences it labels. A spec file with ``input_template: null`` gives adapters trained without
  it (and Granite adapters) no input turn.
- ``rewrite``: any prior conversation; the input turn is the question to make standalone: the
  flow state's ``question``, or without one the conversation's last user turn. The question is
  sent once (``input_once``): when the conversation already ends with it, nothing is appended.
- ``answerability``: the conversation ends with the user turn that holds the documents and the
  question (e.g. appended by a ``message`` node). No input turn.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from alora_flows.errors import IntrinsicSpecError
from intrinsics.outputs import (
    AnswerabilityOutput,
    ChoiceOutput,
    HallucinationOutput,
    JsonOutput,
    RewriteOutput,
    TextOutput,
    UncertaintyOutput,
)
from intrinsics.parsers import (
    ANSWERABILITY_LABELS,
    DIGITS,
    ChoiceParser,
    format_hallucination,
    format_json,
    format_label,
    format_rewrite,
    format_text,
    format_uncertainty,
    parse_answerability,
    parse_hallucination,
    parse_json,
    parse_rewrite,
    parse_text,
    parse_uncertainty,
)
from intrinsics.spec import IntrinsicSpec

HALLUCINATION_NUMBERED_INPUT = "Answer sentences:\n{{ last_assistant | sentences | numbered }}"
REWRITE_INPUT = "{{ question }}"
UNCERTAINTY_ADAPTED_INPUT = "Answer: {{ last_assistant }}\nScore:"

KindFactory = Callable[..., IntrinsicSpec]


def uncertainty_spec(
    name: str = "uncertainty", invocation: str = "<|im_start|>certainty\n", **options: Any
) -> IntrinsicSpec:
    return IntrinsicSpec(
        **{
            "name": name,
            "invocation": invocation,
            "kind": "uncertainty",
            "description": "Certainty (0-1) that the last answer is correct.",
            "adapted_input_template": UNCERTAINTY_ADAPTED_INPUT,
            "max_new_tokens": 1,
            "allowed_outputs": DIGITS,
            "output_model": UncertaintyOutput,
            "parser": parse_uncertainty,
            "formatter": format_uncertainty,
            "base_prompt": "How certain are you that your last answer is correct, on a scale from 0 "
            "(surely wrong) to 9 (surely right)? Reply with one digit.",
            **options,
        }
    )


def hallucination_spec(
    name: str = "hallucination", invocation: str = "<|im_start|>hallucination\n", **options: Any
) -> IntrinsicSpec:
    return IntrinsicSpec(
        **{
            "name": name,
            "invocation": invocation,
            "kind": "hallucination",
            "description": "Per-sentence faithfulness of the last answer to the documents.",
            "input_template": HALLUCINATION_NUMBERED_INPUT,
            "max_new_tokens": 192,
            "output_model": HallucinationOutput,
            "parser": parse_hallucination,
            "formatter": format_hallucination,
            "base_prompt": "For each sentence of the last answer (numbered from 0), say whether the documents support it: "
            "faithful, partial or unfaithful. Reply with a JSON list like "
            '[{"r": 0, "f": "faithful"}].',
            **options,
        }
    )


def rewrite_spec(
    name: str = "rewrite", invocation: str = "<|im_start|>rewrite\n", **options: Any
) -> IntrinsicSpec:
    return IntrinsicSpec(
        **{
            "name": name,
            "invocation": invocation,
            "kind": "rewrite",
            "description": "Standalone version of the last user question, given the conversation.",
            "input_template": REWRITE_INPUT,
            "input_once": True,
            "max_new_tokens": 64,
            "output_model": RewriteOutput,
            "parser": parse_rewrite,
            "formatter": format_rewrite,
            "base_prompt": "Rewrite my last question so that it can be understood without the conversation. "
            'Reply with JSON: {"rewritten_question": "..."}',
            **options,
        }
    )


def answerability_spec(
    name: str = "answerability", invocation: str = "<|im_start|>answerability\n", **options: Any
) -> IntrinsicSpec:
    return IntrinsicSpec(
        **{
            "name": name,
            "invocation": invocation,
            "kind": "answerability",
            "description": "Whether the documents in the conversation answer the last question.",
            "max_new_tokens": 4,
            "allowed_outputs": ANSWERABILITY_LABELS,
            "output_model": AnswerabilityOutput,
            "parser": parse_answerability,
            "formatter": format_label,
            "base_prompt": "Can the last question be answered from the documents above? "
            "Reply with one word: answerable or unanswerable.",
            **options,
        }
    )


def choice_spec(
    name: str, invocation: str, *, labels: Sequence[str] | None = None, **options: Any
) -> IntrinsicSpec:
    """A custom classifier: the adapter emits one of ``labels``."""
    labels = tuple(labels or options.pop("allowed_outputs", None) or ())
    if not labels:
        raise IntrinsicSpecError(f"intrinsic '{name}': kind 'choice' needs labels")
    return IntrinsicSpec(
        **{
            "name": name,
            "invocation": invocation,
            "kind": "choice",
            "max_new_tokens": 8,
            "allowed_outputs": labels,
            "output_model": ChoiceOutput,
            "parser": ChoiceParser(labels),
            "formatter": format_label,
            **options,
        }
    )


def json_spec(name: str, invocation: str, **options: Any) -> IntrinsicSpec:
    """A custom structured intrinsic: the adapter emits one JSON object or list."""
    return IntrinsicSpec(
        **{
            "name": name,
            "invocation": invocation,
            "kind": "json",
            "max_new_tokens": 128,
            "output_model": JsonOutput,
            "parser": parse_json,
            "formatter": format_json,
            **options,
        }
    )


def text_spec(name: str, invocation: str, **options: Any) -> IntrinsicSpec:
    """A custom generative intrinsic: free text."""
    return IntrinsicSpec(
        **{
            "name": name,
            "invocation": invocation,
            "kind": "text",
            "max_new_tokens": 64,
            "output_model": TextOutput,
            "parser": parse_text,
            "formatter": format_text,
            **options,
        }
    )


#: kind name -> factory. ``certainty`` is the Granite name of ``uncertainty``.
KINDS: dict[str, KindFactory] = {
    "uncertainty": uncertainty_spec,
    "certainty": uncertainty_spec,
    "hallucination": hallucination_spec,
    "rewrite": rewrite_spec,
    "answerability": answerability_spec,
    "choice": choice_spec,
    "json": json_spec,
    "text": text_spec,
}

#: Kinds with a fixed output shape: a YAML file may change their name/invocation/template only.
BUILTIN_KINDS = ("uncertainty", "hallucination", "rewrite", "answerability")


def builtin_specs() -> list[IntrinsicSpec]:
    """The four intrinsics shipped for the embedded model."""
    return [uncertainty_spec(), hallucination_spec(), rewrite_spec(), answerability_spec()]


def make_spec(kind: str, name: str, invocation: str, **options: Any) -> IntrinsicSpec:
    """Build a spec of ``kind`` (see :data:`KINDS`); clear error for unknown kinds."""
    factory = KINDS.get(kind)
    if factory is None:
        raise IntrinsicSpecError(
            f"intrinsic '{name}': unknown kind '{kind}' (known: {', '.join(sorted(KINDS))}; "
            "or give 'parser: module:function' with kind 'custom')"
        )
    try:
        return factory(name, invocation, **options)
    except IntrinsicSpecError:
        raise
    except (TypeError, ValueError) as exc:
        raise IntrinsicSpecError(f"intrinsic '{name}' (kind {kind}): {exc}") from exc
