"""Shared pieces of the commands: error handling, options, input parsing.

Every command wraps its body in :func:`cli_errors`, which turns any
:class:`~alora_flows.errors.AloraFlowsError` into one red line on stderr and the error's exit code
(2 for a bad flow definition or bad inputs), and shows tracebacks only with ``--debug``.

Every command that runs a model takes the same ``--device``, ``--threads`` and ``--verbose``
options (:data:`DeviceOption`, :data:`ThreadsOption`, :data:`VerboseOption`) and calls
:func:`model_setup` before loading anything; new commands should do the same.
"""

from __future__ import annotations

import traceback
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any, Optional

import typer
from rich.console import Console
from rich.text import Text
from typer.core import TyperCommand, TyperGroup

from alora_flows.errors import AloraFlowsError, FlowInputError

DebugOption = Annotated[bool, typer.Option("--debug", help="Show full tracebacks on errors.")]
RayAddressOption = Annotated[
    Optional[str],
    typer.Option(
        "--ray-address",
        metavar="ADDRESS",
        help="The Ray cluster to join (e.g. head-node:6379; default: $RAY_ADDRESS if set, "
        "else a local instance); implies --ray.",
    ),
]
FlowArgument = Annotated[Path, typer.Argument(metavar="FLOW.yaml", help="A flow definition file.")]
DeviceOption = Annotated[
    Optional[str],
    typer.Option(
        "--device",
        metavar="DEVICE",
        help="Where the model runs: cpu, cuda, cuda:1 ... (default: cuda when available, else cpu).",
    ),
]
ThreadsOption = Annotated[
    Optional[int],
    typer.Option(
        "--threads",
        min=1,
        metavar="N",
        help="Torch threads on the CPU (default: $ALORA_FLOWS_THREADS, else $OMP_NUM_THREADS, "
        "else the CPUs other work leaves free, at most 4).",
    ),
]
VerboseOption = Annotated[
    bool, typer.Option("--verbose", help="Show third-party progress bars (e.g. 'Loading weights').")
]


def _untyped_flags(params: list[Any]) -> list[Any]:
    """Typer (0.2x) prints ``<bool>`` beside plain on/off flags, as if they took a value; an empty
    metavar removes it (for ``--help`` too). Typed loosely: typer vendors its own click."""
    for param in params:
        if getattr(param, "is_flag", False) and param.metavar is None:
            param.metavar = ""
    return params


class Command(TyperCommand):
    """The command class of every ``alora-flows`` command."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _untyped_flags(super().get_params(ctx))


class Group(TyperGroup):
    """The ``alora-flows`` command group."""

    def get_params(self, ctx: Any) -> list[Any]:
        return _untyped_flags(super().get_params(ctx))


def model_setup(*, threads: int | None, device: str | None, verbose: bool) -> str | None:
    """What a model-running command does before loading: quiet third-party progress bars unless
    ``--verbose``, choose and apply the CPU threads. Returns the line that says how many threads
    and why (the live view shows it as a run starts, so a newcomer on a busy machine sees why a
    run is slow and how to change it), or None on a GPU."""
    from alora_flows.app import prepare_process

    choice = prepare_process(threads=threads, device=device, verbose=verbose)
    return f"cpu: {choice.describe()}" if choice is not None else None


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
        console.print(
            Text("error: ", style="bold red") + Text(one_line(str(exc)), style="red"), soft_wrap=True
        )
        raise typer.Exit(getattr(exc, "exit_code", 1)) from None
    except KeyboardInterrupt:
        console.print(Text("interrupted", style="red"))
        raise typer.Exit(130) from None
    except Exception as exc:  # a bug: say so, keep the traceback for --debug
        if debug:
            traceback.print_exc()
        console.print(
            Text("internal error: ", style="bold red")
            + Text(one_line(f"{type(exc).__name__}: {exc}"), style="red")
            + Text("" if debug else " (rerun with --debug for the traceback)"),
            soft_wrap=True,
        )
        raise typer.Exit(1) from None


def parse_inputs(pairs: Sequence[str]) -> dict[str, str]:
    """``["question=Why?", "doc=@notes.txt"]`` -> ``{"question": "Why?", "doc": <file text>}``.

    A value starting with ``@`` is read from that file; write ``@@`` for a literal leading ``@``.
    """
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
                raise FlowInputError(f"--input {key}: cannot read {path}: {exc.strerror or exc}") from None
        if key in inputs:
            raise FlowInputError(f"--input {key} is given twice")
        inputs[key] = value
    return inputs


def json_inputs(flow: Any, inputs: dict[str, Any]) -> dict[str, Any]:
    """Inputs declared ``list`` or ``dict`` arrive from the command line as text: read them as
    JSON (``--input documents=@docs.json``); a value that is not valid JSON is a one-line error."""
    import json

    out = dict(inputs)
    for name, kind in flow.spec.inputs.items():
        if kind in ("list", "dict") and isinstance(out.get(name), str):
            try:
                out[name] = json.loads(out[name])
            except json.JSONDecodeError as exc:
                raise FlowInputError(
                    f"--input {name}: declared {kind}, so its value must be JSON ({exc})"
                ) from None
    return out
