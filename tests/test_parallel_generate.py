"""Generate branches packed over one cached conversation (``generate_parallel``): each row equals
what a fork of the session generates (same greedy tokens; sampled rows the same tokens under the
same seed), the session is untouched, and a ``parallel`` node of generate branches uses it."""

from __future__ import annotations

from alora_flows.core import parallel as core_parallel
from alora_flows.core.parallel import GenerateCall, generate_parallel
from alora_flows.core.session import Session
from alora_flows.flow import Flow

CONVERSATION = [
    {"role": "user", "content": "Velmora was founded in 1832 by Tarsk Olden. When was Velmora founded?"},
    {"role": "assistant", "content": "Velmora was founded in 1832."},
]


def _on_a_fork(session: Session, call: GenerateCall) -> list[int]:
    fork = session.fork()
    if call.messages:
        fork.extend(call.messages)
    return fork.generate(call.max_new_tokens, temperature=call.temperature, seed=call.seed).token_ids


def _calls() -> list[GenerateCall]:
    again = [{"role": "user", "content": "Who founded it?"}]
    return [
        GenerateCall(max_new_tokens=8),  # greedy, no messages: the plain next answer
        GenerateCall(max_new_tokens=12, temperature=1.5, seed=7),  # samples
        GenerateCall(max_new_tokens=12, temperature=1.5, seed=8),
        GenerateCall(messages=again, max_new_tokens=6, temperature=1.5, seed=7),
        GenerateCall(messages=[{"role": "system", "content": "Be brief."}, *again], max_new_tokens=5),
    ]


def test_each_packed_generation_equals_its_fork(backend):
    session = Session(backend, messages=CONVERSATION)
    ids, cached, history = list(session.ids), session.cached_tokens, len(session.history)
    calls = _calls()
    packed = generate_parallel(session, calls)
    # the conversation and its cache are exactly as before; the calls are counted
    assert session.ids == ids and session.cached_tokens == cached
    assert session._cache.get_seq_length() == cached
    assert len(session.history) == history + len(calls)
    reference = [_on_a_fork(Session(backend, messages=CONVERSATION), call) for call in calls]
    # every row starts with the same "<|im_start|>" token: run once for all, in the first forward
    hoisted = packed[1].stats.reused_tokens - cached
    assert hoisted == 1
    for i, (got, want) in enumerate(zip(packed, reference)):
        assert got.token_ids == want
        assert got.stats.kind == "generate" and got.stats.reused_tokens == cached + (hoisted if i else 0)
        assert got.stats.generated_tokens == len(want)
    # the first row counts the hoisted token as prefilled: every token run is counted once
    rendered = [
        len(session._renderer.ids(session.messages + list(c.messages), add_generation_prompt=True))
        for c in calls
    ]
    assert sum(r.stats.prefill_tokens for r in packed) == sum(n - cached for n in rendered) - hoisted * (
        len(calls) - 1
    )
    # the seeds matter: two seeds give two samples, and a sample is not the greedy answer
    assert packed[1].token_ids != packed[2].token_ids
    assert packed[1].token_ids[:8] != packed[0].token_ids


def test_without_reuse_generations_run_one_by_one_with_the_same_tokens(backend):
    calls = _calls()
    packed = generate_parallel(Session(backend, messages=CONVERSATION), calls)
    plain = generate_parallel(Session(backend, messages=CONVERSATION, reuse=False), calls)
    assert [r.token_ids for r in packed] == [r.token_ids for r in plain]


SAMPLES = """\
name: self-consistency
inputs: [question]
nodes:
  samples:
    parallel:
      first:  {generate: {user: "{{ question }}", max_new_tokens: 8, temperature: 1.5}, output: answers}
      second: {generate: {user: "{{ question }}", max_new_tokens: 8, temperature: 1.5}, output: answers}
      third:  {generate: {user: "{{ question }}", max_new_tokens: 8, temperature: 1.5}, output: answers}
      note:   {set: {note: "sampled"}}
    reduce: {answers: append}
edges:
  - [samples, END]
"""


def test_a_parallel_node_of_generate_branches_samples_in_one_packed_pass(backend, monkeypatch):
    packed_calls = []
    real = core_parallel.generate_parallel

    def spy(session, calls):
        packed_calls.append(len(calls))
        return real(session, calls)

    monkeypatch.setattr(core_parallel, "generate_parallel", spy)
    inputs = {"question": "When was Velmora founded?"}
    flow = Flow.from_yaml_text(SAMPLES)
    packed = flow.run(Session(backend), inputs, seed=11)
    assert packed_calls == [3]
    # without reuse every branch runs on its own fork, one after the other: the same samples
    forks = flow.run(Session(backend, reuse=False), inputs, seed=11)
    assert packed_calls == [3]
    assert packed.state.answers == forks.state.answers and packed.state.note == "sampled"
    assert len(packed.state.answers) == 3
    assert len(set(packed.state.answers)) > 1  # each branch has its own seed: N samples, not one
    step = packed.trace.steps[0]
    assert step.kind == "parallel" and set(step.output) == {"first", "second", "third", "note"}
