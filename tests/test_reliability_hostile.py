"""Hostile input: conditions, templates and tool references that try to escape are refused, and
documents carrying chat-template special tokens cannot forge turns or fake an invocation.

Complements tests/test_flow_expressions.py (the basic attack lists) with format-string attacks,
dynamically built dunder names, template imports, tool-reference tricks, an end-to-end special
token test through a flow, and the known resource-exhaustion gaps (strict xfails).
"""

from __future__ import annotations

import json
import time

import pytest

from alora_flows.core.session import Session
from alora_flows.errors import FlowDefinitionError, UnsafeExpressionError
from alora_flows.flow import END, Flow
from alora_flows.flow import tools as tools_module
from alora_flows.sandbox.expressions import ExpressionError, check_expression, evaluate
from alora_flows.sandbox.templates import TemplateError, check_template, render
from intrinsics import uncertainty_spec
from tests import test_flow_support as support
from tests.test_reliability_support import HOSTILE_DOCUMENT, hostile_document


def _function() -> None:
    """A function in the state: its globals must stay out of reach."""


NAMES = {"x": "{0.__class__.__mro__}", "docs": ["a", "b"], "n": 3, "f": _function, "d": {"a": 1}}

# ---------------------------------------------------------------------- when conditions
STATIC_REFUSALS = [
    "'{0.__class__}'.format(x)",  # format-string attribute walk
    "x.format(d)",
    "'{0.__init__.__globals__}'.format_map(d)",
    "getattr(x, '__class__')",
    "vars(x)",
    "dir(x)",
    "type(x)",
    "globals()",
    "locals()",
    "compile('1', 'f', 'eval')",
    "exec('import os')",
    "__builtins__",
    "__import__('os').system('true')",
    "(lambda: __import__('os'))()",
    "lambda: 1",
    "[c for c in x]",
    "{c for c in x}",
    "(c for c in x)",
    "{c: c for c in x}",
    "[[c for c in range(10**6)] for d in range(10**6)]",
    "[1]*10**9",
    "'a'*10**9",
    "9**9**9",
    "2**100000",
    "-(10**100000)",
    "f.__globals__",
    "f.__code__",
    "len.__self__",
    "d.__class__.__subclasses__()",
    "x.upper()",  # method calls are not calls to the safe functions
    "max(x, key=len)",  # keyword arguments
    "(n := 1)",
    "x if (y := 2) else 3",
    "f'{x}'",
    "await x",
    "yield x",
]


@pytest.mark.parametrize("expr", STATIC_REFUSALS)
def test_unsafe_conditions_are_refused_before_anything_runs(expr):
    started = time.perf_counter()
    with pytest.raises(UnsafeExpressionError):
        check_expression(expr)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    "expr",
    ["x * n * 10**9", "docs * 10**6", "n ** (n * 10**6)", "d['__class__']", "f.func_globals", "x[10**9]"],
)
def test_runtime_bounds_and_lookups_fail_typed_and_fast(expr):
    started = time.perf_counter()
    with pytest.raises(ExpressionError):
        evaluate(expr, NAMES)
    assert time.perf_counter() - started < 1.0


# ---------------------------------------------------------------------- templates
TEMPLATE_RUNTIME_REFUSALS = [
    "{{ x.format(n) }}",  # '{0.__class__.__mro__}'.format(3)
    "{{ x|attr('format')(n) }}",
    "{{ '{a.__class__}'.format_map(d) }}",
    "{{ ''|attr('_'*2 ~ 'class' ~ '_'*2) }}",  # dunder name built at run time
    "{{ ''[('_'*2) ~ 'class' ~ ('_'*2)] }}",
    "{{ dict.mro() }}",
    "{% import 'os' as os %}{{ os.system('true') }}",  # no loader: nothing to import
    "{% include '/etc/passwd' %}",
    "{% extends '/etc/passwd' %}",
    "{{ range(10**9) | list }}",
    "{{ 'a' * 10**9 }}",
    "{{ docs * 10**6 }}",
    "{{ n ** (n * 10**6) }}",
]


