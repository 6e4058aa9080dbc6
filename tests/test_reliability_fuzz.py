"""Property-based: mutated flow files, conditions and templates give a typed error or success.

Thousands of mutants of valid flow files (lines deleted, duplicated, swapped, re-indented or
replaced; words swapped for keys, node names and hostile values; random characters inserted or
cut) go through ``Flow.from_yaml_text(...).validate()`` -- what ``alora-flows validate`` and
``run`` do before any model loads. The only acceptable outcomes are a valid flow or a
:class:`FlowDefinitionError` (a subclass included) whose one-line message names the file. Mutated
``when`` expressions and templates are checked, then evaluated/rendered when they pass: the only
acceptable outcomes are values or the engine's typed errors.

Left out of the mutation alphabets on purpose: ``%`` string formatting and ``sum`` of lists, whose
unbounded cases are known gaps tested in test_reliability_hostile.py (random widths could make
this test allocate gigabytes rather than report them).
"""

from __future__ import annotations

import time
import traceback

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from alora_flows.errors import FlowDefinitionError
from alora_flows.flow import Flow
from alora_flows.sandbox.expressions import ExpressionError, check_expression, evaluate
from alora_flows.sandbox.templates import TemplateError, check_template, render
from tests.test_flow_support import RAG_YAML, Rewrite, Score

pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning")  # ast.parse on mutants ("1e3x")


def _origin(exc: BaseException) -> str:
    frames = traceback.extract_tb(exc.__traceback__)
    return frames[-1].filename.replace("\\", "/").rsplit("/", 2)[-1] if frames else ""


#: Crashes the fuzzer found and that are not fixed yet: the fuzz tests tolerate exactly these.
#: Empty: the four it found (YAML merge keys, tagged collections, unhashable keys, unknown
#: filters) are fixed and come out as typed errors (tests/test_reliability_hostile.py).
KNOWN_GAPS: dict[str, tuple[str, str, object]] = {}


def known_gap(kind: str, exc: BaseException) -> bool:
    """Whether ``exc`` is a known gap; a flow file can hit the template gaps too."""
    return any(kind in (k, "file") and match(exc) for k, _, match in KNOWN_GAPS.values())


LOOP_YAML = """\
name: loop
inputs: {question: str, k: int}
max_steps: 30
nodes:
  init: {set: {n: 0, notes: []}}
  ask: {message: {role: user, content: "{{ question }} (try {{ n }})"}}
  answer: {generate: {max_new_tokens: 8, temperature: 0.0}, output: answer}
  count: {set: {n: "{{ n + 1 }}"}}
  words: {tool: "tests.test_flow_support:count_words", args: {text: "{{ answer }}"}, output: size}
edges:
  - [init, ask]
  - [ask, answer]
  - [answer, count]
  - [count, words]
  - from: words
    branches:
      - {when: "n < k and size >= 0 and not (answer in ['x', 'y'])", to: ask}
      - {when: "len(answer) > 100 or abs(size - 3) > max(1, k)", to: END}
      - {default: END}
"""

TOOLS_YAML = """\
name: tools
model: embedded
intrinsics: {uncertainty: builtin}
inputs: [q]
start: first
nodes:
  first: {tool: "tests.test_flow_support:retrieve", args: {query: "{{ q }}", k: "2"}, output: docs}
  say:
    message:
      role: assistant
      content: |
        {% for d in docs %}{{ loop.index }}. {{ d }}
        {% endfor %}
  rate: {intrinsic: uncertainty, output: certainty}
  low: {set: {verdict: "low {{ certainty.score }}"}}
  high: {set: {verdict: "high"}}
edges:
  - [first, say]
  - [say, rate]
  - from: rate
    branches:
      - when: "certainty.score < 0.4 or certainty.digit in [0, 1]"
        to: low
      - default: high
  - [low, END]
  - [high, END]
"""

SEEDS = [RAG_YAML, LOOP_YAML, TOOLS_YAML]
for _seed in SEEDS:  # the seeds themselves must be valid
    Flow.from_yaml_text(_seed, file="seed.yaml").validate()

