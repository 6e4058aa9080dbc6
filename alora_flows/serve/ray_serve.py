"""``alora-flows serve --ray``: the same HTTP API as Ray Serve replicas (the ``[ray]`` extra).

Each replica is a Ray actor holding one :class:`~alora_flows.serve.service.FlowService` (the
model and adapters, loaded in its constructor, so Ray Serve sends a replica traffic only once it
can run the flow) and serving :func:`~alora_flows.serve.http.create_app`'s application: the same
routes, limits, API key and events as a single process. Ray Serve's proxy listens on
``settings.host:port`` (127.0.0.1 unless told otherwise) and spreads requests over the replicas;
each replica admits at most ``concurrency + queue`` runs and answers 429 beyond, as one process does.
"""

from __future__ import annotations

from typing import Any

from alora_flows.batch.ray_actors import import_ray, init_ray
from alora_flows.batch.worker import WorkerConfig
from alora_flows.serve.service import FlowService, ServeSettings

APP_NAME = "alora-flows"


class FlowReplica:
    """A Ray Serve replica: the flow loaded once, the FastAPI app built in the replica."""

    def __init__(self, config: dict[str, Any], settings: dict[str, Any]) -> None:
        self.service = FlowService(
            WorkerConfig.model_validate(config), ServeSettings.model_validate(settings)
        )
        self.service._load()  # in the constructor: the replica is ready when it gets traffic
        if self.service.load_error:
            raise RuntimeError(f"the flow could not load: {self.service.load_error}")

    def __serve_build_asgi_app__(self) -> Any:
        from alora_flows.serve.http import create_app

        return create_app(self.service, load_on_startup=False)

    def check_health(self) -> None:
        """Ray Serve's health check: a replica whose flow is not loaded is restarted."""
        if not self.service.ready:
            raise RuntimeError(self.service.load_error or "the flow is not loaded")


def deployment(config: WorkerConfig, settings: ServeSettings, *, replicas: int, cpus_per_replica: int) -> Any:
    """The Ray Serve application (bound deployment) serving the flow."""
    from ray import serve

    replica = serve.deployment(
        serve.ingress()(FlowReplica),
        name="flow",
        num_replicas=replicas,
        ray_actor_options={"num_cpus": cpus_per_replica},
        # one more than a replica admits, so its own admission answers 429 (not Serve's queue)
        max_ongoing_requests=settings.concurrency + settings.queue + 1,
    )
    return replica.bind(  # type: ignore[attr-defined]  # serve.deployment's overloads hide .bind
        config.model_dump(mode="json"), settings.model_dump(mode="json")
    )


def serve_on_ray(
    config: WorkerConfig,
    settings: ServeSettings,
    *,
    address: str | None,
    replicas: int,
    cpus_per_replica: int,
    console: Any,
    blocking: bool = True,
) -> None:
    """Start (or join) Ray, deploy the flow's replicas behind Serve's proxy, serve until Ctrl-C."""
    ray = import_ray()
    from ray import serve

    owns = init_ray(address, num_cpus=replicas * cpus_per_replica)
    serve.start(http_options={"host": settings.host, "port": settings.port})
    console.print(
        f"deploying {replicas} replica(s) of flow {config.flow_file} on Ray Serve; "
        f"http://{settings.host}:{settings.port} (ready when GET /readyz answers 200)",
        soft_wrap=True,
    )
    try:
        serve.run(
            deployment(config, settings, replicas=replicas, cpus_per_replica=cpus_per_replica),
            name=APP_NAME,
            route_prefix="/",
            blocking=blocking,
        )
    except KeyboardInterrupt:
        pass
    finally:
        if blocking:
            serve.shutdown()
            if owns:
                ray.shutdown()
