from __future__ import annotations

import asyncio
import dataclasses
import os
import signal
import socket
import subprocess
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rig import vm
from rig.errors import DISK_FULL_HINT, InfraError, Interrupted, KernelError, RigError, UserError
from rig.guest import GuestResult, GuestTimeout, GuestUnreachable, HostKeyMismatch
from rig.qemu.machine import Life, MachineState, process_stopped

RUNNING = MachineState(Life.RUNNING)
PANIC = MachineState(Life.PANICKED, 0, "Kernel panic - not syncing: VFS: Unable to mount root fs")


class StandInMachine:
    """Just what boot readiness and the guard look at (a seam: the real Machine and its
    state are tested against a stand-in QEMU in test_qemu_machine)."""

    def __init__(self, tmp_path: Path) -> None:
        self.state = RUNNING
        self.console_log = tmp_path / "console.log"
        self.console_log.write_text("[    1.0] Run /sbin/rig-init as init process\nrig-init: [1.2] sshd started\n")
        self.spec = SimpleNamespace(qemu_log=tmp_path / "qemu.log", kernel=tmp_path / "bzImage")
        self.init_seen_at = time.monotonic()
        self.console_marks = {"network up": time.monotonic(), "guest ready": time.monotonic()}
        self.spec.qemu_log.write_text("")
        self.on_wait_exit: MachineState | None = None  # the state QEMU's exit shows, if it exits
        self.frozen_s = 0.0  # how long QEMU's process has been stopped

    def frozen_for(self) -> float:
        return self.frozen_s

    async def wait_exit(self, timeout: float) -> int | None:
        if self.on_wait_exit is not None:
            self.state = self.on_wait_exit
        return self.state.returncode

    async def changed(self, timeout: float) -> None:
        await asyncio.sleep(timeout)

    def console_tail(self, lines: int = 60) -> str:
        return self.console_log.read_text()

    # hang forensics (rig.forensics; the QMP side is tested in test_qemu_machine)
    keys: list[list[str]]
    nmis = 0
    answers = True  # the kernel answers sysrq on the console

    async def send_key(self, keys: list[str]) -> None:
        self.keys = [*getattr(self, "keys", []), list(keys)]
        if self.answers:
            action = {"w": "Show Blocked State", "l": "Show backtrace of all active CPUs"}[keys[-1]]
            with open(self.console_log, "a") as console:
                console.write(f"[   70.0] sysrq: {action}\n")

    async def inject_nmi(self) -> None:
        self.nmis += 1
        with open(self.console_log, "a") as console:
            console.write("[   90.0] Kernel panic - not syncing: NMI: Not continuing\n")
        self.state = MachineState(Life.PANICKED, 0, "Kernel panic - not syncing: NMI: Not continuing")

    async def dump_guest_memory(self, path: Path, *, timeout: float) -> None:
        raise AssertionError("no dump without --dump-on-hang")

    async def hmp(self, command: str, cpu_index: int | None = None) -> str:
        if command == "info registers -a":
            return "CPU#0\nRIP=ffffffff81000010 RFL=00000046\nRSP=ffffc90000003e58\n"
        return "ffffc90000003e58: 0xffffffff81000020 0x0000000000000000\n"

    def panic_text(self) -> str:
        return self.console_log.read_text()


def image(tmp_path: Path) -> Any:
    known = tmp_path / "known_hosts"
    known.write_text("rig-guest ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJiGUl7UjhzJpsZGHl1NmLUx0cm7qiXbicRNRXWG3tPN\n")
    return SimpleNamespace(ssh_key=tmp_path / "id", known_hosts=known)


def closed_port() -> int:
    return vm.free_port()  # nothing listens there once the probe socket is closed


