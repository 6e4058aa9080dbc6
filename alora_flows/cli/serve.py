"""``alora-flows serve``: the flow as an HTTP API (one process, or Ray Serve replicas)."""

from __future__ import annotations

import ipaddress
from typing import TYPE_CHECKING, Annotated, Optional

import typer

from alora_flows.cli.batch import DeviceOption, ThreadsOption
from alora_flows.cli.common import DebugOption, FlowArgument, RayAddressOption, cli_errors, err_console

if TYPE_CHECKING:
    from rich.console import Console

    from alora_flows.batch.worker import WorkerConfig
    from alora_flows.serve.service import ServeSettings


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def serve(
    flow_file: FlowArgument,
    host: Annotated[
        str, typer.Option("--host", help="Interface to listen on; 0.0.0.0 exposes the server to the network.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option("--port", "-p", help="TCP port.")] = 8000,
    concurrency: Annotated[
        int, typer.Option("--concurrency", min=1, help="Runs in progress at once (they share one model).")
    ] = 2,
    queue: Annotated[
        int, typer.Option("--queue", min=0, help="Runs that may wait for a free slot; beyond, 429.")
    ] = 16,
    timeout: Annotated[
        float, typer.Option("--timeout", min=0.001, help="Seconds a run may take, queue wait included (504).")
    ] = 120.0,
    max_body: Annotated[
        int, typer.Option("--max-body", min=1, help="Largest request body in bytes (413 above).")
    ] = 1 << 20,
    api_key: Annotated[
        Optional[str],
        typer.Option(
            "--api-key",
            envvar="ALORA_FLOWS_API_KEY",
            show_envvar=True,
            help="Require 'Authorization: Bearer KEY' on /runs (prefer the environment variable: "
            "a command line is visible to other users).",
        ),
    ] = None,
    ray: Annotated[
        bool,
        typer.Option(
            "--ray",
            help="Deploy as Ray Serve replicas: on a local Ray instance started for this command, or on the "
            "cluster at --ray-address (pip install 'alora-flows\\[ray]').",
        ),
    ] = False,
    ray_address: RayAddressOption = None,
    replicas: Annotated[int, typer.Option("--replicas", min=1, help="Ray Serve replicas (with --ray).")] = 1,
    cpus_per_replica: Annotated[
        int, typer.Option("--cpus-per-replica", min=1, help="CPUs each Ray Serve replica reserves.")
    ] = 1,
    batching: Annotated[
        Optional[bool],
        typer.Option(
            "--batching/--no-batching",
            show_default="on when --concurrency > 1",
            help="Run the forwards of concurrent runs that are ready at the same moment as one forward "
            "(same results; measured: 2x the throughput of 8 concurrent requests on a CPU).",
        ),
    ] = None,
    no_reuse: Annotated[
        bool, typer.Option("--no-reuse", help="Re-prefill the conversation for every call (for comparison).")
    ] = False,
    threads: ThreadsOption = None,
    device: DeviceOption = None,
    debug: DebugOption = False,
) -> None:
    """Serve a flow over HTTP: POST /runs, POST /runs/stream (events), GET /healthz, /readyz."""
    from alora_flows.batch.worker import WorkerConfig
    from alora_flows.serve.service import ServeSettings

    with cli_errors(debug):
        console = err_console()
        settings = ServeSettings(
            host=host,
            port=port,
            concurrency=concurrency,
            queue=queue,
            timeout=timeout,
            max_body_bytes=max_body,
            api_key=api_key or None,
            batching=batching,
        )
        config = WorkerConfig.from_file(
            flow_file,
            device=device,
            reuse=not no_reuse,
            threads=threads or (cpus_per_replica if ray or ray_address else None),
        )
        config.flow()  # a bad flow fails here, before anything listens
        if not is_loopback(host) and settings.api_key is None:
            console.print(
                f"[yellow]warning:[/] listening on {host} without an API key: anyone who can reach "
                "this port can run the flow (set ALORA_FLOWS_API_KEY)",
                soft_wrap=True,
            )
        if ray or ray_address:
            from alora_flows.serve.ray_serve import serve_on_ray

            serve_on_ray(
                config,
                settings,
                address=ray_address,
                replicas=replicas,
                cpus_per_replica=cpus_per_replica,
                console=console,
            )
            return
        _serve_here(config, settings, console)


def _serve_here(config: WorkerConfig, settings: ServeSettings, console: Console) -> None:
    try:
        import uvicorn

        from alora_flows.serve.http import create_app
        from alora_flows.serve.service import FlowService
    except ImportError as exc:
        from alora_flows.errors import UsageError

        raise UsageError(
            f"serve needs FastAPI and uvicorn ({exc.name} is missing): pip install 'alora-flows[serve]'"
        ) from None
    app = create_app(FlowService(config, settings))
    console.print(
        f"serving flow from {config.flow_file} on http://{settings.host}:{settings.port}, "
        f"{settings.concurrency} run(s) at once{', forwards batched' if settings.batches else ''} "
        f"(API: /docs, /openapi.json; ready when GET /readyz answers 200)",
        soft_wrap=True,
    )
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="info")
