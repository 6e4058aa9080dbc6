"""Batch throughput and server latency of the demo flow on the embedded model.

Batch: the same questions (examples/rag/questions.yaml) through ``alora_flows.batch.batch`` with
one worker, two threads sharing one backend, 2 and 4 worker processes and 2 Ray actors, each
worker with ``--threads`` torch threads (default 1: on a shared 2-core machine two OpenMP threads
stall whenever another process holds a core; see benchmarks/README.md). Throughput is results per minute from the
moment the first worker was ready to the last result (model loading excluded; the wall time with
loading is in the JSON).

Serve: ``alora-flows serve``'s app (uvicorn on 127.0.0.1, ``--concurrency`` threads sharing one
backend) under 1, 4 and 16 closed-loop clients, each sending its requests one after another;
latency percentiles per level.

    python benchmarks/batch_serve.py                    # ~15 min on 2 quiet cores, ~1 h when busy
    python benchmarks/batch_serve.py --questions 2 --clients 1 4 --no-ray   # quicker look
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

RESULTS = ROOT / "benchmarks" / "results"
FLOW = ROOT / "alora_flows" / "demo" / "flow.yaml"
FLOW_FILE = [FLOW]  # --flow (a flow with a `question` input) replaces it
QUESTIONS = ROOT / "examples" / "rag" / "questions.yaml"


def load_questions(n: int) -> list[dict]:
    from ruamel.yaml import YAML

    data = YAML(typ="safe").load(QUESTIONS.read_text())
    return [{"id": q["id"], "inputs": {"question": q["question"]}} for q in data["questions"][:n]]


def load_average() -> float:
    return round(os.getloadavg()[0], 2)


# ---------------------------------------------------------------------- batch
class Clock:
    """A batch listener noting when the first worker was ready and when each result came."""

    def __init__(self) -> None:
        self.first_ready: float | None = None
        self.results: list[float] = []

    def on_ready(self, worker: str) -> None:
        self.first_ready = self.first_ready or time.perf_counter()

    def on_result(self, result, written: bool) -> None:
        self.results.append(time.perf_counter())

    def on_lost(self, worker: str, item) -> None:
        pass


class AllReady:
    """Wraps a worker pool so that no worker gets an input before every worker has loaded the
    flow: the timed window then measures running, not one worker running while others load."""

    def __init__(self, pool) -> None:
        from concurrent.futures import Future

        self.pool, self.size, self.kind = pool, pool.size, pool.kind
        self.config = getattr(pool, "config", None)
        self.inner: list = []
        self.outer: list = [Future() for _ in range(pool.size)]

    def start_slot(self):
        if len(self.inner) >= self.size:  # a replacement: no barrier
            return self.pool.start_slot()
        future = self.pool.start_slot()
        self.inner.append(future)
        outer = self.outer[len(self.inner) - 1]
        future.add_done_callback(lambda _: self._release())
        return outer

    def _release(self) -> None:
        if len(self.inner) < self.size or not all(f.done() for f in self.inner):
            return
        for inner, outer in zip(self.inner, self.outer):
            if outer.done():
                continue
            if inner.exception() is not None:
                outer.set_exception(inner.exception())
            else:
                outer.set_result(inner.result())

    def is_lost(self, exc: BaseException) -> bool:
        return self.pool.is_lost(exc)

    def close(self) -> None:
        self.pool.close()


def run_batch_once(name: str, questions: list[dict], tmp: Path, **options) -> dict:
    """One batch (every worker loaded before the first input); times from then to the last result."""
    from alora_flows.batch import make_pool, plan_batch, run_plan
    from alora_flows.batch.job import worker_threads

    stem = "".join(c if c.isalnum() else "_" for c in name) + f"_{len(list(tmp.iterdir()))}"
    inputs, out = tmp / f"{stem}.in.jsonl", tmp / f"{stem}.out.jsonl"
    inputs.write_text("".join(json.dumps(q) + "\n" for q in questions))
    clock = Clock()
    load_before = load_average()
    started = time.perf_counter()
    workers, pool, ray = options["workers"], options.get("pool", "process"), options.get("ray")
    threads = worker_threads(options.get("threads"), workers=workers, pool=pool, ray=ray)
    plan = plan_batch(FLOW_FILE[0], inputs, out, threads=threads)
    worker_pool = make_pool(
        plan.config, workers=workers, pool=pool, ray=ray, cpus_per_worker=options.get("cpus_per_worker", 1)
    )
    summary = run_plan(plan, AllReady(worker_pool), [clock])
    wall = time.perf_counter() - started
    results = [json.loads(line) for line in out.read_text().splitlines()]
    steady = clock.results[-1] - clock.first_ready if clock.results and clock.first_ready else float("nan")
    run = {
        "workers": summary.workers,
        "flows": len(results),
        "ok": sum(r["status"] == "ok" for r in results),
        "steady_seconds": round(steady, 2),
        "wall_seconds_with_loading": round(wall, 2),
        "answers": {r["id"]: r["final_state"].get("answer") for r in results},
        "per_flow": [(r["id"], r["worker"], r["seconds"]) for r in results],
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    print(
        f"batch {name:>24}: {run['flows']} flows in {run['steady_seconds']} s after loading "
        f"(wall {run['wall_seconds_with_loading']} s; load {load_before} -> {run['load_average_after']})",
        flush=True,
    )
    return run


def batch_rows(
    questions: list[dict], tmp: Path, ray: bool, threads: int, rounds: int, only: list[str] | None = None
) -> list[dict]:
    """Every configuration gives each worker ``threads`` torch threads (threads sharing one
    backend share the process's ``threads``). The questions are split into ``rounds`` parts;
    each round runs every configuration on its part, in alternating order, so a change in the
    machine's load is spread over all configurations instead of landing on one."""
    configs: list[tuple[str, dict]] = [
        ("1 worker", dict(workers=1, threads=threads)),
        ("2 threads, one backend", dict(workers=2, pool="thread", threads=threads)),
        ("2 processes", dict(workers=2, pool="process", threads=threads)),
        ("4 processes", dict(workers=4, pool="process", threads=threads)),
    ]
    if ray:
        configs.append(("Ray, 2 actors", dict(workers=2, ray="local", cpus_per_worker=threads)))
    if only:
        configs = [c for c in configs if c[0] in only]
    runs: dict[str, list[dict]] = {name: [] for name, _ in configs}
    for r in range(rounds):
        part = questions[r::rounds]
        for name, options in configs if r % 2 == 0 else configs[::-1]:
            runs[name].append(run_batch_once(name, part, tmp, **options))
    rows = []
    for name, _ in configs:
        parts = runs[name]
        steady = sum(p["steady_seconds"] for p in parts)
        flows = sum(p["flows"] for p in parts)
        rows.append(
            {
                "config": name,
                "workers": parts[0]["workers"],
                "flows": flows,
                "ok": sum(p["ok"] for p in parts),
                "steady_seconds": round(steady, 2),
                "flows_per_minute": round(flows / steady * 60, 2) if steady > 0 else None,
                "wall_seconds_with_loading": round(sum(p["wall_seconds_with_loading"] for p in parts), 2),
                "answers": {k: v for p in parts for k, v in p["answers"].items()},
                # runs in flight on average: the sum of the runs' own times over the timed window
                "in_flight": round(sum(f[2] for p in parts for f in p["per_flow"]) / steady, 2)
                if steady > 0
                else None,
                "load_average_before": parts[0]["load_average_before"],
                "load_average_after": parts[-1]["load_average_after"],
                "rounds": parts,
            }
        )
        print(
            f"batch {name:>24}: {rows[-1]['flows_per_minute']} flows/min over {rounds} round(s)", flush=True
        )
    return rows


# ---------------------------------------------------------------------- serve
def start_server(concurrency: int, threads: int):
    import uvicorn

    from alora_flows.batch.worker import WorkerConfig
    from alora_flows.serve.http import create_app
    from alora_flows.serve.service import FlowService, ServeSettings

    service = FlowService(
        WorkerConfig.from_file(FLOW_FILE[0], threads=threads),
        ServeSettings(concurrency=concurrency, queue=64, timeout=3600),
    )
    service._load()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(service, load_on_startup=False), log_level="warning"))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not server.started:
        time.sleep(0.05)
    return server, thread, f"http://127.0.0.1:{sock.getsockname()[1]}"


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    k = (len(ordered) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def serve_level(url: str, clients: int, requests: int, questions: list[dict]) -> dict:
    import httpx

    latencies: list[float] = []
    statuses: list[int] = []
    per_client = max(1, requests // clients)

    async def client(index: int, http: httpx.AsyncClient) -> None:
        for j in range(per_client):
            question = questions[(index * per_client + j) % len(questions)]
            started = time.perf_counter()
            response = await http.post("/runs", json={"inputs": question["inputs"]})
            latencies.append(time.perf_counter() - started)
            statuses.append(response.status_code)

    async def main() -> None:
        async with httpx.AsyncClient(base_url=url, timeout=3600) as http:
            await asyncio.gather(*(client(i, http) for i in range(clients)))

    load_before = load_average()
    started = time.perf_counter()
    asyncio.run(main())
    wall = time.perf_counter() - started
    row = {
        "clients": clients,
        "requests": len(latencies),
        "ok": statuses.count(200),
        "p50_s": round(percentile(latencies, 0.5), 2),
        "p90_s": round(percentile(latencies, 0.9), 2),
        "p99_s": round(percentile(latencies, 0.99), 2),
        "max_s": round(max(latencies), 2),
        "flows_per_minute": round(len(latencies) / wall * 60, 2),
        "load_average_before": load_before,
        "load_average_after": load_average(),
    }
    print(
        f"serve {clients:>2} client(s): p50 {row['p50_s']} s, p90 {row['p90_s']} s, p99 {row['p99_s']} s "
        f"({row['requests']} requests, {row['ok']} ok, {row['flows_per_minute']} flows/min)",
        flush=True,
    )
    return row


# ---------------------------------------------------------------------- report
def markdown(data: dict) -> str:
    lines = [
        "# Batch throughput and server latency (demo flow, embedded model, CPU)",
        "",
        f"Commands: batch `{data.get('batch_command', data['command'])}`, serve "
        f"`{data.get('serve_command', data['command'])}`. Machine: {data['cpus']} cores ({data['machine']}), shared with "
        "other workers: the load average before and after each row is recorded; compare rows of one run.",
        f"Flow: `{data['flow']}` (the demo: RAG with rewrite, uncertainty and hallucination aLoRA "
        f"intrinsics) on the first {data['questions']} questions of `examples/rag/questions.yaml`.",
        "",
        "## Batch (`alora-flows batch`)",
        "",
        f"Throughput counts from the moment every worker has loaded the flow to the last result "
        f"(model loading excluded; the benchmark holds inputs back until all workers are ready), "
        f"summed over {data['rounds']} rounds that each run every configuration on a part of the questions "
        "(in alternating order, so load changes spread over all rows).",
        "",
        "| workers | torch threads | flows | flows/min | seconds (after loading) | runs in flight | wall incl. loading (s) | load avg first -> last |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in data["batch"]:
        lines.append(
            f"| {r['config']} | {r['workers'].split(', ')[-1] if 'torch' in r['workers'] else 'default'} | {r['flows']} "
            f"| {r['flows_per_minute']} | {r['steady_seconds']} | {r.get('in_flight', '-')} | {r['wall_seconds_with_loading']} "
            f"| {r['load_average_before']} -> {r['load_average_after']} |"
        )
    base = next((r for r in data["batch"] if r["config"] == "1 worker"), None)
    if base and base["flows_per_minute"]:
        lines += [
            "",
            "Throughput relative to one worker: "
            + ", ".join(
                f"{r['config']} {r['flows_per_minute'] / base['flows_per_minute']:.2f}x"
                for r in data["batch"]
                if r is not base and r["flows_per_minute"]
            )
            + ".",
        ]
    lines += [
        "",
        "`runs in flight`: the runs' own durations summed, over the timed window: how many runs the "
        "configuration kept going at once. Threads on one backend keep two in flight, but their model "
        "calls take turns, so each run takes longer.",
    ]
    same = all(r["answers"] == data["batch"][0]["answers"] for r in data["batch"])
    lines += ["", f"Every configuration gave the same answers: {'yes' if same else 'no'}."]
    lines += [
        "",
        f"## Serve (`alora-flows serve --concurrency {data['serve_concurrency']}`, {data['serve_threads']} torch threads, one backend)",
        "",
        "Closed-loop clients, each sending its requests one after another over HTTP on 127.0.0.1.",
        "",
        "| clients | requests | p50 (s) | p90 (s) | p99 (s) | max (s) | flows/min | load avg before -> after |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in data["serve"]:
        lines.append(
            f"| {r['clients']} | {r['requests']} ({r['ok']} ok) | {r['p50_s']} | {r['p90_s']} | {r['p99_s']} "
            f"| {r['max_s']} | {r['flows_per_minute']} | {r['load_average_before']} -> {r['load_average_after']} |"
        )
    if data.get("notes"):
        lines += ["", "## Notes", ""] + [f"- {note}" for note in data["notes"]]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--questions", type=int, default=4, help="questions per batch configuration")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--serve-concurrency", type=int, default=2)
    parser.add_argument("--threads", type=int, default=1, help="torch threads per batch worker")
    parser.add_argument("--configs", nargs="+", help="only these batch configurations (e.g. '2 processes')")
    parser.add_argument("--rounds", type=int, default=2, help="batch rounds (the questions split among them)")
    parser.add_argument("--serve-threads", type=int, default=1, help="torch threads of the server process")
    parser.add_argument("--no-ray", action="store_true")
    parser.add_argument("--no-batch", action="store_true")
    parser.add_argument("--no-serve", action="store_true")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--flow", type=Path, default=FLOW, help="another flow with a 'question' input (smoke runs)"
    )
    parser.add_argument("--note", action="append", default=[], help="a line for the results' notes")
    parser.add_argument(
        "--render",
        action="store_true",
        help="only rewrite batch_serve.md from batch_serve.json (with --note)",
    )
    args = parser.parse_args()
    FLOW_FILE[0] = args.flow
    if args.render:
        data = json.loads((args.out / "batch_serve.json").read_text())
        data["notes"] = data.get("notes", []) + args.note
        (args.out / "batch_serve.json").write_text(json.dumps(data, indent=2) + "\n")
        (args.out / "batch_serve.md").write_text(markdown(data))
        return

    import warnings

    warnings.filterwarnings("ignore")
    cores = os.cpu_count() or 1
    questions = load_questions(args.questions)
    data: dict = {
        "command": "python benchmarks/batch_serve.py " + " ".join(sys.argv[1:]),
        "cpus": cores,
        "machine": f"{platform.machine()}, {platform.python_implementation()} {platform.python_version()}",
        "questions": len(questions),
        "flow": str(args.flow.resolve().relative_to(ROOT))
        if args.flow.resolve().is_relative_to(ROOT)
        else str(args.flow),
        "rounds": args.rounds,
        "serve_concurrency": args.serve_concurrency,
        "serve_threads": args.serve_threads,
        "batch": [],
        "serve": [],
        "notes": list(args.note),
    }
    ray = not args.no_ray
    if ray:
        try:
            import ray as _  # noqa: F401
        except ImportError:
            print("ray is not installed: skipping the Ray row (pip install 'alora-flows[ray]')")
            ray = False
    with tempfile.TemporaryDirectory() as tmp:
        if not args.no_batch:
            data["batch"] = batch_rows(questions, Path(tmp), ray, args.threads, args.rounds, args.configs)
    if not args.no_serve:
        server, thread, url = start_server(args.serve_concurrency, args.serve_threads)
        for clients in args.clients:
            requests = len(questions) if clients == 1 else clients  # one request per client
            data["serve"].append(serve_level(url, clients, requests, questions))
        server.should_exit = True
        thread.join(30)
    args.out.mkdir(parents=True, exist_ok=True)
    previous = args.out / "batch_serve.json"
    data["serve_command"] = data["batch_command"] = data["command"]
    if previous.exists() and (args.no_batch or args.no_serve):  # keep the part not run
        old = json.loads(previous.read_text())
        for part in (
            ("batch", "serve")
            if args.no_batch and args.no_serve
            else (["batch"] if args.no_batch else ["serve"])
        ):
            data[part] = old.get(part, [])
            data[f"{part}_command"] = old.get(f"{part}_command", old.get("command"))
    (args.out / "batch_serve.json").write_text(json.dumps(data, indent=2) + "\n")
    (args.out / "batch_serve.md").write_text(markdown(data))
    print(markdown(data))


if __name__ == "__main__":
    main()
