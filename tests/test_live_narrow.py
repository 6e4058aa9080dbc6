"""The live trace reads well at 80 columns (a real flow on the tiny model, through a terminal of
that width) and in logs (one plain line per step, flushed as it goes)."""

from __future__ import annotations

import io
import re

import pytest
from rich.console import Console

from alora_flows.app import prefill_seconds_per_token
from alora_flows.core.session import Session
from alora_flows.errors import FlowRuntimeError
from alora_flows.flow import END, Flow
from alora_flows.flow.live import WIDE, LiveView
from alora_flows.flow.trace import StepFinished

TOKENS = re.compile(r"\x1b\[([0-9;?]*)([A-Za-z])|\x1b\][^\x07]*\x07|\r|\n|[^\x1b\r\n]+")


def retrieve(query: str) -> list[str]:
    return ["Velmora was founded in 1832 by Tarsk Olden, a river trader from the Orsk hills."]


def rag_flow() -> Flow:
    flow = Flow("rag-with-checks-and-a-long-name", inputs=["question"], max_steps=10)
    flow.tool("retrieve_documents", retrieve, args={"query": "{{ question }}"}, output="documents")
    flow.generate(
        "answer",
        system="Answer only from the documents.",
        user="{{ documents | join('\n') }}\n\nQuestion: {{ question }}",
        max_new_tokens=24,
        output="answer",
    )
    flow.intrinsic("certainty", "uncertainty", output="certainty")
    flow.set("abstain", answer="I don't know: the documents do not say, so this answer is withheld.")
    flow.edge("retrieve_documents", "answer").edge("answer", "certainty")
    flow.branch("certainty", [("certainty.score < 0.99 and len(documents) > 0", "abstain")], default=END)
    flow.edge("abstain", END)
    return flow


@pytest.fixture()
def uncertainty_backend(tmp_path):
    from alora_flows.testing import tiny_backend

    return tiny_backend(tmp_path, {"uncertainty": "<|im_start|>certainty\n"})


class Terminal:
    """Just enough of a terminal to replay rich's live redraws: text, CR/LF, cursor up/down/column,
    erase line. ``overflow`` collects any text that ran past the right edge (a real terminal would
    have wrapped it onto the next line)."""

    def __init__(self, text: str, width: int) -> None:
        self.width, self.rows, self.row, self.col = width, [""], 0, 0
        self.overflow: list[str] = []
        for match in TOKENS.finditer(text):
            token, args, command = match.group(0), match.group(1), match.group(2)
            n = int(args) if args and args.isdigit() else 1
            if command == "A":
                self.row = max(0, self.row - n)
            elif command == "B":
                self.goto(self.row + n)
            elif command == "G":
                self.col = n - 1
            elif command == "K":
                line = self.rows[self.row]
                self.rows[self.row] = "" if args == "2" else line[: self.col]
            elif command is not None or token.startswith("\x1b"):
                continue  # colours, cursor visibility, titles
            elif token == "\r":
                self.col = 0
            elif token == "\n":
                self.goto(self.row + 1)
                self.col = 0
            else:
                self.write(token)

    def goto(self, row: int) -> None:
        self.row = row
        while len(self.rows) <= row:
            self.rows.append("")

    def write(self, text: str) -> None:
        line = self.rows[self.row].ljust(self.col)
        if self.col + len(text) > self.width:
            self.overflow.append(line[: self.col] + text)
        self.rows[self.row] = line[: self.col] + text + line[self.col + len(text) :]
        self.col += len(text)


def terminal_lines(console: Console) -> list[str]:
    """The screen after the run, checking that no frame of the live display overflowed it."""
    terminal = Terminal(console.file.getvalue(), console.width)
    assert terminal.overflow == []
    return terminal.rows


def test_the_demo_shape_of_trace_fits_80_columns_and_keeps_the_certainty_on_one_line(uncertainty_backend):
    console = Console(width=80, force_terminal=True, color_system="truecolor", file=io.StringIO())
    flow = rag_flow()
    note = "cpu: 1 torch thread: 2 usable CPUs, 1.0 busy with other work (--threads N to change)"
    with LiveView(
        console, note=note, prefill_cost=lambda: prefill_seconds_per_token(uncertainty_backend)
    ) as view:
        result = flow.run(
            Session(uncertainty_backend), {"question": "When was Velmora founded?"}, listeners=[view]
        )
    lines = terminal_lines(console)
    too_long = [line for line in lines if len(line) > 80]
    assert too_long == []
    score = result.state.certainty.score
    digit = result.state.certainty.digit
    # the intrinsic's output, whole, on its own line under its step
    assert any(line.strip() == f"score={score:.3g} digit={digit}" for line in lines), lines
    head = next(line for line in lines if re.match(r"\s*2 certainty\s+uncertainty\s", line))
    assert head.rstrip().endswith(f"→ {result.trace.steps[2].next}")
    assert any("if certainty.score < 0.99 and len(documents) > 0" in line for line in lines)
    assert any(line.startswith("cpu: 1 torch thread") for line in lines)
    assert any("estimated" in line for line in lines)  # the summary's time estimate


def test_a_wide_terminal_keeps_the_table(uncertainty_backend):
    console = Console(width=WIDE + 20, force_terminal=True, color_system=None, file=io.StringIO())
    with LiveView(console) as view:
        rag_flow().run(Session(uncertainty_backend), {"question": "When?"}, listeners=[view])
    lines = terminal_lines(console)
    header = next(line for line in lines if "prefill" in line and "output" in line)
    assert re.search(r"#\s+node\s+kind\s+prefill\s+reused\s+gen\s+time\s+output\s+next", header)