WORDS = sorted(
    set(
        [
            # keys and names that occur in the seeds (mutating one into another keeps files plausible)
            "name",
            "model",
            "intrinsics",
            "inputs",
            "max_steps",
            "start",
            "nodes",
            "edges",
            "from",
            "branches",
            "when",
            "to",
            "default",
            "generate",
            "intrinsic",
            "tool",
            "set",
            "message",
            "role",
            "content",
            "system",
            "user",
            "assistant",
            "output",
            "args",
            "input",
            "max_new_tokens",
            "temperature",
            "builtin",
            "embedded",
            "rewrite",
            "retrieve",
            "answer",
            "certainty",
            "abstain",
            "question",
            "query",
            "documents",
            "uncertainty",
            "init",
            "ask",
            "count",
            "words",
            "first",
            "say",
            "rate",
            "low",
            "high",
            "docs",
            "verdict",
            "n",
            "k",
            # values that break things
            "START",
            "END",
            "null",
            "~",
            "[]",
            "{}",
            "-1",
            "0",
            "1e309",
            ".nan",
            "yes",
            "no",
            "true",
            "&anchor",
            "*anchor",
            "<<",
            "!!python/object/apply:os.system",
            "!!binary",
            "? ",
            "|",
            ">",
            "- ",
            ": ",
            '"',
            "'",
            "\\",
            "\t",
            "#",
            "@",
            "`",
            "tests.test_flow_support:explode",
            "os:system",
            "builtins:eval",
            "../../etc:passwd",
            "tests.test_flow_support:_private",
            "int",
            "list",
            "dict",
            "any",
            "float",
            "str",
            # template and expression fragments, hostile ones included
            "{{",
            "}}",
            "{%",
            "%}",
            "{#",
            "#}",
            "{{ question }}",
            "{{ n + 1 }}",
            "__class__",
            "__globals__",
            ".__mro__",
            "|attr('__class__')",
            "lambda x: x",
            "__import__('os')",
            "9**9**9",
            "'a'*10**9",
            "[0]*10**9",
            "getattr",
            "(",
            ")",
            "[",
            "]",
            ".",
            ",",
            "==",
            " and ",
            " or ",
            " not ",
            " if ",
            " else ",
            " in ",
            "len(",
            "max(",
            "True",
            "None",
        ]
    )
)

line_ops = st.sampled_from(["delete", "duplicate", "swap", "indent", "dedent", "replace"])
mutation = st.one_of(
    st.tuples(line_ops, st.integers(0, 10_000), st.integers(0, 10_000), st.sampled_from(WORDS)),
    st.tuples(st.just("word"), st.integers(0, 10_000), st.integers(0, 10_000), st.sampled_from(WORDS)),
    st.tuples(
        st.just("insert"),
        st.integers(0, 10_000),
        st.integers(0, 10_000),
        st.text(alphabet=st.characters(codec="utf-8", exclude_characters="%"), max_size=6),
    ),
    st.tuples(st.just("cut"), st.integers(0, 10_000), st.integers(1, 40), st.just("")),
)


def mutate(text: str, ops: list[tuple[str, int, int, str]]) -> str:
    """Apply line/word/character mutations; positions wrap around the current text."""
    for op, a, b, word in ops:
        lines = text.split("\n")
        i, j = a % len(lines), b % len(lines)
        if op == "delete":
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op == "swap":
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "indent":
            lines[i] = "  " + lines[i]
        elif op == "dedent":
            lines[i] = lines[i][2:] if lines[i].startswith("  ") else lines[i].lstrip()
        elif op == "replace":
            head = lines[i][: len(lines[i]) - len(lines[i].lstrip())]
            lines[i] = head + word
        elif op == "word":
            tokens = lines[i].replace(":", " : ").split(" ")
            if tokens:
                tokens[b % len(tokens)] = word
            lines[i] = " ".join(tokens).replace(" : ", ":")
        text = "\n".join(lines) if lines else ""
        if op == "insert":
            pos = a % (len(text) + 1)
            text = text[:pos] + word + text[pos:]
        elif op == "cut":
            pos = a % (len(text) + 1)
            text = text[:pos] + text[pos + b :]
    return text


