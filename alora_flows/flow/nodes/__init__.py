"""Node kinds. Each module defines one kind and registers it (see :mod:`.base`)."""

from alora_flows.flow.nodes.base import NODE_KINDS, Node, NodeCheck, Params, StepContext, register_node_kind
from alora_flows.flow.nodes.generate import GenerateNode, GenerateParams
from alora_flows.flow.nodes.intrinsic import IntrinsicNode
from alora_flows.flow.nodes.message import MessageNode, MessageParams
from alora_flows.flow.nodes.parallel import ParallelNode
from alora_flows.flow.nodes.set import SetNode
from alora_flows.flow.nodes.tool import ToolNode

__all__ = [
    "NODE_KINDS",
    "GenerateNode",
    "GenerateParams",
    "IntrinsicNode",
    "MessageNode",
    "MessageParams",
    "Node",
    "ParallelNode",
    "NodeCheck",
    "Params",
    "SetNode",
    "StepContext",
    "ToolNode",
    "register_node_kind",
]
