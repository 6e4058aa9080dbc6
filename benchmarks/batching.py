"""Eight concurrent RAG flows through one backend, their forwards batched, vs one after the other.

The demo flow (``alora_flows/demo/flow.yaml``: rewrite, BM25 retrieval, answer, uncertainty and
hallucination aLoRA checks, retries) on the embedded model, 1 torch thread, through the batch
runner (``alora_flows.batch``) in three configurations, side by side in one run:

- **one after the other**: one worker, each flow runs alone;
- **N threads, batched**: N thread workers on one backend with ``batching=True``
  (``alora-flows batch --pool thread --workers N --batching``): the forwards of the flows that are
  ready at the same moment run as one (``alora_flows.core.batching``);
- **N threads, lock only** (the control; ``--no-control`` skips it): the same threads without
  batching, taking turns under the backend's lock.

Throughput counts from the moment the worker had loaded the flow to the last result (loading
excluded). Every configuration must give the same outputs: the answers, rewrites and labels equal
as text, and the certainty scores (probability-weighted) within 1e-4; the table says.

    python benchmarks/batching.py                           # 8 flows, ~6 min on 2 quiet cores
    python benchmarks/batching.py --questions 2 --no-control   # a quick look
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import RESULTS, environment, quiet_cpu, write_results  # noqa: E402

FLOW = ROOT / "alora_flows" / "demo" / "flow.yaml"
QUESTIONS = ROOT / "examples" / "rag" / "questions.yaml"


def load_questions(n: int) -> list[dict]:
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load(QUESTIONS.read_text())
    return [{"id": q["id"], "inputs": {"question": q["question"]}} for q in data["questions"][:n]]


class Clock:
    """A batch listener: when the worker was ready, when each result came."""

    def __init__(self) -> None:
        self.ready: float | None = None
        self.results: list[float] = []

    def on_ready(self, worker: str) -> None:
        self.ready = self.ready or time.perf_counter()

    def on_result(self, result: Any, written: bool) -> None:
        self.results.append(time.perf_counter())

    def on_lost(self, worker: str, item: Any) -> None:
        pass


def run_config(name: str, questions: list[dict], tmp: Path, *, workers: int, batching: bool) -> dict:
    from alora_flows.batch import make_pool, plan_batch, run_plan

    stem = "".join(c if c.isalnum() else "_" for c in name)
    inputs, out = tmp / f"{stem}.in.jsonl", tmp / f"{stem}.out.jsonl"
    inputs.write_text("".join(json.dumps(q) + "\n" for q in questions))
    plan = plan_batch(FLOW, inputs, out, threads=1, batching=batching)
    pool: Any = make_pool(plan.config, workers=workers, pool="thread")
    clock = Clock()
    load_before = os.getloadavg()[0]
    summary = run_plan(plan, pool, [clock])
    assert clock.ready is not None and clock.results
    seconds = clock.results[-1] - clock.ready
    worker = pool.loaded.result()
    stats = getattr(worker.session_backend, "stats", None)
    results = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
    run = {
        "config": name,
        "workers": summary.workers,
        "flows": len(results),
        "ok": sum(r["status"] == "ok" for r in results.values()),
        "seconds": round(seconds, 2),
        "flows_per_minute": round(len(results) / seconds * 60, 2),
        "mean_flow_seconds": round(sum(r["seconds"] for r in results.values()) / len(results), 2),
        "forwards": stats.forwards if stats else None,
        "rows": stats.rows if stats else None,
        "mean_rows_per_forward": round(stats.mean_rows, 2) if stats else None,
        "max_rows": stats.max_rows if stats else None,
        # rows -> [forwards with that many rows, their seconds]
        "by_rows": {k: [v[0], round(v[1], 2)] for k, v in sorted(stats.by_rows.items())} if stats else None,
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "final_states": {k: r["final_state"] for k, r in results.items()},
        "paths": {k: r["path"] for k, r in results.items()},
        "errors": {k: r["error"] for k, r in results.items() if r["status"] != "ok"},
    }
    print(
        f"{name:>28}: {run['flows']} flows ({run['ok']} ok) in {run['seconds']} s, "
        f"{run['flows_per_minute']} flows/min; load {run['load_average_before']} -> {run['load_average_after']}",
        flush=True,
    )
    return run


def compare(a: Any, b: Any, path: str = "") -> tuple[list[str], float]:
    """Differences between two final states: texts, labels and lists exactly, floats to 1e-4;
    returns (differences, largest float difference)."""
    if isinstance(a, float) and isinstance(b, float):
        diff = abs(a - b)
        return ([f"{path}: {a} vs {b}"] if diff > 1e-4 else []), diff
    if isinstance(a, dict) and isinstance(b, dict):
        if a.keys() != b.keys():
            return [f"{path}: keys {sorted(a)} vs {sorted(b)}"], 0.0
        out, worst = [], 0.0
        for key in a:
            d, w = compare(a[key], b[key], f"{path}.{key}")
            out += d
            worst = max(worst, w)
        return out, worst
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        out, worst = [], 0.0
        for i, (x, y) in enumerate(zip(a, b)):
            d, w = compare(x, y, f"{path}[{i}]")
            out += d
            worst = max(worst, w)
        return out, worst
    return ([] if a == b else [f"{path}: {a!r} vs {b!r}"]), 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=8, help="flows (questions of examples/rag)")
    parser.add_argument("--no-control", action="store_true", help="skip the threads-without-batching row")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    quiet_cpu(1)
    os.environ["ALORA_FLOWS_THREADS"] = "1"
    questions = load_questions(args.questions)
    n = len(questions)
    configs = [("one after the other", 1, False), (f"{n} threads, batched", n, True)]
    if not args.no_control:
        configs.append((f"{n} threads, lock only", n, False))
    with tempfile.TemporaryDirectory() as tmp:
        runs = [run_config(name, questions, Path(tmp), workers=w, batching=b) for name, w, b in configs]
    base = runs[0]
    same_all, worst_all = True, 0.0
    for run in runs:
        diffs, worst = compare(base["final_states"], run["final_states"])
        diffs += [f"path of {k}" for k in base["paths"] if base["paths"][k] != run["paths"].get(k)]
        run["differences_from_sequential"] = diffs
        run["largest_float_difference"] = worst
        run["throughput_vs_sequential"] = round(base["seconds"] / run["seconds"], 2)
        same_all = same_all and not diffs and run["ok"] == run["flows"]
        worst_all = max(worst_all, worst)
    result = {"environment": environment(), "questions": [q["id"] for q in questions], "runs": runs}
    cmd = (
        "python benchmarks/batching.py"
        + (f" --questions {n}" if n != 8 else "")
        + (" --no-control" if args.no_control else "")
    )
    md = [
        f"# Concurrent flows through one backend: batched forwards vs one after the other ({n} RAG flows)",
        "",
        f"Command: `{cmd}`. Flow: `alora_flows/demo/flow.yaml` (rewrite, BM25 retrieval, answer, "
        "uncertainty and hallucination aLoRA checks, retries) on the embedded model, the first "
        f"{n} questions of `examples/rag/questions.yaml`, 1 torch thread, one process, one backend; "
        "run through the batch runner's thread workers. Seconds: from the worker's flow loaded to the "
        "last result (loading excluded). Machine: 2 cores shared with other jobs: the load average "
        "before and after each row is recorded; compare rows of one run.",
        "",
        "| configuration | flows (ok) | seconds | flows/min | throughput vs one after the other | "
        "mean seconds per flow | forwards | requests per forward | load avg before -> after |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in runs:
        per = (
            "-"
            if run["mean_rows_per_forward"] is None
            else f"{run['mean_rows_per_forward']} (max {run['max_rows']})"
        )
        md.append(
            f"| {run['config']} | {run['flows']} ({run['ok']}) | {run['seconds']} | {run['flows_per_minute']} "
            f"| {run['throughput_vs_sequential']}x | {run['mean_flow_seconds']} "
            f"| {run['forwards'] if run['forwards'] is not None else '-'} | {per} "
            f"| {run['load_average_before']} -> {run['load_average_after']} |"
        )
    md += [
        "",
        f"Same outputs in every configuration (texts, labels and routes exact, certainty scores within "
        f"1e-4): {'yes' if same_all else 'NO'}; largest difference in a score: {worst_all:.2e}.",
    ]
    for run in runs:
        if run["by_rows"]:
            spread = ", ".join(f"{k}: {v[0]} ({v[1]} s)" for k, v in run["by_rows"].items())
            md.append(f"- {run['config']}: forwards by requests in them (count, seconds): {spread}.")
        if run["differences_from_sequential"] or run["errors"]:
            md.append(f"- {run['config']}: {run['differences_from_sequential'][:5]} {run['errors']}")
    write_results(args.out, "batching", result, md)


if __name__ == "__main__":
    main()
