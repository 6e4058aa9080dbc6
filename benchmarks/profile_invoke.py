"""Where the time of one intrinsic call goes at a long context (embedded model, CPU).

Prefills one conversation of ``--tokens`` tokens, then:
- times ``session.invoke(max_new_tokens=1)`` (a), the raw PEFT forward (d) and the PEFT
  deep-copy + generate pattern (c), interleaved, and counts the minor page faults of one call;
- profiles (a) with ``torch.profiler`` and writes the top operators by self CPU time;
- times both again with ``TRANSFORMERS_SDPA_FORCE_GQA=1``, which makes transformers' SDPA path
  attend on the 3 KV heads directly instead of materialising them 3x with ``repeat_kv``
  (a user-level switch; it does not change the numbers the model computes: checked below);
- then (process-wide, so last) with glibc's ``mallopt`` keeping freed memory in the heap, and
  counts the minor page faults of one call in each configuration.
Results go to ``benchmarks/results/profile_invoke.{json,md}``; NOTES.md interprets them.

Usage:
    python benchmarks/profile_invoke.py --tokens 8000     # ~3 min (a third of it the prefill)
"""

from __future__ import annotations

import argparse
import copy
import os
import resource
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, CpuMonitor, conversation, embedded_backend, environment, write_results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tokens", type=int, default=8000)
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="profile_invoke")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    from torch.profiler import ProfilerActivity, profile

    from alora_flows.core.session import Session

    tmp = tempfile.TemporaryDirectory()
    backend = embedded_backend(tmp.name)
    name = "certainty"
    inv = backend.adapters[name].invocation_tokens
    session = Session(backend, messages=conversation(backend.tokenizer, args.tokens, len(inv)))
    tokens = session.cached_tokens + len(inv)

    def invoke():
        return session.invoke(name, max_new_tokens=1, return_logits=True)

    def raw():
        with session._rollback():
            return backend.forward(inv, session._cache, adapter=name, adapted=len(inv))

    full_ids = torch.tensor([session.ids + inv], dtype=torch.long, device=backend.device)

    def peft_pattern():
        """(c) of intrinsic_vs_context: deep-copy the cache, then PEFT generate on the full ids."""
        with backend.lock, torch.inference_mode():
            backend.select_adapter(name)
            return backend.model.generate(
                input_ids=full_ids,
                cache=copy.deepcopy(session._cache),
                max_new_tokens=1,
                do_sample=False,
                pad_token_id=backend.tokenizer.eos_token_id,
            )

    def faults(fn) -> int:
        f0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        fn()
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - f0

    def measure() -> dict:
        invoke(), raw(), peft_pattern()
        times = {"invoke": [], "raw": [], "peft": []}
        for i in range(args.reps):
            order = (("invoke", invoke), ("raw", raw), ("peft", peft_pattern))
            for key, fn in order if i % 2 == 0 else order[::-1]:
                t0 = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - t0)
        out = {f"{k}_ms": 1e3 * statistics.median(v) for k, v in times.items()}
        out.update({f"{k}_min_ms": 1e3 * min(v) for k, v in times.items()})
        out["invoke_minor_page_faults"] = faults(invoke)
        out["peft_minor_page_faults"] = faults(peft_pattern)
        return out

    monitor = CpuMonitor()
    os.environ.pop("TRANSFORMERS_SDPA_FORCE_GQA", None)
    default = measure()
    logits_default = invoke().logits
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            invoke()
    ops = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in ops)
    top = [
        {
            "op": e.key,
            "self_ms_per_call": e.self_cpu_time_total / 1e3 / 3,
            "share": e.self_cpu_time_total / total,
            "calls_per_invoke": e.count / 3,
        }
        for e in ops[:12]
    ]
    os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] = "1"
    try:
        gqa = measure()
        logits_gqa = invoke().logits
    finally:
        os.environ.pop("TRANSFORMERS_SDPA_FORCE_GQA", None)
    max_diff = float((logits_default - logits_gqa).abs().max())

    # glibc returns the freed per-call KV concatenations to the OS (trim / munmap) and faults them
    # in again on the next call; keeping them in the heap is one mallopt (process-wide, so last).
    tuned = tuned_gqa = None
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        if libc.mallopt(-1, 1 << 30) and libc.mallopt(-3, 32 << 20):  # M_TRIM_, M_MMAP_THRESHOLD
            tuned = measure()
            os.environ["TRANSFORMERS_SDPA_FORCE_GQA"] = "1"
            try:
                tuned_gqa = measure()
            finally:
                os.environ.pop("TRANSFORMERS_SDPA_FORCE_GQA", None)
    except OSError:  # not glibc
        pass

    cfg = backend.base_model.config
    kv_layer_mib = 2 * (tokens - len(inv)) * cfg.num_key_value_heads * 64 * 4 / 2**20
    result = {
        "benchmark": "profile_invoke",
        "tokens": tokens,
        "environment": environment(),
        "default": default,
        "force_gqa": gqa,
        "mallopt": tuned,
        "mallopt_and_force_gqa": tuned_gqa,
        "logits_max_abs_diff_gqa_vs_default": max_diff,
        "profile_top_ops": top,
        "profile_total_ms_per_invoke": total / 1e3 / 3,
        "kv_mib_per_layer": kv_layer_mib,
        "other_processes_cores_busy": monitor.other_cores(),
    }
    md = [
        f"One intrinsic call at {tokens} tokens, {backend.model_id}, CPU, {args.threads} thread(s); "
        f"medians of {args.reps}. Other processes kept {result['other_processes_cores_busy']} cores busy.",
        "",
        "| path | (a) session.invoke ms | (d) raw forward ms | (c) PEFT deepcopy + generate ms "
        "| a/d | c/a | page faults (a) | page faults (c) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]

    def line(label: str, cfg: dict) -> str:
        return (
            f"| {label} | {cfg['invoke_ms']:.1f} | {cfg['raw_ms']:.1f} | {cfg['peft_ms']:.1f} | "
            f"{cfg['invoke_ms'] / cfg['raw_ms']:.3f} | {cfg['peft_ms'] / cfg['invoke_ms']:.2f} | "
            f"{cfg['invoke_minor_page_faults']} | {cfg['peft_minor_page_faults']} |"
        )

    md.append(line("default (repeat_kv before SDPA)", default))
    md.append(line("TRANSFORMERS_SDPA_FORCE_GQA=1", gqa))
    if tuned:
        md.append(line("default + mallopt(M_TRIM_THRESHOLD=1 GiB, M_MMAP_THRESHOLD=32 MiB)", tuned))
    if tuned_gqa:
        md.append(line("mallopt + TRANSFORMERS_SDPA_FORCE_GQA=1", tuned_gqa))
    md += [
        "",
        "Page faults: minor page faults during one call (ru_minflt).",
        "",
        f"Max |logit difference| GQA vs default: {max_diff:.2e}",
        "",
        "Top operators of (a), self CPU time per call (torch.profiler, 3 calls):",
        "",
        "| operator | ms per invoke | share | calls per invoke |",
        "|---|---:|---:|---:|",
    ]
    md += [
        f"| `{t['op']}` | {t['self_ms_per_call']:.1f} | {100 * t['share']:.1f}% | {t['calls_per_invoke']:.0f} |"
        for t in top
    ]
    write_results(args.out, args.name, result, md)


if __name__ == "__main__":
    main()
