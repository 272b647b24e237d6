"""Guest machine options shared by every command that boots a guest (`rig boot`, `rig run`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rig.qemu.argv import GPU_DEVICES


def add_machine_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Add --bzimage, --gpu, --memory, --cpus, --accel, --append, --image, --ready-timeout.

    Returns the group, so a command can add options of its own beside them.
    """
    vm = parser.add_argument_group("machine")
    vm.add_argument("--bzimage", type=Path, metavar="PATH",
                    help="boot this kernel image as it is instead of building --kernel")
    vm.add_argument("--gpu", default="virtio-gpu", choices=list(GPU_DEVICES),
                    help="GPU device model (default: %(default)s)")
    vm.add_argument("--memory", type=int, default=2048, metavar="MiB", help="guest memory (default: %(default)s)")
    vm.add_argument("--cpus", type=int, default=2, metavar="N", help="virtual CPUs (default: %(default)s)")
    vm.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto",
                    help="accelerator; auto probes KVM briefly and falls back to TCG (default: %(default)s)")
    vm.add_argument("--append", action="append", default=[], metavar="ARG",
                    help="extra kernel command-line argument; repeatable")
    vm.add_argument("--image", default="default", metavar="RECIPE",
                    help="guest image recipe (default: %(default)s)")
    vm.add_argument("--ready-timeout", type=float, default=300.0, metavar="S",
                    help="how long the guest may take to answer SSH (default: %(default)s)")
    return vm
