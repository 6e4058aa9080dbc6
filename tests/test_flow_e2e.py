"""End to end on the tiny in-process model with random aLoRA adapters: a YAML flow with base
steps (message + generate) and two adapter steps, run with and without cache reuse, in process and
through ``alora-flows run``."""

import json

import pytest
from typer.testing import CliRunner

from alora_flows.cli import app
from alora_flows.core.session import Session
from alora_flows.flow import Flow
from alora_flows.testing import same_within
from intrinsics import UncertaintyOutput, text_spec, uncertainty_spec, write_spec_file

FLOW_YAML = """\
name: e2e
model: MODEL
intrinsics: {alpha: ALPHA, beta: BETA}
inputs: [question]
max_steps: 10
nodes:
  ask: {message: {role: user, content: "Documents: Velmora was founded in 1832.\\n\\n{{ question }}"}}
  answer: {generate: {max_new_tokens: 6}, output: answer}
  rate: {intrinsic: alpha, output: certainty}
  note: {intrinsic: beta, output: note}
edges:
  - [ask, answer]
  - [answer, rate]
  - from: rate
    branches:
      - {when: "certainty.score >= 0.0 and len(answer) >= 0", to: note}
      - {default: END}
  - [note, END]
"""


def specs():
    # the conftest backend's adapters: alpha <- "<|im_start|>certainty\n", beta <- "...rewrite\n"
    return {
        "alpha": uncertainty_spec("alpha", "<|im_start|>certainty\n"),
        "beta": text_spec("beta", "<|im_start|>rewrite\n", max_new_tokens=4),
    }


def run(backend, reuse: bool):
    flow = Flow.from_yaml_text(
        FLOW_YAML.replace("MODEL", "tiny").replace("ALPHA", "builtin").replace("BETA", "builtin")
    )
    session = Session(backend, reuse=reuse)
    return flow.run(
        session, {"question": "When was Velmora founded?"}, seed=0, intrinsic_specs=specs()
    ), session


def test_adapter_steps_reuse_the_conversation_and_modes_agree(backend):
    reused, session = run(backend, reuse=True)
    steps = {s.node: s for s in reused.trace.steps}
    assert list(steps) == ["ask", "answer", "rate", "note"]
    conversation = len(session.ids)  # adapters roll back: the conversation ends after 'answer'
    answer = {"last_assistant": session.messages[-1]["content"]}
    # The answer's closing tokens (end of turn) run with the first call after it, which keeps
    # their KV; the next call reuses the whole conversation.
    closing = conversation - steps["rate"].reused_tokens
    assert 0 < closing <= 3
    for name, adapter, pending in (("rate", "alpha", closing), ("note", "beta", 0)):
        assert steps[name].adapter == adapter
        assert steps[name].reused_tokens == conversation - pending
        assert steps[name].context_tokens == conversation  # the trace shows the full ratio
        reread = specs()[adapter].adapted_input_ids(backend.tokenizer, answer)  # uncertainty's answer
        own = len(backend.adapters[adapter].invocation_tokens) + len(reread)
        assert steps[name].prefill_tokens == pending + own
    assert isinstance(reused.state.certainty, UncertaintyOutput)
    assert steps["answer"].generated_tokens >= 1 and steps["answer"].kind == "generate"
    assert reused.trace.reuse is True and reused.trace.model == "tiny"

    plain, plain_session = run(backend, reuse=False)
    assert plain.trace.reuse is False
    assert same_within(plain.trace.final_state, reused.trace.final_state, tol=1e-6)
    assert plain.state.answer == reused.state.answer and plain.state.note == reused.state.note
    assert plain.state.certainty.digit == reused.state.certainty.digit
    assert [s.node for s in plain.trace.steps] == list(steps)
    for name in ("rate", "note"):
        plain_step = next(s for s in plain.trace.steps if s.node == name)
        assert plain_step.reused_tokens == 0
        assert plain_step.prefill_tokens == steps[name].reused_tokens + steps[name].prefill_tokens
    assert plain_session.messages == session.messages


@pytest.fixture(scope="module")
def on_disk(tmp_path_factory):
    """The tiny model, its tokenizer and two adapters (with intrinsic.yaml) saved to disk."""
    from alora_flows.testing import save_random_alora, tiny_model, tiny_tokenizer

    root = tmp_path_factory.mktemp("e2e")
    tok = tiny_tokenizer()
    model = tiny_model(tok, seed=0)
    model.save_pretrained(root / "tiny")
    tok.save_pretrained(root / "tiny")
    for i, (name, spec) in enumerate(specs().items()):
        save_random_alora(
            model, tok, spec.invocation, root / "adapters" / name, seed=3 + i, base_model_name="tiny"
        )
        write_spec_file(spec, root / "adapters" / name)
    flow = (
        FLOW_YAML.replace("MODEL", "tiny").replace("ALPHA", "adapters/alpha").replace("BETA", "adapters/beta")
    )
    (root / "flow.yaml").write_text(flow)
    return root


def test_cli_run_writes_trace_and_state(on_disk):
    runner = CliRunner()
    flow = str(on_disk / "flow.yaml")
    assert runner.invoke(app, ["validate", flow]).exit_code == 0
    outputs = {}
    for mode in ([], ["--no-reuse"]):
        trace_path = on_disk / f"trace{len(mode)}.json"
        result = runner.invoke(
            app,
            [
                "run",
                flow,
                "--input",
                "question=When was it founded?",
                "--trace-json",
                str(trace_path),
                "--seed",
                "1",
                *mode,
            ],
        )
        assert result.exit_code == 0, result.output
        state = json.loads(result.stdout)
        trace = json.loads(trace_path.read_text())
        assert trace["reuse"] is (not mode)
        assert [s["node"] for s in trace["steps"]] == ["ask", "answer", "rate", "note"]
        assert trace["final_state"] == state
        assert 0.0 <= state["certainty"]["score"] <= 1.0
        assert "rate" in result.stderr and "steps" in result.stderr  # the live table + summary
        outputs[bool(mode)] = (state, trace)
    assert same_within(outputs[False][0], outputs[True][0], tol=1e-6)
    rate = [s for s in outputs[False][1]["steps"] if s["node"] == "rate"][0]
    assert rate["reused_tokens"] > 0 and rate["prefill_tokens"] < rate["reused_tokens"]
