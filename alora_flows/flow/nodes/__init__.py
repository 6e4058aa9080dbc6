"""Node kinds. Each module defines one kind and registers it (see :mod:`.base`)."""

from alora_flows.flow.nodes.base import (
    NODE_KINDS,
    Node,
    NodeCheck,
    Params,
    Pause,
    Retryable,
    StepContext,
    register_node_kind,
)
from alora_flows.flow.nodes.generate import GenerateNode, GenerateParams
from alora_flows.flow.nodes.interrupt import InterruptNode, InterruptParams, coerce_values
from alora_flows.flow.nodes.intrinsic import IntrinsicNode
from alora_flows.flow.nodes.map import MapNode, MapParams
from alora_flows.flow.nodes.mark import MarkNode
from alora_flows.flow.nodes.message import MessageNode, MessageParams
from alora_flows.flow.nodes.parallel import ParallelNode
from alora_flows.flow.nodes.retry import ErrorRoute, RetryPolicy
from alora_flows.flow.nodes.rewind import RewindNode
from alora_flows.flow.nodes.set import SetNode
from alora_flows.flow.nodes.subflow import SubflowNode
from alora_flows.flow.nodes.tool import ToolNode

__all__ = [
    "NODE_KINDS",
    "ErrorRoute",
    "GenerateNode",
    "GenerateParams",
    "InterruptNode",
    "InterruptParams",
    "IntrinsicNode",
    "MapNode",
    "MapParams",
    "MarkNode",
    "MessageNode",
    "MessageParams",
    "Node",
    "ParallelNode",
    "NodeCheck",
    "Params",
    "Pause",
    "RetryPolicy",
    "RewindNode",
    "Retryable",
    "SetNode",
    "StepContext",
    "SubflowNode",
    "ToolNode",
    "coerce_values",
    "register_node_kind",
]
