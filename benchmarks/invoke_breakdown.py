"""Where one cached intrinsic call's time goes, at 1k / 4k / 8k tokens, before and after the fast path.

The call: the shipped uncertainty intrinsic (its adapter, invocation and adapted input, one digit
out) through ``Session.invoke`` on a conversation already in the session's cache, on the embedded
model (SmolLM2-135M, float32, one thread, the CLI's CPU tuning). Three paths, timed interleaved
call by call in one process:

- ``before``: the previous path: PEFT's adapter forward (``PeftModel(..., alora_offsets=[n])``:
  PEFT registers a pre-hook on every LoRA layer per forward, each layer masks and gathers
  positions) on transformers' concatenating ``DynamicCache``;
- ``hooks``: LoRA layers off, hooks installed once add the adapter's delta on the last positions
  (``core.lora_deltas``); still the concatenating cache;
- ``hooks + in place``: the current default: the same with the cache appended in place
  (``core.kvcache``, exact);
- ``... + f16 KV``: the same on a backend with ``kv_dtype="float16"``.

Then each path is profiled (``torch.profiler``, CPU, shapes recorded) and its operators grouped:
linear layers (base weights, lm_head included), LoRA products, attention (SDPA), the KV
append (the cache layer's ``update``: transformers' concatenation, or our in-place copy), dtype
casts and copies, other operators (norms, rotary, activations, masks, indexing). PEFT's per-forward hook
registration runs no operator: it is timed alone (its context manager entered and left, as each
PEFT forward does). "Python and dispatch" is the wall time minus all operator self time.

Usage:
    python benchmarks/invoke_breakdown.py                          # ~6 min on a quiet machine
    python benchmarks/invoke_breakdown.py --lengths 512 --reps 3 --out /tmp/bench   # smoke
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, CpuMonitor, conversation, environment, quiet_cpu, write_results

DEFAULT_LENGTHS = [1024, 4096, 8000]
NAME = "uncertainty"
CATEGORIES = (
    "linear (base weights)",
    "LoRA products",
    "attention (SDPA)",
    "KV append",
    "casts and copies",
    "other operators",
    "PEFT hook set-up",
    "Python and dispatch",
)


def load(kv_dtype: str, threads: int):
    """The embedded model with the shipped uncertainty adapter, loaded as a flow loads them (with
    the CLI's CPU settings)."""
    from alora_flows.app import use_cpu
    from alora_flows.core.backend import Backend
    from intrinsics.registry import load_intrinsic

    use_cpu(threads)
    backend = Backend.load("embedded", device="cpu", progress=False, kv_dtype=kv_dtype)
    resolved = load_intrinsic(NAME, "builtin", backend.model_id, tokenizer=backend.tokenizer)
    backend.add_adapter(NAME, resolved.path)
    return backend, resolved.spec


def flat_shapes(shapes) -> list[list[int]]:
    """Tensor shapes of a profiler event's inputs (tensor lists, e.g. ``cat``'s, flattened)."""
    out = []
    for s in shapes or []:
        if isinstance(s, list) and s and all(isinstance(x, int) for x in s):
            out.append(s)
        elif isinstance(s, list):
            out += flat_shapes(s)
    return out


def classify(event, kv_heads: int, rank: int, tail: int) -> str:
    name = event.key
    shapes = flat_shapes(event.input_shapes)
    if name in ("aten::mm", "aten::addmm", "aten::bmm", "aten::matmul", "aten::linear"):
        if any(rank in s[-1:] or (len(s) == 2 and s[0] == rank) for s in shapes):
            return "LoRA products"
        return "linear (base weights)"
    if "scaled_dot_product" in name:
        return "attention (SDPA)"
    if name in ("aten::copy_", "aten::to", "aten::_to_copy", "aten::clone", "aten::contiguous"):
        return "casts and copies"
    return "other operators"


@contextmanager
def marked_kv_append():
    """Mark every cache layer ``update`` (transformers' concatenation, our in-place append) as a
    ``kv_append`` profiler range, so its operators can be counted apart (only while profiling)."""
    from torch.profiler import record_function
    from transformers.cache_utils import DynamicLayer

    from alora_flows.core.kvcache import arena_layer_class

    classes = (DynamicLayer, arena_layer_class())
    originals = [cls.update for cls in classes]
    for cls, original in zip(classes, originals):

        def update(self, *args, _original=original, **kwargs):
            with record_function("kv_append"):
                return _original(self, *args, **kwargs)

        cls.update = update
    try:
        yield
    finally:
        for cls, original in zip(classes, originals):
            cls.update = original


def categorise(prof, kv_heads: int, rank: int, tail: int, calls: int) -> dict[str, float]:
    """Operator self time per category, ms per call; a ``kv_append`` range counts whole."""
    cats = dict.fromkeys(CATEGORIES, 0.0)
    for event in prof.events():
        if event.name == "kv_append":
            cats["KV append"] += event.cpu_time_total / 1e3 / calls
            continue
        parent, inside = event.cpu_parent, False
        while parent is not None and not inside:
            inside, parent = parent.name == "kv_append", parent.cpu_parent
        if not inside:
            cats[classify(event, kv_heads, rank, tail)] += event.self_cpu_time_total / 1e3 / calls
    return cats


def peft_hook_setup_ms(backend, adapted: int, reps: int = 50) -> float:
    """PEFT's per-forward work before any operator: ``_enable_peft_forward_hooks`` entered and left
    (the uncertainty call is one forward: its one output token is never fed back)."""
    model = backend.model
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        with model.base_model._enable_peft_forward_hooks(alora_offsets=[adapted]):
            pass
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=DEFAULT_LENGTHS)
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--profile-calls", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="invoke_breakdown")
    args = parser.parse_args()
    quiet_cpu(args.threads)
    from torch.profiler import ProfilerActivity, profile

    from alora_flows.core.session import Session

    started = time.perf_counter()
    exact, spec = load("auto", args.threads)
    half, _ = load("float16", args.threads)
    cfg = exact.base_model.config
    rank = exact.adapters[NAME].rank
    rows = []
    for length in args.lengths:
        probe = Session(exact, messages=conversation(exact.tokenizer, 256))
        call = spec.prepare(probe, NAME, {}).call
        tail = len(exact.adapters[NAME].invocation_tokens) + len(call.adapted_input)
        messages = conversation(exact.tokenizer, length, extra_tokens=tail)
        exact.kv_in_place = False
        sessions = {"concat": Session(exact, messages=messages)}
        exact.kv_in_place = True
        sessions["exact"] = Session(exact, messages=messages)
        sessions["half"] = Session(half, messages=messages)
        call = spec.prepare(sessions["exact"], NAME, {}).call

        def invoke(session):
            return session.invoke(
                call.adapter,
                messages=call.messages,
                adapted_input=call.adapted_input,
                max_new_tokens=call.max_new_tokens,
                allowed_token_ids=call.allowed_token_ids,
                return_probs=call.return_probs,
                return_logits=True,
            )

        def peft():
            exact._fast[NAME] = False
            try:
                return invoke(sessions["concat"])
            finally:
                exact._fast[NAME] = True

        paths = {
            "before": peft,
            "hooks": lambda: invoke(sessions["concat"]),
            "hooks + in place": lambda: invoke(sessions["exact"]),
            "... + f16 KV": lambda: invoke(sessions["half"]),
        }
        outs = {k: fn() for k, fn in paths.items()}  # warm-up, and the logits compared below
        tokens = sessions["exact"].cached_tokens + tail
        assert outs["hooks + in place"].stats.prefill_tokens == tail, outs["hooks + in place"].stats
        monitor = CpuMonitor()
        times: dict[str, list[float]] = {k: [] for k in paths}
        for i in range(args.reps):
            order = list(paths.items())
            for key, fn in order[i % len(order) :] + order[: i % len(order)]:
                t0 = time.perf_counter()
                fn()
                times[key].append(time.perf_counter() - t0)
        other = monitor.other_cores()
        wall = {k: 1e3 * statistics.median(v) for k, v in times.items()}
        breakdown = {}
        for key, fn in paths.items():
            with marked_kv_append(), profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
                t0 = time.perf_counter()
                for _ in range(args.profile_calls):
                    fn()
                profiled = 1e3 * (time.perf_counter() - t0) / args.profile_calls
            cats = categorise(prof, cfg.num_key_value_heads, rank, tail, args.profile_calls)
            if key == "before":
                cats["PEFT hook set-up"] = peft_hook_setup_ms(exact, tail)
            cats["Python and dispatch"] = max(0.0, profiled - sum(cats.values()))
            # the profiler slows every operator call a little: scale to the unprofiled median
            scale = wall[key] / max(sum(cats.values()), 1e-9)
            breakdown[key] = {c: v * scale for c, v in cats.items()}
            breakdown[key]["profiled_wall_ms"] = profiled
        ref = outs["before"].logits
        diffs = {k: float((o.logits - ref).abs().max()) for k, o in outs.items() if k != "before"}
        row = {
            "tokens": tokens,
            "tail_tokens": tail,
            "wall_ms": wall,
            "min_ms": {k: 1e3 * min(v) for k, v in times.items()},
            "over_before": {k: wall[k] / wall["before"] for k in paths},
            "breakdown_ms": breakdown,
            "logits_max_abs_diff_vs_before": diffs,
            "same_digit": len({o.token_ids[0] for o in outs.values()}) == 1,
            "other_processes_cores_busy": other,
            "times": times,
        }
        rows.append(row)
        print({k: v for k, v in row.items() if k not in ("times", "breakdown_ms")}, flush=True)
        del sessions

    result = {
        "benchmark": "invoke_breakdown",
        "model": exact.model_id,
        "adapter": f"shipped {NAME} (intrinsics/adapters)",
        "environment": environment(),
        "total_seconds": time.perf_counter() - started,
        "rows": rows,
    }
    md = [
        f"One cached call of the shipped uncertainty intrinsic, {exact.model_id} (float32) on CPU, "
        f"{args.threads} thread(s), torch {torch.__version__}; wall: medians of {args.reps} calls "
        f"per path, interleaved; breakdown: torch.profiler over {args.profile_calls} calls.",
        "",
        "| tokens | path | ms per call | / before | max logit diff vs before | same digit | other cores busy |",
        "|---:|---|---:|---:|---:|---|---:|",
    ]
    for r in rows:
        for key in r["wall_ms"]:
            diff = r["logits_max_abs_diff_vs_before"].get(key)
            md.append(
                f"| {r['tokens']} | {key} | {r['wall_ms'][key]:.1f} | {r['over_before'][key]:.3f} | "
                f"{'-' if diff is None else f'{diff:.1e}'} | {r['same_digit']} | {r['other_processes_cores_busy']} |"
            )
    md += [
        "",
        "Breakdown, ms per call: operator self time under torch.profiler (PEFT hook set-up timed "
        "alone; Python and dispatch = the profiled calls' wall time - all of that), scaled so each "
        "row sums to the unprofiled median:",
        "",
        "| tokens | path | " + " | ".join(CATEGORIES) + " | wall |",
        "|---:|---|" + "---:|" * (len(CATEGORIES) + 1),
    ]
    for r in rows:
        for key, cats in r["breakdown_ms"].items():
            md.append(
                f"| {r['tokens']} | {key} | "
                + " | ".join(f"{cats[c]:.1f}" for c in CATEGORIES)
                + f" | {r['wall_ms'][key]:.1f} |"
            )
    write_results(args.out, args.name, result, md)
    print(f"total {time.perf_counter() - started:.0f} s")


if __name__ == "__main__":
    main()
