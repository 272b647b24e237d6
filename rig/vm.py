"""Boot a kernel on a guest image and hand back a machine that answers SSH.

`boot_guest` takes the guest as one validated GuestSpec: it finds the target's QEMU,
chooses the accelerator, makes a copy-on-write overlay of the image, starts QEMU, and
waits until the guest answers SSH; a panic on the console, QEMU exiting or the deadline
ends the wait with the console tail in the error. Leaving the context powers the guest
off (or, if something failed, goes straight to QMP quit / SIGTERM / SIGKILL).

Every call into the guest (run, put, get, get_dir, shell, kmsg) goes through one guard,
`VM._guarded`, and whose fault a failure is gets decided in one function, `blame`, from
the machine's state (a MachineState value) and the call's own error.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import re
import shutil
import signal
import socket
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rig import gpu_faults
from rig import image as image_mod
from rig import proc
from rig.accel import choose_accel
from rig.errors import DISK_FULL_HINT, InfraError, Interrupted, KernelError, RigError, Terminated, UserError
from rig.forensics import HangRecord, HangWatch, investigate
from rig.guest import (COPY_TIMEOUT_S, TREE_TIMEOUT_S, Guest, GuestResult, GuestTimeout, GuestUnreachable,
                       HostKeyMismatch)
from rig.guest_spec import GuestSpec
from rig.image import GuestImage
from rig.kernel_image import check_kernel_image
from rig.qemu.argv import SOCKET_PATH_MAX, MachineSpec
from rig.qemu.machine import Life, Machine, MachineError, MachineState, indent, tail_text
from rig.target import Target

T = TypeVar("T")
log = logging.getLogger(__name__)

# After a panic line, QEMU (panic=-1, -no-reboot) exits within a second; give the rest of
# the report a moment to reach the log before rig reads it.
PANIC_SETTLE_S = 3.0
# A QEMU stopped from outside (SIGSTOP) this long ends the boot or call at once: waiting
# out SSH timeouts would only delay the same answer.
FROZEN_LIMIT_S = 10.0
# How often a guest call looks at the machine's state while it waits.
WATCH_INTERVAL_S = 0.1
# How often readiness is re-tried while the guest's sshd is not up yet.
SSH_RETRY_S = 0.1
# A single SSH attempt during boot: short, so a panic or exit is noticed quickly.
SSH_ATTEMPT_TIMEOUT_S = 10.0
# Boot readiness (see wait_ready). rig-init prints SSHD_MARK when sshd and eth0 are up and
# READY_MARK when it has mounted everything; without them (another init, a quiet kernel),
# SSH attempts begin this long after init started, or after QEMU started.
SSHD_MARK = "network up"
READY_MARK = "guest ready"
READY_WAIT_S = 10.0
ARM_AFTER_INIT_S = 3.0
ARM_AFTER_START_S = 30.0
# How long the first connection may wait for sshd's greeting before a fresh one is tried;
# each silent one doubles the wait (up to SSH_ATTEMPT_TIMEOUT_S): on a loaded host a TCG
# guest's sshd may take longer than this to greet, and a fixed wait would then give up on
# every connection (seen at load 10 on two cores: no login in 300 s).
BANNER_WAIT_S = 1.5
# Guest calls that may block at once (see VM.threads).
GUEST_THREADS = 32
# QEMU may lose the race for the free port rig picked; try a fresh one this many times.
PORT_ATTEMPTS = 3
# A line written to the guest's kernel log.
KMSG_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class BootTimes:
    qemu_started: float  # time.monotonic()
    init_seen: float | None  # when the console showed "Run /sbin/rig-init as init process"
    ssh_ready: float

    @property
    def ready_s(self) -> float:
        return self.ssh_ready - self.qemu_started

    @property
    def init_to_ready_s(self) -> float | None:
        return None if self.init_seen is None else self.ssh_ready - self.init_seen


@dataclass(frozen=True)
class VM:
    """A booted guest. Talk to it only through its methods: each is guarded (see `_guarded`)."""

    machine: Machine
    _guest: Guest  # the SSH session; private, so no call can bypass the guard
    console_log: Path
    accel: str
    accel_reason: str
    run_dir: Path
    ssh_port: int
    times: BootTimes
    spec: GuestSpec = field(default_factory=GuestSpec)
    # Guest calls block a thread each (a long IGT run, a sampler, a pressure loop at
    # once); their own pool, so they never starve asyncio's small default one.
    threads: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(GUEST_THREADS, "rig-guest"),
                                        repr=False, compare=False)
    # What rig asks the kernel when the guest hangs, and what it answered (rig.forensics).
    hang: HangWatch = field(default_factory=HangWatch, repr=False, compare=False)

    @property
    def state(self) -> MachineState:
        return self.machine.state

    async def _guarded(self, call: Callable[[], T]) -> T:
        """The one way into the guest: run the blocking `call` in a thread while watching
        the machine. A panic or QEMU exiting ends it at once; any error becomes the one
        `blame` decides (with the console tail where the console explains it)."""
        if self.machine.state.over:
            raise await death(self.machine)
        work = asyncio.get_running_loop().run_in_executor(self.threads, call)
        try:
            return await watch(self.machine, work)
        except KernelError as exc:
            if not hung(exc) or self.machine.state.life is not Life.RUNNING:
                raise
            # A guest is asked once: a record made for an earlier failure (a command past
            # its timeout, the kernel answering then) says nothing of this one.
            earlier = self.hang.record is not None
            record = await self.investigate(exc.message.splitlines()[0])
            if self.machine.state.over:  # the NMI made the kernel panic: that explains more
                raise await death(self.machine) from exc
            if not earlier and (lost := connection_lost(exc, record, self.machine)) is not None:
                raise lost from exc
            raise

    async def investigate(self, reason: str) -> HangRecord | None:
        """Hang forensics before QEMU is stopped (rig.forensics), once per guest: the first
        caller asks, later ones get the same record."""
        if self.machine.state.life is not Life.RUNNING and self.hang.record is None:
            return None
        log.info("the guest hangs (%s): asking its kernel for blocked tasks and CPU backtraces", reason)
        return await self.hang.once(lambda: investigate(
            self.machine, self.spec.target, self.hang.policy, reason, dump_dir=self.run_dir, ssh=self._ssh_sysrq,
            kernel=self.machine.spec.kernel))

    async def _ssh_sysrq(self, key: str) -> object:
        """sysrq through /proc/sysrq-trigger, for targets without a keyboard; outside the
        guard, which would investigate again."""
        return await asyncio.get_running_loop().run_in_executor(self.threads, functools.partial(
            self._guest.run, ["sh", "-c", 'echo "$0" > /proc/sysrq-trigger', key], timeout=10.0, check=True))

    async def run(self, argv: Sequence[str], *, timeout: float, check: bool = False,
                  env: Mapping[str, str] | None = None, input: bytes | None = None,
                  on_stdout: Callable[[bytes], None] | None = None,
                  on_stderr: Callable[[bytes], None] | None = None) -> GuestResult:
        """Run argv in the guest (Guest.run), guarded."""
        return await self._guarded(functools.partial(self._guest.run, argv, timeout=timeout, check=check, env=env,
                                                     input=input, on_stdout=on_stdout, on_stderr=on_stderr))

    async def put(self, local: Path, remote: str, *, timeout: float = COPY_TIMEOUT_S, mode: int | None = None) -> None:
        """Copy a host file into the guest, guarded."""
        await self._guarded(functools.partial(self._guest.put, local, remote, timeout=timeout, mode=mode))

    async def get(self, remote: str, local: Path, *, timeout: float = COPY_TIMEOUT_S) -> Path:
        """Copy a guest file to the host, guarded."""
        return await self._guarded(functools.partial(self._guest.get, remote, local, timeout=timeout))

    async def get_dir(self, remote: str, local: Path, *, timeout: float = TREE_TIMEOUT_S) -> Path:
        """Copy a guest directory tree to the host, guarded."""
        return await self._guarded(functools.partial(self._guest.get_dir, remote, local, timeout=timeout))

    async def shell(self, *, idle_timeout: float | None = None) -> int:
        """An interactive login shell on this terminal, guarded; its exit status."""
        return await self._guarded(functools.partial(self._guest.interactive_shell, idle_timeout=idle_timeout))

    async def kmsg(self, line: str, *, timeout: float = KMSG_TIMEOUT_S) -> None:
        """Write `line` to the guest's kernel log (the console shows what rig did when)."""
        await self.run(["sh", "-c", 'echo "$0" > /dev/kmsg', line], timeout=timeout)


