"""The ``map`` node kind: one node per item of a list, on the ``parallel`` node's machinery.

Each item's result equals running that item alone; results keep item order; intrinsic items run
as one packed call and generate items as one packed pass (seeded per item, so samples differ);
the bound is enforced; validation knows the item name, the output's type and refuses writes."""

from __future__ import annotations

import pytest

from alora_flows.core import parallel as core_parallel
from alora_flows.core.session import Session
from alora_flows.errors import FlowRuntimeError
from alora_flows.flow import Flow
from alora_flows.flow.nodes.parallel import branch_seed
from intrinsics import text_spec, uncertainty_spec
from intrinsics.outputs import UncertaintyOutput

SPECS = {
    "alpha": uncertainty_spec(name="alpha", invocation="<|im_start|>certainty\n"),
    "beta": text_spec("beta", "<|im_start|>rewrite\n", max_new_tokens=5),
}
CONVERSATION = [
    {"role": "user", "content": "When was Velmora founded?"},
    {"role": "assistant", "content": "Velmora was founded in 1832."},
]
DOCUMENTS = [
    "Velmora was founded in 1832 by Tarsk Olden.",
    "The Quellmark river runs 412 km to the Tarven sea.",
    "Skoharna exports tin cups.",
]

PER_DOC = """\
name: per-doc
intrinsics: {alpha: builtin}
inputs: {documents: list}
nodes:
  per_doc:
    map:
      over: "{{ documents }}"
      as: doc
      max_items: 4
      node: {intrinsic: alpha, input: "Document: {{ doc }}"}
    output: checks
edges:
  - [per_doc, END]
"""


def _spy(monkeypatch, name):
    seen: list[int] = []
    real = getattr(core_parallel, name)

    def spy(session, calls, **options):
        seen.append(len(calls))
        return real(session, calls, **options)

    monkeypatch.setattr(core_parallel, name, spy)
    return seen


def test_an_intrinsic_per_document_packs_and_equals_each_document_alone(backend, monkeypatch):
    packed = _spy(monkeypatch, "invoke_parallel")
    session = Session(backend, messages=CONVERSATION)
    ids = list(session.ids)
    flow = Flow.from_yaml_text(PER_DOC)
    assert flow.compiled(SPECS).field_types["checks"] == list[UncertaintyOutput]
    result = flow.run(session, {"documents": DOCUMENTS}, intrinsic_specs=SPECS)
    assert packed == [3]  # the three items in one packed call
    assert session.ids == ids  # the conversation is as it was
    alone = [
        SPECS["alpha"].run(
            Session(backend, messages=CONVERSATION), "alpha", None, input_override=f"Document: {d}"
        )[0]
        for d in DOCUMENTS
    ]
    got = [r.score for r in result.state.checks]
    assert got == pytest.approx([a.score for a in alone], abs=1e-5)  # each item as if alone, in order
    assert min(abs(x - y) for i, x in enumerate(got) for y in got[i + 1 :]) > 1e-4  # items differ
    step = result.trace.steps[0]
    assert step.kind == "map" and list(step.output) == ["doc[0]", "doc[1]", "doc[2]"]
    assert step.prefill_tokens > 0 and step.generated_tokens > 0


SAMPLES = """\
name: samples
inputs: [question]
nodes:
  sample:
    map:
      over: "{{ range(3) }}"
      as: i
      node: {generate: {user: "{{ question }}", max_new_tokens: 8, temperature: 1.5}}
    output: answers
edges:
  - [sample, END]
"""


def test_n_samples_are_one_packed_pass_with_a_seed_per_item(backend, monkeypatch):
    packed = _spy(monkeypatch, "generate_parallel")
    question = "When was Velmora founded?"
    flow = Flow.from_yaml_text(SAMPLES)
    assert flow.compiled().field_types["answers"] == list[str]
    result = flow.run(Session(backend, messages=CONVERSATION), {"question": question}, seed=5)
    assert packed == [3]
    alone = []
    for i in range(3):  # what each item's generate does on its own fork, with its own seed
        fork = Session(backend, messages=CONVERSATION)
        seed = branch_seed(5, i) + 0  # + the step index, as the generate node seeds
        alone.append(
            fork.generate(
                8, messages=[{"role": "user", "content": question}], temperature=1.5, seed=seed
            ).text
        )
    assert result.state.answers == alone
    assert len(set(alone)) > 1  # N samples, not one sample N times


def test_the_bound_is_enforced_or_truncates_when_declared(backend):
    flow = Flow.from_yaml_text(PER_DOC.replace("max_items: 4", "max_items: 2"))
    with pytest.raises(FlowRuntimeError, match=r"3 items, more than max_items \(2\).*truncate: true"):
        flow.run(Session(backend, messages=CONVERSATION), {"documents": DOCUMENTS}, intrinsic_specs=SPECS)
    kept = Flow.from_yaml_text(PER_DOC.replace("max_items: 4", "max_items: 2\n      truncate: true"))
    result = kept.run(
        Session(backend, messages=CONVERSATION), {"documents": DOCUMENTS}, intrinsic_specs=SPECS
    )
    assert len(result.state.checks) == 2
    literal = Flow.from_yaml_text(
        SAMPLES.replace('"{{ range(3) }}"', "[a, b, c, d]").replace("as: i", "as: i\n      max_items: 3")
    )
    [problem] = literal.problems()
    assert "4 items but max_items is 3" in problem.detail


def tool_echo(text: str) -> str:
    return text.upper()


def test_tool_items_and_validation(backend):
    flow = Flow.from_yaml_text(
        """\
name: shout
inputs: {words: list}
nodes:
  loud:
    map: {over: "{{ words }}", as: w, node: {tool: "tests.test_map_node:tool_echo", args: {text: "{{ w }}!"}}}
    output: shouted
edges:
  - [loud, END]
"""
    )
    assert flow.run(Session(backend), {"words": ["a", "b"]}).state.shouted == ["A!", "B!"]
    bad = """\
name: bad
inputs: {documents: list}
intrinsics: {beta: builtin}
nodes:
  per_doc:
    map: {over: "{{ documets }}", as: doc, node: {intrinsic: beta, input: "{{ doc }} {{ dco }}"}}
    output: checks
edges:
  - [per_doc, END]
"""
    details = sorted(
        p.detail for p in Flow.from_yaml_text(bad, file="bad.yaml").problems(intrinsic_specs=SPECS)
    )
    assert len(details) == 2 and all("unknown state field" in d for d in details)
    assert any("documets" in d for d in details) and any("dco" in d for d in details)
    for node, message in (
        ("{intrinsic: beta, output: mine}", "writes no state field"),
        ("{set: {x: 1}}", "not a set node"),
    ):
        with pytest.raises(Exception, match=message):
            Flow.from_yaml_text(bad.replace('{intrinsic: beta, input: "{{ doc }} {{ dco }}"}', node))
