"""Intrinsic call time vs conversation length on the embedded model (CPU): reuse, no-reuse, the
PEFT deep-copy pattern, and the raw forward lower bound.

For each length (total tokens the adapter call sees, invocation included) we time a one-token
intrinsic call four ways, in the same process, side by side:

- (a) reuse:    ``session.invoke(name, max_new_tokens=1)`` on a session whose conversation is
                already cached (the product path: render, reuse the cache, run the invocation
                tokens with the adapter, decode one token, roll back).
- (b) no-reuse: ``Session(backend, reuse=False).invoke(...)``: the adapter call re-prefills the whole
                conversation, as a standard LoRA must.
- (c) PEFT pattern: what one writes with PEFT and transformers alone: deep-copy the base model's
                prefilled cache of the conversation (so it stays reusable), then
                ``peft_model.generate(input_ids=full_ids, cache=copy, max_new_tokens=1)``; PEFT
                finds the invocation tokens in ``full_ids`` and generate runs only the uncached tail.
- (d) raw:      one PEFT forward over only the invocation tokens on the ready cache (inside the
                session's rollback, as gpu_granite_ttft.py does): the lower bound for (a).

All four are timed round-robin, rep by rep, so they see the same machine load (the machine is
shared; each row records how many cores other processes kept busy). (a) and (d) always run back to
back, so a/d is also reported as the median of per-rep ratios.
Goals: b/a >= 50 at 4k tokens and >= 100 at 8k; a/d <= 1.15.

Usage:
    python benchmarks/intrinsic_vs_context.py                       # full run, ~6-8 min on 2 cores
    python benchmarks/intrinsic_vs_context.py --lengths 256 512 --reps 2 --out /tmp/bench  # smoke
"""

from __future__ import annotations

import argparse
import copy
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, CpuMonitor, conversation, embedded_backend, environment, quiet_cpu, write_results

DEFAULT_LENGTHS = [256, 512, 1024, 2048, 4096, 8000]


