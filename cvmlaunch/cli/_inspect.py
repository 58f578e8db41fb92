"""``cvmlaunch inspect FILE``: what a loader sees in an image.

Rule: this module only composes. It maps the file (:func:`cvmlaunch.files.map_file`), asks
:func:`cvmlaunch.image.report.build_report` for the report of plain values and prints it as
JSON or as the library's aligned text (:func:`cvmlaunch.image.report.render_text`), escaped.
Numbers are integers in JSON and hexadecimal in text.
"""

from __future__ import annotations

import json

import click

from cvmlaunch.cli._params import FILE, json_option
from cvmlaunch.files import map_file
from cvmlaunch.image.report import build_report, render_text
from cvmlaunch.text import printable

__all__ = ["INSPECT", "build_report", "render_text"]


@click.command(
    "inspect",
    short_help="Show what the loaders see in FILE: format, sections or segments, entry points.",
    help="""Show what the loaders see in FILE: format, sections or segments, entry points.

FILE is OVMF/TDVF flat firmware (full or code-only), an x86 ELF (firmware or vmlinux) or
a Linux bzImage. Numbers are hexadecimal in the table and integers in --json.""",
)
@click.argument("file", metavar="FILE", type=FILE)
@json_option("print JSON instead of a table")
@click.option(
    "-m",
    "--memory",
    metavar="SIZE",
    default="2G",
    show_default=True,
    help="TDVF: the TD's RAM, for the TD HOB QEMU would build (512M, 4G, or MiB)",
)
def INSPECT(file: str, as_json: bool, memory: str) -> None:  # noqa: N802
    from cvmlaunch.launch_settings import parse_size

    size = parse_size(memory)
    with map_file(file) as data:
        report = build_report(data, name=file, memory=size)
    if as_json:
        print(json.dumps(report, indent=2))
    else:  # names and version strings come from the file: escaped
        print("\n".join(printable(line) for line in render_text(report).splitlines()))
