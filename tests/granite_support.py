"""A tiny Granite-shaped model for the Granite conformance tests: a byte-level BPE tokenizer with
Granite's role tokens and a chat template that takes documents (our own, written for these
tests), random Llama weights, random aLoRA adapters, and a local intrinsic library in IBM's layout
built from the io.yaml fixtures of :mod:`tests.granite_fixtures`."""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

from alora_flows.core.backend import Backend
from alora_flows.testing import save_random_alora, tiny_model

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
    '0 1 2 3 4 5 6 7 8 9 10 { } [ ] : , " \' . ? ! < > r c e f i',
    "The square root of 4 is 2. Velmora was founded in 1832 by Tarsk Olden. Who founded Velmora?",
    "Purple fish are yellow. Green fish are also yellow. The only yellow fish is the purple fish.",
]


@lru_cache(maxsize=1)
def _tokenizer_json() -> str:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=700,
        special_tokens=SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_CORPUS * 4, trainer=trainer)
    return tok.to_str()


def granite_tokenizer():
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(_tokenizer_json()),
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
    path = save_random_alora(backend.base_model, tok, invocation, path, seed=seed, base_model_name="granite-tiny")
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
