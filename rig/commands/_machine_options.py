"""Guest machine options shared by every command that boots a guest (`rig boot`, `rig run`),
and the one GuestSpec they make, checked before anything is built."""

from __future__ import annotations

import argparse
from pathlib import Path

from rig.errors import UserError
from rig.guest_spec import GuestSpec
from rig.image import default_recipe, recipe_problems
from rig.target import DEFAULT_TARGET, TARGETS, target


def add_machine_arguments(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """Add --bzimage, --gpu, --memory, --cpus, --accel, --append, --image, --ready-timeout.

    --arch comes with the build options (rig.commands.build.add_build_arguments): the
    kernel and the guest are of one architecture.

    Returns the group, so a command can add options of its own beside them.
    """
    vm = parser.add_argument_group("machine")
    vm.add_argument("--bzimage", type=Path, metavar="PATH",
                    help="boot this kernel image as it is instead of building --kernel")
    # No argparse choices: which GPU models exist depends on --arch (GuestSpec checks).
    gpus = "; ".join(f"{name}: {', '.join(arch.gpus)}" for name, arch in TARGETS.items())
    vm.add_argument("--gpu", default=DEFAULT_TARGET.gpu_default, metavar="MODEL",
                    help=f"GPU device model ({gpus}; default: %(default)s)")
    vm.add_argument("--memory", type=int, default=2048, metavar="MiB", help="guest memory (default: %(default)s)")
    vm.add_argument("--cpus", type=int, default=2, metavar="N", help="virtual CPUs (default: %(default)s)")
    vm.add_argument("--accel", choices=["auto", "kvm", "tcg"], default="auto",
                    help="accelerator; auto probes KVM briefly and falls back to TCG (default: %(default)s)")
    vm.add_argument("--append", action="append", default=[], metavar="ARG",
                    help="extra kernel command-line argument; repeatable")
    vm.add_argument("--image", metavar="RECIPE",
                    help="guest image recipe (default: the architecture's, `default` on x86_64, `arm64` on arm64)")
    vm.add_argument("--ready-timeout", type=float, default=300.0, metavar="S",
                    help="how long the guest may take to answer SSH (default: %(default)s)")
    faults = ", ".join(f"{name} ({model.name})" for arch in TARGETS.values() for model in arch.gpus.values()
                       if model.faults for name in model.faults.names)
    vm.add_argument("--gpu-fault", action="append", default=[], metavar="NAME=N",
                    help=f"make the GPU model inject a fault once the guest is up, e.g. hang-jobs=1 (the next "
                         f"job hangs until the driver's timeout); repeatable; one of {faults}")
    return vm


def guest_spec_from_args(args: argparse.Namespace) -> GuestSpec:
    """The guest the options ask for, validated: one UserError lists every problem (the
    image recipe read and matched to --arch among them)."""
    faults, problems = parse_gpu_faults(getattr(args, "gpu_fault", []))
    spec = GuestSpec(
        target=target(args.arch),
        gpu=args.gpu,
        memory_mib=args.memory,
        cpus=args.cpus,
        accel=None if args.accel == "auto" else args.accel,
        cmdline_extra=tuple(args.append),
        image=args.image or default_recipe(args.arch),
        ready_timeout_s=args.ready_timeout,
        gpu_faults=faults,
    )
    problems += spec.problems()
    if not problems:
        problems = recipe_problems(spec.image, spec.target.name)
    if problems:
        raise UserError("cannot use this guest machine:\n    " + "\n    ".join(problems),
                        hint="see --help for the accepted values")
    return spec


def parse_gpu_faults(given: list[str]) -> tuple[tuple[tuple[str, int], ...], list[str]]:
    """`--gpu-fault NAME=N` values as (name, N), and the ones that are not of that form.
    N is decimal or 0x-hex (fail-code is an exception code, written in hex)."""
    faults: list[tuple[str, int]] = []
    problems = []
    for text in given:
        name, sep, number = text.partition("=")
        try:
            count = int(number.strip(), 0) if sep and name.strip() else None
        except ValueError:
            count = None
        if count is None:
            problems.append(f"--gpu-fault {text!r}: give NAME=N, e.g. hang-jobs=1")
        else:
            faults.append((name.strip(), count))
    return tuple(faults), problems