def hung(error: KernelError) -> bool:
    """Whether a guest call's error says the guest hangs: a command past its deadline, or
    SSH lost while QEMU still runs (rig.vm.blame's verdict on a GuestUnreachable)."""
    return isinstance(error, GuestTimeout) or isinstance(error.__cause__, GuestUnreachable)


def with_console_tail(machine: Machine, lines: int = 30) -> str:
    """The console's last lines, to end an error message with what the guest said last."""
    return "\n  console tail:\n" + indent(machine.console_tail(lines))


def blame(machine: Machine, cause: RigError | None = None) -> RigError:
    """Whose fault a failure is, decided here and nowhere else.

    `cause` is the error a guest call (or QEMU's start) raised, None when the machine died
    while rig was waiting. The machine's state decides first: a dead guest explains a
    lost connection or a timeout better than they explain themselves. The kernel's fault
    (KernelError): a panic, a power-off or reboot nobody asked for, a guest that stops
    answering or does not finish in time. The host's (InfraError): QEMU killed by a
    signal rig did not send, QEMU failing (to start, or with an error status).
    """
    state = machine.state
    life = state.life
    if life is Life.PANICKED:
        return KernelError(f"the guest kernel panicked: {state.panic_line}\n" + indent(machine.panic_text()),
                           log=machine.console_log, hint="the console log has the whole report")
    if life is Life.KILLED:
        return InfraError(f"QEMU was killed by signal {state.signal} (not by rig)" + with_console_tail(machine, 20),
                          log=machine.console_log,
                          hint="something on the host killed QEMU (OOM killer? another user?); run again")
    if life is Life.FAILED:
        return InfraError(f"QEMU failed with exit status {state.returncode}:\n" + indent(_qemu_tail(machine)),
                          log=machine.spec.qemu_log, hint="check the QEMU arguments with --dry-run")
    if life is Life.POWERED_OFF:
        return KernelError(f"the guest powered off or rebooted unexpectedly (QEMU exit status {state.returncode})"
                           + with_console_tail(machine), log=machine.console_log)
    if state.disk_error is not None:
        # QEMU pauses the guest when the host refuses a write to its disk: the guest's
        # silence from then on is the host's doing, whatever the call saw.
        full = state.disk_full
        return InfraError(f"{'the disk is full' if full else 'the host failed the guest disk'}: {state.disk_error}"
                          + with_console_tail(machine, 10), log=machine.spec.qemu_log,
                          hint=DISK_FULL_HINT if full else "check the host's disk that holds the run directory")
    if cause is None:
        # Not a death rig can explain: rig's own shutdown (STOPPED), or no QEMU yet.
        return InfraError(f"the guest is {life.value} (QEMU exit status {state.returncode})",
                          log=machine.console_log)
    if state.frozen:
        # A stopped QEMU runs no guest: the guest's silence is not the kernel's doing.
        return InfraError("QEMU was stopped by a signal from outside rig (SIGSTOP?), so the guest could not "
                          f"answer: {cause.message}",
                          log=machine.console_log,
                          hint="something on the host stopped QEMU (kill -STOP, a debugger); run again")
    # QEMU still runs (or rig stopped it because of `cause`): the call's error says it.
    if isinstance(cause, GuestTimeout):
        return GuestTimeout(cause.message + with_console_tail(machine), hint=cause.hint, log=machine.console_log)
    if isinstance(cause, GuestUnreachable) and life is Life.RUNNING:
        return KernelError(f"the guest stopped answering SSH: {cause.message}" + with_console_tail(machine),
                           log=machine.console_log, hint="the guest kernel may hang; the console log may say why")
    return cause


