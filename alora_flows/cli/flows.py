"""``validate``, ``draw``, ``run`` and ``resume``: the flow commands."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Optional

import typer
from rich.text import Text

from alora_flows.cli.common import (
    DebugOption,
    DeviceOption,
    FlowArgument,
    ThreadsOption,
    VerboseOption,
    cli_errors,
    err_console,
    json_inputs,
    model_setup,
    one_line,
    parse_inputs,
)

if TYPE_CHECKING:
    from alora_flows.flow import Flow
    from alora_flows.flow.validation import CompiledFlow


def flow_warnings(flow: Flow) -> list[str]:
    """Valid but probably not meant: a ``generate`` node without ``output:`` leaves its answer in
    the conversation only, so no condition, template or final state can see it."""
    found = []
    for name, node in flow.nodes.items():
        if node.kind == "generate" and not getattr(node, "output", None):
            file, line = flow.source.locate(("nodes", name))
            where = f"{file}:{line}: " if file and line else f"{file}: " if file else ""
            found.append(
                f"{where}node '{name}': generate has no 'output:', so its answer is only in the "
                "conversation (add 'output: answer' to use it in conditions, templates and the final state)"
            )
    return found


def checked(flow: Flow, debug: bool = False) -> CompiledFlow:
    """Every validation problem as one red line each (exit 2), then any warnings (yellow).
    With ``debug`` the first problem is raised after the list, for its traceback."""
    console = err_console()
    problems = flow.problems()
    for problem in problems:
        console.print(
            Text("error: ", style="bold red") + Text(one_line(str(problem)), style="red"), soft_wrap=True
        )
    if problems:
        if debug:
            raise problems[0]
        raise typer.Exit(problems[0].exit_code)
    for warning in flow_warnings(flow):
        console.print(Text("warning: ", style="bold yellow") + Text(warning, style="yellow"), soft_wrap=True)
    return flow.validate()


def validate(flow_file: FlowArgument, debug: DebugOption = False) -> None:
    """Check a flow file without loading any model; print every problem it has."""
    from alora_flows.flow import Flow

    with cli_errors(debug):
        flow = Flow.from_yaml(flow_file)
        compiled = checked(flow, debug)
        inputs = ", ".join(compiled.spec.inputs) or "none"
        typer.echo(
            f"ok: flow '{flow.name}' is valid ({len(flow.nodes)} nodes, "
            f"{len(flow.edges)} edges; inputs: {inputs})"
        )


def draw(flow_file: FlowArgument, debug: DebugOption = False) -> None:
    """Print the flow as a mermaid flowchart."""
    from alora_flows.flow import Flow

    with cli_errors(debug):
        flow = Flow.from_yaml(flow_file)
        checked(flow, debug)
        typer.echo(flow.to_mermaid(), nl=False)


def _print_values(values: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(values, indent=2, ensure_ascii=False) + "\n")


def run(
    flow_file: FlowArgument,
    input: Annotated[  # noqa: A002 - the option is called --input
        Optional[list[str]],
        typer.Option(
            "--input",
            "-i",
            metavar="KEY=VALUE",
            help="A flow input; repeat for several. VALUE may be @file.txt.",
        ),
    ] = None,
    trace_json: Annotated[
        Optional[Path], typer.Option("--trace-json", help="Write the run's trace as JSON to this file.")
    ] = None,
    no_reuse: Annotated[
        bool,
        typer.Option("--no-reuse", help="Re-prefill the whole conversation for every call (for comparison)."),
    ] = False,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed for sampled generation.")] = None,
    run_dir: Annotated[
        Optional[Path],
        typer.Option(
            "--run-dir",
            help="Save the run to this new directory after every step (flow, inputs, "
            "state, trace, conversation); `alora-flows resume DIR` continues it after a crash.",
        ),
    ] = None,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    verbose: VerboseOption = False,
    debug: DebugOption = False,
) -> None:
    """Run a flow: live view on stderr, final state as JSON on stdout."""
    from alora_flows.app import run_flow, run_in_dir
    from alora_flows.flow import Flow
    from alora_flows.flow.live import LiveView
    from alora_flows.flow.trace import jsonable
    from alora_flows.runs.rundir import interrupt_hint, waiting_message

    with cli_errors(debug), interrupt_hint(run_dir):
        flow = Flow.from_yaml(flow_file)
        inputs = json_inputs(flow, parse_inputs(input or []))
        checked(flow, debug).new_state(inputs)  # bad flows and inputs fail before the model loads
        note = model_setup(threads=threads, device=device, verbose=verbose)
        live = LiveView(err_console(), note=note)
        if run_dir is not None:
            result = run_in_dir(
                run_dir,
                flow_file,
                inputs,
                reuse=not no_reuse,
                seed=seed,
                trace_json=trace_json,
                live=live,
                device=device,
            )
        else:
            result = run_flow(
                flow,
                inputs,
                base_dir=flow_file.parent,
                reuse=not no_reuse,
                seed=seed,
                trace_json=trace_json,
                live=live,
                device=device,
            )
        if result.interrupt is not None:  # paused for a person's input: say for what, and how to go on
            err_console().print(waiting_message(result.interrupt, run_dir), soft_wrap=True)
        _print_values({k: jsonable(v) for k, v in result.values.items()})


def resume(
    run_dir: Annotated[
        Path, typer.Argument(metavar="RUN_DIR", help="A directory written by `run --run-dir`.")
    ],
    trace_json: Annotated[
        Optional[Path], typer.Option("--trace-json", help="Write the whole run's trace as JSON to this file.")
    ] = None,
    device: DeviceOption = None,
    threads: ThreadsOption = None,
    verbose: VerboseOption = False,
    set_: Annotated[
        Optional[list[str]],
        typer.Option(
            "--set",
            metavar="KEY=VALUE",
            help="A value a run paused at an interrupt waits for; repeat for several.",
        ),
    ] = None,
    debug: DebugOption = False,
) -> None:
    """Continue a run saved with --run-dir from its last finished step."""
    from alora_flows.app import resume_in_dir
    from alora_flows.errors import FlowInputError
    from alora_flows.flow.live import LiveView
    from alora_flows.flow.spec import START
    from alora_flows.flow.trace import jsonable
    from alora_flows.runs.rundir import check_resume_values, interrupt_hint, load_run, waiting_message

    with cli_errors(debug), interrupt_hint(run_dir):
        try:
            values = parse_inputs(set_ or [])
        except FlowInputError as exc:
            raise exc.with_detail(exc.detail.replace("--input", "--set")) from None
        saved = load_run(run_dir)
        check_resume_values(saved, values)  # a waiting run needs them, another refuses them
        console = err_console()
        if saved.finished and saved.checkpoint is not None:  # nothing to run, no model to load
            # one line whatever the path's length (rich would wrap it at 80 columns)
            console.print(f"run {run_dir} has already finished; its final state:", soft_wrap=True)
            saved.finish()
            if trace_json is not None:
                saved.checkpoint.trace.write(trace_json)
            _print_values(saved.checkpoint.state)
            return
        done = saved.checkpoint.steps_done if saved.checkpoint else 0
        node = saved.checkpoint.next_node if saved.checkpoint else START
        console.print(f"resuming {run_dir} after {done} finished step(s), at '{node}'", soft_wrap=True)
        note = model_setup(threads=threads, device=device, verbose=verbose)
        result = resume_in_dir(
            run_dir,
            trace_json=trace_json,
            live=LiveView(console, note=note),
            device=device,
            values=values or None,
        )
        if result.interrupt is not None:
            console.print(waiting_message(result.interrupt, run_dir), soft_wrap=True)
        _print_values({k: jsonable(v) for k, v in result.values.items()})
