"""Intrinsic time-to-first-token on a GPU, Granite-3.3-8B shapes, reuse vs no-reuse.

Timing does not depend on trained weights, so the model is randomly initialised with the shapes of
Granite 3.3 8B Instruct (40 layers, hidden 4096, 32 heads / 8 KV heads, MLP 12800) in bf16, with a
random rank-32 aLoRA on q/k/v. For each conversation length we time, through the real Session:

- reuse:    ``session.invoke`` on a session whose conversation is already cached (the product path)
- no-reuse: ``Session(reuse=False).invoke``: re-prefill the whole conversation, as a LoRA must
- raw:      one PEFT forward over only the invocation tokens on a ready cache (lower bound)

Usage (one prepared run, fits in ten minutes on an H200):
    python benchmarks/gpu_granite_ttft.py --out benchmarks/results
    python benchmarks/gpu_granite_ttft.py --small --lengths 256 512   # CPU smoke test
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import torch

INVOCATION = "<|im_start|>certainty\n"


def granite_config(small: bool, max_positions: int):
    from transformers import GraniteConfig

    if small:
        return GraniteConfig(
            vocab_size=49159,
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=max_positions,
        )
    return GraniteConfig(
        vocab_size=49159,
        hidden_size=4096,
        intermediate_size=12800,
        num_hidden_layers=40,
        num_attention_heads=32,
        num_key_value_heads=8,
        max_position_embeddings=max_positions,
        rope_theta=10_000_000.0,
        attention_multiplier=0.0078125,
        embedding_multiplier=12.0,
        logits_scaling=16.0,
        residual_multiplier=0.22,
        tie_word_embeddings=True,
    )


def save_random_adapter(model, tokenizer, path: Path, r: int = 32) -> Path:
    """Write random aLoRA weights for q/k/v without copying the 8B model (unlike PEFT init)."""
    from peft import LoraConfig
    from safetensors.torch import save_file

    state = {}
    for name, module in model.named_modules():
        if name.endswith(("q_proj", "k_proj", "v_proj")):
            state[f"base_model.model.{name}.lora_A.weight"] = torch.randn(r, module.in_features) * 0.01
            state[f"base_model.model.{name}.lora_B.weight"] = torch.randn(module.out_features, r) * 0.01
    config = LoraConfig(
        r=r,
        lora_alpha=r,
        target_modules=["q_proj", "k_proj", "v_proj"],
        alora_invocation_tokens=tokenizer(INVOCATION, add_special_tokens=False)["input_ids"],
        base_model_name_or_path="granite-3.3-8b-shapes",
        task_type="CAUSAL_LM",
    )
    config.save_pretrained(str(path))
    save_file(state, str(path / "adapter_model.safetensors"))
    return path


def conversation(tokenizer, n_tokens: int) -> list[dict]:
    sentence = "The Quellmark river runs 412 km from the Orsk hills to the Tarven sea. "
    per = len(tokenizer(sentence, add_special_tokens=False)["input_ids"])
    return [
        {"role": "user", "content": sentence * max(1, (n_tokens - 30) // per)},
        {"role": "assistant", "content": "It runs 412 km."},
    ]


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def median_seconds(fn, reps: int) -> float:
    times = []
    for _ in range(reps):
        sync()
        start = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 2048, 4096, 8192, 16384, 32768])
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--small", action="store_true", help="tiny shapes, for a CPU smoke test")
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    args = parser.parse_args()

    from transformers import AutoModelForCausalLM

    from alora_flows.core.backend import Backend
    from alora_flows.core.session import Session
    from alora_flows.testing import tiny_tokenizer

    device = "cuda" if torch.cuda.is_available() else "cpu"
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    tokenizer = tiny_tokenizer()  # renders ChatML; its ids are valid in Granite's vocabulary
    torch.manual_seed(0)
    start = time.perf_counter()
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(
            granite_config(args.small, max(args.lengths) + 512), dtype=dtype
        )
    print(
        f"model built on {device} in {time.perf_counter() - start:.1f} s "
        f"({sum(p.numel() for p in model.parameters()) / 1e9:.2f} B params)",
        flush=True,
    )
    backend = Backend(model, tokenizer, model_id="granite-3.3-8b-shapes")
    with tempfile.TemporaryDirectory() as tmp:
        backend.add_adapter("certainty", save_random_adapter(model, tokenizer, Path(tmp)))
    invocation = backend.adapters["certainty"].invocation_tokens

    rows = []
    for length in args.lengths:
        messages = conversation(tokenizer, length)
        session = Session(backend)
        session.extend(messages)
        session.invoke("certainty", max_new_tokens=1)  # warm-up
        reuse = median_seconds(lambda: session.invoke("certainty", max_new_tokens=1), args.reps)
        cold = Session(backend, reuse=False, messages=messages)
        cold.invoke("certainty", max_new_tokens=1)  # warm-up
        no_reuse = median_seconds(lambda: cold.invoke("certainty", max_new_tokens=1), max(2, args.reps // 2))

        def raw() -> None:
            with session._rollback():
                backend.forward(invocation, session._cache, adapter="certainty", adapted=len(invocation))

        raw_s = median_seconds(raw, args.reps)
        row = {
            "tokens": len(session.ids),
            "reuse_s": reuse,
            "no_reuse_s": no_reuse,
            "raw_s": raw_s,
            "speedup": no_reuse / reuse,
            "overhead": reuse / raw_s,
            "kv_gib": session.kv_bytes() / 2**30,
        }
        rows.append(row)
        print(json.dumps(row), flush=True)
        del session, cold
        if device == "cuda":
            torch.cuda.empty_cache()

    result = {
        "device": torch.cuda.get_device_name() if device == "cuda" else "cpu",
        "model": "granite-3.3-8b shapes (random bf16)" if not args.small else "small",
        "torch": torch.__version__,
        "rows": rows,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    name = "gpu_granite_ttft" + ("_small" if args.small else "")
    (args.out / f"{name}.json").write_text(json.dumps(result, indent=2))
    lines = [
        f"Intrinsic TTFT on {result['device']}, {result['model']}, median of {args.reps}",
        "",
        "| conversation tokens | reuse (ms) | no-reuse (ms) | raw forward (ms) | no-reuse / reuse | reuse / raw |",
        "|---:|---:|---:|---:|---:|---:|",
    ]
    lines += [
        f"| {r['tokens']} | {1e3 * r['reuse_s']:.1f} | {1e3 * r['no_reuse_s']:.1f} | "
        f"{1e3 * r['raw_s']:.1f} | {r['speedup']:.1f} | {r['overhead']:.2f} |"
        for r in rows
    ]
    (args.out / f"{name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