# The OOM killer's line for sshd or its per-connection sshd-session (OpenSSH 9.8 and
# later), as mm/oom_kill.c prints it: the guest's memory, not the link, ended SSH.
SSHD_OOM_KILLED = re.compile(r"(?:Out of memory|Memory cgroup out of memory)[^\n]*: Killed process \d+ \(sshd[-\w]*\)")


def connection_lost(error: KernelError, record: HangRecord | None, machine: Machine) -> RigError | None:
    """The error for SSH lost while the guest's kernel still works, or None when the loss
    may be the kernel's (blame's verdict stands).

    `blame` calls a running guest that stops answering SSH the kernel's fault: the kernel
    may hang. Hang forensics then asked the kernel itself: when it answered a sysrq key
    on the console and showed no blocked task, it was not hung; the connection failed
    (the guest's sshd killed, its link taken down), which is the host's side of the run
    (exit 3). Unless the console shows the guest's OOM killer taking sshd: then the
    kernel under test's memory did it.
    """
    cause = error.__cause__
    if not isinstance(cause, GuestUnreachable) or record is None or not any(a.answered for a in record.asks):
        return None
    console = machine.console_log
    if record.with_console(console).blocked:
        return None
    try:
        text = console.read_text(errors="replace")
    except OSError:
        text = ""
    if (oom := SSHD_OOM_KILLED.search(text)) is not None:
        return KernelError(f"the guest's OOM killer killed sshd, and with it rig's connection: {oom.group(0)}"
                           + with_console_tail(machine), log=console,
                           hint="the guest ran out of memory; the console log shows the OOM report")
    keys = ", ".join(a.key for a in record.asks if a.answered)
    return InfraError(f"the SSH connection to the guest was lost while its kernel still answered (sysrq {keys}, "
                      f"no blocked task): {cause.message}" + with_console_tail(machine, 20), log=console,
                      hint="sshd in the guest was killed or the guest's network went down; run again")


