"""The ``alora-flows`` command line: the top of the layers. It imports everything; nothing
imports it. Commands live in one module per area and are registered here; heavy imports (torch,
transformers) happen inside the commands that load a model, so ``validate`` and ``draw`` stay fast.
"""

from __future__ import annotations

from typing import Annotated

import typer

from alora_flows import __version__
from alora_flows.cli import batch, demo, flows, intrinsics, serve, train
from alora_flows.cli.common import Command, Group

app = typer.Typer(
    name="alora-flows",
    cls=Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Agentic LLM workflows on Activated LoRA (aLoRA) intrinsics.",
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"alora-flows {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool,
        typer.Option("--version", is_eager=True, callback=_print_version, help="Print the version and exit."),
    ] = False,
) -> None:
    """Agentic LLM workflows on Activated LoRA (aLoRA) intrinsics."""


app.command(cls=Command)(flows.validate)
app.command(cls=Command)(flows.draw)
app.command(cls=Command)(flows.run)
app.command(cls=Command)(flows.resume)
app.command("batch", cls=Command)(batch.batch)
app.command("serve", cls=Command)(serve.serve)
app.command("demo", cls=Command)(demo.demo)
app.command("train", cls=Command)(train.train)
app.command("eval-intrinsics", cls=Command)(train.eval_intrinsics)
app.command("threshold", cls=Command)(train.threshold)
app.add_typer(intrinsics.app, name="intrinsics")


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
