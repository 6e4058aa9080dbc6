"""The standard-LoRA twin of an intrinsic, run on the realistic cases.

The bar the aLoRA must meet is a standard LoRA trained on the same data with the same budget
(``intrinsics/adapters/<model>/<name>-lora``). A standard LoRA is active on every token, so none
of the conversation can come from the base model's cache: each case runs its whole prompt
through the LoRA model, from an empty cache. The prompt is, token for token, the one the aLoRA
gets in a flow (:meth:`~alora_flows.core.session.Session.invocation` on the case's session: the
same conversation, documents, invocation and adapted input), and the output goes through the
same decoding plan and parser (``spec.finish``), so the two differ only in where the adapter is
active.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import torch

from alora_flows.core.decoding import decode, detokenize
from alora_flows.core.session import CallStats, InvokeResult
from alora_flows.errors import IntrinsicOutputError
from intrinsics.training.realistic.loader import Case, CaseSet
from intrinsics.training.realistic.predict import case_session, output_record, state_for


class LoraTwin:
    """A private PEFT model with the standard LoRA at ``adapter_dir`` over a fresh load of the
    base weights at ``model_path`` (the backend's own model is wrapped by its aLoRA adapters,
    and PEFT modifies the model it wraps). The backend lends its tokenizer and stop tokens."""

    def __init__(self, backend, adapter_dir: str | Path, model_path: str | Path) -> None:
        from peft import PeftModel
        from transformers import AutoModelForCausalLM

        from alora_flows.core.backend import cache_kwarg

        base = AutoModelForCausalLM.from_pretrained(str(model_path), dtype=torch.float32)
        self.model = PeftModel.from_pretrained(base, str(adapter_dir)).eval()
        self.backend = backend
        self.cache_key = cache_kwarg(base)

    @torch.inference_mode()
    def invoke(self, session, call) -> InvokeResult:
        """What ``session.invoke(call.adapter, ...)`` returns, with the twin in place of the aLoRA."""
        from transformers import DynamicCache

        start = time.perf_counter()
        plan = session.invocation(call.adapter, messages=call.messages, adapted_input=call.adapted_input)
        cache = DynamicCache()

        def forward(ids: list[int]) -> torch.Tensor:
            out = self.model(
                input_ids=torch.tensor([ids]), **{self.cache_key: cache}, use_cache=True, logits_to_keep=1
            )
            return out.logits[0, -1]

        stop = self.backend.stop_token_ids
        decoded = decode(
            lambda token: forward([token]),
            forward(plan.ids),
            stop=stop,
            max_new_tokens=call.max_new_tokens,
            allowed=call.allowed_token_ids,
            want_probs=call.return_probs,
        )
        return InvokeResult(
            text=detokenize(self.backend.tokenizer, decoded.tokens, stop),
            token_ids=decoded.tokens,
            probs=decoded.probs,
            stats=CallStats(
                kind="invoke",
                adapter=call.adapter,
                prefill_tokens=len(plan.ids),
                generated_tokens=len(decoded.tokens),
                seconds=time.perf_counter() - start,
            ),
        )


def twin_predict_case(
    twin: LoraTwin, spec, adapter_name: str, case: Case, case_set: CaseSet, answer: str | None
) -> tuple[dict[str, Any], bool]:
    """``(record fields, malformed)`` for one case, as :func:`predict.predict_case` gives them for
    the aLoRA. ``adapter_name`` is the loaded aLoRA: the twin shares its invocation."""
    session = case_session(twin.backend, case, case_set, answer)
    prepared = spec.prepare(session, adapter_name, state_for(case))
    if prepared is None:
        raise ValueError(f"the {spec.name} intrinsic's call cannot be replayed by a twin")
    result = twin.invoke(session, prepared.call)
    try:
        output = spec.finish(prepared, result)
    except IntrinsicOutputError as exc:
        return {"error": str(exc)}, True
    return {**output_record(output), "prefill_tokens": result.stats.prefill_tokens}, False
