"""The real embedded model (SmolLM2-135M-Instruct from PyPI): load, answer, reuse on a long conversation."""

import pytest

from alora_flows.core.backend import Backend
from alora_flows.core.models import EMBEDDED_MODEL_ID
from alora_flows.core.session import Session
from alora_flows.testing import save_random_alora

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def embedded(tmp_path_factory):
    backend = Backend.load("embedded", device="cpu", progress=False)
    path = save_random_alora(
        backend.base_model,
        backend.tokenizer,
        "<|im_start|>certainty\n",
        tmp_path_factory.mktemp("a") / "probe",
        base_model_name=EMBEDDED_MODEL_ID,
    )
    backend.add_adapter("probe", path)
    return backend


def test_answers_a_question(embedded):
    session = Session(embedded)
    session.extend([{"role": "user", "content": "What is the capital of France?"}])
    assert "Paris" in session.generate(24).text


def test_adapter_call_on_long_conversation_reuses_the_cache(embedded):
    doc = (
        "The Quellmark river runs 412 kilometres from the Orsk hills to the Tarven sea, "
        "passing the towns of Velmora, Brisk and Ondal. "
    )
    session = Session(embedded)
    session.extend(
        [
            {"role": "system", "content": "Answer only from the documents."},
            {"role": "user", "content": doc * 60 + "\nHow long is the Quellmark river?"},
        ]
    )
    conversation_length = len(session.ids)
    assert conversation_length >= 1500
    answer = session.generate(16)
    assert answer.stats.reused_tokens == conversation_length  # only the generation prompt is new
    result = session.invoke("probe", max_new_tokens=1)
    assert result.stats.reused_tokens >= 1500
    assert 0 < len(session.ids) - result.stats.reused_tokens <= 3  # the answer's closing tokens
    assert result.stats.prefill_tokens < 32