def _unless_frozen(machine: Machine) -> None:
    """Raise the host's error when QEMU cannot run the guest: its process stopped from
    outside for too long, or the guest paused because the host refused its disk a write."""
    if machine.state.disk_error is not None:
        raise blame(machine, GuestUnreachable("QEMU paused the guest"))
    frozen = machine.frozen_for()
    if frozen > FROZEN_LIMIT_S:
        raise blame(machine, GuestUnreachable(f"QEMU's process has been stopped for {frozen:.0f} s"))


async def death(machine: Machine) -> RigError:
    """The error for a machine found dead, once QEMU's exit and the console's last lines
    (the rest of a panic report) are in."""
    await machine.wait_exit(PANIC_SETTLE_S)
    return blame(machine)


def _qemu_tail(machine: Machine) -> str:
    return tail_text(machine.spec.qemu_log, 15)


async def watch(machine: Machine, work: Awaitable[T], *, explain_lost: bool = True) -> T:
    """Await `work` unless the machine panics or exits first (then `blame`'s error).

    explain_lost: an error of `work` goes through `blame` too, and a lost SSH connection
    first waits a moment for QEMU's exit (SSH dies a moment before the exit is seen: a
    panic or power-off explains the lost connection better than the connection itself).
    Not while polling for readiness, where a refused connection is expected."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=WATCH_INTERVAL_S)
            if done:
                failure = task.exception()
                if explain_lost and isinstance(failure, RigError):
                    if isinstance(failure, GuestUnreachable):
                        await machine.wait_exit(PANIC_SETTLE_S)
                    error = blame(machine, failure)
                    if error is not failure:
                        raise error from failure
                return task.result()
            if machine.state.over:
                raise await death(machine)
            _unless_frozen(machine)
    finally:
        if not task.done():
            task.cancel()  # the thread itself ends when its SSH socket dies with QEMU


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def wait_ready(machine: Machine, image: GuestImage, port: int, timeout_s: float) -> Guest:
    """Try SSH until the guest logs rig in; panic, QEMU exit or the deadline end it.

    Attempts start once rig-init says on the console that sshd and eth0 are up (or after a
    grace period, for kernels that print nothing): earlier, QEMU's user networking
    accepts connections the guest cannot answer yet, and each costs the booting guest
    time. Then one attempt at a time, a refused one retried after SSH_RETRY_S.
    """
    started = time.monotonic()
    deadline = started + timeout_s
    last_error = "no answer yet"
    banner_wait = BANNER_WAIT_S
    while True:
        if machine.state.over:
            raise await death(machine)
        now = time.monotonic()
        remaining = deadline - now
        if remaining <= 0:
            raise blame(machine, GuestTimeout(
                f"the guest did not answer SSH within {timeout_s:.0f} s ({last_error})",
                hint="the kernel may hang at boot, or lack a driver the image needs (virtio-blk, virtio-net, ext4)"))
        init = machine.init_seen_at
        armed = (machine.console_marks.get(SSHD_MARK) is not None
                 or (init is not None and now - init > ARM_AFTER_INIT_S)
                 or now - started > ARM_AFTER_START_S)
        if not armed:
            _unless_frozen(machine)
            await machine.changed(0.05)
            continue
        attempt = asyncio.ensure_future(asyncio.to_thread(
            Guest.connect, port, image.ssh_key, image.known_hosts,
            timeout=min(SSH_ATTEMPT_TIMEOUT_S, remaining), banner_wait_s=min(banner_wait, remaining)))
        try:
            guest = await watch(machine, attempt, explain_lost=False)
        except HostKeyMismatch:
            raise
        except GuestUnreachable as exc:
            last_error = exc.message
            log.debug("SSH attempt at +%.2f s: %s", time.monotonic() - started, last_error)
            # Only a silent connection waits this long; a refused or closed one ends at once.
            banner_wait = min(banner_wait * 2, SSH_ATTEMPT_TIMEOUT_S)
            await asyncio.sleep(SSH_RETRY_S)
            continue
        log.debug("SSH login at +%.2f s", time.monotonic() - started)
        if machine.console_marks.get(SSHD_MARK) is not None:
            try:
                await _wait_mark(machine, guest, READY_MARK, min(READY_WAIT_S, max(remaining, 1.0)))
            except BaseException:
                guest.close()
                raise
        return guest


async def _wait_mark(machine: Machine, guest: Guest, mark: str, timeout_s: float) -> None:
    """Wait for rig-init's `mark` on the console (sshd may answer before the mounts are done).

    A console line can be torn by kernel messages printed at the same moment; if the mark
    does not show, ask the guest itself whether debugfs (the last thing mounted that rig
    needs) is there."""
    deadline = time.monotonic() + timeout_s
    while machine.console_marks.get(mark) is None:
        if machine.state.over:
            raise await death(machine)
        if time.monotonic() > deadline:
            check = asyncio.to_thread(guest.run, ["grep", "-q", " /sys/kernel/debug ", "/proc/mounts"], timeout=30)
            if (await watch(machine, check)).ok:
                return
            raise KernelError(f"rig-init started sshd but did not report '{mark}' within {timeout_s:.0f} s, and "
                              "debugfs is not mounted" + with_console_tail(machine),
                              log=machine.console_log)
        await machine.changed(0.05)


def qemu_binary(target: Target, *, progress: bool = False) -> str:
    """The QEMU program for `target`: the installed one, or rig's own build (built once,
    then cached) for targets that need devices only rig's QEMU has."""
    if target.qemu != "rig":
        return proc.require_tool(target.qemu, target.qemu_package)
    from rig.qemu.build import ensure_qemu

    return str(ensure_qemu(progress=progress).binary)


