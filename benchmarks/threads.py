"""Torch threads on a shared CPU: the demo and one intrinsic call at 1, 2 and the default thread
count, on the machine as it is ("idle": no load added) and with other work on it ("loaded": the
benchmark starts busy processes itself, each spinning on one CPU, bounded in time).

Why: torch splits each operator over its threads and waits for all of them, so when another
process holds one of the cores, every operator waits for the thread that lost its core. The
default of ``alora-flows`` commands (``alora_flows.core.tuning.choose_threads``) looks at how busy
the CPUs are when a command starts; this measures whether that choice is the right one.

Everything runs in one process on the embedded model (float32) with the shipped adapters:

- *demo*: the ``alora-flows demo`` question through the demo's flow, on a fresh session (reuse
  on), wall time of the whole run;
- *intrinsic call*: the shipped uncertainty intrinsic (``session.invoke``, 1 output token, the
  answer re-read after the invocation) on a cached 1,024-token conversation, median of
  ``--calls`` calls.

Cells are measured round-robin, rep by rep (idle then loaded, 1 / 2 / default threads each), so
drift in the machine's own load spreads over all of them. Every cell records how many of this
process's CPUs other processes kept busy while it ran (the load it added included), and what the
default chose, sampled as a command would, after the load started.

Usage:
    python benchmarks/threads.py                      # ~6-10 min on 2 cores
    python benchmarks/threads.py --reps 1 --calls 3 --no-demo --out /tmp/bench   # smoke
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, conversation, environment, write_results

SPIN = (
    "import os, sys, time\n"
    "os.sched_setaffinity(0, {int(sys.argv[1])})\n"
    "end = time.time() + float(sys.argv[2])\n"
    "while time.time() < end:\n"
    "    pass\n"
)


@contextmanager
def busy(cpus: list[int], seconds: float) -> Iterator[None]:
    """One process spinning on each of ``cpus`` while the block runs (each also stops by itself
    after ``seconds``, so a killed benchmark leaves nothing spinning for long)."""
    procs = [subprocess.Popen([sys.executable, "-c", SPIN, str(cpu), str(seconds)]) for cpu in cpus]
    try:
        time.sleep(0.3)  # let them start before the thread default samples the load
        yield
    finally:
        for proc in procs:
            proc.kill()
        for proc in procs:
            proc.wait()


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values), "all": values}


def main() -> None:
    from alora_flows.core.tuning import CpuSampler, choose_threads, set_torch_threads, usable_cpus

    cpus = usable_cpus()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--reps", type=int, default=2, help="rounds over all cells")
    parser.add_argument("--calls", type=int, default=9, help="intrinsic calls per cell (median)")
    parser.add_argument("--tokens", type=int, default=1024, help="conversation length for the intrinsic call")
    parser.add_argument(
        "--load", type=int, default=max(1, len(cpus) // 2), help="busy processes in the loaded condition"
    )
    parser.add_argument("--no-demo", action="store_true", help="time only the intrinsic call")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument("--name", default="threads")
    parser.add_argument("--from-json", type=Path, help="only re-write the table from a result JSON")
    args = parser.parse_args()
    if args.from_json:
        result = json.loads(args.from_json.read_text())
        saved = argparse.Namespace(**result["args"])
        usable = list(range(result["environment"]["usable_cpus"]))
        write_results(args.out, args.name, result, markdown(result, usable, saved))
        return

    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    set_torch_threads(1)

    from alora_flows.core.session import Session
    from alora_flows.demo import DEFAULT_QUESTION, DemoRunner

    started = time.perf_counter()
    runner = DemoRunner()
    backend, spec = runner.backend, runner.specs["uncertainty"]
    context = Session(backend, messages=conversation(backend.tokenizer, args.tokens))  # ends with an answer

    def intrinsic_call() -> float:
        begin = time.perf_counter()
        spec.run(context, "uncertainty", state={})
        return time.perf_counter() - begin

    def demo_run() -> float:
        begin = time.perf_counter()
        runner.ask(DEFAULT_QUESTION, session=Session(backend))
        return time.perf_counter() - begin

    for threads in (1, 2):  # warm both thread pools and every code path before timing
        set_torch_threads(threads)
        intrinsic_call()
        if not args.no_demo:
            demo_run()

    conditions = {"idle": [], "loaded": cpus[: args.load]}
    settings = ["1", "2", "default"]
    cells: dict[tuple[str, str], dict] = {
        (c, s): {"demo": [], "call": [], "other_cpus": [], "threads": []}
        for c in conditions
        for s in settings
    }
    for rep in range(args.reps):
        for condition, load in conditions.items():
            with busy(load, seconds=900) if load else nullcontext():
                for setting in settings:
                    threads = choose_threads(environ={}).threads if setting == "default" else int(setting)
                    set_torch_threads(threads)
                    cell = cells[(condition, setting)]
                    monitor = CpuSampler(cpus)
                    calls = [intrinsic_call() for _ in range(args.calls)]
                    cell["call"].append(statistics.median(calls))
                    if not args.no_demo:
                        cell["demo"].append(demo_run())
                    cell["other_cpus"].append(round(monitor.other_cpus() or 0.0, 2))
                    cell["threads"].append(threads)
                    demo = f"demo {cell['demo'][-1]:.1f} s, " if cell["demo"] else ""
                    print(
                        f"rep {rep + 1}/{args.reps} {condition:6} threads={setting:7} ({threads}): {demo}"
                        f"call {cell['call'][-1] * 1000:.0f} ms, other CPUs busy {cell['other_cpus'][-1]}",
                        flush=True,
                    )

    rows = []
    for (condition, setting), cell in cells.items():
        rows.append(
            {
                "condition": condition,
                "setting": setting,
                "threads_used": cell["threads"],
                "demo_seconds": spread(cell["demo"]) if cell["demo"] else None,
                "call_seconds": spread(cell["call"]),
                "other_cpus_busy": cell["other_cpus"],
            }
        )
    env = environment()
    env["usable_cpus"] = len(cpus)
    result = {
        "description": "demo run and one intrinsic call at 1, 2 and default torch threads, idle and loaded",
        "environment": env,
        "args": {k: str(v) for k, v in vars(args).items()},
        "load": f"{args.load} busy process(es), each spinning on one of CPUs {cpus[: args.load]}",
        "rows": rows,
        "seconds": round(time.perf_counter() - started, 1),
    }
    write_results(args.out, args.name, result, markdown(result, cpus, args))


def markdown(result: dict, cpus: list[int], args: argparse.Namespace) -> list[str]:
    def cell_text(stat: dict | None, scale: float, unit: str, digits: int) -> str:
        if stat is None:
            return "–"
        low, high = stat["min"] * scale, stat["max"] * scale
        return f"{stat['median'] * scale:.{digits}f} {unit} ({low:.{digits}f}–{high:.{digits}f})"

    rows = {(r["condition"], r["setting"]): r for r in result["rows"]}
    lines = [
        "# Torch threads on a shared CPU",
        "",
        f"`python benchmarks/threads.py` ({args.reps} rounds, cells round-robin; {len(cpus)} usable CPUs; "
        f"loaded = {result['load']}). Demo: the `alora-flows demo` question, one run on a fresh session "
        f"(median and range over the rounds). Intrinsic call: the shipped uncertainty intrinsic on a "
        f"cached {args.tokens}-token conversation, median of {args.calls} calls per round. 'other CPUs "
        "busy': how many of the usable CPUs other processes kept busy during the cell (the added load "
        "included; on a shared machine the first rows are not idle, this column says how busy it "
        "was); 'default' is what `alora-flows` commands choose (`--threads` unset), sampled after "
        "the load started.",
        "",
        "| machine | threads | demo run | intrinsic call | other CPUs busy |",
        "|---|---|---:|---:|---:|",
    ]
    names = {
        "idle": "no load added",
        "loaded": f"+{args.load} busy process{'es' if int(args.load) > 1 else ''}",
    }
    for condition in ("idle", "loaded"):
        for setting in ("1", "2", "default"):
            row = rows[(condition, setting)]
            used = sorted(set(row["threads_used"]))
            label = f"default (chose {', '.join(map(str, used))})" if setting == "default" else setting
            busy_text = ", ".join(f"{b:.1f}" for b in row["other_cpus_busy"])
            lines.append(
                f"| {names[condition]} | {label} | {cell_text(row['demo_seconds'], 1, 's', 1)} | "
                f"{cell_text(row['call_seconds'], 1000, 'ms', 0)} | {busy_text} |"
            )
    lines.append("")
    for what, key in (("demo", "demo_seconds"), ("intrinsic call", "call_seconds")):
        if rows[("idle", "1")][key] is None:
            continue
        parts = []
        for condition in ("idle", "loaded"):
            one = rows[(condition, "1")][key]["median"]
            two = rows[(condition, "2")][key]["median"]
            default = rows[(condition, "default")][key]["median"]
            parts.append(
                f"{names[condition]}: 2 threads / 1 thread = {two / one:.2f}, default / best of 1 and 2 = "
                f"{default / min(one, two):.2f}"
            )
        lines.append(f"- {what}: " + "; ".join(parts) + ".")
    background = [b for s in ("1", "2", "default") for b in rows[("idle", s)]["other_cpus_busy"]]
    if background and statistics.median(background) >= 0.5:
        lines.append(
            f"- The machine was not idle: with no load added, other processes already kept "
            f"{statistics.median(background):.1f} of its {len(cpus)} CPUs busy (median over those cells), "
            "so both halves of the table are loaded machines; rerun on a quiet machine for idle numbers."
        )
    lines.append(f"\nTotal benchmark time {result['seconds']:.0f} s.")
    return lines


if __name__ == "__main__":
    main()