def interleaved(fns: dict, reps: dict, warmup: set, pair: tuple[str, str]) -> dict[str, list[float]]:
    """Time the callables round-robin, rep by rep, so every method sees the same machine load.

    ``reps[name]`` reps each; names in ``warmup`` run once untimed first. The two names in ``pair``
    always run back to back (their order flipped every rep), so their per-rep ratio is paired.
    """
    for name in fns:
        if name in warmup:
            fns[name]()
    times: dict[str, list[float]] = {name: [] for name in fns}
    groups = [pair] + [(name,) for name in fns if name not in pair]
    for i in range(max(reps.values())):
        for group in groups[i % len(groups) :] + groups[: i % len(groups)]:
            for name in group if i % 2 == 0 else group[::-1]:
                if len(times[name]) < reps[name]:
                    start = time.perf_counter()
                    fns[name]()
                    times[name].append(time.perf_counter() - start)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        default=DEFAULT_LENGTHS,
        help="total tokens per intrinsic call, invocation included",
    )
    parser.add_argument("--reps", type=int, default=11, help="reps for (a), (d) and (c)")
    parser.add_argument("--no-reuse-reps", type=int, default=5, help="reps for (b) up to 2k tokens")
    parser.add_argument("--no-reuse-reps-long", type=int, default=3, help="reps for (b) above 2k")
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; 1 by default: on a shared 2-core machine two OpenMP "
        "threads stall 10x whenever another process takes a core",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="intrinsic_vs_context")
    parser.add_argument("--no-plot", action="store_true")
    args = parser.parse_args()

    quiet_cpu(args.threads)

    from alora_flows.core.session import Session

    started = time.perf_counter()
    tmp = tempfile.TemporaryDirectory()
    backend = embedded_backend(tmp.name)
    name = "certainty"
    invocation = backend.adapters[name].invocation_tokens
    peft_model = backend.model
    pad = backend.tokenizer.pad_token_id
    if pad is None:
        pad = backend.tokenizer.eos_token_id

    warm = Session(backend, messages=conversation(backend.tokenizer, 128, len(invocation)))
    for _ in range(3):  # first calls of a process are slow (allocator, kernels)
        warm.invoke(name, max_new_tokens=2)
    del warm

    rows = []
    for length in args.lengths:
        messages = conversation(backend.tokenizer, length, extra_tokens=len(invocation))
        session = Session(backend)
        t0 = time.perf_counter()
        session.extend(messages)
        prefill_s = time.perf_counter() - t0
        conv_ids = session.ids
        tokens = len(conv_ids) + len(invocation)
        print(f"[{tokens} tokens] conversation prefilled in {prefill_s:.2f} s", flush=True)

        # (a) reuse: the product path
        def reuse():
            return session.invoke(name, max_new_tokens=1)

        # (d) raw: the invocation tokens through PEFT on the ready cache, nothing else
        def raw():
            with session._rollback():
                return backend.forward(invocation, session._cache, adapter=name, adapted=len(invocation))

        # (c) PEFT pattern: deep-copy the base model's prefilled cache, generate on the full ids.
        base_cache = session._cache  # base-model KV of exactly conv_ids (pinned by the rollback)
        full_ids = torch.tensor([conv_ids + invocation], dtype=torch.long, device=backend.device)

        def peft_pattern():
            with backend.lock, torch.inference_mode():
                backend.select_adapter(name)
                cache = copy.deepcopy(base_cache)
                return peft_model.generate(
                    input_ids=full_ids, cache=cache, max_new_tokens=1, do_sample=False, pad_token_id=pad
                )

        # (b) no-reuse: re-prefill everything with the adapter on every call
        cold = Session(backend, reuse=False, messages=messages)

        def no_reuse():
            return cold.invoke(name, max_new_tokens=1)

        long = tokens > 2048
        monitor = CpuMonitor()
        times = interleaved(
            {"reuse": reuse, "raw": raw, "peft_pattern": peft_pattern, "no_reuse": no_reuse},
            {
                "reuse": args.reps,
                "raw": args.reps,
                "peft_pattern": args.reps,
                "no_reuse": args.no_reuse_reps_long if long else args.no_reuse_reps,
            },
            warmup={"reuse", "raw", "peft_pattern"} | (set() if long else {"no_reuse"}),
            pair=("reuse", "raw"),
        )
        other_cores = monitor.other_cores()
        ta, td, tc, tb = times["reuse"], times["raw"], times["peft_pattern"], times["no_reuse"]
        tb_med, tc_med = statistics.median(tb), statistics.median(tc)

        check = reuse()
        assert check.stats.prefill_tokens == len(invocation), check.stats
        assert check.stats.reused_tokens == len(conv_ids), check.stats
        assert session.cached_tokens == len(conv_ids)
        assert base_cache.get_seq_length() == len(conv_ids)
        peft_token = int(peft_pattern()[0, -1])
        cold_token = None if long else no_reuse().token_ids[0]

        ratios = [a / d for a, d in zip(ta, td)]
        row = {
            "tokens": tokens,
            "conversation_tokens": len(conv_ids),
            "invocation_tokens": len(invocation),
            "prefill_conversation_s": prefill_s,
            "reuse_s": statistics.median(ta),
            "no_reuse_s": tb_med,
            "peft_pattern_s": tc_med,
            "raw_s": statistics.median(td),
            "no_reuse_over_reuse": tb_med / statistics.median(ta),
            "reuse_over_raw": statistics.median(ta) / statistics.median(td),
            "reuse_over_raw_paired_median": statistics.median(ratios),
            "peft_pattern_over_reuse": tc_med / statistics.median(ta),
            "same_token": {"reuse": check.token_ids[0], "peft_pattern": peft_token, "no_reuse": cold_token},
            "min_s": {"reuse": min(ta), "raw": min(td), "peft_pattern": min(tc), "no_reuse": min(tb)},
            "no_reuse_over_reuse_min": min(tb) / min(ta),
            "reuse_over_raw_min": min(ta) / min(td),
            "other_processes_cores_busy": other_cores,
            "kv_mib": session.kv_bytes() / 2**20,
            "times": {"reuse": ta, "raw": td, "peft_pattern": tc, "no_reuse": tb},
        }
        assert peft_token == check.token_ids[0], row["same_token"]
        if cold_token is not None:
            assert cold_token == check.token_ids[0], row["same_token"]
        rows.append(row)
        print({k: v for k, v in row.items() if k != "times"}, flush=True)
        del session, cold, base_cache

    result = {
        "benchmark": "intrinsic_vs_context",
        "model": backend.model_id,
        "adapter": "random aLoRA r=32 on q/k/v",
        "invocation": "<|im_start|>certainty\\n",
        "reps": {
            "reuse_raw_peft": args.reps,
            "no_reuse": args.no_reuse_reps,
            "no_reuse_above_2k": args.no_reuse_reps_long,
        },
        "environment": environment(),
        "total_seconds": time.perf_counter() - started,
        "goals": {
            "no_reuse_over_reuse_at_4k_ge_50": None,
            "no_reuse_over_reuse_at_8k_ge_100": None,
            "reuse_over_raw_le_1.15_everywhere": None,
        },
        "rows": rows,
    }
    by_len = {r["tokens"]: r for r in rows}
    r4 = next((r for t, r in by_len.items() if 4000 <= t <= 4200), None)
    r8 = next((r for t, r in by_len.items() if t >= 7900), None)
    goals = result["goals"]
    goals["no_reuse_over_reuse_at_4k_ge_50"] = None if r4 is None else r4["no_reuse_over_reuse"] >= 50
    goals["no_reuse_over_reuse_at_8k_ge_100"] = None if r8 is None else r8["no_reuse_over_reuse"] >= 100
    goals["reuse_over_raw_le_1.15_everywhere"] = all(r["reuse_over_raw"] <= 1.15 for r in rows)

    md = [
        f"Intrinsic call (1 output token) vs conversation length, {backend.model_id} on CPU "
        f"({args.threads} thread(s), torch {torch.__version__}); medians of {args.reps} reps "
        f"(no-reuse: {args.no_reuse_reps}, {args.no_reuse_reps_long} above 2k tokens).",
        "",
        "| tokens | (a) reuse ms | (b) no-reuse ms | (c) PEFT deepcopy + generate ms | (d) raw forward ms "
        "| b/a | a/d | a/d paired | c/a | b/a (min) | a/d (min) | other cores busy |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    md += [
        f"| {r['tokens']} | {1e3 * r['reuse_s']:.1f} | {1e3 * r['no_reuse_s']:.0f} | "
        f"{1e3 * r['peft_pattern_s']:.1f} | {1e3 * r['raw_s']:.1f} | {r['no_reuse_over_reuse']:.1f} | "
        f"{r['reuse_over_raw']:.3f} | {r['reuse_over_raw_paired_median']:.3f} | "
        f"{r['peft_pattern_over_reuse']:.2f} | {r['no_reuse_over_reuse_min']:.1f} | "
        f"{r['reuse_over_raw_min']:.3f} | {r['other_processes_cores_busy']} |"
        for r in rows
    ]
    md += [
        "",
        "Ratios from medians unless marked: *a/d paired* = median over reps of a_i / d_i ((a) and (d) "
        "run back to back); *(min)* = ratio of the fastest reps. *other cores busy*: CPU time other "
        "processes used during the row, in cores (the machine has "
        f"{result['environment']['cpu_count']}); rows with a high value are noisy.",
        "",
        f"Goals: {goals}",
    ]
    write_results(args.out, args.name, result, md)

    if not args.no_plot:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        xs = [r["tokens"] for r in rows]
        fig, ax = plt.subplots(figsize=(7, 5))
        for key, label, style in (
            ("no_reuse_s", "(b) no-reuse: re-prefill with adapter", "o-"),
            ("peft_pattern_s", "(c) PEFT: deepcopy cache + generate", "s-"),
            ("reuse_s", "(a) Session.invoke (reuse)", "^-"),
            ("raw_s", "(d) raw forward of invocation tokens", "v--"),
        ):
            ax.plot(xs, [r[key] for r in rows], style, label=label)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlabel("conversation tokens (incl. invocation)")
        ax.set_ylabel("seconds per intrinsic call (median)")
        ax.set_title(f"Intrinsic call vs context, {backend.model_id.split('/')[-1]}, CPU")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
        fig.tight_layout()
        fig.savefig(args.out / f"{args.name}.png", dpi=120)
        print(f"plot: {args.out / (args.name + '.png')}")
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