def test_deadline_without_ssh_is_a_kernel_error_with_the_console(tmp_path: Path) -> None:
    machine = StandInMachine(tmp_path)
    started = time.monotonic()
    with pytest.raises(KernelError) as info:
        asyncio.run(vm.wait_ready(machine, image(tmp_path), closed_port(), 1.0))  # type: ignore[arg-type]
    assert time.monotonic() - started < 5
    assert "did not answer SSH within 1 s" in info.value.message
    assert "sshd started" in info.value.message  # the console tail


def test_panic_while_waiting_ends_the_wait_at_once(tmp_path: Path) -> None:
    machine = StandInMachine(tmp_path)

    def panic_soon() -> None:
        time.sleep(0.5)
        with open(machine.console_log, "a") as console:
            console.write("Kernel panic - not syncing: VFS: Unable to mount root fs\n")
        machine.state = PANIC

    threading.Thread(target=panic_soon).start()
    started = time.monotonic()
    with pytest.raises(KernelError) as info:
        asyncio.run(vm.wait_ready(machine, image(tmp_path), closed_port(), 60))  # type: ignore[arg-type]
    assert time.monotonic() - started < 5
    assert "panicked: Kernel panic - not syncing: VFS" in info.value.message


def test_watch_returns_the_work_result(tmp_path: Path) -> None:
    async def work() -> int:
        await asyncio.sleep(0.1)
        return 7

    assert asyncio.run(vm.watch(StandInMachine(tmp_path), work())) == 7  # type: ignore[arg-type]


def test_free_port_is_on_loopback_and_bindable() -> None:
    port = vm.free_port()
    with socket.socket() as again:
        again.bind(("127.0.0.1", port))


def test_sigterm_cancels_and_becomes_interrupted() -> None:
    cleaned: list[bool] = []

    async def main() -> None:
        try:
            os.kill(os.getpid(), signal.SIGTERM)
            await asyncio.sleep(30)
        finally:
            cleaned.append(True)  # context managers (Machine) run their exits

    started = time.monotonic()
    with pytest.raises(Interrupted, match="terminated"):
        vm.run_sync(main())
    assert cleaned == [True] and time.monotonic() - started < 5
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_run_sync_returns_the_result() -> None:
    async def main() -> int:
        return 3

    assert vm.run_sync(main()) == 3


