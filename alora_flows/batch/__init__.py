"""Run a flow over many inputs: local threads or processes, or Ray actors; resumable results.

``alora-flows batch`` and :func:`batch` read INPUTS.jsonl, skip the ids already in RESULTS.jsonl
and append one result per input as it finishes. Modules: ``records`` (the two files),
``worker`` (a flow loaded once, running inputs), ``dispatch`` (the driver loop), ``local``
(thread and process workers), ``ray_actors`` (Ray, optional), ``progress`` (the progress bar),
``job`` (the command's steps).
"""

from alora_flows.batch.dispatch import BatchListener, BatchStats, run_batch
from alora_flows.batch.job import LOCAL_RAY, BatchPlan, BatchSummary, batch, make_pool, plan_batch, run_plan
from alora_flows.batch.records import BatchInput, BatchResult, ResultsFile, read_inputs
from alora_flows.batch.worker import FlowWorker, StopCheck, WorkerConfig

__all__ = [
    "LOCAL_RAY",
    "BatchInput",
    "BatchListener",
    "BatchPlan",
    "BatchResult",
    "BatchStats",
    "BatchSummary",
    "FlowWorker",
    "ResultsFile",
    "StopCheck",
    "WorkerConfig",
    "batch",
    "make_pool",
    "plan_batch",
    "read_inputs",
    "run_batch",
    "run_plan",
]