@contextlib.asynccontextmanager
async def boot_guest(kernel: Path, image: GuestImage, run_dir: Path, guest: GuestSpec,
                     hang: HangWatch | None = None) -> AsyncIterator[VM]:
    """Boot `kernel` on `image` (via an overlay in `run_dir`) as the machine `guest`
    describes, and yield it once SSH answers. `hang`: what to ask the guest's kernel if
    it hangs, at boot or later, and where the answer is kept (rig.forensics)."""
    guest.validate()
    if not kernel.is_file():
        raise UserError(f"kernel image {kernel} does not exist", hint="pass a kernel image built by rig build")
    check_kernel_image(kernel, guest.target.name, option="kernel image")
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o700)
    socket_dir = None
    if len(str(run_dir.resolve() / "qmp.sock")) > SOCKET_PATH_MAX:
        socket_dir = Path(tempfile.mkdtemp(prefix="rig-qmp-"))  # 0700, like the run directory
    try:
        async with _booted(kernel, image, run_dir, socket_dir, guest, hang or HangWatch()) as vm:
            yield vm
    finally:
        if socket_dir is not None:
            shutil.rmtree(socket_dir, ignore_errors=True)


def _port_taken(machine: Machine) -> bool:
    """QEMU could not forward the SSH port rig picked: someone took it in between."""
    tail = _qemu_tail(machine)
    return "hostfwd" in tail or "host forwarding" in tail


