"""Granite intrinsics on the KV-cache session, with a tiny Granite-shaped model and random
aLoRAs: constrained outputs that always parse, likelihoods read from the model's own
probabilities, documents through the chat template, rollback, cache reuse, typed errors — and a
flow over a local Granite library."""

from __future__ import annotations

import math

import pytest
import torch

from alora_flows.app import load_intrinsics
from alora_flows.core.documents import Document
from alora_flows.core.session import Session
from alora_flows.errors import IntrinsicInputError, IntrinsicOutputError
from alora_flows.flow import Flow
from intrinsics.granite import load_granite_spec
from tests import granite_fixtures as F
from tests.granite_support import (
    ASSISTANT_PROMPT,
    build_library,
    granite_backend,
    with_budget,
    write_adapter,
)

QA = [{"role": "user", "content": "Who founded Velmora?"}, {"role": "assistant", "content": "Tarsk Olden."}]
DOCS = [Document(doc_id="1", text="Velmora was founded in 1832 by Tarsk Olden.")]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    """(backend, library root, specs by name) with every aLoRA of the library loaded."""
    backend = granite_backend()
    root = build_library(tmp_path_factory.mktemp("granite") / "lib", backend)
    paths = {
        "uncertainty": root / "uncertainty/alora/granite-tiny",
        "certainty": root / "certainty/alora/granite-tiny",
        "answerability": root / "answerability/alora/granite-tiny",
        "requirement_check": root / "requirement_check/granite-tiny/alora",
    }
    specs = {}
    for name, path in paths.items():
        specs[name] = load_granite_spec(path, name=name, tokenizer=backend.tokenizer)
        backend.add_adapter(name, path)
    return backend, root, specs


def test_each_intrinsic_runs_constrained_and_rolls_back(lib):
    backend, _, specs = lib
    session = Session(backend, messages=QA, documents=DOCS)
    ids, cached = session.ids, session.cached_tokens
    unc, _ = specs["uncertainty"].run(session, "uncertainty")
    assert 0.05 <= unc.certainty <= 0.95
    cert, _ = specs["certainty"].run(session, "certainty")
    assert 0.05 <= float(cert) <= 0.95
    req, _ = specs["requirement_check"].run(session, "requirement_check", {"requirement": "Be brief."})
    assert 0.0 <= req.requirement_check.score <= 1.0
    assert session.ids == ids and session.cached_tokens == cached and session.messages == QA


def test_likelihood_is_the_models_expected_value(lib):
    """Granite 3.x certainty: the output is the mean of 0.05..0.95 under the probabilities the
    adapter gives the ten digits at its first output token, computed here from raw logits."""
    backend, _, specs = lib
    session = Session(backend, messages=QA)
    out, _ = specs["certainty"].run(session, "certainty")
    tok = backend.tokenizer
    digits = [tok.convert_tokens_to_ids(str(d)) for d in range(10)]
    assert all(tok.decode([t]) == str(d) for d, t in enumerate(digits))
    logits = session.invoke("certainty", max_new_tokens=1, return_logits=True).logits.float()
    probs = torch.softmax(logits[digits], dim=-1)
    expected = sum(float(p) * (d / 10 + 0.05) for d, p in enumerate(probs))
    assert float(out) == pytest.approx(expected, abs=1e-5)


def test_reuse_and_no_reuse_agree(lib):
    backend, _, specs = lib
    results = []
    for reuse in (True, False):
        session = Session(backend, reuse=reuse, messages=QA)
        out, stats = specs["uncertainty"].run(session, "uncertainty")
        results.append((out.certainty, stats))
    (a, reused), (b, fresh) = results
    assert a == pytest.approx(b, abs=1e-5)
    assert reused.reused_tokens > 0 and fresh.reused_tokens == 0


def test_tagged_turns_reuse_the_cache_up_to_the_tags(tmp_path):
    backend = granite_backend()
    io = with_budget(F.REQUIREMENT_CHECK, 120).replace(
        "parameters:", "sentence_boundaries: {last_message: i}\nparameters:"
    )
    path = write_adapter(backend, tmp_path / "rc", invocation=ASSISTANT_PROMPT, io_yaml=io)
    spec = load_granite_spec(path, name="rc", tokenizer=backend.tokenizer)
    backend.add_adapter("rc", path)
    session = Session(backend, messages=QA)
    before_answer = len(session._renderer.ids(QA[:1] + [{"role": "assistant", "content": ""}])) - 2
    out, stats = spec.run(session, "rc", {"requirement": "Be brief."})
    request = spec.build_request(QA, [], {"requirement": "Be brief."})
    assert request.sent[-1]["content"] == "<i0> Tarsk Olden."
    sent = session._renderer.ids(list(request.sent) + list(request.extra))
    assert stats.reused_tokens >= before_answer  # everything before the tagged answer came from the cache
    assert stats.reused_tokens + stats.prefill_tokens == len(sent) + len(
        backend.adapters["rc"].invocation_tokens
    )
    assert session.messages == QA  # the tags were for that call only


