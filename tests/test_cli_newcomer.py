"""What a newcomer meets on the command line (issue 21): help on every option, no '<bool>' beside
plain flags, --version, one --device/--threads/--verbose on every model command, every validation
problem printed, warnings for valid-but-odd flows, tools next to the flow file, repeated --alora
refused, the demo's chat input, and the summary panel's wording."""

from __future__ import annotations

import io
import json
import re
import sys
from pathlib import Path

import click
import pytest
import typer
from rich.console import Console
from typer.testing import CliRunner

from alora_flows.cli import app
from alora_flows.cli.demo import read_question
from alora_flows.demo import faithfulness, reuse_line
from alora_flows.flow.trace import TraceStep
from alora_flows.testing import save_random_alora, tiny_model, tiny_tokenizer

ROOT = Path(__file__).resolve().parents[1]
runner = CliRunner()
MODEL_COMMANDS = ("run", "resume", "demo", "train", "eval-intrinsics")

TINY_FLOW = """\
name: tiny-rag
model: model
intrinsics:
  uncertainty: unc
inputs: [question]
nodes:
  retrieve: {tool: "newcomer_tools:retrieve", args: {query: "{{ question }}"}, output: documents}
  answer:
    generate:
      user: "{{ documents | join(' ') }} {{ question }}"
      max_new_tokens: 8
    output: answer
  certainty: {intrinsic: uncertainty, output: certainty}
  abstain: {set: {answer: "I don't know."}}
edges:
  - [retrieve, answer]
  - [answer, certainty]
  - from: certainty
    branches:
      - {when: "certainty.score < 0.5", to: abstain}
      - {default: END}
  - [abstain, END]
"""


@pytest.fixture(scope="module")
def flow_dir(tmp_path_factory) -> Path:
    """A flow directory as a user would write it: the flow, a tiny model, an adapter and the
    tool module side by side (the directory is not on sys.path)."""
    root = tmp_path_factory.mktemp("newcomer")
    tokenizer = tiny_tokenizer()
    model = tiny_model(tokenizer)
    model.save_pretrained(root / "model")
    tokenizer.save_pretrained(root / "model")
    save_random_alora(
        model, tokenizer, "<|im_start|>certainty\n", root / "unc", base_model_name=str(root / "model")
    )
    (root / "newcomer_tools.py").write_text(
        "def retrieve(query: str) -> list[str]:\n    return ['Velmora was founded in 1832.']\n"
    )
    (root / "flow.yaml").write_text(TINY_FLOW)
    return root


def commands() -> dict[str, click.Command]:
    return typer.main.get_command(app).commands  # type: ignore[attr-defined]


# ---------------------------------------------------------------------- help and options
def test_every_option_and_argument_of_every_command_has_help():
    missing = [
        f"{name} {param.name}"
        for name, command in commands().items()
        for param in command.params
        if not (getattr(param, "help", None) or "").strip()
    ]
    assert missing == []


