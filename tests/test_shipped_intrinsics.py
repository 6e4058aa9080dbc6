"""Every shipped adapter loads on the embedded model, matches its spec, and gives typed output."""

import pytest

import intrinsics
from alora_flows.core.backend import Backend
from alora_flows.core.session import Session

pytestmark = pytest.mark.slow

SHIPPED = ["uncertainty", "rewrite", "hallucination", "answerability"]
DOC = "Skoharna was built beside the Qamsarn River. Skoharna is known for exporting tin cups."


@pytest.fixture(scope="module")
def backend():
    return Backend.load("embedded", device="cpu", progress=False)


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_adapter_loads_and_runs(backend, name):
    resolved = intrinsics.load_intrinsic(name, "builtin", backend.model_id, tokenizer=backend.tokenizer)
    assert resolved.adapter_type == "alora"
    info = backend.add_adapter(name, resolved.path)
    assert info.invocation_tokens == resolved.spec.invocation_ids(backend.tokenizer)
    session = Session(
        backend,
        messages=[
            {"role": "system", "content": "Answer only from the documents."},
            {"role": "user", "content": f"{DOC}\n\nQuestion: What does Skoharna export?"},
        ],
    )
    if name in ("uncertainty", "hallucination"):
        session.generate(24)  # these judge the last answer
    output, stats = resolved.spec.run(session, name, {"question": "What does it export?"})
    assert isinstance(output, resolved.spec.output_model)
    # the whole conversation came from the cache, but the answer's closing tokens (they wait
    # for the next call and run with its own)
    pending = 3 if name in ("uncertainty", "hallucination") else 0
    assert 0 <= len(session.ids) - stats.reused_tokens <= pending


def test_lora_twin_is_refused_as_an_alora(backend):
    from alora_flows.errors import NotAnALoRAError
    from intrinsics.training.build_builtin import ADAPTERS_ROOT

    with pytest.raises(NotAnALoRAError):
        backend.add_adapter("twin", ADAPTERS_ROOT / "smollm2-135m-instruct" / "uncertainty-lora")
