from __future__ import annotations

import asyncio
import os
import signal
import socket
import threading
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from rig import vm
from rig.errors import InfraError, Interrupted, KernelError


class StandInMachine:
    """Just the state boot readiness looks at (a seam: the real one is tested elsewhere)."""

    def __init__(self, tmp_path: Path) -> None:
        self.panicked = False
        self.panic_line: str | None = None
        self.returncode: int | None = None
        self.console_log = tmp_path / "console.log"
        self.console_log.write_text("[    1.0] Run /sbin/rig-init as init process\nrig-init: [1.2] sshd started\n")
        self.spec = SimpleNamespace(qemu_log=tmp_path / "qemu.log")
        self.init_seen_at = time.monotonic()
        self.console_marks = {"network up": time.monotonic(), "guest ready": time.monotonic()}
        self.spec.qemu_log.write_text("")

    @property
    def exited(self) -> bool:
        return self.returncode is not None

    async def wait_exit(self, timeout: float) -> int | None:
        return self.returncode

    async def changed(self, timeout: float) -> None:
        await asyncio.sleep(timeout)

    def console_tail(self, lines: int = 60) -> str:
        return self.console_log.read_text()

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
        machine.panic_line = "Kernel panic - not syncing: VFS: Unable to mount root fs"
        machine.panicked = True
        machine.returncode = 0

    threading.Thread(target=panic_soon).start()
    started = time.monotonic()
    with pytest.raises(KernelError) as info:
        asyncio.run(vm.wait_ready(machine, image(tmp_path), closed_port(), 60))  # type: ignore[arg-type]
    assert time.monotonic() - started < 5
    assert "panicked: Kernel panic - not syncing: VFS" in info.value.message


def test_qemu_killed_by_someone_else_is_a_host_problem(tmp_path: Path) -> None:
    machine = StandInMachine(tmp_path)
    machine.returncode = -signal.SIGKILL
    error = vm.died(machine)  # type: ignore[arg-type]
    assert isinstance(error, InfraError) and "killed by signal 9" in error.message


def test_guest_powering_off_early_is_a_kernel_problem(tmp_path: Path) -> None:
    machine = StandInMachine(tmp_path)
    machine.returncode = 0
    error = vm.died(machine)  # type: ignore[arg-type]
    assert isinstance(error, KernelError) and "powered off or rebooted" in error.message


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
