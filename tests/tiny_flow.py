"""A flow on the tiny random model, saved to disk the way a user's flow is: a model directory, two
aLoRA adapters with their intrinsic.yaml, and a flow file naming them by relative path.

Batch workers (threads, processes, Ray actors) and the HTTP server load it through the
application layer (``load_flow_backend``), exactly as they load a real flow.
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from intrinsics import text_spec, uncertainty_spec, write_spec_file

FLOW_YAML = """\
name: tiny-batch
model: tiny
intrinsics: {alpha: adapters/alpha, beta: adapters/beta}
inputs: [question]
max_steps: 10
nodes:
  ask: {message: {role: user, content: "Documents: Velmora was founded in 1832.\\n\\n{{ question }}"}}
  answer: {generate: {max_new_tokens: 6}, output: answer}
  rate: {intrinsic: alpha, output: certainty}
  note: {intrinsic: beta, output: note}
  gate: {tool: "tests.tiny_flow:gate", args: {question: "{{ question }}"}, output: gated}
edges:
  - [ask, answer]
  - [answer, rate]
  - [rate, note]
  - [note, gate]
  - [gate, END]
"""

#: Names a file; while the variable is set, every run waits in its ``gate`` step until the file
#: exists. Tests use it to hold runs (fill a server's queue, have every batch worker busy).
GATE_ENV = "ALORA_FLOWS_TEST_GATE"

#: A question longer than the tiny model's 4,096-token context: its run fails at the first
#: model step (a real runtime failure, raised by the session, not a test double).
TOO_LONG = "Velmora " * 3000


def specs():
    return {
        "alpha": uncertainty_spec("alpha", "<|im_start|>certainty\n"),
        "beta": text_spec("beta", "<|im_start|>rewrite\n", max_new_tokens=4),
    }


def gate(question: str) -> bool:
    """The flow's last step (a tool): waits for the file named by ``$ALORA_FLOWS_TEST_GATE``."""
    path = os.environ.get(GATE_ENV)
    deadline = time.monotonic() + 120
    while path and not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"the test gate {path} never opened")
        time.sleep(0.01)
    return True


def write_tiny_flow(root: Path) -> Path:
    """Save the model, adapters and flow under ``root``; returns the flow file."""
    from alora_flows.testing import save_random_alora, tiny_model, tiny_tokenizer

    root.mkdir(parents=True, exist_ok=True)
    tok = tiny_tokenizer()
    model = tiny_model(tok, seed=0)
    model.save_pretrained(root / "tiny")
    tok.save_pretrained(root / "tiny")
    for i, (name, spec) in enumerate(specs().items()):
        save_random_alora(
            model, tok, spec.invocation, root / "adapters" / name, seed=3 + i, base_model_name="tiny"
        )
        write_spec_file(spec, root / "adapters" / name)
    flow = root / "flow.yaml"
    flow.write_text(FLOW_YAML)
    return flow
