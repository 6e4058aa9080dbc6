"""``alora-flows serve`` with and without batching: N concurrent requests of the demo RAG flow.

Two servers in this process, each the real ``alora-flows serve`` app (uvicorn on 127.0.0.1, a
:class:`~alora_flows.serve.service.FlowService` with ``concurrency=N``), loaded once each:

- **batching on** (``--batching``, the default for ``--concurrency`` > 1): the forwards of the
  runs that are ready at the same moment run as one forward (``alora_flows.core.batching``);
- **batching off** (``--no-batching``): the same threads take turns under the backend's lock.

Each repeat fires the same N requests at once (one HTTP client, N connections) at each server,
in alternating order (on/off, then off/on, ...), and times the first request sent to the last
response. Then, once per server, one lone request (no other run in flight): what batching costs a
request that has nobody to share its forwards with (``--lone 0`` skips it).

Outputs must be identical: every request's final state (answers, rewrites, labels, routes exactly;
certainty scores within 1e-4) in every round of both servers equals the first round without
batching. The machine is shared: the load average before and after each round is recorded next to
its ratio; compare ratios, not absolute times. Torch uses 1 thread (``OMP_NUM_THREADS=1``).

    python benchmarks/serve_batching.py                    # 8 requests, 2 repeats: ~10-15 min on 2 cores
    python benchmarks/serve_batching.py --requests 2 --repeats 1 --lone 0   # a quick look
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported

import argparse
import asyncio
import socket
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.batching import compare, load_questions  # noqa: E402
from benchmarks.common import RESULTS, environment, quiet_cpu, write_results  # noqa: E402

FLOW = ROOT / "alora_flows" / "demo" / "flow.yaml"


class Server:
    """One ``alora-flows serve`` app on a free loopback port, its flow loaded before it listens."""

    def __init__(self, flow: Path, concurrency: int, batching: bool) -> None:
        import uvicorn

        from alora_flows.batch.worker import WorkerConfig
        from alora_flows.serve.http import create_app
        from alora_flows.serve.service import FlowService, ServeSettings

        self.batching = batching
        self.service = FlowService(
            WorkerConfig.from_file(flow, threads=1),
            ServeSettings(concurrency=concurrency, queue=64, timeout=3600, batching=batching),
        )
        started = time.perf_counter()
        self.service._load()
        if self.service.load_error:
            raise SystemExit(f"the flow did not load: {self.service.load_error}")
        self.load_seconds = round(time.perf_counter() - started, 1)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.server = uvicorn.Server(
            uvicorn.Config(create_app(self.service, load_on_startup=False), log_level="warning")
        )
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [sock]}, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.05)
        self.url = f"http://127.0.0.1:{sock.getsockname()[1]}"

    def stats(self) -> tuple[int, int, dict[int, int]]:
        """(forwards, requests in them, forwards by requests in them) so far; zeros without batching."""
        s = self.service.batching
        if s is None:
            return 0, 0, {}
        return s.forwards, s.rows, {k: int(v[0]) for k, v in s.by_rows.items()}

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(30)


def fire(server: Server, questions: list[dict]) -> dict:
    """Every question at once; the round's wall time, load average and responses."""
    import httpx

    async def main() -> list[tuple[float, httpx.Response]]:
        limits = httpx.Limits(max_connections=len(questions) + 4)
        async with httpx.AsyncClient(base_url=server.url, timeout=3600, limits=limits) as http:

            async def one(question: dict) -> tuple[float, httpx.Response]:
                response = await http.post("/runs", json={"inputs": question["inputs"]})
                return time.perf_counter(), response

            return await asyncio.gather(*(one(q) for q in questions))

    before_stats = server.stats()
    load_before = os.getloadavg()[0]
    started = time.perf_counter()
    done = asyncio.run(main())
    seconds = max(t for t, _ in done) - started
    forwards, rows, by_rows = server.stats()
    forwards, rows = forwards - before_stats[0], rows - before_stats[1]
    sizes = [k for k, count in by_rows.items() if count > before_stats[2].get(k, 0)]
    bad = [r.text[:300] for _, r in done if r.status_code != 200]
    if bad:
        raise SystemExit(f"requests failed: {bad}")
    bodies = [r.json() for _, r in done]
    return {
        "batching": server.batching,
        "requests": len(questions),
        "seconds": round(seconds, 2),
        "load_average_before": round(load_before, 2),
        "load_average_after": round(os.getloadavg()[0], 2),
        "forwards": forwards,
        "requests_per_forward": round(rows / forwards, 2) if forwards else None,
        "max_requests_per_forward": max(sizes) if sizes else None,
        "final_states": {q["id"]: b["final_state"] for q, b in zip(questions, bodies)},
        "paths": {q["id"]: [s["node"] for s in b["trace"]["steps"]] for q, b in zip(questions, bodies)},
    }