class GuestAnswering:
    """A guest whose `run` answers one fixed exit status (a seam for readiness checks)."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.asked: list[list[str]] = []

    def run(self, argv: list[str], *, timeout: float) -> Any:
        from rig.guest import GuestResult

        self.asked.append(list(argv))
        return GuestResult(tuple(argv), self.status, "", "", 0.01)


@pytest.mark.parametrize("status, ready", [(0, True), (1, False)])
def test_torn_ready_line_falls_back_to_asking_the_guest(tmp_path: Path, status: int, ready: bool) -> None:
    machine = StandInMachine(tmp_path)
    machine.console_marks["guest ready"] = None  # the line was torn by a kernel message
    guest = GuestAnswering(status)

    async def scenario() -> None:
        await vm._wait_mark(machine, guest, "guest ready", 0.3)  # type: ignore[arg-type]

    if ready:
        asyncio.run(scenario())
    else:
        with pytest.raises(KernelError, match="debugfs is not mounted"):
            asyncio.run(scenario())
    assert guest.asked and "/sys/kernel/debug" in " ".join(guest.asked[0])


def test_ready_line_seen_needs_no_question(tmp_path: Path) -> None:
    guest = GuestAnswering(1)
    asyncio.run(vm._wait_mark(StandInMachine(tmp_path), guest, "guest ready", 5))  # type: ignore[arg-type]
    assert guest.asked == []


# ---------------------------------------------------------------- whose fault: blame

@pytest.mark.parametrize("state, kind, words", [
    (PANIC, KernelError, "the guest kernel panicked: Kernel panic - not syncing: VFS"),
    (MachineState(Life.PANICKED, -9, "GUEST_PANICKED (pvpanic)"), KernelError, "panicked"),  # a panic wins
    (MachineState(Life.KILLED, -signal.SIGKILL), InfraError, "QEMU was killed by signal 9 (not by rig)"),
    (MachineState(Life.FAILED, 1), InfraError, "QEMU failed with exit status 1"),
    (MachineState(Life.POWERED_OFF, 0), KernelError, "powered off or rebooted unexpectedly"),
])
def test_a_dead_machine_decides_whose_fault_whatever_the_call_said(tmp_path: Path, state: MachineState,
                                                                    kind: type, words: str) -> None:
    machine = StandInMachine(tmp_path)
    machine.state = state
    for cause in (None, GuestUnreachable("connection reset"), GuestTimeout("did not finish within 5 s")):
        error = vm.blame(machine, cause)  # type: ignore[arg-type]
        assert type(error) is kind and words in error.message, (cause, error.message)


def test_qemu_failing_shows_its_own_words(tmp_path: Path) -> None:
    machine = StandInMachine(tmp_path)
    machine.spec.qemu_log.write_text("qemu-system-x86_64: -device voodoo: 'voodoo' is not a valid device model\n")
    machine.state = MachineState(Life.FAILED, 1)
    error = vm.blame(machine)  # type: ignore[arg-type]
    assert "not a valid device model" in error.message and error.log == machine.spec.qemu_log


def test_a_timeout_in_a_running_guest_is_a_hang_with_the_console(tmp_path: Path) -> None:
    error = vm.blame(StandInMachine(tmp_path), GuestTimeout("guest command sleep 600 did not finish within 5 s",  # type: ignore[arg-type]
                                                            hint="the guest may hang"))
    assert isinstance(error, GuestTimeout) and isinstance(error, KernelError)
    assert "did not finish within 5 s" in error.message and "console tail" in error.message
    assert "sshd started" in error.message and error.hint == "the guest may hang"


def test_a_running_guest_that_stops_answering_is_the_kernels_fault(tmp_path: Path) -> None:
    error = vm.blame(StandInMachine(tmp_path), GuestUnreachable("SSH connection lost"))  # type: ignore[arg-type]
    assert type(error) is KernelError and "stopped answering SSH: SSH connection lost" in error.message
    assert "console tail" in error.message


def test_a_guest_silent_because_qemu_is_stopped_is_the_hosts_fault(tmp_path: Path) -> None:
    machine = StandInMachine(tmp_path)
    machine.state = MachineState(Life.RUNNING, frozen=True)
    for cause in (GuestTimeout("guest command true did not finish within 5 s"), GuestUnreachable("SSH timed out")):
        error = vm.blame(machine, cause)  # type: ignore[arg-type]
        assert type(error) is InfraError and "QEMU was stopped by a signal from outside rig" in error.message
        assert cause.message in error.message


def test_a_call_to_a_guest_whose_qemu_stays_stopped_ends_without_waiting_for_its_timeout(tmp_path: Path) -> None:
    machine = StandInMachine(tmp_path)
    machine.state = MachineState(Life.RUNNING, frozen=True)
    machine.frozen_s = vm.FROZEN_LIMIT_S + 1

    async def forever() -> None:
        await asyncio.sleep(3600)

    # the call itself would take an hour: the error comes from the frozen QEMU instead
    with pytest.raises(InfraError, match="stopped by a signal from outside rig.*stopped for 11 s"):
        asyncio.run(vm.watch(machine, forever()))  # type: ignore[arg-type]


@pytest.mark.parametrize("full", [True, False], ids=["disk-full", "disk-failed"])
def test_a_guest_paused_on_its_hosts_disk_is_the_hosts_fault_at_once(tmp_path: Path, full: bool) -> None:
    """QEMU's BLOCK_IO_ERROR on the guest's overlay (the Machine's state carries it): the
    call ends at once with the host's error, not an hour later as a hung kernel."""
    machine = StandInMachine(tmp_path)
    machine.state = MachineState(Life.RUNNING, disk_error="write of the guest's disk (root) failed on the host "
                                 "(No space left on device); QEMU paused the guest", disk_full=full)

    async def forever() -> None:
        await asyncio.sleep(3600)

    started = time.monotonic()
    with pytest.raises(InfraError) as info:
        asyncio.run(vm.watch(machine, forever()))  # type: ignore[arg-type]
    assert time.monotonic() - started < 5
    assert not isinstance(info.value, KernelError)
    assert ("the disk is full: write of the guest's disk" if full else "the host failed the guest disk: write") \
        in info.value.message
    assert (info.value.hint == DISK_FULL_HINT) is full


def test_a_stopped_process_is_seen_as_stopped() -> None:
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        assert not process_stopped(sleeper.pid)
        os.kill(sleeper.pid, signal.SIGSTOP)
        deadline = time.monotonic() + 5
        while not process_stopped(sleeper.pid) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert process_stopped(sleeper.pid)
    finally:
        sleeper.kill()
        sleeper.wait()
    assert not process_stopped(sleeper.pid)  # gone: not stopped


@pytest.mark.parametrize("cause", [KernelError("guest command false failed with exit status 1"),
                                   HostKeyMismatch("another program holds the port"),
                                   UserError("empty command for the guest")])
def test_other_errors_of_a_running_guest_stay_what_they_are(tmp_path: Path, cause: Exception) -> None:
    assert vm.blame(StandInMachine(tmp_path), cause) is cause  # type: ignore[arg-type]


def test_rig_stopping_the_machine_keeps_the_reason_it_stopped_it(tmp_path: Path) -> None:
    machine = StandInMachine(tmp_path)
    machine.state = MachineState(Life.STOPPED, -signal.SIGTERM)
    cause = InfraError("QEMU did not connect to QMP within 30 s")
    assert vm.blame(machine, cause) is cause  # type: ignore[arg-type]
    assert "not by rig" not in vm.blame(machine).message  # type: ignore[arg-type]


# ---------------------------------------------------------------- the guard

class FakeGuest:
    """The SSH session's seam: records each call; `block` makes a call wait (up to 30 s)
    until released, `fail` makes it raise."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.block = threading.Event()
        self.blocking = False
        self.fail: Exception | None = None

    def _call(self, name: str) -> None:
        self.calls.append(name)
        if self.fail is not None:
            raise self.fail
        if self.blocking:
            self.block.wait(30)

    def run(self, argv: list[str], **kwargs: Any) -> GuestResult:
        self._call("run")
        return GuestResult(tuple(argv), 0, "finished", "", 0.01)

    def put(self, local: Path, remote: str, **kwargs: Any) -> None:
        self._call("put")

    def get(self, remote: str, local: Path, **kwargs: Any) -> Path:
        self._call("get")
        return local

    def get_dir(self, remote: str, local: Path, **kwargs: Any) -> Path:
        self._call("get_dir")
        return local

    def interactive_shell(self, **kwargs: Any) -> int:
        self._call("shell")
        return 0


def booted_vm(tmp_path: Path, guest: FakeGuest) -> tuple[vm.VM, StandInMachine]:
    machine = StandInMachine(tmp_path)
    times = vm.BootTimes(0.0, None, 1.0)
    return vm.VM(machine, guest, machine.console_log, "tcg", "asked for", tmp_path, 2222, times), machine  # type: ignore[arg-type]


GUEST_CALLS: list[tuple[str, Any]] = [
    ("run", lambda v, tmp: v.run(["true"], timeout=5)),
    ("run", lambda v, tmp: v.kmsg("rig: hello")),
    ("put", lambda v, tmp: v.put(tmp / "a", "/tmp/a")),
    ("get", lambda v, tmp: v.get("/tmp/a", tmp / "a")),
    ("get_dir", lambda v, tmp: v.get_dir("/tmp/d", tmp / "d")),
    ("shell", lambda v, tmp: v.shell()),
]


@pytest.mark.parametrize("name, call", GUEST_CALLS, ids=[f"{n}-{i}" for i, (n, _) in enumerate(GUEST_CALLS)])
def test_every_guest_call_is_guarded(tmp_path: Path, name: str, call: Any) -> None:
    guest = FakeGuest()
    machine_vm, machine = booted_vm(tmp_path, guest)

    async def scenario() -> None:
        await call(machine_vm, tmp_path)  # a live guest answers
        assert guest.calls == [name]
        machine.state = PANIC  # a dead one is not even asked
        with pytest.raises(KernelError, match="panicked"):
            await call(machine_vm, tmp_path)
        assert guest.calls == [name]

    asyncio.run(scenario())


def test_a_guest_dying_mid_call_ends_the_call_with_the_kernels_fault(tmp_path: Path) -> None:
    guest = FakeGuest()
    guest.blocking = True
    machine_vm, machine = booted_vm(tmp_path, guest)

    async def scenario() -> None:
        call = asyncio.ensure_future(machine_vm.run(["sleep", "600"], timeout=600))
        while not guest.calls:
            await asyncio.sleep(0.01)
        machine.state = PANIC
        with pytest.raises(KernelError, match="panicked"):
            await call  # without the guard, the call would end "finished" when the fake gives up

    try:
        asyncio.run(scenario())
    finally:
        guest.block.set()


def test_a_lost_connection_is_explained_by_qemus_exit(tmp_path: Path) -> None:
    guest = FakeGuest()
    guest.fail = GuestUnreachable("SSH connection lost while running true")
    machine_vm, machine = booted_vm(tmp_path, guest)
    machine.on_wait_exit = MachineState(Life.KILLED, -signal.SIGKILL)  # QEMU's exit shows a moment later

    with pytest.raises(InfraError, match="killed by signal 9") as info:
        asyncio.run(machine_vm.put(tmp_path / "a", "/tmp/a"))
    assert isinstance(info.value.__cause__, GuestUnreachable)


def test_a_guest_timeout_gets_the_console_tail(tmp_path: Path) -> None:
    guest = FakeGuest()
    guest.fail = GuestTimeout("copying the guest's /tmp/d took too long")
    machine_vm, _ = booted_vm(tmp_path, guest)
    with pytest.raises(GuestTimeout) as info:
        asyncio.run(machine_vm.get_dir("/tmp/d", tmp_path / "d"))
    assert "took too long" in info.value.message and "sshd started" in info.value.message


def test_a_failing_command_is_not_blamed_on_anyone_else(tmp_path: Path) -> None:
    guest = FakeGuest()
    failed = KernelError("guest command false failed with exit status 1")
    guest.fail = failed
    machine_vm, _ = booted_vm(tmp_path, guest)
    with pytest.raises(KernelError) as info:
        asyncio.run(machine_vm.run(["false"], timeout=5, check=True))
    assert info.value is failed


def test_the_vm_has_no_unguarded_way_to_the_guest() -> None:
    names = {f.name for f in dataclasses.fields(vm.VM)} | set(dir(vm.VM))
    public = {name for name in names if not name.startswith("_")}
    assert "guest" not in public and "call" not in public
    assert {"run", "put", "get", "get_dir", "shell", "kmsg"} <= public


def test_a_slow_greeting_gets_a_longer_wait_each_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """On a loaded host sshd may greet later than the first wait: later connections wait
    longer (up to one attempt's timeout), so readiness does not give up on each of them."""
    waits: list[float] = []

    def connect(port: int, key: Path, known_hosts: Path, *, timeout: float, banner_wait_s: float) -> Any:
        waits.append(banner_wait_s)
        if len(waits) < 6:
            raise GuestUnreachable(f"sshd in the guest did not greet within {banner_wait_s:.1f} s")
        return GuestAnswering(0)

    monkeypatch.setattr(vm.Guest, "connect", connect)
    monkeypatch.setattr(vm, "SSH_RETRY_S", 0.0)
    machine = StandInMachine(tmp_path)
    guest = asyncio.run(vm.wait_ready(machine, image(tmp_path), closed_port(), 600))  # type: ignore[arg-type]
    assert isinstance(guest, GuestAnswering)
    assert waits == [vm.BANNER_WAIT_S, 3.0, 6.0, vm.SSH_ATTEMPT_TIMEOUT_S, vm.SSH_ATTEMPT_TIMEOUT_S,
                     vm.SSH_ATTEMPT_TIMEOUT_S]


@pytest.fixture(autouse=True)
def quick_forensics(monkeypatch: pytest.MonkeyPatch) -> None:
    import rig.forensics

    monkeypatch.setattr(rig.forensics, "ANSWER_WAIT_S", 0.5)
    monkeypatch.setattr(rig.forensics, "QUIET_S", 0.2)


def test_a_command_past_its_deadline_gets_the_kernel_asked_before_the_timeout_is_raised(
        tmp_path: Path, quick_forensics: None) -> None:
    guest = FakeGuest()
    guest.fail = GuestTimeout("guest command sleep 100 did not finish within 5 s")
    machine_vm, machine = booted_vm(tmp_path, guest)
    with pytest.raises(GuestTimeout):
        asyncio.run(machine_vm.run(["sleep", "100"], timeout=5))
    assert machine.keys == [["alt", "sysrq", "w"], ["alt", "sysrq", "l"]] and machine.nmis == 0
    record = machine_vm.hang.record
    assert record is not None and record.reason == "guest command sleep 100 did not finish within 5 s"
    assert [a.answered for a in record.asks] == [True, True]
    # a second timeout in the same guest does not ask again
    with pytest.raises(GuestTimeout):
        asyncio.run(machine_vm.run(["sleep", "100"], timeout=5))
    assert len(machine.keys) == 2


def test_a_guest_that_takes_no_interrupt_gets_the_nmi_and_its_panic_is_the_error(
        tmp_path: Path, quick_forensics: None) -> None:
    guest = FakeGuest()
    guest.fail = GuestUnreachable("SSH connection lost while running true")
    machine_vm, machine = booted_vm(tmp_path, guest)
    machine.answers = False
    with pytest.raises(KernelError, match="panicked: Kernel panic - not syncing: NMI"):
        asyncio.run(machine_vm.run(["true"], timeout=5))
    assert machine.keys == [["alt", "sysrq", "w"]] and machine.nmis == 1
    record = machine_vm.hang.record
    assert record is not None and record.nmi == "sent" and record.skipped == ("l",)
    # QEMU's view of the vCPU came first (no System.map here: bare addresses)
    assert [(v.cpu, v.pc, v.stack) for v in record.vcpus] == [(0, "0xffffffff81000010", ())]
    assert record.reason.startswith("the guest stopped answering SSH")


def test_a_failing_command_is_no_hang(tmp_path: Path, quick_forensics: None) -> None:
    guest = FakeGuest()
    guest.fail = KernelError("guest command false failed with exit status 1")
    machine_vm, machine = booted_vm(tmp_path, guest)
    with pytest.raises(KernelError):
        asyncio.run(machine_vm.run(["false"], timeout=5, check=True))
    assert not hasattr(machine, "keys") and machine_vm.hang.record is None


BLOCKED_TASK = """\
[   70.100000][    C0] task:vgem_basic      state:D stack:0     pid:287   ppid:286    flags:0x00004000
[   70.100100][    C0] Call Trace:
[   70.100200][    C0]  <TASK>
[   70.100300][    C0]  __schedule+0x3b7/0xbd0
[   70.100400][    C0]  schedule+0x5d/0xd0
[   70.100500][    C0]  vgem_fence_signal_ioctl+0x9d/0x140
[   70.100600][    C0]  </TASK>
"""


class BlockedMachine(StandInMachine):
    """A kernel that answers sysrq w with a task stuck in D state."""

    async def send_key(self, keys: list[str]) -> None:
        await super().send_key(keys)
        if keys[-1] == "w":
            with open(self.console_log, "a") as console:
                console.write(BLOCKED_TASK)


def _lost(tmp_path: Path, machine: StandInMachine) -> RigError:
    guest = FakeGuest()
    guest.fail = GuestUnreachable("SSH connection lost while running sleep 60: EOF")
    machine_vm = vm.VM(machine, guest, machine.console_log, "tcg", "asked for", tmp_path, 2222,  # type: ignore[arg-type]
                       vm.BootTimes(0.0, None, 1.0))
    with pytest.raises(RigError) as info:
        asyncio.run(machine_vm.run(["sleep", "60"], timeout=90))
    assert machine.keys[0] == ["alt", "sysrq", "w"]  # the kernel was asked first, in every case
    return info.value


def test_ssh_lost_while_the_kernel_still_answers_is_the_hosts_side(tmp_path: Path, quick_forensics: None) -> None:
    """sshd killed or the link down: the kernel answers sysrq and shows no blocked task, so
    it does not hang; the connection failed (exit 3), with the console tail."""
    error = _lost(tmp_path, StandInMachine(tmp_path))
    assert type(error) is InfraError and error.exit_code == 3
    assert "lost while its kernel still answered (sysrq w, l, no blocked task)" in error.message
    assert "SSH connection lost while running sleep 60" in error.message and "sshd started" in error.message


def test_ssh_lost_after_an_earlier_hang_was_asked_about_stays_the_kernels(tmp_path: Path,
                                                                        quick_forensics: None) -> None:
    """The guest's kernel answered sysrq for an earlier failure (a command past its
    timeout): a guest is asked once, so that old answer cannot clear the kernel of a later
    loss of SSH (a guest that stopped answering altogether since)."""
    machine = StandInMachine(tmp_path)
    guest = FakeGuest()
    machine_vm = vm.VM(machine, guest, machine.console_log, "tcg", "asked for", tmp_path, 2222,  # type: ignore[arg-type]
                       vm.BootTimes(0.0, None, 1.0))

    async def scenario() -> RigError:
        guest.fail = GuestTimeout("guest command sleep 600 did not finish within 5 s")
        with pytest.raises(GuestTimeout):
            await machine_vm.run(["sleep", "600"], timeout=5)
        assert [k[-1] for k in machine.keys] == ["w", "l"]  # asked, and answered
        guest.fail = GuestUnreachable("cannot open an SSH channel to the guest: Timeout opening channel.")
        with pytest.raises(RigError) as later:
            await machine_vm.run(["true"], timeout=5)
        return later.value

    error = asyncio.run(scenario())
    assert type(error) is KernelError and "stopped answering SSH" in error.message
    assert [k[-1] for k in machine.keys] == ["w", "l"]  # not asked again


def test_ssh_lost_with_a_task_blocked_in_the_kernel_stays_the_kernels(tmp_path: Path, quick_forensics: None) -> None:
    error = _lost(tmp_path, BlockedMachine(tmp_path))
    assert type(error) is KernelError and "stopped answering SSH" in error.message


def test_ssh_lost_because_the_oom_killer_took_sshd_is_the_kernels(tmp_path: Path, quick_forensics: None) -> None:
    machine = StandInMachine(tmp_path)
    with open(machine.console_log, "a") as console:
        console.write("[   60.0][  T300] Out of memory: Killed process 215 (sshd-session) total-vm:15000kB, anon-rss:0kB\n")
    error = _lost(tmp_path, machine)
    assert type(error) is KernelError and "the guest's OOM killer killed sshd" in error.message
    assert "Killed process 215 (sshd-session)" in error.message
