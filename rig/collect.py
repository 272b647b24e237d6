"""Collection: the raw bytes a run leaves behind, each saved as it came.

From the live guest (over SSH): dmesg, the kmemleak report (scan, wait, scan, read),
/proc/lockdep_stats and the taint flags. From QEMU (over QMP): a screendump of the
display. After the guest is gone: the serial console log (the one source that survives
a panic) and the QMP events. Every step runs on its own: one that fails is noted and the
rest still run, so nothing already collected is lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rig.errors import RigError

if TYPE_CHECKING:
    from rig.vm import VM

KMEMLEAK = "/sys/kernel/debug/kmemleak"
# Written to the kernel log just before rig reads the kmemleak report: kmemleak gives each
# object's age at the read, so this line's printk time dates every allocation
# (rig.analysis), which places a leak of an IRQ thread or a worker in the test it ran under.
KMEMLEAK_READ_MARKER = "rig: kmemleak read"
# kmemleak reports an object only once it is older than 5 s (its minimum age) and was
# unreferenced in a scan: scan, let young objects age, scan again.
KMEMLEAK_WAIT_S = 6.0
# One scan walks all of the guest's memory; under TCG that takes seconds.
KMEMLEAK_SCAN_TIMEOUT_S = 180.0
READ_TIMEOUT_S = 60.0

# Taint bits (Documentation/admin-guide/tainted-kernels.rst) and their letters.
TAINT_FLAGS = "PFSRMBUDAWCIOELKXTN"


@dataclass(frozen=True)
class Collected:
    directory: Path
    dmesg: Path | None = None
    kmemleak: Path | None = None
    lockdep_stats: Path | None = None
    tainted: int | None = None
    screendump: Path | None = None
    console: Path | None = None
    qmp_events: Path | None = None
    problems: tuple[str, ...] = ()  # what could not be collected, and why

    def to_json(self) -> dict[str, Any]:
        return {
            "dmesg": _rel(self.dmesg, self.directory),
            "kmemleak": _rel(self.kmemleak, self.directory),
            "lockdep_stats": _rel(self.lockdep_stats, self.directory),
            "tainted": self.tainted,
            "taint_flags": taint_letters(self.tainted) if self.tainted is not None else None,
            "screendump": _rel(self.screendump, self.directory),
            "console": _rel(self.console, self.directory),
            "qmp_events": _rel(self.qmp_events, self.directory),
            "problems": list(self.problems),
        }


def _rel(path: Path | None, base: Path) -> str | None:
    if path is None:
        return None
    try:
        return str(path.relative_to(base.parent))
    except ValueError:
        return str(path)


def taint_letters(value: int) -> str:
    return "".join(letter for bit, letter in enumerate(TAINT_FLAGS) if value & (1 << bit))


def lockdep_debug_locks(stats: str) -> int | None:
    """`debug_locks` from /proc/lockdep_stats: 0 once lockdep has reported (and stopped)."""
    for line in stats.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "debug_locks" and value.strip().isdigit():
            return int(value.strip())
    return None


async def _save(vm: VM, argv: list[str], path: Path, timeout: float, problems: list[str]) -> Path | None:
    try:
        result = await vm.run(argv, timeout=timeout)
    except RigError as exc:
        problems.append(f"{' '.join(argv)}: {exc.message.splitlines()[0]}")
        return None
    if result.exit_status != 0:
        problems.append(f"{' '.join(argv)}: exit status {result.exit_status}: {result.stderr.strip()[:200]}")
        return None
    path.write_bytes(result.stdout.encode())
    return path


async def kmemleak_report(vm: VM, path: Path, problems: list[str], *, quiet_since: float | None = None
                         ) -> Path | None:
    """scan, let the youngest objects age, scan again, read: the objects that stayed
    unreferenced. kmemleak reports an object only from the scan after the one that first
    saw it unchanged (it checksums objects) and only once it is 5 s old; `quiet_since`
    (time.monotonic() when the workloads stopped allocating) saves waiting for time that
    has already passed."""
    check = await vm.run(["test", "-w", KMEMLEAK], timeout=READ_TIMEOUT_S)
    if check.exit_status != 0:
        problems.append(f"kmemleak: {KMEMLEAK} is missing (kernel without DEBUG_KMEMLEAK, or kmemleak disabled)")
        return None
    for attempt in range(2):
        result = await vm.run(["sh", "-c", 'echo scan > "$0"', KMEMLEAK], timeout=KMEMLEAK_SCAN_TIMEOUT_S)
        if result.exit_status != 0:
            problems.append(f"kmemleak scan failed: {result.stderr.strip()[:200]}")
            return None
        if attempt == 0:
            aged_at = (quiet_since if quiet_since is not None else time.monotonic()) + KMEMLEAK_WAIT_S
            await asyncio.sleep(max(0.0, aged_at - time.monotonic()))
    return await _save(vm, kmemleak_read_argv(), path, READ_TIMEOUT_S, problems)


def kmemleak_read_argv() -> list[str]:
    """Read the kmemleak report, its time marked on the kernel log in the same breath."""
    return ["sh", "-c", f'echo "{KMEMLEAK_READ_MARKER}" > /dev/kmsg; cat "$0"', KMEMLEAK]


async def kmemleak_clear(vm: VM) -> None:
    await vm.run(["sh", "-c", 'echo clear > "$0"', KMEMLEAK], timeout=READ_TIMEOUT_S)


async def from_guest(vm: VM, out: Path, *, kmemleak: bool = True, quiet_since: float | None = None) -> Collected:
    """Everything that needs the live guest; each step independent of the others."""
    out.mkdir(parents=True, exist_ok=True)
    problems: list[str] = []
    kmemleak_path = None
    if kmemleak:
        try:
            kmemleak_path = await kmemleak_report(vm, out / "kmemleak.txt", problems, quiet_since=quiet_since)
        except RigError as exc:
            problems.append(f"kmemleak: {exc.message.splitlines()[0]}")
    dmesg = await _save(vm, ["dmesg"], out / "dmesg.txt", READ_TIMEOUT_S, problems)
    stats = await _save(vm, ["cat", "/proc/lockdep_stats"], out / "lockdep_stats.txt", READ_TIMEOUT_S, problems)
    tainted = None
    taint_path = await _save(vm, ["cat", "/proc/sys/kernel/tainted"], out / "tainted.txt", READ_TIMEOUT_S, problems)
    if taint_path is not None:
        with contextlib.suppress(ValueError):
            tainted = int(taint_path.read_text().strip())
    shot = await screendump(vm, out / "screendump.png", problems)
    return Collected(out, dmesg, kmemleak_path, stats, tainted, shot, problems=tuple(problems))


# Puts the kernel log's last lines on the first virtual terminal (the console on the GPU
# model's framebuffer), so the screendump shows the guest's state at the end of the run.
_LOG_TO_SCREEN = 'printf "\\033[2J\\033[H" > /dev/tty1 && dmesg | tail -n "$0" > /dev/tty1'
SCREEN_LINES = 48


async def screendump(vm: VM, path: Path, problems: list[str]) -> Path | None:
    if not vm.spec.gpu_model.screendump:
        return None  # nothing on a screen QEMU can read back, and no problem to report
    with contextlib.suppress(RigError):
        await vm.run(["sh", "-c", _LOG_TO_SCREEN, str(SCREEN_LINES)], timeout=READ_TIMEOUT_S)
        await asyncio.sleep(0.5)  # the framebuffer's damage worker flushes to the host
    try:
        await vm.machine.screendump(path)
    except RigError as exc:
        problems.append(f"screendump: {exc.message.splitlines()[0]}")
        return None
    # QEMU writes the file itself; it may land a moment after the QMP answer.
    for _ in range(20):
        if path.is_file() and path.stat().st_size > 0:
            return path
        await asyncio.sleep(0.1)
    problems.append("screendump: QEMU wrote no file")
    return None


def after_guest(collected: Collected | None, out: Path, console_log: Path | None, events_log: Path | None,
                extra_problems: tuple[str, ...] = ()) -> Collected:
    """Add what survives the guest (console log, QMP events), linked or copied into `out`
    (where they are, if `out` cannot be made: a full disk must not lose them)."""
    base = collected or Collected(out)
    problems = list(base.problems) + list(extra_problems)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        problems.append(f"{out}: could not be made ({exc.strerror}); the console log and QMP events stay in "
                        f"{console_log.parent if console_log else 'the guest directory'}")
        console = console_log if console_log is not None and console_log.is_file() else None
        events = events_log if events_log is not None and events_log.is_file() else None
        return Collected(out, base.dmesg, base.kmemleak, base.lockdep_stats, base.tainted, base.screendump,
                         console, events, tuple(problems))
    console = _copy(console_log, out / "console.log", problems, "console log")
    events = _copy(events_log, out / "qmp-events.jsonl", problems, "QMP events")
    return Collected(out, base.dmesg, base.kmemleak, base.lockdep_stats, base.tainted, base.screendump,
                     console, events, tuple(problems))


def _copy(source: Path | None, target: Path, problems: list[str], what: str) -> Path | None:
    """`source` under `target`'s name too: a hard link where it can be (no second copy of
    the bytes, so it works on a full disk), else a copy; if neither works (the disk is
    full), the original, which stays where it is."""
    if source is None or not source.is_file():
        problems.append(f"{what}: not found")
        return None
    if source.resolve() == target.resolve():
        return target
    with contextlib.suppress(FileNotFoundError):
        target.unlink()
    try:
        os.link(source, target)
        return target
    except OSError:
        pass  # another file system, or one without hard links
    try:
        shutil.copyfile(source, target)
        return target
    except OSError as exc:
        target.unlink(missing_ok=True)
        problems.append(f"{what}: could not be copied to {target} ({exc.strerror}); it is kept at {source}")
        return source


def read_events(path: Path | None) -> list[dict[str, Any]]:
    if path is None or not path.is_file():
        return []
    events = []
    for line in path.read_text(errors="replace").splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            events.append(json.loads(line))
    return events
