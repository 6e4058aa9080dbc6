"""A tiny Granite-shaped model for the Granite conformance tests: a byte-level BPE tokenizer with
Granite's role tokens and a chat template that takes documents (our own, written for these
tests), random Llama weights, random aLoRA adapters, and a local intrinsic library in IBM's layout
built from the io.yaml fixtures of :mod:`tests.granite_fixtures`."""

from __future__ import annotations

import json
from pathlib import Path

from alora_flows.core.backend import Backend
from alora_flows.testing import bpe_tokenizer_json, save_random_alora, tiny_model

START, END_ROLE, EOT = "<|start_of_role|>", "<|end_of_role|>", "<|end_of_text|>"
SPECIALS = [EOT, START, END_ROLE, "<|pad|>"]

#: Role turns ``<|start_of_role|>ROLE<|end_of_role|>CONTENT<|end_of_text|>\n``; after a system turn
#: (if any), one ``document <id>`` turn per document.
GRANITE_TEMPLATE = (
    "{%- set ns = namespace(first=0) -%}"
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{{- '<|start_of_role|>system<|end_of_role|>' + messages[0]['content'] + '<|end_of_text|>\\n' -}}"
    "{%- set ns.first = 1 -%}"
    "{%- endif -%}"
    "{%- for d in documents or [] -%}"
    "{{- '<|start_of_role|>document ' + d['doc_id'] + '<|end_of_role|>' + d['text'] + '<|end_of_text|>\\n' -}}"
    "{%- endfor -%}"
    "{%- for m in messages[ns.first:] -%}"
    "{{- '<|start_of_role|>' + m['role'] + '<|end_of_role|>' + m['content'] + '<|end_of_text|>\\n' -}}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- '<|start_of_role|>assistant<|end_of_role|>' -}}{%- endif -%}"
)

_CORPUS = [
    "certainty uncertainty score answerable unanswerable relevant irrelevant partially relevant",
    "faithful partial unfaithful rewritten_question clarification correction label Yes No Ambiguous",
    "answer_relevance_judgment answer_relevance_category answer_relevance_analysis answer_relevance_rewrite",
    "requirement guardian policy true false null yes no document user assistant system",
    "0 1 2 3 4 5 6 7 8 9 10 { } [ ] : , \" ' . ? ! < > r c e f i",
    "The square root of 4 is 2. Velmora was founded in 1832 by Tarsk Olden. Who founded Velmora?",
    "Purple fish are yellow. Green fish are also yellow. The only yellow fish is the purple fish.",
]


def granite_tokenizer():
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(bpe_tokenizer_json(tuple(_CORPUS), tuple(SPECIALS), 700)),
        eos_token=EOT,
        pad_token="<|pad|>",
        unk_token="<|pad|>",
        additional_special_tokens=SPECIALS,
    )
    tok.chat_template = GRANITE_TEMPLATE
    return tok


def granite_backend(seed: int = 0) -> Backend:
    tok = granite_tokenizer()
    return Backend(tiny_model(tok, seed=seed), tok, model_id="granite-tiny")


def write_adapter(
    backend: Backend,
    path: Path,
    *,
    invocation: str,
    io_yaml: str | None = None,
    old_format: bool = False,
    both_keys: bool = False,
    seed: int = 1,
) -> Path:
    """A random aLoRA for ``backend`` at ``path``, in the new (tokens), old (string) or converted
    (both keys) config format, with ``io_yaml`` next to it."""
    tok = backend.tokenizer
    path = save_random_alora(
        backend.base_model, tok, invocation, path, seed=seed, base_model_name="granite-tiny"
    )
    config = json.loads((path / "adapter_config.json").read_text())
    full = tok(invocation, add_special_tokens=False)["input_ids"]
    if old_format:
        config.pop("alora_invocation_tokens", None)
        config["invocation_string"] = invocation
    elif both_keys:
        config["alora_invocation_tokens"] = full[1:]
        config["invocation_string"] = invocation
    (path / "adapter_config.json").write_text(json.dumps(config))
    if io_yaml is not None:
        (path / "io.yaml").write_text(io_yaml)
    return path


ASSISTANT_PROMPT = START + "assistant" + END_ROLE
CERTAINTY_PROMPT = START + "certainty" + END_ROLE


def with_budget(io_yaml: str, tokens: int) -> str:
    """``io_yaml`` with another ``max_completion_tokens``: random weights need room for the
    whitespace the schema allows between JSON tokens (a trained adapter emits none)."""
    import re

    return re.sub(r"max_completion_tokens: \d+", f"max_completion_tokens: {tokens}", io_yaml)


def build_library(root: Path, backend: Backend) -> Path:
    """A small Granite library in IBM's layouts, with random aLoRAs for ``backend``:

    - ``uncertainty/alora/granite-tiny`` (Granite 4.1 shape, PEFT config) and its ``lora`` twin;
    - ``certainty/alora/granite-tiny`` (Granite 3.x shape, old ``invocation_string`` config);
    - ``answerability/alora/granite-tiny`` (converted config: both keys, agreeing);
    - ``requirement_check/granite-tiny/alora`` (the newer layout);
    - ``citations/alora/granite-tiny``;
    - ``broken/alora/granite-tiny`` (both keys, disagreeing): refused.
    """
    from tests import granite_fixtures as F

    def alora(rel: str, io_yaml: str, seed: int, **kw) -> Path:
        return write_adapter(backend, root / rel, io_yaml=io_yaml, seed=seed, **kw)

    alora(
        "uncertainty/alora/granite-tiny", with_budget(F.UNCERTAINTY_41, 120), 1, invocation=ASSISTANT_PROMPT
    )
    lora = alora("uncertainty/lora/granite-tiny", F.UNCERTAINTY_41, 2, invocation=ASSISTANT_PROMPT)
    config = json.loads((lora / "adapter_config.json").read_text())
    config.pop("alora_invocation_tokens")
    (lora / "adapter_config.json").write_text(json.dumps(config))
    alora("certainty/alora/granite-tiny", F.UNCERTAINTY_3X, 3, invocation=CERTAINTY_PROMPT, old_format=True)
    alora(
        "answerability/alora/granite-tiny",
        with_budget(F.ANSWERABILITY, 40),
        4,
        invocation=START + "answerability" + END_ROLE,
        both_keys=True,
    )
    alora(
        "requirement_check/granite-tiny/alora",
        with_budget(F.REQUIREMENT_CHECK, 120),
        5,
        invocation=ASSISTANT_PROMPT,
    )
    alora("citations/alora/granite-tiny", F.CITATIONS, 6, invocation=ASSISTANT_PROMPT)
    broken = alora("broken/alora/granite-tiny", F.ANSWERABILITY, 7, invocation=CERTAINTY_PROMPT)
    config = json.loads((broken / "adapter_config.json").read_text())
    config["invocation_string"] = CERTAINTY_PROMPT  # beside all of its tokens: one token too early
    (broken / "adapter_config.json").write_text(json.dumps(config))
    return root
