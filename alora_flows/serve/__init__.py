"""Serve a flow over HTTP: ``alora-flows serve FLOW`` (FastAPI + uvicorn, the ``[serve]`` extra).

Modules: ``service`` (one loaded flow, admission and deadlines; no HTTP), ``http`` (the API),
``ray_serve`` (the same API as Ray Serve replicas).
"""

from alora_flows.serve.service import FlowService, ServeSettings

__all__ = ["FlowService", "ServeSettings"]
