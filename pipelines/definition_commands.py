"""What `fbrain pipeline definition|validate` and `fbrain monitor pipeline definition|validate` share:
print or write a definition, and report its check against botocore's SageMaker service model."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Optional

import typer


def print_or_write(text: str, out: Optional[Path]) -> None:
    """The definition JSON on stdout, or written to `out` (one trailing newline) with a line saying so."""
    if out:
        out.write_text(text + "\n", encoding="utf-8")
        typer.echo(f"wrote {out} ({len(text)} bytes)")
    else:
        typer.echo(text)


def report_validation(text: str, what: str) -> None:
    """Every error on stderr, a summary line, and exit code 1 when there is any error."""
    from pipelines.validate import validate_definition

    definition = json.loads(text)
    errors = validate_definition(definition)
    for error in errors:
        typer.echo(f"error: {error}", err=True)
    typer.echo(f"{what}: {len(definition['Steps'])} top-level steps checked, {len(errors)} errors")
    raise typer.Exit(1 if errors else 0)
