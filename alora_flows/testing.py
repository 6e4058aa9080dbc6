"""A tiny, randomly initialised Llama-shaped model and tokenizer, built in-process.

Why: engine behaviour (cache reuse, rollback, routing) does not depend on trained weights, so the
fast test suite, the benchmarks of engine overhead and users writing their own tests all need a
model that builds in well under a second, with no download and no hub.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

import torch

#: The ChatML template of SmolLM2 (the embedded model), so tiny-model tests render like the real one.
CHATML_TEMPLATE = (
    "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}"
    "{{ '<|im_start|>system\nYou are a helpful AI assistant.<|im_end|>\n' }}{% endif %}"
    "{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)
SPECIAL_TOKENS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]

_CORPUS = [
    "The quick brown fox jumps over the lazy dog.",
    "What is the capital of France? The capital of France is Paris.",
    "Answer only from the documents. Question: when was the town founded?",
    "certainty hallucination rewrite answerability faithful unfaithful partial",
    "0 1 2 3 4 5 6 7 8 9 10 100 1000 { } [ ] : , \" ' . ? !",
    "user assistant system tool message documents query score",
    "Velmora was founded in 1832 by the inventor Tarsk Olden on the river Quell.",
]


@lru_cache(maxsize=8)
def bpe_tokenizer_json(corpus: tuple[str, ...], special_tokens: tuple[str, ...], vocab_size: int) -> str:
    """A byte-level BPE tokenizer trained on ``corpus`` in-process (JSON), with ``special_tokens``:
    the tokenizer of every tiny test model, whatever chat format it imitates."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(list(corpus) * 4, trainer=trainer)
    return tok.to_str()


def tiny_tokenizer():
    """A byte-level BPE tokenizer (~600 tokens) with ChatML special tokens and chat template."""
    from tokenizers import Tokenizer
    from transformers import PreTrainedTokenizerFast

    tok = PreTrainedTokenizerFast(
        tokenizer_object=Tokenizer.from_str(bpe_tokenizer_json(tuple(_CORPUS), tuple(SPECIAL_TOKENS), 600)),
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        unk_token="<|endoftext|>",
        additional_special_tokens=SPECIAL_TOKENS,
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def tiny_model(
    tokenizer=None, *, seed: int = 0, layers: int = 2, hidden: int = 64, max_positions: int = 4096
):
    """A randomly initialised ``LlamaForCausalLM`` in float32 (eval mode)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    tokenizer = tokenizer or tiny_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden,
        intermediate_size=2 * hidden,
        num_hidden_layers=layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=max_positions,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(seed)
    model = LlamaForCausalLM(config).eval()
    # Random init gives near-uniform logits; sharpen them so greedy decoding is not decided by
    # float noise (equivalence tests compare argmaxes across code paths).
    with torch.no_grad():
        model.lm_head.weight.mul_(8.0)
    return model


def save_random_alora(
    model,
    tokenizer,
    invocation: str,
    path: str | Path,
    *,
    seed: int = 1,
    r: int = 8,
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj"),
    lora: bool = False,
    base_model_name: str | None = None,
) -> Path:
    """Save a randomly initialised aLoRA (or, with ``lora=True``, a plain LoRA) adapter for ``model``.

    ``init_lora_weights=False`` makes B non-zero so the adapter really changes the output.
    """
    import copy
    import warnings

    from peft import LoraConfig, get_peft_model

    invocation_tokens = tokenizer(invocation, add_special_tokens=False)["input_ids"]
    config = LoraConfig(
        r=r,
        lora_alpha=2 * r,
        target_modules=list(target_modules),
        init_lora_weights=False,
        alora_invocation_tokens=None if lora else invocation_tokens,
        task_type="CAUSAL_LM",
    )
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PEFT warns about the missing hub config of a tiny model
        peft_model = get_peft_model(copy.deepcopy(model), config)
        peft_model.peft_config["default"].base_model_name_or_path = base_model_name
        path = Path(path)
        peft_model.save_pretrained(str(path))
    return path


def tiny_backend(
    tmp_dir: str | Path, adapters: dict[str, str] | None = None, *, seed: int = 0, **model_kwargs
):
    """A :class:`~alora_flows.core.backend.Backend` on the tiny model with random aLoRA adapters.

    ``adapters`` maps adapter name -> invocation string; each gets its own random weights.
    """
    from alora_flows.core.backend import Backend

    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer, seed=seed, **model_kwargs)
    paths = {
        name: save_random_alora(
            model, tokenizer, invocation, Path(tmp_dir) / name, seed=seed + 1 + i, base_model_name="tiny"
        )
        for i, (name, invocation) in enumerate((adapters or {}).items())
    }
    backend = Backend(model, tokenizer, model_id="tiny")  # after saving: loading injects layers
    for name, path in paths.items():
        backend.add_adapter(name, path)
    return backend


def same_within(a: object, b: object, tol: float = 1e-4) -> bool:
    """Whether two flow states (or any JSON-like values) are equal, floats to ``tol``.

    Why a tolerance: paths that must agree (reuse vs re-prefill, packed vs sequential, batched vs
    alone) sum a probability-weighted score in another order, which moves its last float bits.
    Everything else (texts, labels, token counts, keys, lengths) must be exactly equal."""
    if isinstance(a, float) and isinstance(b, float):
        return abs(a - b) <= tol
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_within(a[k], b[k], tol) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_within(x, y, tol) for x, y in zip(a, b))
    return bool(a == b)
