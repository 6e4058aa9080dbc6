"""``alora-flows batch``: a flow over every line of INPUTS.jsonl, results appended to RESULTS.jsonl."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from alora_flows.cli.common import DebugOption, FlowArgument, RayAddressOption, cli_errors, err_console

# Defined here until the shared --threads/--device options of cli.common exist (then use those).
ThreadsOption = Annotated[
    Optional[int],
    typer.Option(
        "--threads",
        min=1,
        help="Torch threads per worker (default: the CPU cores shared out among local worker "
        "processes; --cpus-per-worker on Ray).",
    ),
]
DeviceOption = Annotated[
    Optional[str],
    typer.Option("--device", help="Device for the model (cpu, cuda, cuda:1; default: cuda if any)."),
]


def batch(
    flow_file: FlowArgument,
    inputs: Annotated[
        Path,
        typer.Argument(
            metavar="INPUTS.jsonl", help='One input per line: {"id": "q1", "inputs": {"question": "..."}}.'
        ),
    ],
    out: Annotated[
        Path,
        typer.Option(
            "--out",
            "-o",
            metavar="RESULTS.jsonl",
            help="Results, one line per input as it finishes; ids already in it are skipped (resume).",
        ),
    ],
    workers: Annotated[
        int, typer.Option("--workers", "-w", min=1, help="Workers running inputs at once.")
    ] = 1,
    pool: Annotated[
        str,
        typer.Option(
            "--pool",
            help="Local workers: 'process' (a model each, truly parallel) or 'thread' (one shared model).",
        ),
    ] = "process",
    batching: Annotated[
        bool,
        typer.Option(
            "--batching",
            help="With --pool thread: run the forwards of the threads' flows that are ready at the same "
            "moment as one batched forward (several flows decode for about the cost of one).",
        ),
    ] = False,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Run the workers as Ray actors: on a local Ray instance started for this command, or on the "
            "cluster at --ray-address (pip install 'alora-flows\\[ray]').",
        ),
    ] = False,
    ray_address: RayAddressOption = None,
    cpus_per_worker: Annotated[
        int, typer.Option("--cpus-per-worker", min=1, help="CPUs each Ray actor reserves.")
    ] = 1,
    retry_failed: Annotated[
        bool, typer.Option("--retry-failed", help="Run the inputs whose results are errors again.")
    ] = False,
    no_reuse: Annotated[
        bool, typer.Option("--no-reuse", help="Re-prefill the conversation for every call (for comparison).")
    ] = False,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed for sampled generation.")] = None,
    threads: ThreadsOption = None,
    device: DeviceOption = None,
    debug: DebugOption = False,
) -> None:
    """Run a flow on every input of a JSONL file; rerun the same command to resume."""
    from alora_flows.batch import make_pool, plan_batch, run_plan
    from alora_flows.batch.job import worker_threads
    from alora_flows.batch.progress import ProgressBar

    with cli_errors(debug):
        console = err_console()
        ray_target = ray_address or ("local" if ray else None)
        plan = plan_batch(
            flow_file,
            inputs,
            out,
            threads=worker_threads(threads, workers=workers, pool=pool, ray=ray_target),
            device=device,
            reuse=not no_reuse,
            seed=seed,
            retry_failed=retry_failed,
            batching=batching,
        )
        summary = plan.summary
        notes = []
        if summary.skipped:
            notes.append(f"{summary.skipped} already in {out}")
        if summary.retried_failed:
            notes.append(f"{summary.retried_failed} failed one(s) run again")
        if summary.unknown_results:
            notes.append(f"{summary.unknown_results} result(s) in {out} have ids not in {inputs}")
        console.print(
            f"batch: {summary.total} input(s), {len(plan.todo)} to run"
            + (f" ({'; '.join(notes)})" if notes else ""),
            soft_wrap=True,
        )
        if not plan.todo:
            return
        worker_pool = make_pool(
            plan.config, workers=workers, pool=pool, ray=ray_target, cpus_per_worker=cpus_per_worker
        )
        try:
            with ProgressBar(console, len(plan.todo), worker_pool.size, worker_pool.kind) as bar:
                run_plan(plan, worker_pool, [bar])
        except KeyboardInterrupt:
            console.print(
                f"interrupted: {len(plan.results.done)} of {summary.total} input(s) have results in {out}; "
                "rerun the same command to run the rest",
                soft_wrap=True,
            )
            raise typer.Exit(130) from None
        stats = summary.stats
        extra = []
        if stats.retried:
            extra.append(f"{stats.retried} rerun after {stats.lost_workers} lost worker(s)")
        if stats.duplicates:
            extra.append(f"{stats.duplicates} duplicate result(s) dropped")
        console.print(
            f"done: {stats.ok} ok, {stats.failed} failed"
            + (f" ({'; '.join(extra)})" if extra else "")
            + f" on {summary.workers} -> {out}",
            soft_wrap=True,
        )
