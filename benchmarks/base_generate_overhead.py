"""Base-model generation per token: with no adapter loaded vs with the four shipped adapters loaded.

Every generate node of a flow with intrinsics runs the base model on a backend that has adapters
loaded. PEFT's ``disable_adapter()`` context, used on every base forward until now, walks every
module of the model twice per call; the backend now switches the LoRA layers off once and leaves
them off (``Backend.select_adapter``). Goal: base generate per token with the four shipped
adapters loaded <= 1.05x the same with none.

Systems, each a backend of its own on the embedded model (SmolLM2-135M-Instruct, float32), timed
round-robin rep by rep on the same conversation, greedy:

- ``none``: no adapter loaded (``Session.generate``);
- ``4 adapters``: the four shipped adapters loaded (uncertainty, hallucination, rewrite,
  answerability), base generate with the adapters idle;
- ``4 adapters, after intrinsic``: the same, each generate right after an intrinsic call (so the
  one switch from the adapter back to the base model is inside the timed generate);
- ``4 adapters, disable_adapter() per forward``: the previous implementation (PEFT's context on
  every base forward), for the before/after comparison.

A second measurement times one base decode step (one token on the cached prompt), the systems
alternating call by call, which is the least exposed to other processes' load.

Per token = generate seconds / generated tokens (the prompt is cached before timing; the
generation prompt and the closing of the turn add 3-5 tokens of prefill to ``max_new_tokens``
decode steps). All systems must generate the same tokens (their logits are the same).

Usage:
    python benchmarks/base_generate_overhead.py                 # ~3-5 min on 2 shared cores
    python benchmarks/base_generate_overhead.py --reps 2 --tokens 8 --steps 5 --out /tmp/bench  # smoke
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, CpuMonitor, environment, quiet_cpu, write_results

SHIPPED = ("uncertainty", "hallucination", "rewrite", "answerability")
PROMPT = [
    {"role": "system", "content": "You are a helpful assistant. Answer in detail."},
    {
        "role": "user",
        "content": "The Quellmark river runs 412 km from the Orsk hills to the Tarven sea. "
        "Towns along it trade timber and salt. Describe, step by step and at length, how a "
        "journey down the whole river might go, and what a traveller would see.",
    },
]
GOAL = 1.05


def legacy_backend_class():
    """The previous base forward: PEFT's ``disable_adapter()`` context around every call."""
    from alora_flows.core.backend import Backend

    class DisableAdapterPerForward(Backend):
        def forward(self, input_ids, cache, *, adapter=None, adapted=0):
            if adapter is not None or not self.adapters:
                return super().forward(input_ids, cache, adapter=adapter, adapted=adapted)
            ids = torch.tensor([input_ids], dtype=torch.long, device=self.device)
            with self.lock, torch.inference_mode():
                # as before: adapters enabled between calls (a no-op once they are) ...
                self.select_adapter(next(iter(self.adapters)))
                with self.model.disable_adapter():  # ... and toggled off and on around each one
                    out = self.model(
                        input_ids=ids, use_cache=True, logits_to_keep=1, **{self._cache_kwarg: cache}
                    )
            return out.logits[0, -1]

    return DisableAdapterPerForward


def load(cls, adapters: bool):
    from intrinsics.registry import resolve_adapter

    backend = cls.load("embedded", progress=False)
    if adapters:
        for name in SHIPPED:
            backend.add_adapter(name, resolve_adapter(name, "builtin", backend.model_id))
    return backend


