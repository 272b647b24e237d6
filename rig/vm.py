"""Boot a kernel on a guest image and hand back a machine that answers SSH.

`boot_guest` chooses the accelerator, makes a copy-on-write overlay of the image, starts
QEMU, and waits until the guest answers SSH; a panic on the console, QEMU exiting or the
deadline ends the wait with the console tail in the error. Leaving the context powers the
guest off (or, if something failed, goes straight to QMP quit / SIGTERM / SIGKILL).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
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

from rig import image as image_mod
from rig.accel import choose_accel
from rig.errors import InfraError, Interrupted, KernelError, UserError
from rig.guest import Guest, GuestResult, GuestTimeout, GuestUnreachable, HostKeyMismatch
from rig.image import GuestImage
from rig.qemu.argv import SOCKET_PATH_MAX, MachineSpec
from rig.qemu.machine import Machine, MachineError, indent

T = TypeVar("T")
log = logging.getLogger(__name__)

# After a panic line, QEMU (panic=-1, -no-reboot) exits within a second; give the rest of
# the report a moment to reach the log before rig reads it.
PANIC_SETTLE_S = 3.0
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
# How long one connection may wait for sshd's greeting before a fresh one is tried.
BANNER_WAIT_S = 1.5
# Guest calls that may block at once (see VM.threads).
GUEST_THREADS = 32
# QEMU may lose the race for the free port rig picked; try a fresh one this many times.
PORT_ATTEMPTS = 3


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
    machine: Machine
    guest: Guest
    console_log: Path
    accel: str
    accel_reason: str
    run_dir: Path
    ssh_port: int
    times: BootTimes
    # Guest calls block a thread each (a long IGT run, a sampler, a pressure loop at
    # once); their own pool, so they never starve asyncio's small default one.
    threads: ThreadPoolExecutor = field(default_factory=lambda: ThreadPoolExecutor(GUEST_THREADS, "rig-guest"),
                                        repr=False, compare=False)

    async def call(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking Guest call in a thread while watching the machine: a panic or
        QEMU exiting ends it at once with a KernelError carrying the console text."""
        loop = asyncio.get_running_loop()
        work = loop.run_in_executor(self.threads, functools.partial(fn, *args, **kwargs))
        return await watch(self.machine, work)

    async def run(self, argv: Sequence[str], *, timeout: float, check: bool = False,
                  env: Mapping[str, str] | None = None, input: bytes | None = None,
                  on_stdout: Callable[[bytes], None] | None = None,
                  on_stderr: Callable[[bytes], None] | None = None) -> GuestResult:
        """guest.run, watched (see `call`); a timeout carries the console tail."""
        try:
            return await self.call(self.guest.run, argv, timeout=timeout, check=check, env=env, input=input,
                                   on_stdout=on_stdout, on_stderr=on_stderr)
        except GuestTimeout as exc:
            raise GuestTimeout(exc.message + with_console_tail(self.machine),
                               hint=exc.hint, log=self.console_log) from exc
        except GuestUnreachable as exc:
            if self.machine.exited or self.machine.panicked:
                raise died(self.machine) from exc
            raise KernelError(f"the guest stopped answering SSH: {exc.message}" + with_console_tail(self.machine), log=self.console_log) from exc


def with_console_tail(machine: Machine, lines: int = 30) -> str:
    """The console's last lines, to end an error message with what the guest said last."""
    return "\n  console tail:\n" + indent(machine.console_tail(lines))


def died(machine: Machine) -> KernelError | InfraError:
    """The error for a machine that panicked or whose QEMU is gone."""
    if machine.panicked:
        return KernelError(f"the guest kernel panicked: {machine.panic_line}\n" + indent(machine.panic_text()),
                           log=machine.console_log, hint="the console log has the whole report")
    status = machine.returncode
    if status is not None and status < 0:
        return InfraError(f"QEMU was killed by signal {-status} (not by rig)" + with_console_tail(machine, 20), log=machine.console_log,
                          hint="something on the host killed QEMU (OOM killer? another user?); run again")
    if status not in (0, None):
        return InfraError(f"QEMU failed with exit status {status}:\n" + indent(_qemu_tail(machine)),
                          log=machine.spec.qemu_log)
    return KernelError(f"the guest powered off or rebooted unexpectedly (QEMU exit status {status})"
                       + with_console_tail(machine), log=machine.console_log)


def _qemu_tail(machine: Machine) -> str:
    try:
        return "\n".join(machine.spec.qemu_log.read_text(errors="replace").splitlines()[-10:])
    except OSError:
        return ""


