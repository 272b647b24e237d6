"""The QEMU command line, built by a pure function from a frozen spec.

Everything a guest has is spelled out (`-nodefaults`): what is not on this command line
is not in the guest, so a test of `--gpu bochs` never also sees QEMU's default VGA.
What differs between architectures (binary, machine, CPU, console, GPU devices) comes
from the guest's Target; nothing here names one.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass, field
from pathlib import Path

from rig.errors import UserError
from rig.guest_spec import GuestSpec
from rig.target import GpuModel, Target

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
)

GUEST_IP = "10.0.2.15"
GATEWAY_IP = "10.0.2.2"

# A unix socket's path must fit sun_path (108 bytes with its NUL); longer run directories
# get their QMP socket in a short private directory instead.
SOCKET_PATH_MAX = 100

# Linux truncates longer command lines (COMMAND_LINE_SIZE is 2048 on x86 and arm64; stay
# well below).
CMDLINE_MAX = 1024


@dataclass(frozen=True)
class MachineSpec:
    """One QEMU machine, every choice made: the guest asked for, the accelerator chosen
    for it, the QEMU binary found for its target, and where its files live."""

    kernel: Path
    run_dir: Path  # private (0700): QMP socket, console log, overlay
    guest: GuestSpec = field(default_factory=GuestSpec)
    accel: str = "tcg"  # the one chosen (GuestSpec.accel is the one asked for)
    # The QEMU program; None: the target's binary by name on PATH (targets that need
    # rig's own build have no such name: their binary must be given).
    binary: str | None = None
    disk: Path | None = None  # the per-boot qcow2 overlay; None for initramfs-only boots
    initrd: Path | None = None
    ssh_port: int | None = None  # host port on 127.0.0.1 forwarded to the guest's 22
    init: str | None = "/sbin/rig-init"
    socket_dir: Path | None = None  # private dir for the QMP socket if run_dir's path is too long

    @property
    def target(self) -> Target:
        return self.guest.target

    @property
    def qemu(self) -> str:
        if self.binary is not None:
            return self.binary
        if self.target.qemu == "rig":
            # A bug in rig, not bad input: callers resolve it with rig.vm.qemu_binary.
            raise ValueError(f"no QEMU binary given for {self.target.name}, whose QEMU rig builds itself")
        return self.target.qemu

    @property
    def qmp_socket(self) -> Path:
        return (self.socket_dir or self.run_dir) / "qmp.sock"

    @property
    def console_log(self) -> Path:
        return self.run_dir / "console.log"

    @property
    def qemu_log(self) -> Path:
        return self.run_dir / "qemu.log"


def problems(spec: MachineSpec) -> list[str]:
    """Every problem of a spec at once: the guest's own, then the machine's."""
    found = spec.guest.problems()
    if spec.accel not in ACCELERATORS:
        found.append(f"accelerator '{spec.accel}' is not one of {', '.join(ACCELERATORS)}")
    if spec.ssh_port is not None and not 1 <= spec.ssh_port <= 65535:
        found.append(f"SSH port {spec.ssh_port} is not a TCP port")
    if spec.binary is None and spec.target.qemu == "rig":
        found.append(f"no QEMU binary given for {spec.target.name} (rig builds its QEMU itself)")
    if len(kernel_cmdline(spec)) > CMDLINE_MAX:
        found.append(f"kernel command line is longer than {CMDLINE_MAX} characters")
    return found


def validate(spec: MachineSpec) -> None:
    """Every problem of a spec at once, as a UserError naming the option to fix."""
    found = problems(spec)
    if found:
        raise UserError("cannot boot this machine:\n    " + "\n    ".join(found),
                        hint="see `rig boot --help` for the accepted values")


def kernel_cmdline(spec: MachineSpec) -> str:
    target = spec.target
    parts = [f"console={target.console}"]
    if spec.disk is not None:
        parts += ["root=/dev/vda", "rootfstype=ext4", "rw"]
    if spec.init is not None:
        parts.append(f"init={spec.init}" if spec.disk is not None else f"rdinit={spec.init}")
    parts += BASE_CMDLINE
    parts += target.cmdline
    if spec.ssh_port is not None:
        # QEMU user networking's addresses, set by the kernel before init (CONFIG_IP_PNP);
        # rig_net tells rig-init to check (see images/rig-init).
        parts += [f"ip={GUEST_IP}::{GATEWAY_IP}:255.255.255.0::eth0:off", "rig_net=kernel"]
    parts += spec.guest.cmdline_extra
    return " ".join(parts)


SECCOMP = "on,obsolete=deny,elevateprivileges=deny,spawn=deny"


def _chardev_path(path: Path) -> str:
    # QEMU splits -chardev/-device options at commas; ",," is a literal comma.
    return str(path).replace(",", ",,")


def build_argv(spec: MachineSpec) -> list[str]:
    """The full QEMU argv for `spec` (validated first)."""
    validate(spec)
    target, guest = spec.target, spec.guest
    accel = "tcg,thread=multi" if spec.accel == "tcg" else "kvm"
    argv = [
        spec.qemu,
        "-name", "rig-guest,debug-threads=on",
        "-machine", ",".join((target.machine, *guest.gpu_model.machine_options)),
    ]
    cpu = target.cpu_for(spec.accel)
    if cpu is not None:
        argv += ["-cpu", cpu]
    argv += [
        "-accel", accel,
        "-m", str(guest.memory_mib),
        "-smp", str(guest.cpus),
        "-nodefaults",
        "-no-user-config",
        "-display", guest.gpu_model.display,
        "-vga", "none",
        "-no-reboot",
        # pvpanic tells QEMU at the panic notifiers, before the kernel flushes a panic
        # that began in NMI context (rig's hang forensics) to the console: QEMU keeps
        # running on the event, and -no-reboot ends it when the kernel reboots (panic=-1)
        # with the whole report on the console.
        "-action", "panic=none",
        # QEMU's own seccomp filter: a guest that breaks out of a device model (the guest
        # runs a kernel built from a series) may not exec, setuid or use obsolete calls.
        "-sandbox", SECCOMP,
        "-kernel", str(spec.kernel),
        "-append", kernel_cmdline(spec),
        "-chardev", f"file,id=console,path={_chardev_path(spec.console_log)}",
        "-serial", "chardev:console",
        # rig listens on the socket and QEMU connects to it: no polling for QEMU's socket.
        "-chardev", f"socket,id=qmp,path={_chardev_path(spec.qmp_socket)}",
        "-mon", "chardev=qmp,mode=control",
        "-device", f"{target.virtio('balloon')},id=balloon0,deflate-on-oom=on",
    ]
    if target.panic_device is not None:
        argv += ["-device", target.panic_device]
    argv += [
        "-object", "rng-random,id=rng0,filename=/dev/urandom",
        "-device", f"{target.virtio('rng')},rng=rng0",
    ]
    for device in target.extra_devices:
        argv += ["-device", device]
    if spec.initrd is not None:
        argv += ["-initrd", str(spec.initrd)]
    if spec.disk is not None:
        # The overlay is thrown away after the boot, so no flush is worth waiting for.
        argv += [
            "-drive", f"file={_chardev_path(spec.disk)},format=qcow2,if=none,id=root,cache=unsafe,discard=unmap",
            "-device", f"{target.virtio('blk')},drive=root",
        ]
    if spec.ssh_port is not None:
        argv += [
            "-netdev", f"user,id=net0,hostfwd=tcp:127.0.0.1:{spec.ssh_port}-:22",
            "-device", f"{target.virtio('net')},netdev=net0",
        ]
    for device in guest.gpu_model.devices:
        argv += ["-device", device]
    return argv


def display_probe_argv(qemu: str, target: Target, model: GpuModel) -> list[str]:
    """A QEMU with `model`'s display and devices and nothing else, paused (-S), taking
    QMP on stdin: it opens the display (and its OpenGL) at once and quits when told, so
    whether the host can give the model what it needs is known in a fraction of a
    second, without a kernel. Run it with the model's environment."""
    argv = [qemu, "-machine", ",".join((target.machine, *model.machine_options)), "-accel", "tcg",
            "-nodefaults", "-no-user-config", "-display", model.display, "-vga", "none",
            # The guest's seccomp filter too: the display's libraries must start under it.
            "-sandbox", SECCOMP]
    for device in model.devices:
        argv += ["-device", device]
    return [*argv, "-S", "-qmp", "stdio"]


# What the probe sends: QMP's handshake, then quit.
DISPLAY_PROBE_INPUT = b'{"execute": "qmp_capabilities"}\n{"execute": "quit"}\n'


def qemu_environment(spec: MachineSpec) -> dict[str, str]:
    """The variables QEMU runs with on top of rig's own environment: those of the GPU
    model's display (empty for every model that needs no host OpenGL)."""
    return dict(spec.guest.gpu_model.environment)


def render(argv: list[str], env: dict[str, str] | None = None) -> str:
    """A shell command line for `argv`, with `env` as assignments before it."""
    assignments = [f"{name}={shlex.quote(value)}" for name, value in (env or {}).items()]
    return " ".join([*assignments, shlex.join(argv)])