OUTCOMES: dict[str, int] = {}


def check_file(text: str, *, tolerate_known: bool = False) -> None:
    try:
        flow = Flow.from_yaml_text(text, file="fuzz.yaml")
        flow.validate()
        flow.to_mermaid()
        OUTCOMES["valid"] = OUTCOMES.get("valid", 0) + 1
    except Exception as exc:
        if not isinstance(exc, FlowDefinitionError):
            if tolerate_known and known_gap("file", exc):
                return
            raise
        message = str(exc)
        assert exc.file == "fuzz.yaml" and message.startswith("fuzz.yaml"), message
        assert message.strip(), "an error must say something"
        kind = "with line" if exc.line is not None else "no line"
        OUTCOMES[kind] = OUTCOMES.get(kind, 0) + 1


@settings(
    max_examples=1500,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(seed=st.sampled_from(SEEDS), ops=st.lists(mutation, min_size=1, max_size=4))
def test_mutated_flow_files_give_a_typed_error_or_a_valid_flow(seed, ops):
    check_file(mutate(seed, ops), tolerate_known=True)


def test_the_fuzzer_reaches_both_outcomes():
    """Guard against a mutator that only ever produces YAML syntax errors (or nothing)."""
    OUTCOMES.clear()
    for i, seed in enumerate(SEEDS):
        for n in range(60):
            check_file(mutate(seed, [("word", n * 7 + i, n, WORDS[n % len(WORDS)])]), tolerate_known=True)
    assert OUTCOMES.get("valid", 0) > 5 and OUTCOMES.get("with line", 0) > 20, OUTCOMES


# ---------------------------------------------------------------------- expressions
EXPRESSIONS = [
    "certainty.score < 0.4",
    "len(documents) > max(1, k) and not done",
    "answer if 'x' in documents else query.rewritten_question",
    "n + 1 >= 3 or answer == 'x'",
    "documents[0] != '' and abs(n - k) <= 2 ** 3",
    "min(n, k) * 2 // 3 in [0, 1, 2]",
    "any([done, n > 1]) and all([True, certainty.digit >= 0])",
]
FRAGMENTS = [
    "__class__",
    "._x",
    ".__mro__",
    "(",
    ")",
    "[",
    "]",
    "**",
    "*",
    "9",
    "10",
    "'a'",
    ",",
    ".",
    "lambda x: ",
    " for c in ",
    " if ",
    " import ",
    ":=",
    "{",
    "}",
    ".format(",
    "getattr(",
    "[1]",
    "__import__",
    "'{0.__class__}'",
    ".gi_frame",
    "documents",
    "certainty",
    "score",
    "len",
    "open(",
    "eval(",
    " and ",
    " or ",
    " not ",
    "==",
    "<",
    "-",
    "/",
    "//",
    "0",
    "1e308",
    "True",
    "None",
    "'",
    '"',
    "\\",
]
NAMES = {
    "certainty": Score(score=0.3, digit=2),
    "documents": ["a", "b"],
    "k": 2,
    "n": 3,
    "done": False,
    "answer": "x",
    "query": Rewrite(rewritten_question="why?"),
}

text_mutation = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.sampled_from(FRAGMENTS)),
    st.tuples(
        st.just("insert"),
        st.integers(0, 10_000),
        st.text(alphabet=st.characters(codec="utf-8", exclude_characters="%"), max_size=3),
    ),
    st.tuples(st.just("cut"), st.integers(0, 10_000), st.integers(1, 8).map(str)),
)


def mutate_text(text: str, ops: list[tuple[str, int, str]]) -> str:
    for op, a, arg in ops:
        pos = a % (len(text) + 1)
        if op == "insert":
            text = text[:pos] + arg + text[pos:]
        else:
            text = text[:pos] + text[pos + int(arg) :]
    return text


