"""``cvmlaunch kvm``: what this host's KVM offers (the capability probe of cvmlaunch.kvm_map)."""

from __future__ import annotations

import json

import click

from cvmlaunch.kvm_map import KVM_PATH, Kvm


@click.group("kvm")
def kvm_group() -> None:
    """Inspect this host's KVM."""


@click.command("caps")
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")
@click.option(
    "--device",
    default=KVM_PATH,
    show_default=True,
    type=click.Path(dir_okay=False),
    help="The KVM device to probe.",
)
def caps_cmd(as_json: bool, device: str) -> None:
    """Show the VM types, guest_memfd flags and populate calls the host offers.

    Only KVM_CHECK_EXTENSION and friends are called; nothing is created.
    """
    with Kvm.open(path=device) as kvm:
        caps = kvm.caps()
    view = caps.as_dict()
    if as_json:
        click.echo(json.dumps(view, indent=2, sort_keys=True))
        return
    width = max(len(k) for k in view)
    for key, value in view.items():
        if isinstance(value, list):
            text = ", ".join(value) or "-"
        elif isinstance(value, bool):
            text = "yes" if value else "no"
        elif key in ("vm_types", "guest_memfd_flags", "memory_attributes"):
            text = f"{value:#x}"
        else:
            text = str(value)
        click.echo(f"{key:<{width}}  {text}")


kvm_group.add_command(caps_cmd)
