"""A fake guest at the VM seam for the workload tests: answers `run` from a function of
the argv, copies files as the real Guest would, and records every command in order."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rig.errors import InfraError
from rig.forensics import HangRecord, HangWatch
from rig.guest import GuestResult
from rig.guest_spec import GuestSpec

Answer = Callable[[list[str]], "GuestResult | str | None"]


class FakeMachine:
    def __init__(self, console: str = "", memory_mib: int = 2048) -> None:
        self.size = memory_mib
        self.targets: list[int] = []
        self.console = console
        self.exited = False
        self.panicked = False
        self.qom: dict[str, int] = {}  # what qom-get answers (a GPU model's counters)

    async def balloon(self, target_mib: int) -> None:
        self.targets.append(target_mib)
        self.size = target_mib

    async def query_balloon(self) -> int:
        return self.size

    async def execute(self, command: str, arguments: dict[str, object] | None = None) -> object:
        from rig.qemu.machine import MachineError

        name = str((arguments or {}).get("property"))
        if command != "qom-get" or name not in self.qom:
            raise MachineError(f"QMP '{command}' failed: Property '{name}' not found")
        return self.qom[name]

    def console_text(self) -> str:
        return self.console

    async def screendump(self, path: Path) -> None:
        path.write_bytes(b"\x89PNG\r\n\x1a\n")


class FakeGuest:
    """Files the guest has (remote path -> bytes) and directories it can give back."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.dirs: dict[str, Path] = {}

    def put(self, local: Path, remote: str, *, mode: int | None = None, timeout: float = 120) -> None:
        self.files[remote] = local.read_bytes()

    def get(self, remote: str, local: Path, *, timeout: float = 120) -> Path:
        if remote not in self.files:
            raise InfraError(f"no {remote} in the guest")
        local.write_bytes(self.files[remote])
        return local

    def get_dir(self, remote: str, local: Path, *, timeout: float = 300) -> Path:
        if remote not in self.dirs:
            raise InfraError(f"no {remote} in the guest")
        shutil.copytree(self.dirs[remote], local, dirs_exist_ok=True)
        return local


def _no_answer(reason: str) -> Callable[[], Any]:
    async def record() -> HangRecord:
        return HangRecord(reason, 0.0)

    return record


class FakeVM:
    def __init__(self, answer: Answer | None = None, *, fail_on: str = "", console: str = "",
                 partial: str = "") -> None:
        self.machine = FakeMachine(console)
        self.guest = FakeGuest()
        self.spec = GuestSpec()  # the machine rig asked for, as VM.spec
        self.answer = answer
        self.fail_on = fail_on
        self.partial = partial  # what a command the answer makes raise had printed before
        self.commands: list[list[str]] = []
        self.timeouts: list[float] = []
        self.hang = HangWatch()  # as VM.hang
        self.investigations: list[str] = []

    async def investigate(self, reason: str) -> HangRecord | None:
        """As VM.investigate: records why, asks nothing."""
        self.investigations.append(reason)
        return await self.hang.once(_no_answer(reason))

    async def run(self, argv: list[str], *, timeout: float, check: bool = False, env: Any = None,
                  on_stdout: Callable[[bytes], None] | None = None,
                  on_stderr: Callable[[bytes], None] | None = None) -> GuestResult:
        self.commands.append(list(argv))
        self.timeouts.append(timeout)
        if self.fail_on and self.fail_on in " ".join(argv):
            raise InfraError("connection lost")
        try:
            answer = self.answer(list(argv)) if self.answer else None
        except Exception:
            if on_stdout is not None and self.partial:
                on_stdout(self.partial.encode())
            raise
        result = answer if isinstance(answer, GuestResult) else GuestResult(tuple(argv), 0, answer or "", "", 0.01)
        # as the real guest does: the output as it arrives, then whole in the result
        if on_stdout is not None and result.stdout:
            on_stdout(result.stdout.encode())
        if on_stderr is not None and result.stderr:
            on_stderr(result.stderr.encode())
        return result

    # The guarded copies of rig.vm.VM, straight onto the fake guest.
    async def put(self, local: Path, remote: str, *, timeout: float = 120, mode: int | None = None) -> None:
        self.guest.put(local, remote, mode=mode, timeout=timeout)

    async def get(self, remote: str, local: Path, *, timeout: float = 120) -> Path:
        return self.guest.get(remote, local, timeout=timeout)

    async def get_dir(self, remote: str, local: Path, *, timeout: float = 300) -> Path:
        return self.guest.get_dir(remote, local, timeout=timeout)

    async def kmsg(self, line: str, *, timeout: float = 30) -> None:
        await self.run(["sh", "-c", 'echo "$0" > /dev/kmsg', line], timeout=timeout)

    def words(self) -> list[str]:
        return [" ".join(c) for c in self.commands]
