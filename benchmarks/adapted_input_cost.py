"""What an adapted input costs: an intrinsic call that also reads N tokens after its invocation.

An intrinsic with ``adapted_input_template`` (the shipped uncertainty one re-reads the answer it
rates) runs its invocation *and* those N tokens through the adapter on every call. This measures,
on the embedded model (CPU, one torch thread, random rank-32 aLoRA on q/k/v), per conversation
length, side by side in one process and round-robin rep by rep:

- ``reuse`` with N = 0, 16, 48, 128 adapted tokens (``session.invoke(..., adapted_input=...)``);
- ``no_reuse`` with N = 48: the same call re-prefilling the conversation, as a standard LoRA must.

It reports each time and the ratios N-token call / 3-token call and no-reuse / reuse (both at
N = 48), so the claim "still independent of the conversation's length" can be checked.

Usage:
    python benchmarks/adapted_input_cost.py                           # ~4 min on 2 cores
    python benchmarks/adapted_input_cost.py --lengths 256 --reps 2 --out /tmp/bench   # smoke
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import (
    RESULTS,
    SENTENCE,
    CpuMonitor,
    conversation,
    embedded_backend,
    environment,
    quiet_cpu,
    write_results,
)

DEFAULT_LENGTHS = [256, 2048, 8000]
ADAPTED = [0, 16, 48, 128]
NO_REUSE_AT = 48


def adapted_tokens(tokenizer, n: int) -> list[int]:
    """Exactly ``n`` tokens of answer-like text."""
    ids: list[int] = []
    while len(ids) < n:
        ids += tokenizer(SENTENCE, add_special_tokens=False)["input_ids"]
    return ids[:n]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--lengths",
        type=int,
        nargs="+",
        default=DEFAULT_LENGTHS,
        help="conversation tokens before the invocation",
    )
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--no-reuse-reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="adapted_input_cost")
    args = parser.parse_args()

    quiet_cpu(args.threads)

    from alora_flows.core.session import Session

    started = time.perf_counter()
    tmp = tempfile.TemporaryDirectory()
    backend = embedded_backend(tmp.name)
    name = "certainty"
    invocation = backend.adapters[name].invocation_tokens
    suffixes = {n: adapted_tokens(backend.tokenizer, n) for n in ADAPTED}
    warm = Session(backend, messages=conversation(backend.tokenizer, 128))
    for n in ADAPTED:  # first calls of a process are slow (allocator, kernels)
        warm.invoke(name, adapted_input=suffixes[n], max_new_tokens=1)

    rows = []
    for length in args.lengths:
        messages = conversation(backend.tokenizer, length)
        session = Session(backend, messages=messages)
        cold = Session(backend, reuse=False, messages=messages)
        calls = {
            f"reuse_{n}": (lambda n=n: session.invoke(name, adapted_input=suffixes[n], max_new_tokens=1))
            for n in ADAPTED
        }
        calls["no_reuse"] = lambda: cold.invoke(name, adapted_input=suffixes[NO_REUSE_AT], max_new_tokens=1)
        reps = {key: args.no_reuse_reps if key == "no_reuse" else args.reps for key in calls}
        times: dict[str, list[float]] = {key: [] for key in calls}
        monitor = CpuMonitor()
        order = list(calls)
        for i in range(args.reps):
            for key in order[i % len(order) :] + order[: i % len(order)]:
                if len(times[key]) < reps[key]:
                    t0 = time.perf_counter()
                    calls[key]()
                    times[key].append(time.perf_counter() - t0)
        check = calls[f"reuse_{NO_REUSE_AT}"]()
        assert check.stats.prefill_tokens == len(invocation) + NO_REUSE_AT, check.stats
        assert check.stats.reused_tokens == len(session.ids), check.stats
        assert (
            cold.invoke(name, adapted_input=suffixes[NO_REUSE_AT], max_new_tokens=1).token_ids
            == check.token_ids
        )
        med = {key: statistics.median(values) for key, values in times.items()}
        row = {
            "conversation_tokens": len(session.ids),
            "invocation_tokens": len(invocation),
            "median_s": med,
            "times": times,
            "over_invocation_only": {n: med[f"reuse_{n}"] / med["reuse_0"] for n in ADAPTED},
            "no_reuse_over_reuse_at_48": med["no_reuse"] / med[f"reuse_{NO_REUSE_AT}"],
            "other_processes_cores_busy": monitor.other_cores(),
        }
        rows.append(row)
        print({k: v for k, v in row.items() if k != "times"}, flush=True)
        del session, cold

    result = {
        "benchmark": "adapted_input_cost",
        "model": backend.model_id,
        "adapter": "random aLoRA r=32 on q/k/v",
        "adapted_tokens": ADAPTED,
        "environment": environment(),
        "total_seconds": time.perf_counter() - started,
        "rows": rows,
    }

    def ms(seconds: float) -> str:
        return f"{seconds * 1000:.1f} ms" if seconds < 1 else f"{seconds:.2f} s"

    md = [
        "| conversation tokens | "
        + " | ".join(f"reuse, {n} adapted" for n in ADAPTED)
        + f" | no reuse, {NO_REUSE_AT} adapted | {NO_REUSE_AT} / 0 adapted | no reuse / reuse |",
        "|---:|" + "---:|" * (len(ADAPTED) + 3),
    ]
    for r in rows:
        m = r["median_s"]
        md.append(
            f"| {r['conversation_tokens']:,} | "
            + " | ".join(ms(m[f"reuse_{n}"]) for n in ADAPTED)
            + f" | {ms(m['no_reuse'])} | {r['over_invocation_only'][NO_REUSE_AT]:.2f} | "
            f"{r['no_reuse_over_reuse_at_48']:.1f} |"
        )
    md.append("")
    md.append(
        f"Medians of {args.reps} reps ({args.no_reuse_reps} for no reuse), {args.threads} torch thread(s); "
        f"invocation {len(invocation)} tokens; total {result['total_seconds']:.0f} s."
    )
    write_results(args.out, args.name, result, md)


if __name__ == "__main__":
    main()
