"""Hang forensics: before rig stops a guest that hangs, it asks the guest kernel what it
was doing, through paths that work when guest userspace is dead.

When a guest command passes its deadline, the guest stops answering SSH, or the run's
deadline ends an attempt (rig.vm, rig.attempt), `investigate` runs once per guest:

1. sysrq w (blocked tasks with their stacks) and l (every CPU's backtrace), and t (every
   task) when asked, each sent as alt+sysrq+<key> through QMP `send-key` to the guest's
   keyboard: the kernel's sysrq handler runs in the keyboard interrupt, so it answers
   while every process is stuck. A target without a keyboard (arm64's virt board) gets
   them through /proc/sysrq-trigger over SSH instead, which works only while sshd does.
   Each key has to be answered on the console (the kernel prints "sysrq: <action>"
   first) within a few seconds; a key that is not answered means interrupts are dead,
   and the remaining keys are not tried.
2. With `dump`, QMP `dump-guest-memory` writes the guest's memory as an ELF core that the
   `crash` utility opens with the kernel's vmlinux.
3. When no key was answered (every CPU stuck with interrupts off): every vCPU's program
   counter and the kernel functions on its stack, read by QEMU from the host
   (rig.qemu.vcpus), which needs nothing of the guest; then, if the target can take one,
   an NMI through QMP `inject-nmi`: rig boots x86_64 guests with unknown_nmi_panic
   and panic_print's all-CPU-backtrace bit (rig.target), so the NMI turns the hard hang
   into a panic that prints the stuck CPU's stack and asks the others for theirs.

Everything the kernel prints lands in console.log, where rig's parser and attribution
read it like any other report; the HangRecord says what was asked and what came back.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from rig.errors import RigError
from rig.qemu.vcpus import Symbols, VcpuStack, read_vcpus, system_map_near
from rig.splat.sysrq import BlockedTask, CpuBacktrace, blocked_tasks, cpu_backtraces
from rig.target import Target

if TYPE_CHECKING:
    from rig.qemu.machine import MachineState

# What each sysrq key asks, and the header the kernel prints before it answers
# (drivers/tty/sysrq.c: pr_info("%s\n", op_p->action_msg) as "sysrq: <action_msg>").
SYSRQ_ACTIONS = {
    "w": "Show Blocked State",
    "l": "Show backtrace of all active CPUs",
    "t": "Show State",
}
SYSRQ_PURPOSE = {"w": "blocked tasks", "l": "backtraces of all CPUs", "t": "every task"}
# The header comes from the keyboard interrupt at once; under TCG on a loaded host the
# console may take a few seconds to show it.
ANSWER_WAIT_S = 8.0
# The answer is complete once the console has been quiet this long (a task list over a
# 115200 baud console takes seconds to print).
QUIET_S = 1.5
# The longest one answer may take to print (sysrq t of a busy guest).
ANSWER_MAX_S = 60.0
# /proc/sysrq-trigger over SSH: a live sshd answers in well under this.
SSH_SYSRQ_TIMEOUT_S = 15.0
# After the NMI: the panic asks every CPU for its backtrace and waits up to 10 s for those
# that do not answer (lib/nmi_backtrace.c), stops them, and reboots (QEMU then exits).
NMI_WAIT_S = 40.0
# dump-guest-memory of a few GiB guest: the write of the whole memory to the run directory.
DUMP_TIMEOUT_S = 300.0
DUMP_NAME = "guest-memory.elf"
VCPUS_NAME = "vcpus.txt"  # what QEMU's monitor showed of every vCPU


@dataclass(frozen=True)
class HangPolicy:
    """What rig asks a hung guest beyond blocked tasks and CPU backtraces."""

    task_list: bool = False  # sysrq t: every task's stack (long)
    dump: bool = False  # dump-guest-memory into the run directory (--dump-on-hang)

    @property
    def keys(self) -> tuple[str, ...]:
        return ("w", "l", "t") if self.task_list else ("w", "l")


@dataclass(frozen=True)
class SysrqAsk:
    """One sysrq key rig sent, how, and whether the kernel answered it on the console."""

    key: str
    route: str  # "keyboard" (QMP send-key), "ssh" (/proc/sysrq-trigger) or "none"
    answered: bool
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "asks": SYSRQ_PURPOSE.get(self.key, ""), "route": self.route,
                "answered": self.answered, "error": self.error}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> SysrqAsk:
        return cls(str(data["key"]), str(data.get("route", "")), bool(data.get("answered")), data.get("error"))


@dataclass(frozen=True)
class HangRecord:
    """What rig asked a hung guest and what came back (report.json's attempts[].hang)."""

    reason: str  # why rig thought the guest hung
    started: float  # wall-clock time.time()
    asks: tuple[SysrqAsk, ...] = ()
    nmi: str | None = None  # None: not sent; "sent", or why it failed
    nmi_answered: bool = False  # the console showed something after the NMI
    dump: str | None = None  # the memory dump's path, relative to the attempt's directory when inside it
    dump_bytes: int | None = None
    dump_error: str | None = None
    console_start: int = 0  # console.log's size when rig began asking
    console_end: int = 0  # and when it was done
    seconds: float = 0.0
    blocked: tuple[BlockedTask, ...] = ()  # parsed from the console once the attempt is over
    cpus: tuple[CpuBacktrace, ...] = ()
    skipped: tuple[str, ...] = field(default=())  # keys not sent after one went unanswered
    vcpus: tuple[VcpuStack, ...] = ()  # every vCPU as QEMU sees it, when the kernel answered no key
    vcpus_error: str | None = None

    @property
    def answered(self) -> bool:
        return any(ask.answered for ask in self.asks) or self.nmi_answered

    def with_console(self, console: Path) -> HangRecord:
        """The record with the blocked tasks and CPU backtraces the console shows from the
        moment rig began asking (a panic after the NMI included)."""
        try:
            with open(console, "rb") as handle:
                handle.seek(self.console_start)
                text = handle.read()
        except OSError:
            return self
        return replace(self, blocked=blocked_tasks(text), cpus=cpu_backtraces(text))

    def to_json(self) -> dict[str, Any]:
        return {"reason": self.reason, "started": self.started, "seconds": self.seconds,
                "asks": [a.to_json() for a in self.asks], "skipped": list(self.skipped),
                "nmi": self.nmi, "nmi_answered": self.nmi_answered,
                "dump": self.dump, "dump_bytes": self.dump_bytes, "dump_error": self.dump_error,
                "console_start": self.console_start, "console_end": self.console_end,
                "blocked_tasks": [t.to_json() for t in self.blocked],
                "cpu_backtraces": [c.to_json() for c in self.cpus],
                "vcpus": [v.to_json() for v in self.vcpus], "vcpus_error": self.vcpus_error}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> HangRecord:
        return cls(str(data.get("reason", "")), float(data.get("started", 0.0)),
                   tuple(SysrqAsk.from_json(a) for a in data.get("asks") or ()), data.get("nmi"),
                   bool(data.get("nmi_answered")), data.get("dump"), data.get("dump_bytes"), data.get("dump_error"),
                   int(data.get("console_start", 0)), int(data.get("console_end", 0)),
                   float(data.get("seconds", 0.0)),
                   tuple(BlockedTask.from_json(t) for t in data.get("blocked_tasks") or ()),
                   tuple(CpuBacktrace.from_json(c) for c in data.get("cpu_backtraces") or ()),
                   tuple(data.get("skipped") or ()), tuple(VcpuStack.from_json(v) for v in data.get("vcpus") or ()),
                   data.get("vcpus_error"))


class Asked(Protocol):
    """What `investigate` needs of a machine (rig.qemu.machine.Machine; a stand-in in tests)."""

    console_log: Path

    @property
    def state(self) -> MachineState: ...

    async def send_key(self, keys: Sequence[str]) -> None: ...

    async def inject_nmi(self) -> None: ...

    async def hmp(self, command: str, cpu_index: int | None = None) -> str: ...

    async def dump_guest_memory(self, path: Path, *, timeout: float) -> None: ...

    async def wait_exit(self, timeout: float) -> int | None: ...


SshSysrq = Callable[[str], Awaitable[object]]


def console_size(path: Path) -> int:
    try:
        return os.stat(path).st_size
    except OSError:
        return 0


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


async def wait_answer(machine: Asked, offset: int, header: str, *, answer_wait_s: float | None = None,
                      quiet_s: float | None = None, max_s: float | None = None, poll_s: float = 0.1) -> bool:
    """Whether the console shows `header` after `offset` within `answer_wait_s`; once it
    does, also wait until the console has been quiet for `quiet_s` (the whole answer)."""
    answer_wait_s = ANSWER_WAIT_S if answer_wait_s is None else answer_wait_s
    quiet_s = QUIET_S if quiet_s is None else quiet_s
    max_s = ANSWER_MAX_S if max_s is None else max_s
    started = time.monotonic()
    seen_at: float | None = None
    size = offset
    changed = time.monotonic()
    while True:
        now = time.monotonic()
        if machine.state.over:
            return seen_at is not None or header in _read_from(machine.console_log, offset)
        current = console_size(machine.console_log)
        if current != size:
            size, changed = current, now
        if seen_at is None and header in _read_from(machine.console_log, offset):
            seen_at = now
        if seen_at is None and now - started > answer_wait_s:
            return False
        if seen_at is not None and (now - changed >= quiet_s or now - seen_at > max_s):
            return True
        await asyncio.sleep(poll_s)


async def _ask(machine: Asked, target: Target, key: str, ssh: SshSysrq | None, **waits: float) -> SysrqAsk:
    offset = console_size(machine.console_log)
    if target.sysrq_keyboard:
        route = "keyboard"
        try:
            await machine.send_key(["alt", "sysrq", key])
        except RigError as exc:
            return SysrqAsk(key, route, False, exc.message)
    elif ssh is not None:
        route = "ssh"
        try:
            await asyncio.wait_for(ssh(key), SSH_SYSRQ_TIMEOUT_S)
        except (RigError, asyncio.TimeoutError) as exc:
            message = exc.message if isinstance(exc, RigError) else f"no answer within {SSH_SYSRQ_TIMEOUT_S:.0f} s"
            return SysrqAsk(key, route, False, f"/proc/sysrq-trigger over SSH: {message}")
    else:
        return SysrqAsk(key, "none", False, f"no way to send sysrq to a {target.name} guest")
    answered = await wait_answer(machine, offset, "sysrq: " + SYSRQ_ACTIONS[key], **waits)
    return SysrqAsk(key, route, answered)


async def investigate(machine: Asked, target: Target, policy: HangPolicy, reason: str, *, dump_dir: Path,
                      ssh: SshSysrq | None = None, kernel: Path | None = None, nmi_wait_s: float = NMI_WAIT_S,
                      **waits: float) -> HangRecord:
    """Ask the hung guest's kernel for its state (see the module docstring); never raises
    RigError: what failed is in the record."""
    started_wall, started = time.time(), time.monotonic()
    console_start = console_size(machine.console_log)
    asks: list[SysrqAsk] = []
    skipped: list[str] = []
    for key in policy.keys:
        if machine.state.over:
            break
        if asks and not asks[-1].answered and asks[-1].route == "keyboard":
            skipped.append(key)  # the keyboard interrupt is not taken: no key will be
            continue
        asks.append(await _ask(machine, target, key, ssh, **waits))
    dump = dump_bytes = dump_error = None
    if policy.dump and not machine.state.over:
        dump, dump_bytes, dump_error = await _dump(machine, dump_dir)
    vcpus: tuple[VcpuStack, ...] = ()
    vcpus_error: str | None = None
    answered = any(a.answered for a in asks)
    if not answered and not machine.state.over:
        # before the NMI, which moves every CPU into its handler and then the panic
        symbols = Symbols.from_system_map(system_map_near(kernel) if kernel is not None else None)
        shown: list[str] = []

        async def monitor(command: str, cpu: int | None) -> str:
            output = await machine.hmp(command, cpu)
            shown.append(f"(qemu) {command}" + ("" if cpu is None else f"    [cpu {cpu}]") + f"\n{output}")
            return output

        try:
            vcpus = await read_vcpus(monitor, symbols)
        except RigError as exc:
            vcpus_error = exc.message
        # QEMU's own words, beside the console (the report has them parsed)
        with contextlib.suppress(OSError):
            (dump_dir / VCPUS_NAME).write_text("\n".join(shown))
    nmi: str | None = None
    nmi_answered = False
    if not answered and target.nmi and not machine.state.over:
        before = console_size(machine.console_log)
        try:
            await machine.inject_nmi()
            nmi = "sent"
        except RigError as exc:
            nmi = f"failed: {exc.message}"
        else:
            await machine.wait_exit(nmi_wait_s)
            nmi_answered = console_size(machine.console_log) > before
    return HangRecord(reason, started_wall, tuple(asks), nmi, nmi_answered, dump, dump_bytes, dump_error,
                      console_start, console_size(machine.console_log), round(time.monotonic() - started, 2),
                      skipped=tuple(skipped), vcpus=vcpus, vcpus_error=vcpus_error)


async def _dump(machine: Asked, dump_dir: Path) -> tuple[str | None, int | None, str | None]:
    path = (dump_dir / DUMP_NAME).resolve()
    try:
        await machine.dump_guest_memory(path, timeout=DUMP_TIMEOUT_S)
    except RigError as exc:
        return None, None, exc.message
    try:
        size = path.stat().st_size
    except OSError as exc:
        return None, None, f"QEMU wrote no dump at {path}: {exc.strerror}"
    return str(path), size, None


class HangWatch:
    """A guest's forensics state: the policy, and the one investigation it gets (several
    guest calls may time out at once; only the first asks, the others wait for it)."""

    def __init__(self, policy: HangPolicy | None = None) -> None:
        self.policy = policy or HangPolicy()
        self.record: HangRecord | None = None
        self._lock = asyncio.Lock()

    async def once(self, run: Callable[[], Awaitable[HangRecord]]) -> HangRecord | None:
        async with self._lock:
            if self.record is None:
                self.record = await run()
        return self.record