@contextlib.asynccontextmanager
async def _booted(kernel: Path, image: GuestImage, run_dir: Path, socket_dir: Path | None,
                  guest_spec: GuestSpec, hang: HangWatch) -> AsyncIterator[VM]:
    binary = await asyncio.to_thread(qemu_binary, guest_spec.target)
    choice = await asyncio.to_thread(choose_accel, kernel, guest_spec.target, binary, guest_spec.accel)
    overlay = await asyncio.to_thread(image_mod.overlay, image, run_dir / "overlay.qcow2")
    for attempt in range(PORT_ATTEMPTS):
        port = free_port()
        spec = MachineSpec(kernel=kernel.resolve(), run_dir=run_dir, guest=guest_spec, accel=choice.accel,
                           binary=binary, disk=overlay, ssh_port=port, init=image_mod.GUEST_INIT,
                           socket_dir=socket_dir)
        machine = Machine(spec)
        try:
            await machine.start()
            break
        except MachineError as exc:
            if _port_taken(machine) and attempt + 1 < PORT_ATTEMPTS:
                continue
            error = blame(machine, exc)
            if error is exc:
                raise
            raise error from exc
    guest: Guest | None = None
    failed = True
    try:
        try:
            guest = await wait_ready(machine, image, port, guest_spec.ready_timeout_s)
        except KernelError as exc:
            # The kernel hangs at boot: ask it what it is doing before QEMU is stopped.
            if hung(exc) and machine.state.life is Life.RUNNING:
                await hang.once(lambda: investigate(machine, guest_spec.target, hang.policy,
                                                    exc.message.splitlines()[0], dump_dir=run_dir, kernel=spec.kernel))
            raise
        # after the boot, which runs no GPU job: the faults land on the tests' jobs
        await gpu_faults.inject(machine, guest_spec)
        times = BootTimes(machine.started_at or 0.0, machine.init_seen_at, time.monotonic())
        vm = VM(machine, guest, spec.console_log, choice.accel, choice.reason, run_dir, port, times, guest_spec,
                hang=hang)
        try:
            yield vm
        finally:
            # Calls still blocked end when the SSH session closes below.
            vm.threads.shutdown(wait=False, cancel_futures=True)
        failed = False
    finally:
        # A failing guest gets no polite power-off: its overlay is thrown away anyway.
        poweroff = None
        if guest is not None and not failed and guest.alive:
            live = guest
            poweroff = functools.partial(asyncio.to_thread, live.start_poweroff)
        try:
            await machine.shutdown(poweroff)
        finally:
            if guest is not None:
                guest.close()
            overlay.unlink(missing_ok=True)


def run_sync(main: Coroutine[Any, Any, T]) -> T:
    """asyncio.run for rig's commands: Ctrl-C and SIGTERM cancel the work, whose context
    managers then stop QEMU, and end as Interrupted (exit 130) with a clear message."""
    terminated: list[int] = []

    async def guarded() -> T:
        loop = asyncio.get_running_loop()
        task = asyncio.current_task()
        assert task is not None

        def on_term() -> None:
            terminated.append(signal.SIGTERM)
            task.cancel()

        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
            loop.add_signal_handler(signal.SIGTERM, on_term)
        try:
            return await main
        finally:
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.remove_signal_handler(signal.SIGTERM)

    # asyncio's remove_signal_handler leaves SIGTERM at its default (death on the spot),
    # not at the handler it found: put back rig's own (rig.cli) afterwards.
    previous = signal.getsignal(signal.SIGTERM)
    try:
        return asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        how = "terminated (SIGTERM)" if terminated or isinstance(exc, Terminated) else "interrupted (Ctrl-C)"
        raise Interrupted(f"{how}: the guest was stopped; logs so far are kept in the run directory") from exc
    finally:
        if previous is not None and signal.getsignal(signal.SIGTERM) != previous:
            with contextlib.suppress(ValueError):  # not the main thread: nothing was changed there
                signal.signal(signal.SIGTERM, previous)