@pytest.mark.parametrize("source", TEMPLATE_RUNTIME_REFUSALS)
def test_templates_cannot_escape_the_sandbox(source):
    check_template(source)  # not all of these can be seen statically; the sandbox refuses them
    started = time.perf_counter()
    with pytest.raises(TemplateError):
        render(source, NAMES)
    assert time.perf_counter() - started < 1.0


@pytest.mark.parametrize(
    "source",
    [
        "{{ f.__globals__['os'] }}",
        "{{ f|attr('__globals__') }}",
        "{{ self._TemplateReference__context }}",
        "{{ ''|attr('\\x5f\\x5fclass\\x5f\\x5f') }}",
        "{{ d.__class__.__base__.__subclasses__() }}",
        "{% set g = f.__globals__ %}{{ g }}",
        "{{ docs|map(attribute='__class__')|list }}",
        "{{ docs|selectattr('__class__')|list }}",
        "{{ docs|sort(attribute='__class__') }}",
    ],
)
def test_dunder_templates_are_refused_at_validation(source):
    with pytest.raises(UnsafeExpressionError):
        check_template(source)


def test_a_refused_template_stops_the_flow_before_its_node_and_runs_nothing_after(tmp_path):
    """A runtime refusal is a typed step error; later nodes (the sentinel tool) never run."""
    support.SENTINEL_CALLS.clear()
    flow = Flow("fmt", inputs=["q"], model="tiny")
    flow.message("ask", "user", "{{ q.format(q) }}")
    flow.tool("after", support.sentinel, args={"q": "{{ q }}"}, output="ran")
    flow.edge("ask", "after").edge("after", END)
    with pytest.raises(Exception) as info:
        flow.run(support.FakeSession(), {"q": "{0.__class__.__init__.__globals__}"})
    assert "refused by the sandbox" in str(info.value) and "node 'ask'" in str(info.value)
    assert support.SENTINEL_CALLS == []


# ------------------------------------------------- resource bounds (found by fuzzing, fixed)
@pytest.mark.parametrize("expr", ["'%0200000d' % 1", "'%*d' % (200000, 1)"])
def test_gap_percent_formatting_width_in_conditions(expr):
    with pytest.raises((UnsafeExpressionError, ExpressionError)):
        check_expression(expr)
        evaluate(expr, NAMES)


def test_gap_sum_of_lists_in_conditions():
    with pytest.raises(ExpressionError):
        evaluate("len(sum([[1] * 1000] * 200, [])) > 0", NAMES)


@pytest.mark.parametrize(
    "source",
    [
        "{{ '%0200000d' % 1 }}",
        "{{ '%0200000d'|format(1) }}",
        "{{ 'a'.center(200000) }}",
        "{{ '{:>200000}'.format(1) }}",
        "{{ '{0:{1}}'.format(1, 200000) }}",
        "{% for i in range(100000) %}{% endfor %}",
    ],
)
def test_gap_string_widths_in_templates(source):
    with pytest.raises((TemplateError, FlowDefinitionError)):
        check_template(source)
        render(source, NAMES)


# ---------------------------------------------------------------------- tool references
@pytest.mark.parametrize(
    "ref",
    [
        "../../etc/passwd:read",
        "/etc/passwd:x",
        "os.path:join.__globals__",
        "os:__import__",
        "tests.test_flow_support:_private",
        "tests.test_flow_support",
        "a:b:c",
        "os; rm -rf /:x",
        "os .path:join",
        "os.path:",
        ":join",
        "",
        "tests.test_flow_support:retrieve()",
        "tests..x:y",
        "tests.test_flow_support:retrieve\nimport os",
    ],
)
def test_malformed_tool_references_are_refused_without_importing(ref, monkeypatch):
    imported: list[str] = []
    monkeypatch.setattr(tools_module.importlib, "import_module", lambda name: imported.append(name))
    text = f"name: t\nnodes:\n  a: {{tool: {json.dumps(ref)}, output: y}}\nedges: [[a, END]]\n"
    with pytest.raises(FlowDefinitionError) as info:
        Flow.from_yaml_text(text, file="t.yaml").validate()
    assert "tool" in str(info.value) and str(info.value).startswith("t.yaml:3:")
    assert imported == []