def decode_steps(backends: dict, calls: int) -> tuple[dict[str, list[float]], dict[str, list[float]]]:
    """Wall and thread-CPU seconds of one base forward of one token on each system's cached
    prompt, the systems alternating call by call."""
    from alora_flows.core.chat import ChatRenderer

    any_backend = next(iter(backends.values()))
    ids = ChatRenderer(any_backend.tokenizer).ids(PROMPT, add_generation_prompt=True)
    caches = {}
    for name, backend in backends.items():
        caches[name] = backend.new_cache()
        backend.forward(ids, caches[name])
    times: dict[str, list[float]] = {name: [] for name in backends}
    cpu: dict[str, list[float]] = {name: [] for name in backends}
    for i in range(calls + 1):
        for name, backend in backends.items():
            cache = caches[name]
            start, cpu_start = time.perf_counter(), time.thread_time()
            backend.forward([ids[i % len(ids)]], cache)
            elapsed, cpu_elapsed = time.perf_counter() - start, time.thread_time() - cpu_start
            cache.crop(-1)  # back to the prompt: the same context length on every call
            if i:  # the first round is a warm-up
                times[name].append(elapsed)
                cpu[name].append(cpu_elapsed)
    return times, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=15)
    parser.add_argument("--tokens", type=int, default=24, help="max_new_tokens per generate")
    parser.add_argument("--steps", type=int, default=200, help="decode-step calls per system")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    quiet_cpu(args.threads)

    from alora_flows.core.backend import Backend
    from alora_flows.core.session import Session

    backends = {
        "none": load(Backend, adapters=False),
        "4 adapters": load(Backend, adapters=True),
        "4 adapters, after intrinsic": load(Backend, adapters=True),
        "4 adapters, disable_adapter() per forward": load(legacy_backend_class(), adapters=True),
    }

    def run(name: str) -> tuple[float, float, list[int]]:
        backend = backends[name]
        session = Session(backend, messages=PROMPT)  # prompt prefilled before timing
        if name.endswith("after intrinsic"):
            session.invoke("uncertainty", max_new_tokens=1)
        start, cpu = time.perf_counter(), time.thread_time()
        result = session.generate(args.tokens)
        return time.perf_counter() - start, time.thread_time() - cpu, result.token_ids

    for name in backends:  # warm-up
        run(name)
    per_token: dict[str, list[float]] = {name: [] for name in backends}
    cpu_per_token: dict[str, list[float]] = {name: [] for name in backends}
    tokens: dict[str, list[int]] = {}
    busy: list[float] = []
    for _ in range(args.reps):
        monitor = CpuMonitor()
        for name in backends:
            seconds, cpu, ids = run(name)
            per_token[name].append(seconds / len(ids))
            cpu_per_token[name].append(cpu / len(ids))
            tokens[name] = ids
        other = monitor.other_cores()
        if other is not None:
            busy.append(other)

    # One base decode step, the systems alternating call by call (least exposed to load changes).
    steps, cpu_steps = decode_steps(backends, args.steps)

    base = statistics.median(per_token["none"])
    base_step = statistics.median(steps["none"])
    base_cpu = statistics.median(cpu_per_token["none"])
    base_cpu_step = statistics.median(cpu_steps["none"])
    reference = tokens["none"]
    rows = []
    for name, times in per_token.items():
        median = statistics.median(times)
        rows.append(
            {
                "system": name,
                "ms_per_token": 1e3 * median,
                "min_ms_per_token": 1e3 * min(times),
                "ratio_to_none": median / base,
                "paired_ratio_to_none": statistics.median(
                    t / n for t, n in zip(times, per_token["none"], strict=True)
                ),
                "same_tokens_as_none": tokens[name] == reference,
                "cpu_ms_per_token": 1e3 * statistics.median(cpu_per_token[name]),
                "cpu_ratio_to_none": statistics.median(cpu_per_token[name]) / base_cpu,
                "step_ms": 1e3 * statistics.median(steps[name]),
                "step_ratio_to_none": statistics.median(steps[name]) / base_step,
                "step_cpu_ms": 1e3 * statistics.median(cpu_steps[name]),
                "step_cpu_ratio_to_none": statistics.median(cpu_steps[name]) / base_cpu_step,
                "times_s_per_token": times,
            }
        )
    goal_row = rows[1]
    result = {
        "goal": f"base generate per token with 4 adapters loaded <= {GOAL}x none",
        "goal_met_median": goal_row["ratio_to_none"] <= GOAL,
        "goal_met_paired": goal_row["paired_ratio_to_none"] <= GOAL,
        "goal_met_step": goal_row["step_ratio_to_none"] <= GOAL,
        "goal_met_cpu": goal_row["cpu_ratio_to_none"] <= GOAL,
        "goal_met_step_cpu": goal_row["step_cpu_ratio_to_none"] <= GOAL,
        "reps": args.reps,
        "max_new_tokens": args.tokens,
        "generated_tokens": len(reference),
        "decode_steps_per_system": args.steps,
        "threads": args.threads,
        "other_cores_busy_median": statistics.median(busy) if busy else None,
        "rows": rows,
        "environment": environment(),
    }
    md = [
        "# Base generate per token: no adapter vs the four shipped adapters loaded",
        "",
        f"Embedded model (float32), {args.threads} torch thread(s), greedy. Generate: "
        f"{len(reference)} tokens a call, {args.reps} reps timed round-robin; paired ratio = median "
        "over reps of (system / none) wall time within the rep. Decode step: one base forward of one token "
        f"on the cached prompt, the systems alternating call by call, {args.steps} calls each. "
        f"Other cores busy (median over reps): {result['other_cores_busy_median']}. Command: "
        f"`OMP_NUM_THREADS={args.threads} python benchmarks/base_generate_overhead.py --reps "
        f"{args.reps} --tokens {args.tokens} --steps {args.steps}`.",
        "",
        "| system | generate ms / token | (min) | ratio to none | paired ratio | generate CPU ms / token | "
        "CPU ratio | decode step ms | step ratio | step CPU ms | step CPU ratio | same tokens |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['system']} | {r['ms_per_token']:.1f} | {r['min_ms_per_token']:.1f} | "
            f"{r['ratio_to_none']:.3f} | {r['paired_ratio_to_none']:.3f} | {r['cpu_ms_per_token']:.1f} | "
            f"{r['cpu_ratio_to_none']:.3f} | {r['step_ms']:.1f} | {r['step_ratio_to_none']:.3f} | "
            f"{r['step_cpu_ms']:.1f} | {r['step_cpu_ratio_to_none']:.3f} | "
            f"{'yes' if r['same_tokens_as_none'] else 'NO'} |"
        )
    md += [
        "",
        f"Goal (4 adapters <= {GOAL}x none): generate {goal_row['ratio_to_none']:.3f} (paired "
        f"{goal_row['paired_ratio_to_none']:.3f}, CPU {goal_row['cpu_ratio_to_none']:.3f}); decode step "
        f"{goal_row['step_ratio_to_none']:.3f} (CPU {goal_row['step_cpu_ratio_to_none']:.3f}).",
        "",
        "Medians; ratios are of medians except the paired one. CPU = the timing thread's CPU time "
        "(`time.thread_time()`; with one torch thread all model compute runs on it), which other "
        "processes' load does not inflate as it does wall time.",
    ]
    write_results(args.out, "base_generate_overhead", result, md)


if __name__ == "__main__":
    main()