@pytest.mark.parametrize("args", [["--help"], *([name, "--help"] for name in ("demo", "run", "train"))])
def test_plain_flags_show_no_type(args):
    result = runner.invoke(app, args, env={"COLUMNS": "100"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output
    assert "--help" in result.output


def test_version_is_the_package_version():
    (version,) = re.findall(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), flags=re.M)
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and result.stdout == f"alora-flows {version}\n"


def test_every_model_command_has_the_same_device_threads_and_verbose_options():
    by_command = {
        name: {p.name: p for p in commands()[name].params if p.name in ("device", "threads", "verbose")}
        for name in MODEL_COMMANDS
    }
    first = by_command["run"]
    assert set(first) == {"device", "threads", "verbose"}
    for name, params in by_command.items():
        assert set(params) == set(first), name
        for key, param in params.items():
            assert (param.opts, param.help, param.default) == (
                first[key].opts,
                first[key].help,
                None if key != "verbose" else False,
            ), (name, key)


def test_threads_must_be_positive(flow_dir):
    result = runner.invoke(app, ["run", str(flow_dir / "flow.yaml"), "-i", "question=q", "--threads", "0"])
    assert result.exit_code == 2 and "--threads" in result.output


def test_a_bad_thread_variable_is_a_one_line_usage_error(flow_dir, monkeypatch):
    from alora_flows import app as application

    monkeypatch.setattr(application, "_threads", None)  # a choice made by an earlier test sticks
    result = runner.invoke(
        app, ["run", str(flow_dir / "flow.yaml"), "-i", "question=q"], env={"ALORA_FLOWS_THREADS": "many"}
    )
    assert result.exit_code == 2
    assert (
        result.stderr.strip()
        == "error: ALORA_FLOWS_THREADS must be a whole number of threads >= 1, got 'many'"
    )


# ---------------------------------------------------------------------- validate
def test_validate_warns_about_generate_nodes_without_output(tmp_path):
    path = tmp_path / "flow.yaml"
    path.write_text("name: x\nnodes:\n  answer:\n    generate: {user: hi}\nedges:\n  - [answer, END]\n")
    result = runner.invoke(app, ["validate", str(path)])
    assert result.exit_code == 0, result.output
    assert "ok: flow 'x' is valid" in result.stdout
    (warning,) = result.stderr.splitlines()
    assert warning.startswith(f"warning: {path}:3: node 'answer': generate has no 'output:'")


def test_validate_has_no_warning_when_outputs_are_named(flow_dir):
    result = runner.invoke(app, ["validate", str(flow_dir / "flow.yaml")])
    assert result.exit_code == 0 and result.stderr == ""


# ---------------------------------------------------------------------- run on a tiny model
def test_run_imports_a_tool_module_next_to_the_flow_file(flow_dir):
    assert str(flow_dir) not in sys.path
    result = runner.invoke(
        app, ["run", str(flow_dir / "flow.yaml"), "-i", "question=When?", "--threads", "1"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["documents"] == ["Velmora was founded in 1832."]
    assert str(flow_dir) not in sys.path  # imported from there, not left on the path


def test_run_logs_one_plain_line_per_step_and_the_thread_choice(flow_dir):
    result = runner.invoke(
        app, ["run", str(flow_dir / "flow.yaml"), "-i", "question=When?", "--threads", "1"]
    )
    assert result.exit_code == 0, result.output
    lines = result.stderr.splitlines()
    assert lines[0] == f"run tiny-rag · {flow_dir / 'model'} · reuse"
    assert lines[1] == "cpu: 1 torch thread (from --threads)"
    assert lines[2].startswith("step 0 retrieve (tool): prefill 0, reused 0, generated 0, ")
    assert re.match(
        r"step 2 certainty \(intrinsic uncertainty\): prefill \d+, reused \d+, .* \| score=", lines[4]
    )
    assert "Loading weights" not in result.stderr  # transformers' bar only with --verbose


def test_verbose_shows_the_loading_bar(flow_dir):
    result = runner.invoke(
        app, ["run", str(flow_dir / "flow.yaml"), "-i", "question=When?", "--threads", "1", "--verbose"]
    )
    assert result.exit_code == 0, result.output
    assert "Loading weights" in result.stderr


# ---------------------------------------------------------------------- eval-intrinsics
def test_a_repeated_alora_name_is_refused_before_loading(tmp_path, monkeypatch):
    from alora_flows.core.backend import Backend

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(Backend, "load", classmethod(refuse))
    data = tmp_path / "eval.jsonl"
    data.write_text("")
    result = runner.invoke(
        app,
        ["eval-intrinsics", "--data", str(data), "--alora", "rewrite=builtin", "--alora", "rewrite=./mine"],
    )
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --alora rewrite is given twice (builtin and ./mine); give each name once"
    )


# ---------------------------------------------------------------------- demo input and panel
def test_chat_reads_piped_lines_and_ends_at_an_empty_line_or_eof(monkeypatch):
    console = Console(file=io.StringIO())
    monkeypatch.setattr(sys, "stdin", io.StringIO("First question?\n  Second one  \n\nnever read\n"))
    assert read_question(console, "prompt: ") == "First question?"
    assert read_question(console, "prompt: ") == "Second one"
    assert read_question(console, "prompt: ") is None  # empty line
    monkeypatch.setattr(sys, "stdin", io.StringIO("last\n"))
    assert read_question(console, "") == "last"
    assert read_question(console, "") is None  # end of input
    assert console.file.getvalue() == ""  # no prompt printed into a pipe


def test_chat_ends_cleanly_on_ctrl_d_at_the_prompt(monkeypatch):
    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    console = Console(file=io.StringIO())
    monkeypatch.setattr(sys, "stdin", Terminal(""))

    def eof(*args, **kwargs):
        raise EOFError

    monkeypatch.setattr(console, "input", eof)
    assert read_question(console, "follow-up: ") is None


@pytest.mark.parametrize(
    "labels, unfaithful, text",
    [
        (["faithful"], False, "faithful (1 sentence)"),
        (["faithful", "faithful"], False, "faithful (2 sentences)"),
        (["faithful", "unfaithful"], True, "unfaithful (2 sentences: 1 faithful, 1 unfaithful)"),
        (["partial"], False, "faithful (1 sentence: 1 partial)"),
        ([], False, "faithful (no sentences)"),
    ],
)
def test_faithfulness_wording(labels, unfaithful, text):
    assert faithfulness(labels, unfaithful) == text


def test_reuse_line_for_a_first_call_and_a_later_one():
    first = TraceStep(node="rewrite", kind="intrinsic", prefill_tokens=39, context_tokens=0)
    later = TraceStep(
        node="certainty", kind="intrinsic", prefill_tokens=26, reused_tokens=102, context_tokens=102
    )
    assert reuse_line(first) == "first call, no conversation to reuse yet; ran 39 new"
    assert reuse_line(later) == "reused 102 of 102 conversation tokens (100%), ran 26 new"


@pytest.mark.slow
def test_demo_chat_asks_the_piped_first_line_and_ends_at_eof(tmp_path):
    trace = tmp_path / "trace.json"
    question = "What is the chief export of Skoharna?"
    result = runner.invoke(app, ["demo", "--chat", "--trace-json", str(trace)], input=f"{question}\n")
    assert result.exit_code == 0, result.output
    assert "internal error" not in result.output
    assert json.loads(trace.read_text())["final_state"]["question"] == question
    assert result.stdout.count("alora-flows demo") == 1  # one question, no default one first


# ---------------------------------------------------------------------- sample training file
def test_the_sample_training_file_is_valid_training_data():
    import intrinsics
    from intrinsics.spec import RawOutput
    from intrinsics.training.data_format import read_jsonl

    path = ROOT / "examples" / "train_sample.jsonl"
    rewrites = read_jsonl(path, intrinsic="rewrite")
    certainties = read_jsonl(path, intrinsic="uncertainty")
    assert len(rewrites) == 6 and len(certainties) == 4
    spec = intrinsics.get_spec("rewrite")
    for example in rewrites:
        assert example.messages[-1].role == "user"  # the rewrite's input turn: the question
        parsed = spec.parse(RawOutput(text=example.output, token_ids=[]))
        assert not parsed.fallback and parsed.rewritten_question.endswith("?")
    for example in certainties:
        assert example.messages[-1].role == "assistant" and example.output in set("0123456789")
        assert isinstance(example.meta["correct"], bool)


@pytest.mark.slow
def test_train_runs_on_the_sample_file(tmp_path):
    out = tmp_path / "rewrite-try"
    args = ["train", "--intrinsic", "rewrite", "--data", str(ROOT / "examples" / "train_sample.jsonl")]
    result = runner.invoke(app, [*args, "--out", str(out), "--max-steps", "1", "--batch-size", "2"])
    assert result.exit_code == 0, result.output
    assert (out / "adapter_config.json").is_file() and (out / "intrinsic.yaml").is_file()


def test_eval_results_become_short_lines_when_the_table_is_too_wide():
    from alora_flows.cli.train import eval_lines, print_table_or_lines
    from intrinsics.training.evaluate import EvalRow, rows_table

    rows = [
        EvalRow(
            intrinsic="uncertainty",
            system=system,
            n=200,
            seconds=3.14,
            metrics={"auroc": auroc, "ece": 0.063},
            ci={
                "auroc": (auroc - 0.05, auroc + 0.05),
                **({"auroc - alora": (-0.02, 0.059)} if system == "lora" else {}),
            },
        )
        for system, auroc in (("alora", 0.842), ("lora", 0.860))
    ]
    narrow = Console(file=io.StringIO(), width=80)
    print_table_or_lines(narrow, rows_table(rows), eval_lines(rows))
    text = narrow.file.getvalue()
    assert max(len(line) for line in text.splitlines()) <= 80
    assert "uncertainty · lora: n=200, malformed 0, 3.1 s" in text
    assert "    auroc 0.860 [0.810, 0.910]" in text and "    auroc - alora [-0.020, 0.059]" in text
    wide = Console(file=io.StringIO(), width=250)
    print_table_or_lines(wide, rows_table(rows), eval_lines(rows))
    assert "Intrinsic evaluation" in wide.file.getvalue()  # the table when it fits


def test_chat_with_nothing_piped_is_a_usage_error_before_loading(monkeypatch):
    from alora_flows.core.backend import Backend

    def refuse(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr(Backend, "load", classmethod(refuse))
    result = runner.invoke(app, ["demo", "--chat"], input="")
    assert result.exit_code == 2
    assert result.stderr.strip() == (
        "error: --chat read no question from stdin (pipe one per line, or give --question)"
    )
