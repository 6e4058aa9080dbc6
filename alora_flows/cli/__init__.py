"""The ``alora-flows`` command line: the top of the layers. It imports everything; nothing
imports it. Commands live in one module per area and are registered here; heavy imports (torch,
transformers) happen inside the commands that load a model, so ``validate`` and ``draw`` stay fast.
"""

from __future__ import annotations

import typer

from alora_flows.cli import batch, demo, flows, serve, train

app = typer.Typer(
    name="alora-flows",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Agentic LLM workflows on Activated LoRA (aLoRA) intrinsics.",
)

app.command()(flows.validate)
app.command()(flows.draw)
app.command()(flows.run)
app.command()(flows.resume)
app.command("batch")(batch.batch)
app.command("serve")(serve.serve)
app.command("demo")(demo.demo)
app.command("train")(train.train)
app.command("eval-intrinsics")(train.eval_intrinsics)
app.command("threshold")(train.threshold)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