def test_documents_reach_the_template_and_calls_may_bring_their_own(lib):
    backend, _, specs = lib
    session = Session(
        backend, messages=[{"role": "user", "content": "When was Velmora founded?"}], documents=DOCS
    )
    assert "document 1" in backend.tokenizer.decode(session.ids)
    own = [{"doc_id": "9", "text": "Nothing about Velmora."}]
    spec = specs["answerability"]
    request = spec.build_request(session.messages, [Document(**own[0])], {}, documents_overridden=True)
    assert [d.doc_id for d in request.documents.documents] == ["9"]
    a, _ = spec.run(session, "answerability")
    b, _ = spec.run(session, "answerability", {"documents": own})
    assert 0.0 <= a.answerability_likelihood <= 1.0 and 0.0 <= b.answerability_likelihood <= 1.0
    assert a.answerability_likelihood != pytest.approx(b.answerability_likelihood, abs=1e-6)
    assert session.documents == DOCS


def test_calls_that_do_not_fit_the_adapter_are_typed_errors(lib, tmp_path):
    backend, _, specs = lib
    asked = Session(backend, messages=QA[:1])
    with pytest.raises(IntrinsicInputError, match="'uncertainty'.*ends with the assistant's answer"):
        specs["uncertainty"].run(asked, "uncertainty")
    with pytest.raises(IntrinsicInputError, match="'answerability'.*reads documents"):
        specs["answerability"].run(asked, "answerability")
    with pytest.raises(IntrinsicInputError, match="'requirement_check'.*placeholder 'requirement'"):
        specs["requirement_check"].run(Session(backend, messages=QA), "requirement_check")


def test_a_cut_output_says_so(tmp_path):
    backend = granite_backend()
    path = write_adapter(
        backend, tmp_path / "qr", invocation=ASSISTANT_PROMPT, io_yaml=with_budget(F.QUERY_REWRITE, 3)
    )
    spec = load_granite_spec(path, name="qr", tokenizer=backend.tokenizer)
    backend.add_adapter("qr", path)
    with pytest.raises(IntrinsicOutputError, match="'qr'.*not valid JSON.*3-token limit"):
        spec.run(Session(backend, messages=[{"role": "user", "content": "Who?"}]), "qr")


FLOW = """\
name: granite-rag
model: granite-tiny
intrinsics:
  answerability: lib/answerability
  certainty: lib/uncertainty
inputs: {question: str, documents: list}
nodes:
  ask: {message: {role: user, content: "{{ question }}"}}
  check: {intrinsic: answerability, output: answerable}
  answer: {generate: {max_new_tokens: 4}, output: answer}
  rate: {intrinsic: certainty, output: certainty}
  refuse: {set: {answer: "I don't know."}}
edges:
  - [ask, check]
  - from: check
    branches:
      - {when: "answerable.answerability_likelihood >= 0.0", to: answer}
      - {default: refuse}
  - [answer, rate]
  - [rate, END]
  - [refuse, END]
"""


def test_a_flow_over_a_local_granite_library(tmp_path):
    backend = granite_backend()
    build_library(tmp_path / "lib", backend)
    (tmp_path / "flow.yaml").write_text(FLOW)
    flow = Flow.from_yaml(tmp_path / "flow.yaml")
    flow.validate()  # before any model: specs from the library's io.yaml
    specs = load_intrinsics(flow, backend, tmp_path)  # each folder resolved for model 'granite-tiny'
    assert sorted(backend.adapters) == ["answerability", "certainty"]
    session = Session(backend)
    result = flow.run(
        session,
        {"question": "When was Velmora founded?", "documents": [{"doc_id": "1", "text": "Founded in 1832."}]},
        seed=0,
        intrinsic_specs=specs,
    )
    steps = {s.node: s for s in result.trace.steps}
    assert list(steps) == ["ask", "check", "answer", "rate"]
    assert 0.05 <= result.state.certainty.certainty <= 0.95
    assert math.isfinite(result.state.answerable.answerability_likelihood)
    assert steps["rate"].reused_tokens > 0
