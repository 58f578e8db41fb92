"""A click group whose commands are imported when used, not when the CLI starts.

Rule: ``cvmlaunch measure snp`` must not pay for importing the ELF loader, the launcher or
the TDX code. Commands are registered by name as ``"module:attribute"`` and imported by
:meth:`LazyGroup.get_command` (``--help`` imports them all to show their summaries).
"""

from __future__ import annotations

import importlib

import click

__all__ = ["LazyGroup"]


class LazyGroup(click.Group):
    """A :class:`click.Group` with commands registered as import paths."""

    def __init__(self, *args: object, **kwargs: object) -> None:
        super().__init__(*args, **kwargs)  # type: ignore[arg-type]
        self.lazy_commands: dict[str, str] = {}

    def add_lazy(self, name: str, target: str) -> None:
        """Register ``name`` as the command ``attribute`` of ``module`` (``"module:attribute"``)."""
        self.lazy_commands[name] = target

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted({*super().list_commands(ctx), *self.lazy_commands})

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self.lazy_commands.pop(cmd_name, None)
        if target is not None:
            module_name, _, attribute = target.partition(":")
            command = getattr(importlib.import_module(module_name), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{target} is not a click command")
            self.add_command(command, cmd_name)
        return super().get_command(ctx, cmd_name)
