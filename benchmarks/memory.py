"""Memory of sessions on the embedded model (CPU): KV-cache bytes by length, the cost of a fork, and
resident memory over a 1,000-call run.

1. ``calls``: 1,000 ``session.invoke(name, max_new_tokens=1)`` on one session with a short
   conversation; RSS (psutil) sampled after every call. Peak RSS of the run and RSS at call 100 vs
   call 1,000 show whether anything accumulates (rollback must leave no KV behind).
2. ``kv``: one session extended turn by turn up to ~8k tokens; ``session.kv_bytes()`` and the RSS
   growth at each length, against the analytic 2 * layers * kv_heads * head_dim * 4 bytes a token.
3. ``fork``: on the longest session, ``session.fork()`` time (median) and extra bytes: every cached
   tensor's ``data_ptr()`` is compared with the parent's, and RSS is read around 50 live forks. For
   contrast, ``copy.deepcopy`` of the cache (what a copying fork would cost). Then copy-on-write:
   after the fork appends a turn, which tensors are still shared, and the parent is unchanged.

Usage:
    python benchmarks/memory.py                                  # ~3-5 min on 2 cores
    python benchmarks/memory.py --calls 50 --max-tokens 1024 --out /tmp/bench   # smoke
"""

from __future__ import annotations

import argparse
import copy
import gc
import resource
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import psutil
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, SENTENCE, embedded_backend, environment, write_results

MIB = 2**20


def rss() -> int:
    return psutil.Process().memory_info().rss


def tensors(session) -> list[torch.Tensor]:
    return [
        t
        for layer in session._cache.layers
        for t in (getattr(layer, "keys", None), getattr(layer, "values", None))
        if isinstance(t, torch.Tensor)
    ]


def unshared_bytes(session, other) -> int:
    """Bytes of ``session``'s KV tensors whose storage ``other`` does not also reference."""
    theirs = {t.untyped_storage().data_ptr() for t in tensors(other)}
    return sum(
        t.numel() * t.element_size() for t in tensors(session) if t.untyped_storage().data_ptr() not in theirs
    )


def calls_run(backend, name: str, calls: int) -> dict:
    from alora_flows.core.session import Session

    session = Session(backend)
    session.extend(
        [
            {"role": "user", "content": SENTENCE * 12 + "\nHow long is the river?"},
            {"role": "assistant", "content": "It runs 412 km."},
        ]
    )
    tokens = session.cached_tokens
    gc.collect()
    before = rss()
    samples = []
    start = time.perf_counter()
    for i in range(1, calls + 1):
        result = session.invoke(name, max_new_tokens=1)
        samples.append(rss())
        if i == 1:
            first_token = result.token_ids[0]
        assert result.token_ids[0] == first_token and session.cached_tokens == tokens
    seconds = time.perf_counter() - start
    at = {n: samples[n - 1] for n in (1, 10, 100, 500, 1000) if n <= calls}
    last, hundred = samples[-1], samples[min(100, calls) - 1]
    return {
        "calls": calls,
        "conversation_tokens": tokens,
        "seconds": seconds,
        "ms_per_call": 1e3 * seconds / calls,
        "rss_before_mib": before / MIB,
        "rss_peak_mib": max(samples) / MIB,
        "rss_at_call_mib": {str(k): v / MIB for k, v in at.items()},
        "rss_growth_100_to_last_mib": (last - hundred) / MIB,
        "ru_maxrss_process_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "kv_bytes_after": session.kv_bytes(),
        "history_len": len(session.history),
        "rss_samples_mib_every_10": [s / MIB for s in samples[9::10]],
    }


