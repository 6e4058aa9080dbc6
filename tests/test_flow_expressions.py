"""Safe `when` expressions and sandboxed templates: what they allow and what they refuse."""

import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from alora_flows.errors import UnsafeExpressionError
from alora_flows.sandbox.expressions import ExpressionError, check_expression, evaluate
from alora_flows.sandbox.templates import TemplateError, check_template, join_filter, render

WHEN_ATTACKS = [
    "().__class__.__bases__[0].__subclasses__()",
    "__import__('os')",
    "__import__('os').system('touch /tmp/pwned')",
    "x.__class__",
    "x.__dict__",
    "x._private",
    "x.format_map",
    "x.gi_frame",
    "getattr(x, 'y')",
    "open('/etc/passwd')",
    "eval('1')",
    "x.model_dump()",
    "(lambda: 1)()",
    "[c for c in ().__class__.__mro__]",
    "9**9**9",
    "'a'*10**9",
    "[0]*10**9",
    "10**10**10 > 1",
    "(y := 1)",
    "_x",
]


@pytest.mark.parametrize("expr", WHEN_ATTACKS)
def test_unsafe_when_is_refused_statically_and_fast(expr):
    started = time.perf_counter()
    with pytest.raises(UnsafeExpressionError):
        check_expression(expr)
    assert time.perf_counter() - started < 1.0


def test_names_read_and_attributes():
    info = check_expression("certainty.score < 0.4 and len(documents) > max(1, k)")
    assert info.names == {"certainty", "documents", "k"}
    assert ("certainty", "score") in info.attributes


class Certainty(BaseModel):
    score: float


def test_evaluate_reads_pydantic_attributes_and_dict_keys():
    names = {"certainty": Certainty(score=0.3), "meta": {"n": 2}, "docs": ["a", "b"]}
    assert evaluate("certainty.score < 0.4 and meta.n == len(docs)", names) is True
    assert evaluate("'b' in docs and not docs[0] == 'b'", names) is True


def test_runtime_limits_and_internal_attributes():
    def gen():
        yield 1

    with pytest.raises(ExpressionError):
        evaluate("g.gi_code", {"g": gen()})  # not an underscore name, but a Python internal
    with pytest.raises(ExpressionError):
        evaluate("n ** n", {"n": 10**6})
    with pytest.raises(ExpressionError):
        evaluate("s * n", {"s": "ab", "n": 10**9})
    with pytest.raises(ExpressionError, match="has no value yet"):
        evaluate("missing > 1", {})


@settings(max_examples=60, deadline=None)
@given(
    a=st.integers(-1000, 1000),
    b=st.integers(-1000, 1000),
    op=st.sampled_from(["+", "-", "*", "<", "<=", "==", "!=", ">", ">=", "and", "or"]),
)
def test_arithmetic_and_comparisons_match_python(a, b, op):
    expr = f"a {op} b"
    assert evaluate(expr, {"a": a, "b": b}) == eval(expr, {}, {"a": a, "b": b})


TEMPLATE_ATTACKS = [
    "{{ ''.__class__.__mro__ }}",
    "{{ cycler.__init__.__globals__ }}",
    "{{ x.__class__ }}",
    "{{ x['__class__'] }}",
    "{{ x | attr('__class__') }}",
    "{{ docs | map(attribute='__class__') | list }}",
    "{% for c in x.__class__.__subclasses__() %}{{ c }}{% endfor %}",
    "{{ _secret }}",
]


@pytest.mark.parametrize("source", TEMPLATE_ATTACKS)
def test_unsafe_templates_are_refused_before_rendering(source):
    with pytest.raises(UnsafeExpressionError):
        check_template(source)
    with pytest.raises(UnsafeExpressionError):
        render(source, {"x": "a", "docs": ["a"], "_secret": 1})


def test_escape_helpers_are_not_available():
    for name in ("cycler", "joiner", "lipsum"):
        with pytest.raises(TemplateError, match="undefined"):
            render("{{ %s }}" % name, {})


def test_template_arithmetic_is_bounded():
    with pytest.raises(TemplateError):
        render("{{ 'a' * 10**9 }}", {})
    with pytest.raises(TemplateError):
        render("{{ n ** n }}", {"n": 10**6})


class Rewrite(BaseModel):
    rewritten_question: str

    def __str__(self) -> str:
        return self.rewritten_question


def test_templates_render_state_objects_and_join():
    out = render(
        "Q: {{ query }} | {{ documents | join('\n') }} | {{ c.score }}",
        {"query": Rewrite(rewritten_question="Who?"), "documents": ["a", "b"], "c": Certainty(score=0.5)},
    )
    assert out == "Q: Who? | a\nb | 0.5"
    assert join_filter("one document", "\n") == "one document"
    assert check_template("{{ a }}{% for d in docs %}{{ d }}{% endfor %}").names == {"a", "docs"}


def test_strict_undefined():
    with pytest.raises(TemplateError, match="undefined"):
        render("{{ nope }}", {})
