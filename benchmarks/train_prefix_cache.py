"""aLoRA training with and without the prefix cache, on the embedded model and the real datasets.

``intrinsics.training.train.batch_loss(prefix_cache=True)`` runs the positions before a batch's earliest
invocation once under ``no_grad`` (the frozen base model computes them in aLoRA) and only the
invocation + output positions forward and backward. This measures, per intrinsic, the time of one
training micro-batch (forward + backward) both ways, side by side in one process, and the largest
loss difference between them (it must be float noise: the two are the same computation).

Usage:
    python benchmarks/train_prefix_cache.py                      # ~3 min on 2 cores
    python benchmarks/train_prefix_cache.py --batches 1 --only rewrite --out /tmp/bench   # smoke
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, environment, write_results

INTRINSICS = ("rewrite", "hallucination", "answerability", "uncertainty_prompts")


def measure(peft_model, items, pad_id: int, batch_size: int, batches: int, prefix_cache: bool) -> dict:
    from intrinsics.training.train import batch_loss, collate

    times, losses, tokens, adapted = [], [], 0, 0
    for b in range(batches + 1):  # the first batch warms up and is not timed
        chunk = items[b * batch_size : (b + 1) * batch_size]
        batch = collate(chunk, pad_id, torch.device("cpu"), alora=True)
        peft_model.zero_grad(set_to_none=True)
        start = time.perf_counter()
        loss, count = batch_loss(peft_model, batch, prefix_cache=prefix_cache)
        (loss / max(count, 1)).backward()
        if b:
            times.append(time.perf_counter() - start)
            losses.append(float(loss.detach()) / max(count, 1))
            tokens += int(batch["attention_mask"].sum())
            adapted += sum(batch["alora_offsets"])
    return {
        "seconds_per_batch": statistics.median(times),
        "tokens_per_s": tokens / sum(times),
        "losses": losses,
        "adapted_fraction": adapted / tokens,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batches", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--only", nargs="*", default=list(INTRINSICS))
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))

    from intrinsics.known import get_spec
    from intrinsics.training.data.build import build_all
    from intrinsics.training.data.text import read_jsonl as read_records
    from intrinsics.training.data_format import Encoder, read_jsonl
    from intrinsics.training.train import TrainConfig, load_base, make_peft_model

    model, tokenizer, _ = load_base(
        TrainConfig(data=Path("."), out=Path("."), dtype="float32", progress=False), torch.device("cpu")
    )
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        build_all(
            tmp,
            seed=0,
            sizes={"train": args.batch_size * (args.batches + 1), "val": 1, "eval": 1},
            only=args.only,
        )
        for name in args.only:
            spec = get_spec(name.removesuffix("_prompts"))
            if name == "uncertainty_prompts":  # labels need base-model answers; any answer times the same
                pairs = [
                    (r["messages"] + [{"role": "assistant", "content": "It is 1234."}], "7")
                    for r in read_records(Path(tmp) / f"{name}.train.jsonl")
                ]
            else:
                pairs = [
                    (ex.message_dicts(), ex.output) for ex in read_jsonl(Path(tmp) / f"{name}.train.jsonl")
                ]
            encoder = Encoder.for_spec(tokenizer, spec)
            invocation = encoder.invocation_ids
            items = [encoder.encode(messages, output) for messages, output in pairs]
            torch.manual_seed(0)
            peft_model = make_peft_model(
                model, TrainConfig(data=Path("."), out=Path("."), dropout=0.0), invocation
            )
            peft_model.train()
            full = measure(peft_model, items, tokenizer.pad_token_id, args.batch_size, args.batches, False)
            cached = measure(peft_model, items, tokenizer.pad_token_id, args.batch_size, args.batches, True)
            model = peft_model.unload()  # the same base model for the next intrinsic
            rows.append(
                {
                    "intrinsic": spec.name,
                    "batch_size": args.batch_size,
                    "batches": args.batches,
                    "adapted_fraction": round(full["adapted_fraction"], 3),
                    "full_s": round(full["seconds_per_batch"], 3),
                    "prefix_cache_s": round(cached["seconds_per_batch"], 3),
                    "speedup": round(full["seconds_per_batch"] / cached["seconds_per_batch"], 2),
                    "full_tok_s": round(full["tokens_per_s"], 1),
                    "prefix_cache_tok_s": round(cached["tokens_per_s"], 1),
                    "max_loss_diff": max(abs(a - b) for a, b in zip(full["losses"], cached["losses"])),
                }
            )
            print(rows[-1], flush=True)
    header = (
        "| intrinsic | adapted share of tokens | full fwd+bwd (s/batch) | prefix cache (s/batch) | speed-up "
        "| tokens/s full → cached | max loss diff |\n|---|---:|---:|---:|---:|---:|---:|"
    )
    lines = [
        f"| {r['intrinsic']} | {r['adapted_fraction']:.0%} | {r['full_s']:.2f} | {r['prefix_cache_s']:.2f} | "
        f"{r['speedup']:.2f}× | {r['full_tok_s']:.0f} → {r['prefix_cache_tok_s']:.0f} | {r['max_loss_diff']:.1e} |"
        for r in rows
    ]
    markdown = [
        f"aLoRA training micro-batch ({args.batch_size} examples, median of {args.batches}), embedded "
        f"model, CPU float32, {torch.get_num_threads()} threads",
        "",
        header,
        *lines,
    ]
    write_results(args.out, "train_prefix_cache", {"rows": rows, "environment": environment()}, markdown)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