class CountingFile(io.StringIO):
    flushes = 0

    def flush(self) -> None:
        self.flushes += 1
        super().flush()


def test_logs_get_one_line_per_step_flushed_as_it_finishes(uncertainty_backend):
    log = CountingFile()
    console = Console(file=log, width=80)  # not a terminal: a log file, a pipe, CI
    seen: list[tuple[str, int]] = []

    def after_view(event):
        if isinstance(event, StepFinished):  # runs after the view printed this step
            seen.append((log.getvalue().splitlines()[-1], log.flushes))

    flow = rag_flow()
    with LiveView(console) as view:
        result = flow.run(Session(uncertainty_backend), {"question": "When?"}, listeners=[view, after_view])
    assert [line.split(" (")[0] for line, _ in seen] == [
        f"step {s.index} {s.node}" for s in result.trace.steps
    ]
    flushes = [n for _, n in seen]
    assert flushes == sorted(set(flushes)) and flushes[0] >= 1  # flushed at each step, not at the end
    text = log.getvalue()
    assert "\x1b" not in text  # no control sequences in a log
    line = next(line for line, _ in seen if line.startswith("step 2 certainty"))
    assert "(intrinsic uncertainty)" in line and "| score=" in line
    assert len([ln for ln in text.splitlines() if ln.startswith("step ")]) == len(result.trace.steps)


def test_a_failed_run_leaves_its_finished_steps_and_the_error_in_the_log(uncertainty_backend):
    console = Console(file=io.StringIO(), width=80)
    flow = rag_flow()
    flow.spec.max_steps = 2
    with pytest.raises(FlowRuntimeError), LiveView(console) as view:
        flow.run(Session(uncertainty_backend), {"question": "When?"}, listeners=[view])
    lines = console.file.getvalue().splitlines()
    assert [ln.split(" (")[0] for ln in lines if ln.startswith("step ")] == [
        "step 0 retrieve_documents",
        "step 1 answer",
    ]
    assert any(ln.startswith("failed at ") and "max_steps" in ln for ln in lines), lines


def test_the_log_line_in_the_docs_is_what_the_view_prints():
    from pathlib import Path

    from alora_flows.flow.live import plain_step
    from alora_flows.flow.trace import TraceStep

    doc = (Path(__file__).resolve().parents[1] / "docs" / "flows.md").read_text()
    (documented,) = re.findall(r"`(step 4 certainty [^`]+)`", doc)
    step = TraceStep(
        node="certainty",
        kind="intrinsic",
        adapter="uncertainty",
        prefill_tokens=28,
        reused_tokens=100,
        generated_tokens=1,
        seconds=0.21,
        output={"score": 0.547, "digit": 9},
        next="widen",
        branch="certainty.score < 0.55 and attempt == 1",
        index=4,
    )
    assert plain_step(step) == documented


def test_parallel_branches_show_side_by_side_at_80_columns(tmp_path):
    """The demo's checks run as branches of one parallel step: each branch gets its own line
    under the step (names aligned, outputs cut at the edge), in the live view and the wide table."""
    from alora_flows.testing import tiny_backend
    from intrinsics import text_spec, uncertainty_spec

    backend = tiny_backend(
        tmp_path, {"uncertainty": "<|im_start|>certainty\n", "rewrite": "<|im_start|>rewrite\n"}
    )
    specs = {
        "uncertainty": uncertainty_spec(),
        "rewrite": text_spec("rewrite", "<|im_start|>rewrite\n", max_new_tokens=4),
    }
    flow = Flow.from_yaml_text(
        """\
name: checks-side-by-side
intrinsics: {uncertainty: builtin, rewrite: builtin}
inputs: [question]
nodes:
  answer: {generate: {user: "{{ question }}", max_new_tokens: 6}, output: answer}
  checks:
    parallel:
      certainty: {intrinsic: uncertainty, output: certainty}
      check:     {intrinsic: rewrite, output: rewritten}
edges:
  - [answer, checks]
  - from: checks
    branches:
      - {when: "certainty.score < 2", to: END}
      - default: END
"""
    )
    console = Console(width=80, force_terminal=True, color_system="truecolor", file=io.StringIO())
    with LiveView(console) as view:
        result = flow.run(
            Session(backend),
            {"question": "When was Velmora founded?"},
            listeners=[view],
            intrinsic_specs=specs,
        )
    lines = terminal_lines(console)
    assert [line for line in lines if len(line) > 80] == []
    score, digit = result.state.certainty.score, result.state.certainty.digit
    head = next(i for i, line in enumerate(lines) if re.match(r"\s*1 checks\s+parallel\s", line))
    assert lines[head].rstrip().endswith("→ END")
    assert lines[head + 1] == f"   ├ certainty  score={score:.3g} digit={digit}"
    assert lines[head + 2].startswith("   └ check      text=")
    assert lines[head + 3].strip() == "if certainty.score < 2"
    wide = Console(width=WIDE + 20, force_terminal=True, color_system=None, file=io.StringIO())
    with LiveView(wide) as view:
        flow.run(Session(backend), {"question": "When?"}, listeners=[view], intrinsic_specs=specs)
    rows = terminal_lines(wide)
    row = next(i for i, line in enumerate(rows) if re.match(r"\s*1\s+checks\s+parallel\s", line))
    assert re.match(r"\s+├ certainty\s+score=", rows[row + 1]) and re.match(
        r"\s+└ check\s+text=", rows[row + 2]
    )
