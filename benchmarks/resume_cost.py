"""What continuing a paused run costs, and what the event stream adds, on the embedded model (CPU).

A flow pauses at an ``interrupt`` after a conversation of N tokens (a user document and a short
generated answer), then continues with one intrinsic call and a short generation. Timed, in the
same process, rep by rep:

- **kept**: ``result.resume(values)`` on the paused run's live session (nothing to rebuild);
- **rebuilt**: ``resume_run(run_dir, backend, values=...)``: the session is rebuilt from the run
  directory's saved conversation (one prefill of N tokens), then the run continues.

Reported: the rebuild's prefill tokens and seconds (the trace's ``resumes`` record), the time of
the whole continuation both ways, and rebuilt/kept. Then the event stream's overhead on a
32-token generation: ``flow.run`` vs ``for e in flow.stream(...)`` vs ``flow.astream``.

Usage:
    python benchmarks/resume_cost.py                                 # ~2-3 min on 2 cores
    python benchmarks/resume_cost.py --lengths 256 --reps 1 --out /tmp/bench   # smoke
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from common import (
    RESULTS,
    CpuMonitor,
    conversation,
    embedded_backend,
    environment,
    quiet_cpu,
    write_results,
)


def build_flow():
    from alora_flows.flow import END, Flow

    flow = Flow("paused", inputs=["document"], max_steps=10)
    flow.message("doc", "user", "{{ document }}")
    flow.generate("answer", max_new_tokens=8, output="answer")
    flow.interrupt("approve", "Approve?", {"approved": bool})
    flow.intrinsic("rate", "certainty", output="certainty")
    flow.generate("more", max_new_tokens=8, output="more")
    flow.edge("doc", "answer").edge("answer", "approve").edge("approve", "rate")
    flow.edge("rate", "more").edge("more", END)
    return flow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[512, 2048])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--stream-tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    quiet_cpu(args.threads)

    from alora_flows.core.session import Session
    from alora_flows.runs.rundir import RunDir, resume_run, run_with_dir
    from alora_flows.testing import same_within
    from intrinsics import uncertainty_spec

    tmp = Path(tempfile.mkdtemp())
    backend = embedded_backend(tmp / "adapters")
    specs = {"certainty": uncertainty_spec("certainty", "<|im_start|>certainty\n")}
    flow = build_flow()
    values = {"approved": True}

    rows = []
    for length in args.lengths:
        document = conversation(backend.tokenizer, length)[0]["content"]
        inputs = {"document": document}
        kept_times, rebuilt_times, rebuild_seconds, rebuild_tokens, finals = [], [], [], [], []
        monitor = CpuMonitor()
        for rep in range(args.reps + 1):  # rep 0 warms up
            paused = flow.run(Session(backend), inputs, intrinsic_specs=specs)
            start = time.perf_counter()
            kept = paused.resume(values)
            kept_s = time.perf_counter() - start

            run = RunDir.create(
                tmp / f"run-{length}-{rep}",
                flow_text=flow.to_yaml(),
                flow_file=tmp / "flow.yaml",
                flow_name=flow.name,
                model="embedded",
                inputs=inputs,
                reuse=True,
                seed=None,
                fsync=False,
            )
            run_with_dir(run, flow, Session(backend), inputs, intrinsic_specs=specs)
            start = time.perf_counter()
            rebuilt = resume_run(run.path, backend, intrinsic_specs=specs, values=values)
            rebuilt_s = time.perf_counter() - start
            record = rebuilt.trace.resumes[-1]
            assert kept.trace.resumes[-1].prefill_tokens == 0 and record.session == "rebuilt"
            if rep:
                kept_times.append(kept_s)
                rebuilt_times.append(rebuilt_s)
                rebuild_seconds.append(record.seconds)
                rebuild_tokens.append(record.prefill_tokens)
                finals.append(same_within(kept.trace.final_state, rebuilt.trace.final_state))
        kept_med, rebuilt_med = statistics.median(kept_times), statistics.median(rebuilt_times)
        rows.append(
            {
                "document_tokens": length,
                "rebuild_prefill_tokens": rebuild_tokens[0],
                "rebuild_seconds": statistics.median(rebuild_seconds),
                "continue_kept_seconds": kept_med,
                "continue_rebuilt_seconds": rebuilt_med,
                "rebuilt_over_kept": rebuilt_med / kept_med,
                "same_final_state": all(finals),
                "reps": args.reps,
                "kept_all": kept_times,
                "rebuilt_all": rebuilt_times,
                "other_cores_busy": monitor.other_cores(),
            }
        )

    from alora_flows.flow import END, Flow, TokenStreamed

    gen = Flow("gen", inputs=["question"])
    gen.generate("answer", user="{{ question }}", max_new_tokens=args.stream_tokens, output="answer")
    gen.edge("answer", END)
    question = {"question": "Describe the Quellmark river in detail."}

    def plain() -> str:
        return gen.run(Session(backend), question, seed=0).state.answer

    def streamed() -> str:
        stream = gen.stream(Session(backend), question, seed=0)
        tokens = sum(isinstance(e, TokenStreamed) for e in stream)
        assert tokens > 0
        return stream.result.state.answer

    def astreamed() -> str:
        async def go() -> str:
            stream = gen.astream(Session(backend), question, seed=0)
            async for _ in stream:
                pass
            return stream.result.state.answer

        return asyncio.run(go())

    ways = {"run": plain, "stream": streamed, "astream": astreamed}
    answers = {name: fn() for name, fn in ways.items()}  # warm-up, and the same text each way
    times: dict[str, list[float]] = {name: [] for name in ways}
    for _ in range(args.reps):
        for name, fn in ways.items():
            start = time.perf_counter()
            fn()
            times[name].append(time.perf_counter() - start)
    stream_row = {
        "max_new_tokens": args.stream_tokens,
        "seconds": {name: statistics.median(t) for name, t in times.items()},
        "same_text": len(set(answers.values())) == 1,
        "all": times,
    }
    base = stream_row["seconds"]["run"]

    def busy(value: float | None) -> str:
        return "n/a" if value is None else f"{value:.2f}"

    result = {"rows": rows, "stream": stream_row, "environment": environment()}
    md = [
        "# Continuing a paused run: live session kept vs rebuilt from the run directory",
        "",
        f"Embedded model, CPU, {args.threads} torch thread(s); medians of {args.reps} reps.",
        "",
        "| document tokens | rebuild prefill tokens (the conversation) | rebuild s | continue, kept s | "
        "continue, rebuilt s | rebuilt / kept | same final state (floats to 1e-4) | other cores busy |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        md.append(
            f"| {r['document_tokens']} | {r['rebuild_prefill_tokens']} | "
            f"{r['rebuild_seconds']:.3f} | {r['continue_kept_seconds']:.3f} | {r['continue_rebuilt_seconds']:.3f} | "
            f"{r['rebuilt_over_kept']:.1f}x | {r['same_final_state']} | {busy(r['other_cores_busy'])} |"
        )
    md += [
        "",
        f"Event stream overhead, one generate step of {args.stream_tokens} tokens:",
        "",
        "| way | seconds | vs run |",
        "|---|---|---|",
    ]
    for name, seconds in stream_row["seconds"].items():
        md.append(f"| {name} | {seconds:.3f} | {seconds / base:.3f}x |")
    md.append(f"\nsame text all three ways: {stream_row['same_text']}")
    write_results(args.out, "resume_cost", result, md)


if __name__ == "__main__":
    main()
