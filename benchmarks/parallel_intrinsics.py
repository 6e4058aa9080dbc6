"""Three intrinsics on one cached conversation: one packed pass vs three sequential calls vs one.

For each conversation length, on the embedded model with three random rank-32 aLoRA adapters (the
cost does not depend on trained weights), we time side by side, round-robin rep by rep:

- ``one``:        ``session.invoke(a)``: a single intrinsic call (the unit of the ratios);
- ``sequential``: ``session.invoke(a); invoke(b); invoke(c)``: what a flow did before;
- ``packed``:     ``invoke_parallel(session, [a, b, c])``: the three as segments of one forward.

Three shapes of call: ``bare`` (invocation tokens only, one output token, like answerability),
``reread`` (each adapter also reads a 24-token answer after its invocation, like the shipped
uncertainty intrinsic: those tokens run under each row's own adapter, so packing cannot share
them) and ``turn`` (the same 24-token answer as a turn before each invocation, ``messages=``:
base-model tokens every row starts with, which the packed call runs once, in the shared prefix).
Goal (issue 23): packed <= 1.5x one at 4k tokens.

Memory: each mode also runs once in a fresh subprocess with glibc's mmap threshold lowered, so
freed tensors go back to the OS and the resident set follows live memory; a sampling thread
records the peak resident set during the call above the resident set just before it. Goal:
packed <= 1.2x one.

Usage:
    python benchmarks/parallel_intrinsics.py                  # 1k / 4k / 8k, ~10 min on 2 cores
    python benchmarks/parallel_intrinsics.py --lengths 512 --reps 2 --out /tmp/b   # smoke
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, conversation, environment, quiet_cpu, write_results

INVOCATIONS = {
    "certainty": "<|im_start|>certainty\n",
    "hallucination": "<|im_start|>hallucination\n",
    "answerability": "<|im_start|>answerability\n",
}
ANSWER = "Answer: The Quellmark river runs 412 km from the Orsk hills to the Tarven sea, it says.\nScore:"


def build(adapter_dir: str):
    from alora_flows.app import load_backend
    from alora_flows.testing import save_random_alora

    backend = load_backend("embedded", progress=False)
    for i, (name, invocation) in enumerate(INVOCATIONS.items()):
        path = save_random_alora(
            backend.base_model,
            backend.tokenizer,
            invocation,
            Path(adapter_dir) / name,
            r=32,
            seed=i + 1,
            base_model_name=backend.model_id,
        )
        backend.add_adapter(name, path)
    return backend


SHAPES = ("bare", "reread", "turn")


def calls(backend, shape: str):
    from alora_flows.core.parallel import IntrinsicCall

    answer = backend.tokenizer(ANSWER, add_special_tokens=False)["input_ids"][:24]
    reread = answer if shape == "reread" else []
    turn = [{"role": "user", "content": backend.tokenizer.decode(answer)}] if shape == "turn" else []
    return [
        IntrinsicCall(name, messages=turn, adapted_input=reread, max_new_tokens=1) for name in INVOCATIONS
    ]


def floor_call(session, group):
    """One call that runs as many new tokens in its single forward as the packed call does: the
    first call, with the other rows' own tokens (their adapted spans) appended to its adapted
    input. Same tokens, same FLOPs, one adapter, no packing: packed cannot cost less."""
    from alora_flows.core.parallel import IntrinsicCall

    first = group[0]
    extra: list[int] = []
    for call in group[1:]:
        inv = session.invocation(call.adapter, messages=call.messages, adapted_input=call.adapted_input)
        extra += inv.ids[len(inv.ids) - inv.adapted :]
    return IntrinsicCall(
        first.adapter, messages=first.messages, adapted_input=[*first.adapted_input, *extra], max_new_tokens=1
    )


def modes(session, group):
    from alora_flows.core.parallel import invoke_parallel

    def invoke(call):
        return session.invoke(
            call.adapter, messages=call.messages, adapted_input=call.adapted_input, max_new_tokens=1
        )

    floor = floor_call(session, group)
    return {
        "one": lambda: invoke(group[0]),
        "sequential": lambda: [invoke(c) for c in group],
        "packed": lambda: invoke_parallel(session, group),
        "floor": lambda: invoke(floor),
    }


def time_modes(session, group, reps: int) -> dict[str, list[float]]:
    fns = modes(session, group)
    for fn in fns.values():  # warm every path before timing
        fn()
    times: dict[str, list[float]] = {name: [] for name in fns}
    names = list(fns)
    for i in range(reps):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            start = time.perf_counter()
            fns[name]()
            times[name].append(time.perf_counter() - start)
    return times


def memory_probe(length: int, shape: str, mode: str) -> None:
    """Child process: print the peak resident-set increase of one call of ``mode``, in bytes."""
    import psutil

    from alora_flows.core.session import Session

    quiet_cpu(1)
    with tempfile.TemporaryDirectory() as tmp:
        backend = build(tmp)
        session = Session(backend, messages=conversation(backend.tokenizer, length, 3))
        fn = modes(session, calls(backend, shape))[mode]
        fn()  # warm (first-call allocations, hooks)
        proc = psutil.Process()
        before = proc.memory_info().rss
        peak = [before]
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], proc.memory_info().rss)
                time.sleep(0.0005)

        thread = threading.Thread(target=sample, daemon=True)
        thread.start()
        fn()
        stop.set()
        thread.join()
        print(json.dumps({"peak_bytes": peak[0] - before}))


def measure_memory(length: int, shape: str, mode: str) -> int:
    env = {
        **os.environ,
        "MALLOC_MMAP_THRESHOLD_": "65536",
        "MALLOC_TRIM_THRESHOLD_": "0",
        "OMP_NUM_THREADS": "1",
        "ALORA_FLOWS_NO_CPU_TUNING": "1",  # its mallopt keeps freed memory resident, hiding the peak
    }
    out = subprocess.run(
        [sys.executable, __file__, "--memory-probe", str(length), shape, mode],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    return int(json.loads(out.strip().splitlines()[-1])["peak_bytes"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024, 4096, 8000])
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--no-memory", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--memory-probe", nargs=3, metavar=("LENGTH", "SHAPE", "MODE"))
    args = parser.parse_args()
    if args.memory_probe:
        length, shape, mode = args.memory_probe
        memory_probe(int(length), shape, mode)
        return
    from alora_flows.core.session import Session

    quiet_cpu(args.threads)
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        backend = build(tmp)
        for length in args.lengths:
            session = Session(backend, messages=conversation(backend.tokenizer, length, 3))
            for shape in SHAPES:
                times = time_modes(session, calls(backend, shape), args.reps)
                med = {k: statistics.median(v) for k, v in times.items()}
                row = {
                    "tokens": session.cached_tokens,
                    "shape": shape,
                    **{f"{k}_s": v for k, v in med.items()},
                    "spread": {k: [min(v), max(v)] for k, v in times.items()},
                    "sequential_over_one": med["sequential"] / med["one"],
                    "packed_over_one": med["packed"] / med["one"],
                    "floor_over_one": med["floor"] / med["one"],
                }
                if not args.no_memory:
                    one = measure_memory(length, shape, "one")
                    packed = measure_memory(length, shape, "packed")
                    row.update(mem_one_bytes=one, mem_packed_bytes=packed, mem_ratio=packed / max(one, 1))
                rows.append(row)
                print(json.dumps(row), flush=True)
    md = [
        "# Three intrinsics on one cached conversation (embedded model, CPU)",
        "",
        f"`python benchmarks/parallel_intrinsics.py` -- {args.threads} torch thread(s), {args.reps} reps, "
        "medians, round-robin order; three random rank-32 aLoRA adapters, one output token each.",
        "",
        "| tokens | call shape | one | sequential (3) | packed (3) | floor | seq / one | packed / one | floor / one |"
        + ("" if args.no_memory else " peak mem one | peak mem packed | mem ratio |"),
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|" + ("" if args.no_memory else "---:|---:|---:|"),
    ]
    for r in rows:
        line = (
            f"| {r['tokens']:,} | {r['shape']} | {r['one_s'] * 1e3:.1f} ms | {r['sequential_s'] * 1e3:.1f} ms | "
            f"{r['packed_s'] * 1e3:.1f} ms | {r['floor_s'] * 1e3:.1f} ms | {r['sequential_over_one']:.2f} | "
            f"{r['packed_over_one']:.2f} | {r['floor_over_one']:.2f} |"
        )
        if not args.no_memory:
            line += (
                f" {r['mem_one_bytes'] / 2**20:.1f} MiB | {r['mem_packed_bytes'] / 2**20:.1f} MiB |"
                f" {r['mem_ratio']:.2f} |"
            )
        md.append(line)
    md += [
        "",
        "`bare`: invocation tokens only; `reread`: each adapter also reads a 24-token answer after its "
        "invocation (under its own adapter: per row); `turn`: the same answer as a turn before each "
        "invocation (base-model tokens every row starts with: run once, in the shared prefix). Memory: peak resident-set increase during one call in a fresh process with "
        "`MALLOC_MMAP_THRESHOLD_=65536` (freed tensors return to the OS), sampled every 0.5 ms.",
    ]
    write_results(args.out, "parallel_intrinsics", {"environment": environment(), "rows": rows}, md)


if __name__ == "__main__":
    main()
