"""``cvmlaunch kvm caps``: what this host's KVM offers (cvmlaunch.kvm_map's capability probe)."""

from __future__ import annotations

import click

from cvmlaunch.cli._params import FILE, json_option

__all__ = ["CAPS", "kvm_caps"]

#: cvmlaunch.kvm_map.KVM_PATH, spelled out so that building the parser does not import the
#: KVM layer (a test checks they agree).
DEFAULT_DEVICE = "/dev/kvm"

#: Capabilities that are bit masks, shown in hex in the table.
_MASKS = ("vm_types", "guest_memfd_flags", "memory_attributes")


def kvm_caps(*, as_json: bool, device: str) -> None:
    """Run ``kvm caps``: probe ``device`` and print its capabilities (see :data:`CAPS`).

    Raises:
        KvmUnsupported: the device cannot be opened.
        KvmError: a probe call failed.
    """
    from cvmlaunch.kvm_map import Kvm

    with Kvm.open(path=device) as kvm:
        caps = kvm.caps()
    view = caps.as_dict()
    if as_json:
        import json

        print(json.dumps(view, indent=2, sort_keys=True))
        return
    width = max(len(k) for k in view)
    for key, value in view.items():
        if isinstance(value, list):
            text = ", ".join(value) or "-"
        elif isinstance(value, bool):
            text = "yes" if value else "no"
        elif key in _MASKS:
            text = f"{value:#x}"
        else:
            text = str(value)
        print(f"{key:<{width}}  {text}")


@click.command(
    "caps",
    help="""Show the VM types, guest_memfd flags and populate calls the host offers.

Also what it lacks (missing) and the memory backend a plain launch would use here and why
(plain_memory_backend, plain_memory_backend_reason). Only KVM_CHECK_EXTENSION and
friends are called; nothing is created.""",
    short_help="Show the VM types, guest_memfd flags and populate calls the host offers.",
)
@json_option("print JSON instead of a table")
@click.option(
    "--device",
    type=FILE,
    default=DEFAULT_DEVICE,
    show_default=True,
    metavar="FILE",
    help="the KVM device to probe",
)
def CAPS(as_json: bool, device: str) -> None:  # noqa: N802
    kvm_caps(as_json=as_json, device=device)
