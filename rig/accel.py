"""Which accelerator QEMU should use: KVM when a short probe proves it boots a kernel to
power-off, else TCG. /dev/kvm opening is not enough: nested KVM can hang a guest forever,
so the probe is a real tiny boot under a short deadline, and QEMU is killed if it hangs.

KVM runs only guests of the host's own architecture: a foreign target (an arm64 guest on
an x86_64 host) uses TCG without a probe, and says why."""

from __future__ import annotations

import json
import os
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from rig import cache, proc
from rig.errors import UserError
from rig.guest_spec import host_machine
from rig.qemu import initramfs
from rig.target import Target

# A working KVM boots a kernel + busybox initramfs to power-off in 1-2 s; a broken one
# hangs. Generous enough for a loaded host, short enough not to matter when it fails.
PROBE_TIMEOUT_S = 8.0

# A probe's verdict holds for this host boot and QEMU binary for this long.
PROBE_CACHE_TTL_S = 6 * 3600.0

PROBE_MARKER = "rig-accel-probe: reached init"
PROBE_INIT = f"echo '{PROBE_MARKER}' > /dev/console\n/bin/busybox poweroff -f\n"


@dataclass(frozen=True)
class AccelChoice:
    accel: str  # "kvm" or "tcg"
    reason: str  # said to the user: why this accelerator


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown"


def _kvm_usable() -> str | None:
    """Why KVM cannot be used at all, or None if /dev/kvm opens."""
    try:
        fd = os.open("/dev/kvm", os.O_RDWR | os.O_CLOEXEC)
    except OSError as exc:
        return f"/dev/kvm is not usable ({exc.strerror})"
    os.close(fd)
    return None


def probe_argv(qemu: str, target: Target, kernel: Path, initrd: Path, console: Path) -> list[str]:
    """The probe's QEMU command line: the smallest machine of `target` that boots to init."""
    argv = [qemu, "-machine", target.machine, "-accel", "kvm"]
    cpu = target.cpu_for("kvm")
    if cpu is not None:
        argv += ["-cpu", cpu]
    return argv + [
        "-m", "256", "-smp", "1",
        "-nodefaults", "-no-user-config", "-display", "none", "-no-reboot",
        "-kernel", str(kernel), "-initrd", str(initrd),
        "-append", f"console={target.console} panic=-1 quiet",
        "-chardev", f"file,id=console,path={str(console).replace(',', ',,')}",
        "-serial", "chardev:console",
    ]


def probe_kvm(kernel: Path, target: Target, qemu: str, *, timeout_s: float = PROBE_TIMEOUT_S) -> AccelChoice:
    """Boot `kernel` with a power-off initramfs under KVM; KVM if it powers off in time."""
    unusable = _kvm_usable()
    if unusable is not None:
        return AccelChoice("tcg", unusable)
    with tempfile.TemporaryDirectory(prefix="rig-accel-") as tmp:
        work = Path(tmp)
        initrd = initramfs.busybox_initramfs(PROBE_INIT, work / "probe.cpio")
        console = work / "console.log"
        argv = probe_argv(qemu, target, kernel, initrd, console)
        started = time.monotonic()
        # spawn, not run: the probe QEMU is tied to rig's life even if rig is SIGKILLed.
        process = proc.spawn(argv, log=work / "qemu.log")
        try:
            status = process.wait(timeout_s)
        finally:
            process.stop(grace_s=1.0)
        if status is None:
            return AccelChoice("tcg", f"a KVM test boot did not power off within {timeout_s:.0f} s; nested KVM?")
        took = time.monotonic() - started
        reached = console.is_file() and PROBE_MARKER in console.read_text(errors="replace")
        if status == 0 and reached:
            return AccelChoice("kvm", f"a KVM test boot powered off in {took:.1f} s")
        output = (work / "qemu.log").read_text(errors="replace").strip().splitlines()
        detail = output[-1] if output else "no output"
        return AccelChoice("tcg", f"a KVM test boot failed (exit {status}: {detail})")


def choose_accel(kernel: Path, target: Target, qemu: str, requested: str | None = None) -> AccelChoice:
    """`requested` if given ("kvm"/"tcg"), else $RIG_ACCEL, else TCG for a foreign target,
    else the (cached) probe's verdict. `qemu` is the QEMU binary the guest will use."""
    wanted = requested or os.environ.get("RIG_ACCEL") or None
    asker = "--accel" if requested else "RIG_ACCEL"
    if wanted not in (None, "auto", "kvm", "tcg"):
        raise UserError(f"accelerator '{wanted}' is not kvm, tcg or auto", hint=f"set {asker} to kvm, tcg or auto")
    host = host_machine()
    native = target.native_on(host)
    if wanted == "kvm" and not native:
        raise UserError(f"{asker} kvm: KVM cannot run {target.name} guests on this {host} host",
                        hint=f"set {asker} to tcg or auto")
    if wanted in ("kvm", "tcg"):
        return AccelChoice(wanted, "asked for" if requested else "asked for by RIG_ACCEL")
    if not native:
        return AccelChoice("tcg", f"the guest is {target.name} and the host {host}: KVM runs only the host's own "
                                  "architecture")
    # KVM working is a property of the host, not of the kernel: one probe per host boot.
    key = cache.digest([_boot_id(), qemu])
    entry = cache.cache_dir("accel") / f"{key}.json"
    try:
        saved = json.loads(entry.read_text())
        if time.time() - float(saved["at"]) < PROBE_CACHE_TTL_S:
            return AccelChoice(saved["accel"], saved["reason"] + "; probed earlier on this host boot")
    except (OSError, ValueError, KeyError, TypeError):
        pass
    choice = probe_kvm(kernel, target, qemu)
    tmp = entry.with_suffix(".tmp")
    tmp.write_text(json.dumps({"accel": choice.accel, "reason": choice.reason, "at": time.time()}))
    os.replace(tmp, entry)
    return choice
