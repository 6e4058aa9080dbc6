"""Intrinsics: small aLoRA adapters that answer one question about a conversation.

Built-ins (Granite-compatible output shapes): ``uncertainty``, ``hallucination``, ``rewrite``,
``answerability``. Add your own with :func:`register_spec` or an ``intrinsic.yaml`` next to its
adapter; train adapters with :mod:`intrinsics.training.train` (``alora-flows train``).
"""

from alora_flows.errors import IntrinsicConflictError, IntrinsicSpecError, UnknownIntrinsicError
from alora_flows.sandbox.text import split_sentences
from intrinsics.builtin import (
    KINDS,
    answerability_spec,
    builtin_specs,
    choice_spec,
    hallucination_spec,
    json_spec,
    make_spec,
    rewrite_spec,
    text_spec,
    uncertainty_spec,
)
from intrinsics.known import get_spec, list_specs, register_spec, unregister_spec
from intrinsics.outputs import (
    AnswerabilityOutput,
    ChoiceOutput,
    HallucinationOutput,
    JsonOutput,
    RewriteOutput,
    SentenceLabel,
    TextOutput,
    UncertaintyOutput,
)
from intrinsics.registry import (
    ADAPTER_ROOT,
    ResolvedIntrinsic,
    available_builtin,
    load_intrinsic,
    model_key,
    resolve_adapter,
    spec_for_adapter,
)
from intrinsics.spec import DecodingPlan, IntrinsicSpec, RawOutput
from intrinsics.specfile import SPEC_FILE, read_spec_file, write_spec_file

__all__ = [
    "ADAPTER_ROOT",
    "KINDS",
    "SPEC_FILE",
    "AnswerabilityOutput",
    "ChoiceOutput",
    "DecodingPlan",
    "HallucinationOutput",
    "IntrinsicConflictError",
    "IntrinsicSpec",
    "IntrinsicSpecError",
    "JsonOutput",
    "RawOutput",
    "ResolvedIntrinsic",
    "RewriteOutput",
    "SentenceLabel",
    "TextOutput",
    "UncertaintyOutput",
    "UnknownIntrinsicError",
    "answerability_spec",
    "available_builtin",
    "builtin_specs",
    "choice_spec",
    "get_spec",
    "hallucination_spec",
    "json_spec",
    "list_specs",
    "load_intrinsic",
    "make_spec",
    "model_key",
    "read_spec_file",
    "register_spec",
    "resolve_adapter",
    "rewrite_spec",
    "spec_for_adapter",
    "split_sentences",
    "text_spec",
    "uncertainty_spec",
    "unregister_spec",
    "write_spec_file",
]
