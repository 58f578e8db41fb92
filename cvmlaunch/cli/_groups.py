"""Click groups a command tree uses besides the root's (:class:`cvmlaunch.cli.LazyGroup`).

Rule: a group here routes arguments and imports commands; it parses no value and calls no
library function (the commands it runs do).
"""

from __future__ import annotations

from typing import Any

import click

from cvmlaunch.cli import load_command

__all__ = ["ReferenceValuesGroup"]

#: Where the group keeps the arguments of the LOG form between parsing and invoking.
_LOG_FORM = "cvmlaunch.reference-values.log-form"


class ReferenceValuesGroup(click.Group):
    """A group whose subcommands run as usual, and whose other first arguments run the
    command ``log_command`` (``module:attribute``, imported then) as if it were the group:
    ``cvmlaunch reference-values LOG [--format F]`` keeps its usage line and errors."""

    def __init__(self, *args: Any, log_command: str, **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.log_command = log_command

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ctx.help_option_names:
            ctx.meta[_LOG_FORM] = list(args)
            return []
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        args = ctx.meta.pop(_LOG_FORM, None)
        if args is None:
            return super().invoke(ctx)
        command = load_command(self.log_command)
        with command.make_context(ctx.info_name, args, parent=ctx.parent) as sub:
            return command.invoke(sub)
