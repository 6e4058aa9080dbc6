"""The ``alora-flows`` command line.

Every command wraps its body in :func:`cli_errors`, which turns any
:class:`~alora_flows.errors.AloraFlowsError` into one red line on stderr and the error's exit code
(2 for a bad flow definition or bad inputs), and shows tracebacks only with ``--debug``. Adding a
command is a few lines::

    @app.command()
    def demo(question: str = "...", debug: DebugOption = False) -> None:
        \"\"\"Run the RAG example on the embedded model.\"\"\"
        with cli_errors(debug):
            ...

Heavy imports (torch, transformers) happen inside the commands that load a model, so
``validate`` and ``draw`` stay fast.
"""

from __future__ import annotations

import json
import sys
import traceback
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.text import Text

from alora_flows.errors import AloraFlowsError

app = typer.Typer(name="alora-flows", no_args_is_help=True, add_completion=False,
                  pretty_exceptions_enable=False,
                  help="Agentic LLM workflows on Activated LoRA (aLoRA) intrinsics.")

DebugOption = Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")]
FlowArgument = Annotated[Path, typer.Argument(metavar="FLOW.yaml", help="A flow definition file.")]


def err_console() -> Console:
    """Console for progress, live views and errors (stderr keeps stdout for results)."""
    return Console(stderr=True)


def one_line(text: str) -> str:
    return " ".join(str(text).split())


@contextmanager
def cli_errors(debug: bool = False) -> Iterator[None]:
    """Map errors to one line + exit code; tracebacks only with ``--debug``."""
    console = err_console()
    try:
        yield
    except (typer.Exit, typer.Abort):
        raise
    except AloraFlowsError as exc:
        if debug:
            traceback.print_exc()
        console.print(Text("error: ", style="bold red") + Text(one_line(str(exc)), style="red"),
                      soft_wrap=True)
        raise typer.Exit(getattr(exc, "exit_code", 1)) from None
    except KeyboardInterrupt:
        console.print(Text("interrupted", style="red"))
        raise typer.Exit(130) from None
    except Exception as exc:  # a bug: say so, keep the traceback for --debug
        if debug:
            traceback.print_exc()
        console.print(Text("internal error: ", style="bold red")
                      + Text(one_line(f"{type(exc).__name__}: {exc}"), style="red")
                      + Text("" if debug else " (rerun with --debug for the traceback)"),
                      soft_wrap=True)
        raise typer.Exit(1) from None


def parse_inputs(pairs: Sequence[str]) -> dict[str, str]:
    """``["question=Why?", "doc=@notes.txt"]`` -> ``{"question": "Why?", "doc": <file text>}``.

    A value starting with ``@`` is read from that file; write ``@@`` for a literal leading ``@``.
    """
    from alora_flows.flow.validation import FlowInputError

    inputs: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        key = key.strip()
        if not sep or not key:
            raise FlowInputError(f"--input expects key=value, got {pair!r}")
        if value.startswith("@@"):
            value = value[1:]
        elif value.startswith("@"):
            path = Path(value[1:]).expanduser()
            try:
                value = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise FlowInputError(f"--input {key}: cannot read {path}: "
                                     f"{exc.strerror or exc}") from None
        if key in inputs:
            raise FlowInputError(f"--input {key} is given twice")
        inputs[key] = value
    return inputs


def _model_spec(model: str, base_dir: Path) -> str:
    """A relative model path in a flow file is relative to the file."""
    local = base_dir / model
    if model != "embedded" and not Path(model).is_absolute() and local.exists():
        return str(local.resolve())
    return model


def load_intrinsics(flow: Any, backend: Any, base_dir: Path) -> dict[str, Any]:
    """Resolve every intrinsic in ``intrinsics:`` to adapter weights, add them to the backend,
    and return their specs (the spec that travels with an adapter wins over the registry)."""
    import intrinsics

    specs: dict[str, Any] = {}
    for name, source in flow.spec.intrinsics.items():
        resolved = intrinsics.load_intrinsic(name, source, backend.model_id, base_dir=base_dir,
                                             tokenizer=backend.tokenizer)
        backend.add_adapter(name, resolved.path)
        specs[name] = resolved.spec
    return specs