async def watch(machine: Machine, work: Awaitable[T], *, explain_lost: bool = True) -> T:
    """Await `work` unless the machine panics or exits first.

    explain_lost: if `work` loses its SSH connection, wait a moment for QEMU to exit and
    report the panic or exit behind it instead (not while polling for readiness, where a
    refused connection is expected)."""
    task = asyncio.ensure_future(work)
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=0.1)
            if done:
                lost = task.exception()
                if explain_lost and isinstance(lost, GuestUnreachable):
                    # SSH dies a moment before QEMU's exit is seen: a panic or power-off
                    # explains the lost connection better than the connection itself.
                    await machine.wait_exit(PANIC_SETTLE_S)
                    if machine.panicked or machine.exited:
                        raise died(machine) from lost
                return task.result()
            if machine.panicked or machine.exited:
                await machine.wait_exit(PANIC_SETTLE_S)
                raise died(machine)
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
    while True:
        if machine.panicked or machine.exited:
            await machine.wait_exit(PANIC_SETTLE_S)
            raise died(machine)
        now = time.monotonic()
        remaining = deadline - now
        if remaining <= 0:
            raise KernelError(
                f"the guest did not answer SSH within {timeout_s:.0f} s ({last_error})" + with_console_tail(machine),
                log=machine.console_log,
                hint="the kernel may hang at boot, or lack a driver the image needs (virtio-blk, virtio-net, ext4)")
        init = machine.init_seen_at
        armed = (machine.console_marks.get(SSHD_MARK) is not None
                 or (init is not None and now - init > ARM_AFTER_INIT_S)
                 or now - started > ARM_AFTER_START_S)
        if not armed:
            await machine.changed(0.05)
            continue
        attempt = asyncio.ensure_future(asyncio.to_thread(
            Guest.connect, port, image.ssh_key, image.known_hosts,
            timeout=min(SSH_ATTEMPT_TIMEOUT_S, remaining), banner_wait_s=min(BANNER_WAIT_S, remaining)))
        try:
            guest = await watch(machine, attempt, explain_lost=False)
        except HostKeyMismatch:
            raise
        except GuestUnreachable as exc:
            last_error = exc.message
            log.debug("SSH attempt at +%.2f s: %s", time.monotonic() - started, last_error)
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
        if machine.panicked or machine.exited:
            await machine.wait_exit(PANIC_SETTLE_S)
            raise died(machine)
        if time.monotonic() > deadline:
            check = asyncio.to_thread(guest.run, ["grep", "-q", " /sys/kernel/debug ", "/proc/mounts"], timeout=30)
            if (await watch(machine, check)).ok:
                return
            raise KernelError(f"rig-init started sshd but did not report '{mark}' within {timeout_s:.0f} s, and "
                              "debugfs is not mounted" + with_console_tail(machine),
                              log=machine.console_log)
        await machine.changed(0.05)


@contextlib.asynccontextmanager
async def boot_guest(
    kernel: Path,
    image: GuestImage,
    run_dir: Path,
    *,
    gpu: str = "virtio-gpu",
    memory_mib: int = 2048,
    cpus: int = 2,
    cmdline_extra: tuple[str, ...] = (),
    ready_timeout_s: float = 300,
    accel: str | None = None,
) -> AsyncIterator[VM]:
    """Boot `kernel` on `image` (via an overlay in `run_dir`) and yield it once SSH answers."""
    if not kernel.is_file():
        raise UserError(f"kernel image {kernel} does not exist", hint="pass a bzImage built by rig build")
    run_dir.mkdir(parents=True, exist_ok=True)
    run_dir.chmod(0o700)
    socket_dir = None
    if len(str(run_dir.resolve() / "qmp.sock")) > SOCKET_PATH_MAX:
        socket_dir = Path(tempfile.mkdtemp(prefix="rig-qmp-"))  # 0700, like the run directory
    try:
        async with _booted(kernel, image, run_dir, socket_dir, gpu=gpu, memory_mib=memory_mib, cpus=cpus,
                           cmdline_extra=cmdline_extra, ready_timeout_s=ready_timeout_s, accel=accel) as vm:
            yield vm
    finally:
        if socket_dir is not None:
            shutil.rmtree(socket_dir, ignore_errors=True)


@contextlib.asynccontextmanager
async def _booted(kernel: Path, image: GuestImage, run_dir: Path, socket_dir: Path | None, *, gpu: str,
                  memory_mib: int, cpus: int, cmdline_extra: tuple[str, ...], ready_timeout_s: float,
                  accel: str | None) -> AsyncIterator[VM]:
    choice = await asyncio.to_thread(choose_accel, kernel, accel)
    overlay = await asyncio.to_thread(image_mod.overlay, image, run_dir / "overlay.qcow2")
    for attempt in range(PORT_ATTEMPTS):
        port = free_port()
        spec = MachineSpec(kernel=kernel.resolve(), run_dir=run_dir, accel=choice.accel, gpu=gpu,
                           memory_mib=memory_mib, cpus=cpus, disk=overlay, ssh_port=port,
                           init=image_mod.GUEST_INIT, cmdline_extra=tuple(cmdline_extra), socket_dir=socket_dir)
        machine = Machine(spec)
        try:
            await machine.start()
            break
        except MachineError as exc:
            if "hostfwd" in _qemu_tail(machine) or "host forwarding" in _qemu_tail(machine):
                if attempt + 1 < PORT_ATTEMPTS:
                    continue
            raise exc
    guest: Guest | None = None
    failed = True
    try:
        guest = await wait_ready(machine, image, port, ready_timeout_s)
        times = BootTimes(machine.started_at or 0.0, machine.init_seen_at, time.monotonic())
        vm = VM(machine, guest, spec.console_log, choice.accel, choice.reason, run_dir, port, times)
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

    try:
        return asyncio.run(guarded())
    except (KeyboardInterrupt, asyncio.CancelledError) as exc:
        how = "terminated (SIGTERM)" if terminated else "interrupted (Ctrl-C)"
        raise Interrupted(f"{how}: the guest was stopped; logs so far are kept in the run directory") from exc
