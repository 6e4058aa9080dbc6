"""``alora-flows intrinsics check DIR``: what a local intrinsic library (IBM's Granite layout, or
any folder of adapter directories) loads as, and why not.

For each adapter directory: whether it loads; its shape (from its ``io.yaml`` schema), its
invocation and where the adapter switches on (both adapter_config formats), the conversation and
documents it reads, the instruction's arguments, how it decodes, and the typed output it yields.
Plain LoRA adapters are listed and skipped (the engine invokes only aLoRAs). Exit code 1 when an
aLoRA adapter does not load. ``--model`` loads the base model's tokenizer (only) so invocations
recorded as token ids are shown as text and checked against it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from alora_flows.cli.common import Command, DebugOption, Group, cli_errors

app = typer.Typer(cls=Group, no_args_is_help=True, help="Inspect intrinsic adapter libraries.")


@app.command(cls=Command)
def check(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="A library or adapter directory.")],
    model: Annotated[
        Optional[str],
        typer.Option(
            "--model", "-m", help="Base model (embedded, a directory or a hub id) whose tokenizer to use."
        ),
    ] = None,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON object per adapter instead of text.")
    ] = False,
    debug: DebugOption = False,
) -> None:
    """Check every adapter directory under DIR and say how it is interpreted."""
    from alora_flows.errors import UsageError
    from intrinsics.granite.library import check_library, format_report

    with cli_errors(debug):
        if not directory.is_dir():
            raise UsageError(f"{directory} is not a directory")
        tokenizer = None
        if model is not None:
            from transformers import AutoTokenizer

            from alora_flows.core.models import resolve_model

            tokenizer = AutoTokenizer.from_pretrained(resolve_model(model).path)
        reports = check_library(directory, tokenizer)
        if not reports:
            raise UsageError(f"no adapter directory (with an adapter_config.json) under {directory}")
        for report in reports:
            if as_json:
                typer.echo(json.dumps(report.model_dump(exclude_none=True), ensure_ascii=False))
            else:
                typer.echo(format_report(report))
        failed = [r for r in reports if not r.loads and r.adapter_type != "lora"]
        skipped = [r for r in reports if r.adapter_type == "lora"]
        if not as_json:
            loaded = len(reports) - len(failed) - len(skipped)
            typer.echo(f"{loaded} loaded, {len(failed)} failed, {len(skipped)} plain LoRA skipped")
        if failed:
            raise typer.Exit(1)
