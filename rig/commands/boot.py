"""`rig boot`: boot a kernel on the guest image under QEMU, run a command (or a shell)
in it over SSH, power it off, and exit with the command's status."""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

from rig import image as image_mod
from rig.accel import choose_accel
from rig.commands._machine_options import add_machine_arguments, guest_spec_from_args
from rig.build import check_request
from rig.commands.build import add_build_arguments, request_from_args
from rig.errors import UserError
from rig.gpu_faults import read_counters
from rig.guest_spec import MAX_WAIT_S, GuestSpec
from rig.kernel_image import check_kernel_image
from rig.qemu.argv import MachineSpec, build_argv, qemu_environment, render
from rig.rundir import new_run_dir, reproduce_command, write_metadata
from rig.vm import boot_guest, free_port, qemu_binary, run_sync

NAME = "boot"
HELP = "boot a kernel under QEMU on the guest image and run a command (or a shell) in it"
ORDER = 30
EXAMPLES = [
    "rig boot --kernel debian:6.1 -- sh -c 'uname -r; cat /sys/kernel/debug/dri/*/name'",
    "rig boot --bzimage arch/x86/boot/bzImage --gpu bochs -- cat /sys/kernel/debug/dri/0/name",
    "rig boot --kernel debian:6.1 -- /usr/libexec/igt-gpu-tools/vgem_basic",
    "rig boot --bzimage bzImage --memory 4096 --cpus 1",
    "rig boot --bzimage bzImage --dry-run",
    "rig boot --arch arm64 --bzimage Image --dry-run",
]

DEFAULT_COMMAND_TIMEOUT_S = 3600.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_build_arguments(parser)
    vm = add_machine_arguments(parser)
    vm.add_argument("--timeout", type=float, default=DEFAULT_COMMAND_TIMEOUT_S, metavar="S",
                    help="how long CMD may run (default: %(default)s)")
    parser.add_argument("--out", type=Path, metavar="DIR", help="run directory (default: a new one)")
    parser.add_argument("--dry-run", action="store_true", help="print the QEMU command line and exit")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")
    parser.add_argument("command", nargs=argparse.REMAINDER, metavar="-- CMD",
                        help="command to run in the guest (default: an interactive shell)")


def _say(args: argparse.Namespace, line: str) -> None:
    if not args.quiet:
        print(f"rig: {line}", file=sys.stderr, flush=True)


def _kernel(args: argparse.Namespace, out: Path) -> Path:
    if args.bzimage is not None:
        return check_kernel_image(args.bzimage, args.arch)
    if args.kernel is None:
        raise UserError("no kernel to boot", hint="pass --bzimage PATH or --kernel SPEC")
    from rig.build import build

    artifacts = build(request_from_args(args), out / "build", progress=not args.quiet)
    _say(args, f"kernel {artifacts.kernel_release} ({'cache hit' if artifacts.cache_hit else 'built'})")
    return artifacts.kernel_image


def _command(args: argparse.Namespace) -> list[str]:
    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    return command


def _dry_run(args: argparse.Namespace, guest: GuestSpec, out: Path) -> int:
    kernel = (check_kernel_image(args.bzimage, args.arch) if args.bzimage is not None
              else Path(f"<kernel image of {args.kernel}>"))
    built = image_mod.find_image(guest.image)
    disk = out / "vm" / "overlay.qcow2"
    target = guest.target
    # A dry run builds nothing: rig's own QEMU is named, not built.
    binary = f"<rig's {target.qemu_system} build>" if target.qemu == "rig" else target.qemu
    installed = shutil.which(target.qemu) if target.qemu != "rig" else None
    if guest.accel is not None:
        accel = guest.accel
    elif installed is not None and kernel.is_file():
        accel = choose_accel(kernel, target, installed).accel
    else:
        accel = "tcg"
    spec = MachineSpec(kernel=kernel, run_dir=out / "vm", guest=guest, accel=accel, binary=binary, disk=disk,
                       ssh_port=free_port(), init=image_mod.GUEST_INIT)
    if built is None:
        print(f"# the guest image is not built yet: rig image build {guest.image}", file=sys.stderr)
    else:
        print(f"# overlay: qemu-img create -f qcow2 -F raw -b {built.disk} {disk}", file=sys.stderr)
    print(render(build_argv(spec), qemu_environment(spec)))
    return 0