@settings(max_examples=1200, deadline=None, database=None)
@given(seed=st.sampled_from(EXPRESSIONS), ops=st.lists(text_mutation, min_size=1, max_size=5))
def test_mutated_conditions_are_refused_or_evaluate_to_a_value_or_a_typed_error(seed, ops):
    expr = mutate_text(seed, ops)
    started = time.perf_counter()
    try:
        check_expression(expr)
    except FlowDefinitionError:
        return
    try:
        evaluate(expr, NAMES)
    except ExpressionError:
        pass
    assert time.perf_counter() - started < 5.0, expr


TEMPLATES = [
    "{{ documents | join('\\n') }}\n\nQuestion: {{ question }}",
    "{% for d in documents %}{{ loop.index }}. {{ d }}\n{% endfor %}",
    "Score {{ certainty.score }} (digit {{ certainty.digit }}) for {{ query }}",
    "{{ n + 1 }} {{ answer if done else 'no' }} {{ documents[0] | upper }}",
    "{% if n > k %}{{ answer }}{% else %}{{ range(3) | list }}{% endif %}",
]
TEMPLATE_FRAGMENTS = [
    "{{",
    "}}",
    "{%",
    "%}",
    "__class__",
    "._",
    "|attr('__globals__')",
    "|attr('format')",
    "(",
    ")",
    "[",
    "]",
    "'",
    "~",
    "*",
    "**",
    "9",
    "10",
    ".mro()",
    "self",
    "cycler",
    "lipsum",
    "namespace(",
    "dict(",
    "range(",
    "{% for x in documents %}",
    "{% endfor %}",
    "|map(attribute='_x')",
    "|selectattr('__len__')",
    "config",
    "request",
    "loop.",
    "|join",
    "__init__.__globals__",
    ".format(",
    "'{0.__class__}'",
]

template_mutation = st.one_of(
    st.tuples(st.just("insert"), st.integers(0, 10_000), st.sampled_from(TEMPLATE_FRAGMENTS)),
    st.tuples(
        st.just("insert"),
        st.integers(0, 10_000),
        st.text(alphabet=st.characters(codec="utf-8", exclude_characters="%"), max_size=3),
    ),
    st.tuples(st.just("cut"), st.integers(0, 10_000), st.integers(1, 8).map(str)),
)


@settings(max_examples=800, deadline=None, database=None)
@given(seed=st.sampled_from(TEMPLATES), ops=st.lists(template_mutation, min_size=1, max_size=4))
def test_mutated_templates_are_refused_or_render_or_fail_typed(seed, ops):
    source = mutate_text(seed, ops)
    try:
        check_template(source)
    except FlowDefinitionError:
        return
    except Exception as exc:
        if known_gap("template", exc):
            return
        raise
    try:
        out = render(source, {**NAMES, "question": "why?"})
    except TemplateError:
        return
    except Exception as exc:
        if known_gap("template", exc):
            return
        raise
    assert isinstance(out, str)
    assert "<module" not in out, (source, out)  # a module object reached = an escape


@settings(
    max_examples=80,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(seed=st.sampled_from(SEEDS), ops=st.lists(mutation, min_size=1, max_size=3))
def test_cli_validate_on_mutants_exits_0_or_2_with_one_line(tmp_path, seed, ops):
    """What a user sees: `alora-flows validate` says ok, or exit code 2 with one line per problem."""
    from typer.testing import CliRunner

    from alora_flows.cli import app

    path = tmp_path / "mutant.yaml"
    path.write_text(mutate(seed, ops), encoding="utf-8")
    result = CliRunner().invoke(app, ["validate", str(path)])
    if result.exit_code == 1 and "internal error" in result.stderr:
        # a known gap (see KNOWN_GAPS) surfaces as an internal error: allowed until fixed
        try:
            check_file(path.read_text(encoding="utf-8"), tolerate_known=True)
        except Exception:
            raise AssertionError(result.stderr) from None
        return
    assert result.exit_code in (0, 2), result.output
    if result.exit_code == 2:
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines and all(line.startswith(f"error: {path}") for line in lines), result.stderr
        assert "Traceback" not in result.output
