"""Every code block in README.md and docs/*.md runs or is checked (issue 21): Python is executed
(on the tiny model where the block allows it; blocks that load the real model are `slow`), flow
YAML validates with no problem, other YAML has the right shape, JSON parses into the model it
shows, and every `alora-flows ...` command (in blocks and in inline code) names a real command
and real options; `python -m X` / `python path.py` name modules and files that exist."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import click
import pytest
import typer
from ruamel.yaml import YAML

from alora_flows.cli import app
from alora_flows.flow import Flow
from alora_flows.flow.spec import FlowSpec
from alora_flows.flow.trace import Trace

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```([\w-]*)[^\n]*\n(.*?)^```", re.S | re.M)
NEEDS_MODEL = ("Backend.load(", "load_intrinsic(")
#: Blocks run by a dedicated test with stronger assertions (doc, first line of the block).
COVERED_ELSEWHERE = {
    ("docs/flows.md", "import tempfile"): "tests/test_flow_docs.py::test_python_example_runs",
    # needs IBM's Granite model and adapter library on disk; the same calls (library folder ->
    # spec -> adapter, a session with documents, each intrinsic run and rolled back) on a tiny
    # Granite-shaped model and a library built in the test:
    ("docs/intrinsics.md", "from alora_flows.core.backend import Backend"): (
        "tests/test_granite_session.py::test_each_intrinsic_runs_constrained_and_rolls_back"
    ),
}


@dataclass(frozen=True)
class Block:
    doc: str
    index: int
    lang: str
    text: str

    @property
    def id(self) -> str:
        return f"{self.doc}[{self.index}:{self.lang or 'text'}]"


def all_blocks() -> list[Block]:
    found = []
    for path in DOCS:
        doc = str(path.relative_to(ROOT))
        for i, m in enumerate(FENCE.finditer(path.read_text(encoding="utf-8"))):
            found.append(Block(doc, i, m.group(1), m.group(2)))
    return found


BLOCKS = all_blocks()


def of(lang: str) -> list[Block]:
    return [b for b in BLOCKS if b.lang == lang]


def ids(blocks: list[Block]) -> list[str]:
    return [b.id for b in blocks]


def test_every_block_has_a_known_language():
    assert {b.lang for b in BLOCKS} <= {"python", "yaml", "json", "jsonl", "bash", "text", ""}
    assert len(of("python")) >= 8 and len(of("yaml")) >= 6


# ---------------------------------------------------------------------- python
def covered(block: Block) -> bool:
    return (block.doc, block.text.splitlines()[0]) in COVERED_ELSEWHERE


def compiles(block: Block) -> bool:
    try:
        compile(block.text, block.id, "exec")
    except SyntaxError:
        return False
    return True


MODEL_BLOCKS = [
    b for b in of("python") if compiles(b) and any(s in b.text for s in NEEDS_MODEL) and not covered(b)
]
FAST_DOCS = sorted({b.doc for b in of("python") if b not in MODEL_BLOCKS and not covered(b)})


def test_every_python_block_outside_the_sketches_compiles():
    assert [b.id for b in of("python") if not compiles(b)] == []


@pytest.fixture()
def docs_env(tmp_path, monkeypatch):
    """What the fast blocks assume without defining it: a tiny model with a random `uncertainty`
    adapter, a small flow on it, a conversation; run in an empty directory, the intrinsic
    registry restored afterwards."""
    import intrinsics
    from alora_flows.core.session import Session
    from alora_flows.flow import END
    from alora_flows.testing import tiny_backend

    monkeypatch.chdir(tmp_path)
    backend = tiny_backend(tmp_path / "adapters", {"uncertainty": "<|im_start|>certainty\n"})
    flow = Flow("docs", inputs=["question"], max_steps=5)
    flow.generate("answer", user="{{ question }}", max_new_tokens=4, output="answer")
    flow.intrinsic("certainty", "uncertainty", output="certainty")
    flow.edge("answer", "certainty").edge("certainty", END)
    before = set(intrinsics.list_specs())
    yield {
        "intrinsics": intrinsics,
        "Session": Session,
        "backend": backend,
        "flow": flow,
        "inputs": {"question": "When was Velmora founded?"},
        "specs": {"uncertainty": intrinsics.get_spec("uncertainty")},
        "conversation": [
            {"role": "user", "content": "Tell me about Velmora."},
            {"role": "assistant", "content": "Velmora is a river town."},
        ],
    }
    for name in set(intrinsics.list_specs()) - before:
        intrinsics.known.unregister_spec(name)


def imported_modules(block: Block) -> list[str]:
    tree = ast.parse(block.text)
    names = [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    names += [n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module]
    return names


def importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:  # a parent package is missing
        return False


@pytest.mark.parametrize("doc", FAST_DOCS)
def test_python_blocks_run_in_order(doc, docs_env, capsys):
    """The fast blocks of a document run one after another in one namespace, as a reader
    pasting them would (later blocks use what earlier ones defined)."""
    namespace = {"__name__": "docs_example", **docs_env}
    blocks = [b for b in of("python") if b.doc == doc and b not in MODEL_BLOCKS and not covered(b)]
    for block in blocks:
        missing = [m for m in imported_modules(block) if not importable(m)]
        if missing:  # a package the doc tells the reader to install first (an OTLP exporter)
            assert "pip install" in (ROOT / block.doc).read_text(encoding="utf-8"), (block.id, missing)
            continue
        exec(compile(block.text, block.id, "exec"), namespace)


def test_blocks_covered_elsewhere_exist():
    for (doc, first_line), test in COVERED_ELSEWHERE.items():
        assert any(b.doc == doc and b.text.startswith(first_line) for b in of("python")), doc
        path, name = test.split("::")
        assert f"def {name}(" in (ROOT / path).read_text()


@pytest.mark.slow
@pytest.mark.parametrize("block", MODEL_BLOCKS, ids=ids(MODEL_BLOCKS))
def test_python_blocks_on_the_embedded_model_run(block, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    exec(compile(block.text, block.id, "exec"), {"__name__": "docs_example"})
    assert capsys.readouterr().out.strip()  # every example prints its result


# ---------------------------------------------------------------------- yaml
def load_yaml(text: str):
    return YAML(typ="safe", pure=True).load(text)


FLOWS = [b for b in of("yaml") if re.search(r"^name:", b.text, re.M) and re.search(r"^nodes:", b.text, re.M)]
INTRINSIC_FILES = [b for b in of("yaml") if re.search(r"^invocation:", b.text, re.M)]
FRAGMENTS = [b for b in of("yaml") if b not in FLOWS + INTRINSIC_FILES]


@pytest.fixture(scope="module")
def granite_library(tmp_path_factory):
    """IBM's layout of a Granite adapter library (random tiny adapters), for the examples that
    point at one under /models (the docs' stand-in for the user's own copy)."""
    from tests.granite_support import build_library, granite_backend

    return build_library(tmp_path_factory.mktemp("granitelib"), granite_backend())


@pytest.mark.parametrize("block", FLOWS, ids=ids(FLOWS))
def test_flow_yaml_validates_without_a_problem(block, request):
    text = block.text
    if "/models/granitelib-" in text:
        library = request.getfixturevalue("granite_library")
        text = text.replace("/models/granitelib-rag/", f"{library}/").replace(
            "/models/granitelib-core/", f"{library}/"
        )
    flow = Flow.from_yaml_text(text, file=block.id)
    assert [str(p) for p in flow.problems()] == []


@pytest.mark.parametrize("block", FRAGMENTS, ids=ids(FRAGMENTS))
def test_flow_fragments_have_the_flow_file_shape(block):
    data = load_yaml(block.text)
    assert set(data) <= set(FlowSpec.model_fields)
    FlowSpec.model_validate({"name": "fragment", **data})


@pytest.mark.parametrize("block", INTRINSIC_FILES, ids=ids(INTRINSIC_FILES))
def test_intrinsic_yaml_reads_as_a_spec(block, tmp_path):
    from intrinsics.specfile import read_spec_file

    path = tmp_path / "intrinsic.yaml"
    path.write_text(block.text)
    spec = read_spec_file(path)
    assert spec.name == load_yaml(block.text)["name"]


# ---------------------------------------------------------------------- json
@pytest.mark.parametrize("block", of("jsonl"), ids=ids(of("jsonl")))
def test_jsonl_blocks_are_batch_inputs(block):
    from alora_flows.batch.records import BatchInput

    lines = [line for line in block.text.splitlines() if line.strip()]
    assert lines and all(BatchInput.model_validate_json(line).id for line in lines)


@pytest.mark.parametrize("block", of("json"), ids=ids(of("json")))
def test_json_blocks_parse_into_what_they_show(block):
    from intrinsics.training.data_format import Example

    data = json.loads(block.text)
    if "steps" in data:
        trace = Trace.model_validate(data)
        assert trace.steps and all(s.node for s in trace.steps)
    else:
        assert Example.model_validate(data).messages


# ---------------------------------------------------------------------- commands
def cli() -> click.Group:
    return typer.main.get_command(app)  # type: ignore[return-value]


def command_lines() -> list[tuple[str, str]]:
    """(where, command line) for every command in bash and plain blocks and in inline code."""
    found = []
    for block in of("bash") + of(""):
        joined = re.sub(r"\n\s+(?=\[|--)", " ", block.text)  # synopsis continuation lines
        for line in joined.splitlines():
            for part in re.split(r"&&|\|", line.split("#", 1)[0] if "alora-flows" in line else line):
                if part.strip():
                    found.append((block.id, part.strip()))
    for path in DOCS:
        for span in re.findall(
            r"`([^`\n]*\b(?:alora-flows|python) [^`\n]*)`", path.read_text(encoding="utf-8")
        ):
            found += [(path.name, part.strip()) for part in re.split(r"&&|\|", span) if part.strip()]
    return found


COMMANDS = [c for c in command_lines() if c[1].split()[0] in ("alora-flows", "python")]


def check_alora_flows(words: list[str]) -> None:
    group = cli()
    rest = words[1:]
    if rest and rest[0] in ("--version", "--help"):
        return
    assert rest and rest[0] in group.commands, f"no command {rest[:1]}"
    command = group.commands[rest[0]]
    while hasattr(command, "commands") and len(rest) > 1:  # a command group: `intrinsics check`
        assert rest[1] in command.commands, f"no command {rest[:2]}"
        command, rest = command.commands[rest[1]], rest[1:]
    known = {opt for p in command.params for opt in [*p.opts, *getattr(p, "secondary_opts", [])]} | {"--help"}
    for word in rest[1:]:
        word = word.strip("[]")
        if word.startswith("-") and word not in ("-", "..."):
            option = word.split("=", 1)[0]
            assert option in known, f"{rest[0]} has no option {option}"


@pytest.mark.parametrize("where, line", COMMANDS, ids=[f"{w}: {c[:60]}" for w, c in COMMANDS])
def test_documented_commands_exist(where, line):
    words = shlex.split(line.replace("...", ""), posix=True)
    if words[0] == "alora-flows":
        check_alora_flows(words)
    elif words[:2] == ["python", "-m"]:
        assert importlib.util.find_spec(words[2]) is not None, words[2]
    elif words[0] == "python" and words[1].endswith(".py"):
        assert (ROOT / words[1]).is_file(), words[1]


def test_the_command_checker_can_fail():
    with pytest.raises(AssertionError, match="has no option --colour"):
        check_alora_flows(["alora-flows", "demo", "--colour"])
    with pytest.raises(AssertionError, match="no command"):
        check_alora_flows(["alora-flows", "serve-everything"])
    assert len([c for c in COMMANDS if c[1].startswith("alora-flows")]) >= 20