def markdown(result: dict) -> list[str]:
    """The results table, from the JSON result alone (so a saved run can be rendered again)."""
    pairs, lone = result["pairs"], result["lone"]
    n, threads, cmd = len(result["questions"]), result["torch_threads"], result["command"]
    cores = result["environment"]["cpu_count"]
    lone_on = [r["seconds"] for r in lone if r["batching"]]
    lone_off = [r["seconds"] for r in lone if not r["batching"]]
    same, worst, differences = (
        result["same_outputs"],
        result["largest_float_difference"],
        result["differences"],
    )
    rounds = (
        f"Each repeat sends the {n} requests at once to each server, alternating which goes first; "
        "seconds from the first request sent to the last response."
        if pairs
        else "One request at a time, alternating the servers; seconds from sent to answered."
    )
    what = f"{n} concurrent requests" if pairs else "one lone request"
    md = [
        f"# `alora-flows serve`: {what}, batching on vs off",
        "",
        f"Command: `{cmd}`. Flow: `{result['flow']}` on "
        f"{f'the first {n} questions' if pairs else 'the first question'} of "
        f"`examples/rag/questions.yaml`; two servers in one process (uvicorn on 127.0.0.1, "
        f"`--concurrency {n}`), one with batching, one without, each loaded once; torch threads: "
        f"{threads} (OMP_NUM_THREADS={result['omp_num_threads']}). {rounds} "
        f"Machine: {cores} cores shared with other jobs: compare the ratio "
        "with the load average beside it, not absolute times.",
        "",
    ]
    if pairs:
        md += [
            "| repeat | order | seconds, batching on | seconds, off | throughput on / off "
            "| requests per forward (max) | load avg on (before -> after) | load avg off |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for p in pairs:
            md.append(
                f"| {p['repeat']} | {p['order']} | {p['seconds_on']} | {p['seconds_off']} | **{p['ratio']}x** "
                f"| {p['requests_per_forward']} ({p['max_requests_per_forward']}) "
                f"| {p['load_on'][0]} -> {p['load_on'][1]} | {p['load_off'][0]} -> {p['load_off'][1]} |"
            )
        md += [
            "",
            f"Median throughput ratio (on / off) over {len(pairs)} repeat(s): **{result['median_throughput_ratio']}x**.",
        ]
    if lone:
        md.append(
            f"One lone request (nothing else in flight), median of {len(lone_on)} "
            f"({', '.join(f'{a} / {b}' for a, b in zip(lone_on, lone_off))} s): batching on "
            f"{statistics.median(lone_on):.2f} s, off {statistics.median(lone_off):.2f} s "
            f"(on / off {statistics.median(lone_on) / statistics.median(lone_off):.2f}; load average "
            f"{lone[0]['load_average_before']} -> {lone[-1]['load_average_after']})."
        )
    md.append(
        f"Same outputs in every round of both servers (texts, labels and routes exact, certainty "
        f"scores within 1e-4): {'yes' if same else 'NO'}; largest difference in a score: {worst:.2e}."
    )
    if differences:
        md.append(f"Differences: {differences[:5]}")
    return md


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--requests", type=int, default=8, help="concurrent requests (questions of examples/rag)"
    )
    parser.add_argument("--repeats", type=int, default=2, help="rounds of both servers")
    parser.add_argument("--lone", type=int, default=1, help="rounds of one lone request per server")
    parser.add_argument("--flow", type=Path, default=FLOW, help="a flow with a 'question' input")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    quiet_cpu(1)
    os.environ["ALORA_FLOWS_THREADS"] = "1"
    import torch

    questions = load_questions(args.requests)
    n = len(questions)
    servers = {True: Server(args.flow, n, True), False: Server(args.flow, n, False)}
    rounds: list[dict] = []
    lone: list[dict] = []
    try:
        for rep in range(args.repeats):
            for batching in (True, False) if rep % 2 == 0 else (False, True):
                row = fire(servers[batching], questions)
                row["repeat"] = rep
                rounds.append(row)
                print(
                    f"repeat {rep}: batching {'on ' if batching else 'off'}: {n} requests in {row['seconds']} s, "
                    f"load {row['load_average_before']} -> {row['load_average_after']}",
                    flush=True,
                )
        for rep in range(args.lone):
            for batching in (False, True) if rep % 2 == 0 else (True, False):
                row = fire(servers[batching], questions[:1])
                row["repeat"] = rep
                lone.append(row)
                print(
                    f"lone request, batching {'on ' if batching else 'off'}: {row['seconds']} s", flush=True
                )
    finally:
        for server in servers.values():
            server.stop()

    reference = next(r for r in rounds + lone if not r["batching"])  # --repeats 0: a lone round
    same, worst, differences = True, 0.0, []
    for row in rounds + lone:
        want = {k: reference["final_states"][k] for k in row["final_states"]}
        diffs, w = compare(want, row["final_states"])
        diffs += [f"path of {k}" for k, p in row["paths"].items() if p != reference["paths"][k]]
        row["differences"] = diffs
        same, worst = same and not diffs, max(worst, w)
        differences += diffs
    pairs = []
    for rep in range(args.repeats):
        on = next(r for r in rounds if r["repeat"] == rep and r["batching"])
        off = next(r for r in rounds if r["repeat"] == rep and not r["batching"])
        pairs.append(
            {
                "repeat": rep,
                "seconds_on": on["seconds"],
                "seconds_off": off["seconds"],
                "ratio": round(off["seconds"] / on["seconds"], 2),
                "order": "on, off" if rep % 2 == 0 else "off, on",
                "load_on": [on["load_average_before"], on["load_average_after"]],
                "load_off": [off["load_average_before"], off["load_average_after"]],
                "requests_per_forward": on["requests_per_forward"],
                "max_requests_per_forward": on["max_requests_per_forward"],
            }
        )
    median_ratio = statistics.median(p["ratio"] for p in pairs) if pairs else None
    threads = torch.get_num_threads()
    result = {
        "environment": environment(),
        "flow": str(args.flow.relative_to(ROOT) if args.flow.is_relative_to(ROOT) else args.flow),
        "questions": [q["id"] for q in questions],
        "torch_threads": threads,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "load_seconds": {"on": servers[True].load_seconds, "off": servers[False].load_seconds},
        "pairs": pairs,
        "median_throughput_ratio": median_ratio,
        "rounds": [{k: v for k, v in r.items() if k not in ("final_states", "paths")} for r in rounds],
        "lone": [{k: v for k, v in r.items() if k not in ("final_states", "paths")} for r in lone],
        "same_outputs": same,
        "largest_float_difference": worst,
        "differences": differences[:20],
    }
    cmd = "python benchmarks/serve_batching.py" + "".join(
        f" --{name} {value}"
        for name, value, default in (
            ("requests", args.requests, 8),
            ("repeats", args.repeats, 2),
            ("lone", args.lone, 1),
        )
        if value != default
    )
    if args.flow != FLOW:
        cmd += f" --flow {result['flow']}"
    result["command"] = cmd
    md = markdown(result)
    write_results(args.out, "serve_batching", result, md)
    if not same:
        raise SystemExit("outputs differ between batching on and off")


if __name__ == "__main__":
    main()