def run(args: argparse.Namespace) -> int:
    # Bad machine options are found now, not after a kernel build of twenty minutes.
    guest = guest_spec_from_args(args)
    if not 0 < args.timeout <= MAX_WAIT_S:  # nan fails this too
        raise UserError(f"--timeout {args.timeout:g}: give a positive number of seconds, at most {MAX_WAIT_S:g}",
                        hint=f"the time CMD may run in the guest (default {DEFAULT_COMMAND_TIMEOUT_S:g})")
    if args.bzimage is not None:
        check_kernel_image(args.bzimage, args.arch)  # a wrong file fails here, not as a QEMU error
    elif not args.dry_run:
        check_request(request_from_args(args))
    out = new_run_dir("boot", args.out)
    if args.dry_run:
        return _dry_run(args, guest, out)
    command = _command(args)
    if not command and not (sys.stdin.isatty() and sys.stdout.isatty()):
        raise UserError("no command given and stdin is not a terminal",
                        hint="give the command after --, e.g. rig boot --bzimage bzImage -- uname -r")
    write_metadata(out, {"command": reproduce_command(), "guest_command": command, "guest": guest.to_json()})
    # The QEMU first: a host without it (or without rig's own build, made now) fails before the kernel build.
    qemu_binary(guest.target, progress=not args.quiet)
    kernel = _kernel(args, out)
    guest_image = image_mod.ensure_image(guest.image, progress=not args.quiet, arch=guest.target.name)
    return run_sync(_boot_and_run(args, guest, kernel, guest_image, out, command))


async def _boot_and_run(args: argparse.Namespace, guest: GuestSpec, kernel: Path,
                        guest_image: image_mod.GuestImage, out: Path, command: list[str]) -> int:
    started = time.monotonic()
    _say(args, f"booting {kernel.name} ({guest.target.name}, {guest.gpu}, {guest.memory_mib} MiB, "
               f"{guest.cpus} CPUs); run directory {out}")
    async with boot_guest(kernel, guest_image, out / "vm", guest) as vm:
        after_init = vm.times.init_to_ready_s
        _say(args, f"{vm.accel.upper()} ({vm.accel_reason}); SSH ready after {vm.times.ready_s:.1f} s"
                   + (f", {after_init:.1f} s after init started" if after_init is not None else ""))
        write_metadata(out, {"accel": vm.accel, "accel_reason": vm.accel_reason, "ssh_port": vm.ssh_port,
                             "console_log": str(vm.console_log), "ready_s": round(vm.times.ready_s, 2)})
        if not command:
            status = await vm.shell()
        else:
            result = await vm.run(command, timeout=args.timeout,
                                  on_stdout=_writer(sys.stdout), on_stderr=_writer(sys.stderr))
            status = result.exit_status
        # what the GPU model counted (and what of --gpu-fault is still to inject), for a
        # command that exercised it: metadata.json, and a line for the user
        counters = await read_counters(vm.machine, guest.gpu_model)
    if counters:
        write_metadata(out, {"gpu_counters": counters})
        _say(args, "GPU model: " + ", ".join(f"{name} {n}" for name, n in counters.items() if n))
    write_metadata(out, {"exit_status": status, "duration_s": round(time.monotonic() - started, 2)})
    _say(args, f"guest command exited with status {status}; console log {vm.console_log}")
    return status


def _writer(stream: TextIO) -> Callable[[bytes], None]:
    """Guest output straight to our stdout/stderr, as it arrives."""
    fd = stream.fileno()

    def write(data: bytes) -> None:
        os.write(fd, data)

    return write