def turn_to(session, target: int) -> list[dict]:
    """A user turn + short answer that brings the session's rendering to ``target`` tokens
    (or one or two under)."""
    renderer = session._renderer

    def turn(words: int) -> list[dict]:
        body = (SENTENCE * (words // 16)) + "river " * (words % 16)
        return [{"role": "user", "content": body}, {"role": "assistant", "content": "Noted."}]

    def size(words: int) -> int:
        return len(renderer.ids(session.messages + turn(words)))

    lo, hi = 0, 16
    while size(hi) <= target:
        lo, hi = hi, hi * 2
    while hi - lo > 1:  # largest word count whose rendering fits
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if size(mid) <= target else (lo, mid)
    return turn(lo)


def kv_run(backend, lengths: list[int]):
    from alora_flows.core.session import Session

    cfg = backend.base_model.config
    head_dim = getattr(cfg, "head_dim", None) or cfg.hidden_size // cfg.num_attention_heads
    per_token = 2 * cfg.num_hidden_layers * cfg.num_key_value_heads * head_dim * backend.dtype.itemsize
    session = Session(backend)
    gc.collect()
    base = rss()
    rows = []
    start = time.perf_counter()
    for target in sorted(lengths):
        if session.cached_tokens >= target:
            continue
        session.extend(turn_to(session, min(target, backend.max_context)))
        kv = session.kv_bytes()
        rows.append(
            {
                "target": target,
                "tokens": session.cached_tokens,
                "kv_bytes": kv,
                "kv_mib": kv / MIB,
                "bytes_per_token": kv / session.cached_tokens,
                "analytic_bytes_per_token": per_token,
                "rss_growth_mib": (rss() - base) / MIB,
            }
        )
        print(rows[-1], flush=True)
    return session, rows, time.perf_counter() - start, per_token


def fork_run(session, forks: int) -> dict:
    gc.collect()
    parent_ptrs = [t.data_ptr() for t in tensors(session)]
    kv = session.kv_bytes()
    times = []
    for _ in range(forks):
        t0 = time.perf_counter()
        twin = session.fork()
        times.append(time.perf_counter() - t0)
    del twin
    gc.collect()
    before = rss()
    live = [session.fork() for _ in range(forks)]
    after = rss()
    shared = all([t.data_ptr() for t in tensors(f)] == parent_ptrs for f in live)
    unshared = max(unshared_bytes(f, session) for f in live)
    # contrast: a copying fork (deep copy of the cache)
    gc.collect()
    before_copy = rss()
    t0 = time.perf_counter()
    deep = copy.deepcopy(session._cache)
    deepcopy_s = time.perf_counter() - t0
    deepcopy_rss = rss() - before_copy
    del deep
    # copy-on-write: the fork appends a turn; the parent must keep its own tensors untouched
    child = live[0]
    del live[1:]
    gc.collect()
    t0 = time.perf_counter()
    child.extend([{"role": "user", "content": "And the Orsk hills?"}])
    child_extend_s = time.perf_counter() - t0
    parent_same = [t.data_ptr() for t in tensors(session)] == parent_ptrs
    return {
        "tokens": session.cached_tokens,
        "kv_mib": kv / MIB,
        "fork_median_us": 1e6 * statistics.median(times),
        "fork_min_us": 1e6 * min(times),
        "forks_live": forks,
        "all_tensors_shared": shared,
        "unshared_bytes_per_fork": unshared,
        "rss_growth_for_live_forks_mib": (after - before) / MIB,
        "rss_growth_per_fork_kib": (after - before) / forks / 1024,
        "deepcopy_cache_ms": 1e3 * deepcopy_s,
        "deepcopy_rss_growth_mib": deepcopy_rss / MIB,
        "child_extend_tokens": child.cached_tokens - session.cached_tokens,
        "child_extend_s": child_extend_s,
        "parent_tensors_unchanged_after_child_append": parent_same,
        "child_unshared_mib_after_append": unshared_bytes(child, session) / MIB,
        "parent_kv_mib_after_child_append": session.kv_bytes() / MIB,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=1000)
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096, 8000])
    parser.add_argument("--max-tokens", type=int, default=None, help="cap lengths (smoke runs)")
    parser.add_argument("--forks", type=int, default=50)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads; 1 by default: on a shared 2-core machine two OpenMP "
        "threads stall 10x whenever another process takes a core",
    )
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="memory")
    args = parser.parse_args()

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore")
    started = time.perf_counter()
    tmp = tempfile.TemporaryDirectory()
    backend = embedded_backend(tmp.name)
    rss_loaded = rss()

    calls = calls_run(backend, "certainty", args.calls)
    print({k: v for k, v in calls.items() if k != "rss_samples_mib_every_10"}, flush=True)
    lengths = [n for n in args.lengths if args.max_tokens is None or n <= args.max_tokens]
    session, kv_rows, kv_s, per_token = kv_run(backend, lengths)
    fork = fork_run(session, args.forks)
    print(fork, flush=True)

    result = {
        "benchmark": "memory",
        "model": backend.model_id,
        "environment": environment(),
        "rss_after_load_mib": rss_loaded / MIB,
        "calls": calls,
        "kv": {"analytic_bytes_per_token": per_token, "build_seconds": kv_s, "rows": kv_rows},
        "fork": fork,
        "total_seconds": time.perf_counter() - started,
    }
    c, f = calls, fork
    md = [
        f"Session memory, {backend.model_id} on CPU (float32, torch {torch.__version__}).",
        "",
        "KV cache by conversation length (`session.kv_bytes()`; analytic: "
        f"{per_token} bytes/token = 2 x layers x KV heads x head dim x 4 bytes):",
        "",
        "| tokens | KV MiB | bytes/token | RSS growth MiB |",
        "|---:|---:|---:|---:|",
    ]
    md += [
        f"| {r['tokens']} | {r['kv_mib']:.1f} | {r['bytes_per_token']:.0f} | {r['rss_growth_mib']:.1f} |"
        for r in kv_rows
    ]
    md += [
        "",
        f"`session.fork()` on a {f['tokens']}-token session ({f['kv_mib']:.0f} MiB of KV):",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| fork time, median of {f['forks_live']} | {f['fork_median_us']:.0f} us |",
        f"| all KV tensors shared with the parent (data_ptr) | {f['all_tensors_shared']} |",
        f"| unshared KV bytes per fork | {f['unshared_bytes_per_fork']} |",
        f"| RSS growth for {f['forks_live']} live forks | {f['rss_growth_for_live_forks_mib']:.2f} MiB "
        f"({f['rss_growth_per_fork_kib']:.0f} KiB/fork) |",
        f"| contrast: `copy.deepcopy(cache)` | {f['deepcopy_cache_ms']:.0f} ms, "
        f"+{f['deepcopy_rss_growth_mib']:.0f} MiB RSS |",
        f"| after the fork appends {f['child_extend_tokens']} tokens: parent tensors unchanged | "
        f"{f['parent_tensors_unchanged_after_child_append']} |",
        f"| ... fork's KV no longer shared | {f['child_unshared_mib_after_append']:.1f} MiB |",
        "",
        f"{c['calls']} intrinsic calls (1 token each) on one {c['conversation_tokens']}-token session "
        f"({c['ms_per_call']:.1f} ms/call):",
        "",
        "| measure | MiB |",
        "|---|---:|",
        f"| RSS before the run | {c['rss_before_mib']:.1f} |",
    ]
    md += [f"| RSS after call {k} | {v:.1f} |" for k, v in c["rss_at_call_mib"].items()]
    md += [
        f"| peak RSS during the run | {c['rss_peak_mib']:.1f} |",
        f"| growth from call 100 to call {c['calls']} | {c['rss_growth_100_to_last_mib']:+.2f} |",
        f"| process peak (ru_maxrss, incl. model load) | {c['ru_maxrss_process_mib']:.1f} |",
    ]
    write_results(args.out, args.name, result, md)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
