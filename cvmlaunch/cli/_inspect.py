"""``cvmlaunch inspect FILE``: what a loader sees in an image ."""

from __future__ import annotations

import click

from cvmlaunch.files import map_file


@click.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
def inspect_cmd(file: str, as_json: bool) -> None:
    """Show what the loaders see in FILE: format, sections or segments, entry points."""
    with map_file(file) as data:
        click.echo(f"{file}: {len(data)} bytes")
