"""A model-based baseline for the uncertainty intrinsic: the base model's own confidence in its
answer, the mean probability of the answer's tokens (with its closing end-of-turn tokens) given
the conversation.

Why it belongs beside the adapter: it costs one forward of the answer the base model just wrote
(nothing extra when the logits are kept while generating), needs no training, and is the
standard free signal of whether a model's answer is right. An uncertainty intrinsic is only worth
its call if it beats this. The conversation is the flow's (:func:`.predict.case_session`: the
documents inline, the question, the stored base answer).
"""

from __future__ import annotations

from typing import Any

import torch

from alora_flows.core.chat import ChatRenderer
from alora_flows.core.documents import DocumentSet
from intrinsics.training.realistic.loader import Case, CaseSet
from intrinsics.training.realistic.predict import case_session


@torch.inference_mode()
def answer_token_probability(backend, case: Case, case_set: CaseSet, answer: str) -> float:
    """Mean probability, under the base model, of the tokens of the session's last (assistant)
    turn after its generation prompt."""
    session = case_session(backend, case, case_set, answer, reuse=False)
    documents: Any = (
        DocumentSet(documents=tuple(session.documents), render_as=session.documents_as)
        if session.documents_as
        else list(session.documents)
    )
    prompt = ChatRenderer(backend.tokenizer).ids(
        session.messages[:-1], add_generation_prompt=True, documents=documents
    )
    full = session.ids
    if full[: len(prompt)] != prompt or len(full) <= len(prompt):
        raise ValueError(f"case '{case.id}': the answer's tokens do not follow its generation prompt")
    with backend.lock:
        backend.select_adapter(None)
        logits = backend.base_model(input_ids=torch.tensor([full], device=backend.device)).logits[0]
    probs = torch.softmax(logits[len(prompt) - 1 : len(full) - 1].float(), dim=-1)
    targets = torch.tensor(full[len(prompt) :], device=probs.device)
    return float(probs.gather(1, targets[:, None]).mean())


def token_prob_predict_case(
    backend, spec, adapter_name: str, case: Case, case_set: CaseSet, answer: str | None
):
    """``(record fields, malformed)`` in the form :func:`.predict.run_systems` stores."""
    if answer is None:
        raise ValueError(f"uncertainty case '{case.id}' needs its base answer")
    return {"score": answer_token_probability(backend, case, case_set, answer)}, False
