"""Batch workers as Ray actors: one long-lived actor per worker holds the backend and adapters.

Ray is an optional extra (``pip install 'alora-flows[ray]'``) imported only here, and only when
``--ray`` is asked for. Without an address, a local Ray instance is started for this command
(``num_cpus = workers x cpus_per_worker``, no dashboard, stopped at the end); with one, the
command joins that cluster. Every node must have alora-flows installed and the files the flow
names (a local model, adapters given as paths) at the same paths; ``builtin`` adapters and the
embedded model come with the package.

Ray's own actor restarts and task retries are off: the driver (:mod:`.dispatch`) notices a dead
actor, runs its input on another actor and starts a replacement, and it alone writes the results,
so an input is written once even when it ran twice.
"""

from __future__ import annotations

import os
from concurrent.futures import Future
from typing import Any

from alora_flows.batch.dispatch import Slot, chain
from alora_flows.batch.records import BatchInput, BatchResult
from alora_flows.batch.worker import FlowWorker, WorkerConfig
from alora_flows.errors import AloraFlowsError, UsageError, WorkerError


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise UsageError(
            "--ray needs Ray: pip install 'alora-flows[ray]' (or pip install 'ray[default]')"
        ) from None
    return ray


def init_ray(address: str | None, num_cpus: int) -> bool:
    """Connect to the cluster at ``address`` (or ``$RAY_ADDRESS``), else start a local instance;
    True when this call started or joined Ray (and should shut it down at the end).

    A local instance listens on the loopback interface only and has no dashboard.
    """
    ray = import_ray()
    if ray.is_initialized():
        return False
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(
            num_cpus=num_cpus,
            include_dashboard=False,
            _node_ip_address="127.0.0.1",
            log_to_driver=False,
        )
    return True


class FlowActor:
    """The actor's class (made remote by :class:`RayPool`): one :class:`FlowWorker` per actor."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.error: str | None = None
        self.worker: FlowWorker | None = None
        try:
            self.worker = FlowWorker(WorkerConfig.model_validate(config))
        except AloraFlowsError as exc:  # reported by ready(), as a clean one-line error
            self.error = str(exc)

    def ready(self) -> dict[str, str | None]:
        if self.worker is None:
            return {"name": None, "error": self.error}
        return {"name": self.worker.name, "error": None}

    def run(self, item: dict[str, Any]) -> dict[str, Any]:
        assert self.worker is not None
        return self.worker.run_item(BatchInput.model_validate(item)).model_dump(mode="json")


class RaySlot:
    def __init__(self, actor: Any, name: str) -> None:
        self.actor, self.name = actor, name

    def submit(self, item: BatchInput) -> Future[BatchResult]:
        ref = self.actor.run.remote(item.model_dump(mode="json"))
        return chain(ref.future(), BatchResult.model_validate)

    def stop(self) -> None:
        try:
            import_ray().kill(self.actor, no_restart=True)
        except Exception:  # already gone
            pass


class RayPool:
    """``size`` Ray actors, each reserving ``cpus_per_worker`` CPUs and using as many torch threads."""

    kind = "Ray actor"

    def __init__(
        self, config: WorkerConfig, size: int, *, address: str | None = None, cpus_per_worker: int = 1
    ) -> None:
        self.ray = import_ray()
        self.size, self.cpus = size, cpus_per_worker
        self.config = config.model_copy(update={"threads": config.threads or cpus_per_worker})
        self.owns_ray = init_ray(address, num_cpus=size * cpus_per_worker)
        self.actor_class = self.ray.remote(FlowActor)
        self.actors: list[Any] = []

    def start_slot(self) -> Future[Slot]:
        actor = self.actor_class.options(num_cpus=self.cpus, max_restarts=0, max_task_retries=0).remote(
            self.config.model_dump(mode="json")
        )
        self.actors.append(actor)

        def ready(info: dict[str, Any]) -> RaySlot:
            if info["error"]:
                raise WorkerError(f"a Ray worker could not load the flow: {info['error']}")
            return RaySlot(actor, info["name"])

        return chain(actor.ready.remote().future(), ready)

    def is_lost(self, exc: BaseException) -> bool:
        return isinstance(exc, self.ray.exceptions.RayActorError)

    def close(self) -> None:
        for actor in self.actors:
            try:
                self.ray.kill(actor, no_restart=True)
            except Exception:  # already dead
                pass
        if self.owns_ray:
            self.ray.shutdown()
