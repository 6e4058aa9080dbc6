"""Flow files and importable tools for the orchestration tests (subflows, interrupts, retries,
streams, OpenTelemetry). No test functions here.

Tools must be importable as ``tests.test_orchestration_support:name``: run directories store
flows as YAML and the kill tests run the CLI in a subprocess.
"""

from __future__ import annotations

import threading
from pathlib import Path

from tests.test_reliability_support import write_tiny_project

#: A parent flow whose ``review`` step runs flows/review.yaml; the child blocks in its 'wait'
#: step (tests.test_reliability_support:gate) after two finished steps of its own.
NESTED_YAML = """\
name: nested
model: tiny
intrinsics: {alpha: adapters/alpha, beta: adapters/beta}
inputs: [question]
max_steps: 20
nodes:
  ask:
    message: {role: user, content: "Documents: Velmora was founded in 1832.\\n\\n{{ question }}"}
  answer: {generate: {max_new_tokens: 6}, output: answer}
  rate: {intrinsic: alpha, output: certainty}
  review:
    flow: flows/review.yaml
    inputs: {answer: "{{ answer }}"}
    outputs: {answer2: followup, note: note, certainty: review_certainty}
  final: {intrinsic: alpha, output: final}
edges:
  - [ask, answer]
  - [answer, rate]
  - [rate, review]
  - [review, final]
  - from: final
    branches:
      - {when: "final.score >= 0.0 and review_certainty.score >= 0.0", to: END}
      - {default: END}
"""

REVIEW_YAML = """\
name: review
model: tiny
intrinsics: {alpha: ../adapters/alpha, beta: ../adapters/beta}
inputs: [answer]
nodes:
  rate: {intrinsic: alpha, output: certainty}
  note: {intrinsic: beta, output: note}
  wait: {tool: "tests.test_reliability_support:gate", args: {text: "{{ answer }}"}, output: gated}
  follow: {message: {role: user, content: "Say more. ({{ gated }})"}}
  answer2: {generate: {max_new_tokens: 8, temperature: 0.9}, output: answer2}
edges: [[rate, note], [note, wait], [wait, follow], [follow, answer2], [answer2, END]]
"""

NESTED_TOP = ["ask", "answer", "rate", "review", "final"]
REVIEW_STEPS = ["rate", "note", "wait", "follow", "answer2"]

#: A flow that pauses for a person inside a subflow (flows/approve.yaml), then answers again.
APPROVAL_YAML = """\
name: approval
model: tiny
intrinsics: {alpha: adapters/alpha}
inputs: [question]
max_steps: 20
nodes:
  ask: {message: {role: user, content: "{{ question }}"}}
  answer: {generate: {max_new_tokens: 6}, output: answer}
  approval:
    flow: flows/approve.yaml
    inputs: {answer: "{{ answer }}"}
    outputs: {approved: approved, note: note, certainty: certainty}
  retry: {message: {role: user, content: "Try again. {{ note }}"}}
  again: {generate: {max_new_tokens: 6, temperature: 0.8}, output: answer}
  done: {intrinsic: alpha, output: final}
edges:
  - [ask, answer]
  - [answer, approval]
  - from: approval
    branches:
      - {when: "approved", to: done}
      - {default: retry}
  - [retry, again]
  - [again, done]
  - [done, END]
"""

APPROVE_YAML = """\
name: approve
model: tiny
intrinsics: {alpha: ../adapters/alpha}
inputs: [answer]
nodes:
  rate: {intrinsic: alpha, output: certainty}
  ask_person:
    interrupt:
      prompt: "Approve this answer? {{ answer }}"
      fields: {approved: bool, note: str}
edges: [[rate, ask_person], [ask_person, END]]
"""


def write_nested_project(root: Path) -> Path:
    """The tiny model and adapters (tests.test_reliability_support) plus the flows above."""
    write_tiny_project(root)
    (root / "flows").mkdir(exist_ok=True)
    (root / "flow.yaml").write_text(NESTED_YAML)
    (root / "flows" / "review.yaml").write_text(REVIEW_YAML)
    (root / "approval.yaml").write_text(APPROVAL_YAML)
    (root / "flows" / "approve.yaml").write_text(APPROVE_YAML)
    return root


# ---------------------------------------------------------------------- tools
#: Calls of :func:`flaky` per key, and how many of them fail first.
FLAKY: dict[str, int] = {}
FAILURES: dict[str, int] = {}


def flaky(key: str) -> str:
    """Fails with ConnectionError for the first ``FAILURES[key]`` calls, then answers."""
    FLAKY[key] = FLAKY.get(key, 0) + 1
    if FLAKY[key] <= FAILURES.get(key, 0):
        raise ConnectionError(f"service unavailable (call {FLAKY[key]})")
    return f"result for {key}"


def bad_value(key: str) -> str:
    raise ValueError(f"cannot handle {key!r}")


def interrupted(key: str) -> str:
    raise KeyboardInterrupt


#: Set by a test coroutine; :func:`wait_for_loop` returns whether it was set in time.
LOOP_FLAG = threading.Event()


def wait_for_loop(seconds: float = 10.0) -> bool:
    """A slow tool: blocks until another coroutine sets LOOP_FLAG (True), or gives up (False)."""
    return LOOP_FLAG.wait(seconds)


#: Calls of :func:`count_call` (tests prove a stopped stream ran no further step).
CALLS: list[str] = []


def count_call(label: str) -> str:
    CALLS.append(label)
    return label