@app.command()
def validate(flow_file: FlowArgument, debug: DebugOption = False) -> None:
    """Check a flow file without loading any model."""
    from alora_flows.flow import Flow

    with cli_errors(debug):
        flow = Flow.from_yaml(flow_file)
        compiled = flow.validate()
        inputs = ", ".join(compiled.spec.inputs) or "none"
        typer.echo(f"ok: flow '{flow.name}' is valid ({len(flow.nodes)} nodes, "
                   f"{len(flow.edges)} edges; inputs: {inputs})")


@app.command()
def draw(flow_file: FlowArgument, debug: DebugOption = False) -> None:
    """Print the flow as a mermaid flowchart."""
    from alora_flows.flow import Flow

    with cli_errors(debug):
        typer.echo(Flow.from_yaml(flow_file).to_mermaid(), nl=False)


@app.command()
def run(
    flow_file: FlowArgument,
    input: Annotated[Optional[list[str]], typer.Option(  # noqa: A002 - the option's name
        "--input", "-i", metavar="KEY=VALUE",
        help="A flow input; repeat for several. VALUE may be @file.txt.")] = None,
    trace_json: Annotated[Optional[Path], typer.Option(
        "--trace-json", help="Write the run's trace as JSON to this file.")] = None,
    no_reuse: Annotated[bool, typer.Option(
        "--no-reuse", help="Re-prefill the whole conversation for every call (for comparison).")
    ] = False,
    seed: Annotated[Optional[int], typer.Option("--seed", help="Seed for sampled generation.")
                    ] = None,
    run_dir: Annotated[Optional[Path], typer.Option(
        "--run-dir", help="Save the run to this new directory after every step (flow, inputs, "
        "state, trace, conversation); `alora-flows resume DIR` continues it after a crash.")
    ] = None,
    debug: DebugOption = False,
) -> None:
    """Run a flow: live view on stderr, final state as JSON on stdout."""
    from alora_flows.flow import Flow
    from alora_flows.flow.live import LiveView
    from alora_flows.flow.trace import jsonable
    from alora_flows.rundir import interrupt_hint, run_in_dir

    with cli_errors(debug), interrupt_hint(run_dir):
        flow = Flow.from_yaml(flow_file)
        inputs = parse_inputs(input or [])
        flow.validate().new_state(inputs)  # bad flows and inputs fail before the model loads
        if run_dir is not None:
            result = run_in_dir(run_dir, flow_file, inputs, reuse=not no_reuse, seed=seed,
                                trace_json=trace_json, live=LiveView(err_console()))
        else:
            result = run_flow(flow, inputs, base_dir=flow_file.parent, reuse=not no_reuse,
                              seed=seed, trace_json=trace_json, live=LiveView(err_console()))
        sys.stdout.write(json.dumps({k: jsonable(v) for k, v in result.values.items()},
                                    indent=2, ensure_ascii=False) + "\n")


def load_flow_backend(flow: Any, base_dir: Path) -> tuple[Any, dict[str, Any]]:
    """The flow's model and adapters (with their specs): what ``run``, ``resume`` and ``demo`` load."""
    from alora_flows.backend import Backend

    backend = Backend.load(_model_spec(flow.spec.model, base_dir))
    return backend, load_intrinsics(flow, backend, base_dir)


def run_listeners(live: Any, trace_json: Path | None) -> list[Any]:
    """The live view (if any) and a trace-JSON writer (if asked for)."""
    from alora_flows.flow import TraceJsonWriter

    out: list[Any] = [live] if live is not None else []
    if trace_json is not None:
        out.append(TraceJsonWriter(trace_json))
    return out


def live_context(live: Any) -> Any:
    """``live`` as a context manager, or a no-op one when there is no live view."""
    from contextlib import nullcontext

    return live if live is not None else nullcontext()


def run_flow(flow: Any, inputs: Mapping[str, Any], *, base_dir: Path, reuse: bool = True,
             seed: int | None = None, trace_json: Path | None = None, live: Any = None) -> Any:
    """Load the flow's model and adapters, then run it on a new session."""
    from alora_flows.session import Session

    backend, specs = load_flow_backend(flow, base_dir)
    with live_context(live):
        return flow.run(Session(backend, reuse=reuse), inputs, seed=seed,
                        listeners=run_listeners(live, trace_json), intrinsic_specs=specs)


def _register_commands() -> None:
    """Commands that live with their subsystems (training/evaluation of intrinsics, demo, resume)."""
    from intrinsics.cli import register as register_intrinsics

    from .demo import register as register_demo
    from .rundir import register as register_resume

    register_intrinsics(app)
    register_demo(app)
    register_resume(app)


_register_commands()


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