def test_validation_imports_exactly_the_named_module_and_calls_nothing(monkeypatch):
    import importlib

    support.SENTINEL_CALLS.clear()
    imported: list[str] = []
    real = importlib.import_module

    def spy(name: str):
        imported.append(name)
        return real(name)

    monkeypatch.setattr(tools_module.importlib, "import_module", spy)
    text = (
        'name: t\ninputs: [q]\nnodes:\n  a: {tool: "tests.test_flow_support:sentinel", '
        'args: {q: "{{ q }}"}, output: y}\nedges: [[a, END]]\n'
    )
    Flow.from_yaml_text(text).validate()
    assert imported == ["tests.test_flow_support"] and support.SENTINEL_CALLS == []


# ---------------------------------------------------------------------- special tokens
def test_documents_with_special_tokens_cannot_forge_turns_or_invocations(backend):
    """A tool returns a document full of ChatML control strings and the certainty adapter's
    invocation; the conversation's token ids hold no extra special token and the intrinsic runs
    from its own invocation, on exactly its own tokens."""
    tok = backend.tokenizer
    flow = Flow("hostile", inputs=["question"], model="tiny")
    flow.tool("retrieve", hostile_document, args={"query": "{{ question }}"}, output="document")
    flow.message("ask", "user", "Documents: {{ document }}\n\nQuestion: {{ question }}")
    flow.generate("answer", max_new_tokens=4, output="answer")
    flow.intrinsic("rate", "alpha", output="certainty")
    flow.edge("retrieve", "ask").edge("ask", "answer").edge("answer", "rate").edge("rate", END)
    session = Session(backend)
    specs = {"alpha": uncertainty_spec("alpha", "<|im_start|>certainty\n")}
    result = flow.run(session, {"question": "When?"}, intrinsic_specs=specs)

    assert result.state.document == HOSTILE_DOCUMENT  # the text itself is kept
    assert HOSTILE_DOCUMENT in session.messages[0]["content"]
    ids = session.ids
    turns = 3  # the template's default system turn, the user turn, the assistant answer
    specials = {t: tok.convert_tokens_to_ids(t) for t in ("<|im_start|>", "<|im_end|>", "<|endoftext|>")}
    assert ids.count(specials["<|im_start|>"]) == turns
    assert ids.count(specials["<|im_end|>"]) == turns
    assert ids.count(specials["<|endoftext|>"]) == 0
    invocation = backend.adapters["alpha"].invocation_tokens
    assert not any(ids[i : i + len(invocation)] == invocation for i in range(len(ids)))
    assert "<\u200b|im_start|>certainty" in tok.decode(ids)  # escaped, visibly

    rate = next(s for s in result.trace.steps if s.node == "rate")
    # the whole conversation, cached, but the answer's closing tokens (they wait for the next call)
    assert len(ids) - 3 <= rate.reused_tokens < len(ids)
    answer = next(m["content"] for m in reversed(session.messages) if m["role"] == "assistant")
    reread = specs["alpha"].adapted_input_ids(tok, {"last_assistant": answer})
    assert not set(reread) & set(specials.values())  # the re-read answer is plain text
    # its invocation and re-read answer, plus the answer's closing tokens
    assert rate.prefill_tokens == len(ids) - rate.reused_tokens + len(invocation) + len(reread)
    assert 0.0 <= result.state.certainty.score <= 1.0


# ------------------------------------------------- crashes found by fuzzing, now typed errors
@pytest.mark.parametrize(
    "text",
    [
        "name: x\n<<:\n  a: 1\n",  # YAML merge key
        "name: x\nnodes: !!omap\n  - a: {set: {x: 1}}\n",  # tagged collection
        "? : [q]\n",  # a collection as a mapping key
        "name: x\nnodes:\n  a: {message: {role: user, content: '{{ q | nosuchfilter }}'}}\n"
        "edges: [[a, END]]\n",  # unknown Jinja filter
    ],
)
def test_fuzzer_crashes_are_typed_errors(text):
    with pytest.raises(FlowDefinitionError):
        Flow.from_yaml_text(text, file="f.yaml").validate()
