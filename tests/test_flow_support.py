"""Fakes and importable tools for the flow-engine unit tests (no test functions here).

The fake session follows the Session contract (extend/generate/history/reuse) with word counts as
"tokens", so engine tests run in milliseconds; the real Session is exercised in test_flow_e2e.
"""

from __future__ import annotations

from typing import Any, Sequence

from pydantic import BaseModel

from alora_flows.core.session import CallStats, GenerateResult

#: Calls of :func:`sentinel` (tests prove that refused flows never ran a node).
SENTINEL_CALLS: list[Any] = []


def sentinel(**kwargs: Any) -> str:
    SENTINEL_CALLS.append(kwargs)
    return "ran"


def retrieve(query: str, k: int = 2) -> list[str]:
    return [f"doc {i} about {query}" for i in range(k)]


def count_words(text: str) -> int:
    return len(str(text).split())


def explode(**kwargs: Any) -> None:
    raise ValueError("tool exploded")


def wrong_type(**kwargs: Any) -> int:
    return "not an int"  # type: ignore[return-value]


class FakeSession:
    """Session-shaped: messages, history of CallStats, reuse flag, streaming generate."""

    def __init__(self, reuse: bool = True, answers: list[str] | None = None) -> None:
        self.reuse = reuse
        self.messages: list[dict[str, str]] = []
        self.history: list[CallStats] = []
        self.answers = list(answers or ["a fine answer"])
        self.seeds: list[int | None] = []
        self.pending = 0  # tokens of deferred turns (extend(prefill=False)): the next call runs them

    def tokens(self) -> int:
        return sum(len(m["content"].split()) + 2 for m in self.messages)

    @property
    def ids(self) -> list[int]:
        return [0] * self.tokens()

    def extend(self, messages: list[dict[str, str]], *, prefill: bool = True) -> CallStats:
        before = self.tokens()
        self.messages += [dict(m) for m in messages]
        ran = self.reuse and prefill  # deferred turns run nothing here, as in Session
        if self.reuse and not prefill:
            self.pending += self.tokens() - before
        stats = CallStats(
            kind="extend",
            reused_tokens=before if ran else 0,
            prefill_tokens=self.tokens() - before if ran else 0,
        )
        self.history.append(stats)
        return stats

    def generate(
        self,
        max_new_tokens: int = 256,
        *,
        messages: Sequence[dict[str, str]] = (),
        temperature: float = 0.0,
        seed: int | None = None,
        on_token: Any = None,
    ) -> GenerateResult:
        self.seeds.append(seed)
        before = self.tokens()
        self.messages += [dict(m) for m in messages]
        text = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        for word in text.split():
            if on_token is not None:
                on_token(word + " ")
        n = self.tokens()
        pending, self.pending = self.pending, 0
        stats = CallStats(
            kind="generate",
            reused_tokens=before - pending if self.reuse else 0,
            prefill_tokens=n - before + 1 + pending if self.reuse else n + 1,
            generated_tokens=len(text.split()),
        )
        self.history.append(stats)
        self.messages.append({"role": "assistant", "content": text})
        return GenerateResult(text=text, token_ids=[], stats=stats)


class Score(BaseModel):
    score: float
    digit: int = 0


class Rewrite(BaseModel):
    rewritten_question: str

    def __str__(self) -> str:
        return self.rewritten_question


class FakeSpec:
    """IntrinsicSpec-shaped: ``output_model`` and ``run`` recording what it was given."""

    def __init__(self, name: str, outputs: list[BaseModel]) -> None:
        self.name = name
        self.output_model = type(outputs[0])
        self.outputs = list(outputs)
        self.calls: list[dict[str, Any]] = []

    def run(
        self, session: FakeSession, adapter_name: str, state: Any = None, input_override: Any = None
    ) -> tuple[BaseModel, CallStats]:
        self.calls.append({"adapter": adapter_name, "state": dict(state or {}), "input": input_override})
        n = session.tokens()
        pending, session.pending = session.pending, 0  # the call runs deferred turns and keeps them
        stats = CallStats(
            kind="invoke",
            adapter=adapter_name,
            reused_tokens=n - pending if session.reuse else 0,
            prefill_tokens=3 + pending if session.reuse else n + 3,
            generated_tokens=1,
        )
        session.history.append(stats)
        out = self.outputs.pop(0) if len(self.outputs) > 1 else self.outputs[0]
        return out, stats


def specs(*scores: float, rewrite: str = "standalone question") -> dict[str, FakeSpec]:
    return {
        "uncertainty": FakeSpec("uncertainty", [Score(score=s) for s in scores or (0.9,)]),
        "rewrite": FakeSpec("rewrite", [Rewrite(rewritten_question=rewrite)]),
    }


RAG_YAML = """\
name: rag-with-checks
intrinsics:
  uncertainty: builtin
  rewrite: builtin
inputs: [question]
max_steps: 20
start: rewrite
nodes:
  rewrite:   {intrinsic: rewrite, output: query}
  retrieve:  {tool: "tests.test_flow_support:retrieve", args: {query: "{{ query }}"}, output: documents}
  answer:
    generate:
      system: "Answer only from the documents."
      user: "{{ documents | join('\\n') }}\\n\\nQuestion: {{ question }}"
      max_new_tokens: 128
    output: answer
  certainty: {intrinsic: uncertainty, output: certainty}
  abstain:   {set: {answer: "I don't know."}}
edges:
  - [rewrite, retrieve]
  - [retrieve, answer]
  - [answer, certainty]
  - from: certainty
    branches:
      - when: "certainty.score < 0.4"
        to: abstain
      - default: END
  - [abstain, END]
"""
