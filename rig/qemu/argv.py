"""The QEMU command line, built by a pure function from a frozen spec.

Everything a guest has is spelled out (`-nodefaults`): what is not on this command line
is not in the guest, so a test of `--gpu bochs` never also sees QEMU's default VGA.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from rig.errors import UserError

QEMU = "qemu-system-x86_64"

# rig's names for GPU device models -> QEMU devices (and the DRM driver the guest binds).
GPU_DEVICES: dict[str, tuple[str, ...]] = {
    "virtio-gpu": ("virtio-gpu-pci",),
    "virtio-vga": ("virtio-vga",),
    "bochs": ("bochs-display",),
    "cirrus": ("cirrus-vga",),
    "none": (),
}
GPU_DRIVERS: dict[str, str | None] = {
    "virtio-gpu": "virtio_gpu",
    "virtio-vga": "virtio_gpu",
    "bochs": "bochs-drm",
    "cirrus": "cirrus",
    "none": None,
}

ACCELERATORS = ("kvm", "tcg")

# The kernel's command line, beside root/init/console which depend on the spec:
#   panic=-1 + -no-reboot: a panicking guest ends QEMU at once, the report complete in the log;
#   printk.time=1: timestamps for splat ordering and the boot benchmark;
#   no_hash_pointers: reports show real addresses, as syzbot's do;
#   net.ifnames=0: the NIC stays eth0, which rig-init configures.
BASE_CMDLINE = (
    "panic=-1",
    "printk.time=1",
    "loglevel=7",
    "no_hash_pointers",
    "net.ifnames=0",
    "random.trust_cpu=on",
    "8250.nr_uarts=1",
)

GUEST_IP = "10.0.2.15"
GATEWAY_IP = "10.0.2.2"

# A unix socket's path must fit sun_path (108 bytes with its NUL); longer run directories
# get their QMP socket in a short private directory instead.
SOCKET_PATH_MAX = 100

# Linux truncates longer command lines on x86 (COMMAND_LINE_SIZE is 2048; stay well below).
CMDLINE_MAX = 1024


@dataclass(frozen=True)
class MachineSpec:
    kernel: Path
    run_dir: Path  # private (0700): QMP socket, console log, overlay
    accel: str = "tcg"
    gpu: str = "virtio-gpu"
    memory_mib: int = 2048
    cpus: int = 2
    disk: Path | None = None  # the per-boot qcow2 overlay; None for initramfs-only boots
    initrd: Path | None = None
    ssh_port: int | None = None  # host port on 127.0.0.1 forwarded to the guest's 22
    init: str | None = "/sbin/rig-init"
    cmdline_extra: tuple[str, ...] = ()
    socket_dir: Path | None = None  # private dir for the QMP socket if run_dir's path is too long

    @property
    def qmp_socket(self) -> Path:
        return (self.socket_dir or self.run_dir) / "qmp.sock"

    @property
    def console_log(self) -> Path:
        return self.run_dir / "console.log"

    @property
    def qemu_log(self) -> Path:
        return self.run_dir / "qemu.log"


def validate(spec: MachineSpec) -> None:
    """Every problem of a spec at once, as a UserError naming the option to fix."""
    problems = []
    if spec.gpu not in GPU_DEVICES:
        problems.append(f"--gpu {spec.gpu}: not one of {', '.join(GPU_DEVICES)}")
    if spec.accel not in ACCELERATORS:
        problems.append(f"accelerator '{spec.accel}' is not one of {', '.join(ACCELERATORS)}")
    if not 256 <= spec.memory_mib <= 65536:
        problems.append(f"--memory {spec.memory_mib}: give MiB between 256 and 65536")
    if not 1 <= spec.cpus <= 64:
        problems.append(f"--cpus {spec.cpus}: give between 1 and 64")
    if spec.ssh_port is not None and not 1 <= spec.ssh_port <= 65535:
        problems.append(f"SSH port {spec.ssh_port} is not a TCP port")
    if len(kernel_cmdline(spec)) > CMDLINE_MAX:
        problems.append(f"kernel command line is longer than {CMDLINE_MAX} characters")
    for extra in spec.cmdline_extra:
        if not extra or any(c.isspace() for c in extra):
            problems.append(f"kernel argument {extra!r} is empty or has spaces; pass each argument separately")
    if problems:
        raise UserError("cannot boot this machine:\n    " + "\n    ".join(problems),
                        hint="see `rig boot --help` for the accepted values")


def kernel_cmdline(spec: MachineSpec) -> str:
    parts = ["console=ttyS0,115200"]
    if spec.disk is not None:
        parts += ["root=/dev/vda", "rootfstype=ext4", "rw"]
    if spec.init is not None:
        parts.append(f"init={spec.init}" if spec.disk is not None else f"rdinit={spec.init}")
    parts += BASE_CMDLINE
    if spec.ssh_port is not None:
        # QEMU user networking's addresses, set by the kernel before init (CONFIG_IP_PNP);
        # rig_net tells rig-init to check (see images/rig-init).
        parts += [f"ip={GUEST_IP}::{GATEWAY_IP}:255.255.255.0::eth0:off", "rig_net=kernel"]
    parts += spec.cmdline_extra
    return " ".join(parts)


def _chardev_path(path: Path) -> str:
    # QEMU splits -chardev/-device options at commas; ",," is a literal comma.
    return str(path).replace(",", ",,")


def build_argv(spec: MachineSpec, qemu: str = QEMU) -> list[str]:
    """The full QEMU argv for `spec` (validated first)."""
    validate(spec)
    accel = "tcg,thread=multi" if spec.accel == "tcg" else "kvm"
    argv = [
        qemu,
        "-name", "rig-guest,debug-threads=on",
        "-machine", "q35",
        "-accel", accel,
        "-m", str(spec.memory_mib),
        "-smp", str(spec.cpus),
        "-nodefaults",
        "-no-user-config",
        "-display", "none",
        "-vga", "none",
        "-no-reboot",
        "-kernel", str(spec.kernel),
        "-append", kernel_cmdline(spec),
        "-chardev", f"file,id=console,path={_chardev_path(spec.console_log)}",
        "-serial", "chardev:console",
        # rig listens on the socket and QEMU connects to it: no polling for QEMU's socket.
        "-chardev", f"socket,id=qmp,path={_chardev_path(spec.qmp_socket)}",
        "-mon", "chardev=qmp,mode=control",
        "-device", "virtio-balloon-pci,id=balloon0,deflate-on-oom=on",
        "-device", "pvpanic-pci",
        "-object", "rng-random,id=rng0,filename=/dev/urandom",
        "-device", "virtio-rng-pci,rng=rng0",
    ]
    if spec.initrd is not None:
        argv += ["-initrd", str(spec.initrd)]
    if spec.disk is not None:
        # The overlay is thrown away after the boot, so no flush is worth waiting for.
        argv += [
            "-drive", f"file={_chardev_path(spec.disk)},format=qcow2,if=none,id=root,cache=unsafe,discard=unmap",
            "-device", "virtio-blk-pci,drive=root",
        ]
    if spec.ssh_port is not None:
        argv += [
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{spec.ssh_port}-:22",
            "-device", "virtio-net-pci,netdev=net0",
        ]
    for device in GPU_DEVICES[spec.gpu]:
        argv += ["-device", device]
    return argv


def render(argv: list[str]) -> str:
    return shlex.join(argv)
