"""A booted rig guest for synchronous code: what rig's pytest plugin hands to tests.

rig's guest layer is asyncio (rig.vm); a pytest test is plain sync code. `LoopThread`
runs one asyncio loop in its own thread, and `RigGuest` holds `boot_guest`'s context open
in it, so a test calls `guest.run(...)` and gets a GuestResult back, with every deadline,
guard and blame of rig.vm unchanged.

Each test is a window on the guest's kernel log: `begin_test` writes "rig: start
pytest:NAME" to /dev/kmsg (and empties kmemleak's list), `end_test` writes "rig: end
pytest:NAME", scans kmemleak and returns the reports of that window, attributed the way
`rig run` attributes them (rig.analysis over the console log and the kmemleak report):
rig's script markers are what rig.splat.attribution already knows as test spans.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import re
import threading
import time
from collections.abc import Coroutine, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rig import collect
from rig.analysis import AnalysedFinding, RawMaterial, analyse
from rig.errors import InfraError, RigError
from rig.guest import GuestResult
from rig.guest_spec import GuestSpec
from rig.image import GuestImage
from rig.results import TestKind, TestName
from rig.splat.model import Source
from rig.workloads.pressure import Pressure, PressureSession, parse_pressure

T = TypeVar("T")

# A guest command a test runs without saying how long it may take.
DEFAULT_TIMEOUT_S = 300.0
# How long the end marker may take to reach the console log after /dev/kmsg took it
# (QEMU writes the serial port out as it comes; a loaded TCG guest can lag seconds).
CONSOLE_CATCH_UP_S = 30.0
# Stopping the guest: rig.vm's power-off, QMP quit, SIGTERM, SIGKILL, all within this.
STOP_TIMEOUT_S = 120.0
# What stays in a test's marker name (printk's line and rig's span pattern: no spaces).
_UNSAFE = re.compile(r"[^A-Za-z0-9_.:/@\[\]=+-]")
PYTEST_MARK = "pytest:"


def marker_name(nodeid: str) -> str:
    """The test's name in the kernel log: its pytest node id, without spaces."""
    return PYTEST_MARK + _UNSAFE.sub("_", nodeid)


class LoopThread:
    """One asyncio loop, run in a daemon thread; `call` runs a coroutine in it and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="rig-guest-loop", daemon=True)
        self._thread.start()

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.submit(coro).result()

    def close(self) -> None:
        if self.loop.is_closed():
            return
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        if not self._thread.is_alive():
            self.loop.close()


@dataclass(frozen=True)
class MachineWish:
    """The machine a test (or module) asks for: GPU model, pressure, size."""

    gpu: str
    pressure: str = "none"
    memory_mib: int = 2048
    cpus: int = 2


@dataclass
class TestWindow:
    """One test's stretch of the guest's life, from begin_test to end_test."""

    __test__ = False

    marker: str
    index: int
    started: float = field(default_factory=time.monotonic)
    session: PressureSession | None = None
    ended: bool = False
    problems: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class TestReports:
    """What the kernel reported while one test ran."""

    __test__ = False

    findings: tuple[AnalysedFinding, ...]
    console_log: Path
    kmemleak: Path | None
    problems: tuple[str, ...] = ()  # what could not be checked (kmemleak missing, guest died)


class RigGuest:
    """A booted guest. Tests use run, python, put, get, kmsg, shell and dri_node."""

    def __init__(self, kernel: Path, image: GuestImage, spec: GuestSpec, run_dir: Path, wish: MachineWish, *,
                 kmemleak: bool = True, loop: LoopThread | None = None) -> None:
        self.kernel = kernel
        self.image = image
        self.spec = spec
        self.run_dir = run_dir
        self.wish = wish
        self.kmemleak = kmemleak
        self.pressure: Pressure = parse_pressure(wish.pressure, spec.memory_mib)
        self._own_loop = loop is None
        self._loop = loop or LoopThread()
        self._vm: Any = None  # rig.vm.VM once booted
        self._stop: asyncio.Event | None = None
        self._held: concurrent.futures.Future[None] | None = None
        self._wrap: list[str] | None = None
        self._tests = 0
        # lockdep stops validating after its first report: the test that made it, if any
        self.lockdep_off_since: str | None = None

    # ---------------------------------------------------------------- life

    def boot(self) -> RigGuest:
        """Boot and wait until SSH answers (rig.vm.boot_guest's errors pass through)."""
        ready: concurrent.futures.Future[Any] = concurrent.futures.Future()

        async def hold() -> None:
            from rig.vm import boot_guest

            self._stop = asyncio.Event()
            async with boot_guest(self.kernel, self.image, self.run_dir / "vm", self.spec) as vm:
                ready.set_result(vm)
                await self._stop.wait()

        self.run_dir.mkdir(parents=True, exist_ok=True)
        self._held = self._loop.submit(hold())
        concurrent.futures.wait([ready, self._held], return_when=concurrent.futures.FIRST_COMPLETED)
        if not ready.done():
            self._held.result()  # boot failed: raise its error
            raise InfraError("the guest stopped before it was ready", log=self.run_dir / "vm" / "console.log")
        self._vm = ready.result()
        return self

    def stop(self) -> None:
        """Power the guest off (or kill it); safe to call twice, and after a failure."""
        if self._held is not None:
            if self._stop is not None:
                self._loop.loop.call_soon_threadsafe(self._stop.set)
            with contextlib.suppress(Exception):
                self._held.result(STOP_TIMEOUT_S)
            self._held = None
        if self._own_loop:
            self._loop.close()

    @property
    def alive(self) -> bool:
        return self._vm is not None and self._held is not None and not self._vm.machine.state.over

    @property
    def vm(self) -> Any:
        """rig.vm.VM, for code that wants rig's async API itself."""
        if self._vm is None:
            raise InfraError("the guest is not booted", hint="use the rig_guest fixture")
        return self._vm

    @property
    def console_log(self) -> Path:
        return self.run_dir / "vm" / "console.log"

    @property
    def accel(self) -> str:
        return str(self.vm.accel)

    @property
    def arch(self) -> str:
        return self.spec.target.name

    @property
    def gpu(self) -> str:
        return self.spec.gpu

    @property
    def driver(self) -> str | None:
        """The DRM driver of the machine's GPU model (virtio_gpu, bochs-drm, ...)."""
        return self.spec.driver

    # ---------------------------------------------------------------- what tests call

    def run(self, command: str | Sequence[str], *, timeout: float = DEFAULT_TIMEOUT_S, check: bool = False,
            input: bytes | str | None = None, env: Mapping[str, str] | None = None) -> GuestResult:
        """Run a command in the guest: an argv list, or a string for `sh -c`. Under memcg
        pressure it runs in the pressure's cgroup. check=True raises on a non-zero exit."""
        argv = ["sh", "-c", command] if isinstance(command, str) else list(command)
        argv = [*(self._wrap or []), *argv]
        data = input.encode() if isinstance(input, str) else input
        return self._loop.call(self.vm.run(argv, timeout=timeout, check=check, input=data, env=env))

    def python(self, code: str, *args: str, timeout: float = DEFAULT_TIMEOUT_S, check: bool = False,
               env: Mapping[str, str] | None = None) -> GuestResult:
        """Run Python source in the guest's python3 (read from stdin; `args` are its sys.argv[1:])."""
        return self.run(["python3", "-", *args], timeout=timeout, check=check, input=code, env=env)

    def put(self, local: Path | str, remote: str, *, mode: int | None = None) -> None:
        self._loop.call(self.vm.put(Path(local), remote, mode=mode))

    def get(self, remote: str, local: Path | str) -> Path:
        return self._loop.call(self.vm.get(remote, Path(local)))

    def kmsg(self, line: str) -> None:
        """A line in the guest's kernel log (and so on the console)."""
        self._loop.call(self.vm.kmsg(line))

    def shell(self) -> int:
        """An interactive shell in the guest on this terminal; its exit status."""
        return int(self._loop.call(self.vm.shell()))

    def dri_node(self, driver: str) -> str:
        """/dev/dri/cardN of the DRM device that `driver` (vgem, virtio_gpu, vkms, ...) runs."""
        # debugfs names each DRM minor's directory by its number; its `name` file starts with the driver
        script = ('for f in /sys/kernel/debug/dri/*/name; do set -- $(cat "$f"); '
                  '[ "$1" = "$0" ] || continue; n=${f%/name}; n=${n##*/}; '
                  '[ -e /dev/dri/card$n ] && { echo /dev/dri/card$n; exit 0; }; done; exit 1')
        result = self.run(["sh", "-c", script, driver], timeout=60)
        if not result.ok:
            names = self.run("cat /sys/kernel/debug/dri/*/name", timeout=60).stdout.split("\n")
            raise InfraError(f"no DRM device of driver {driver} in the guest (it has: "
                             f"{'; '.join(n for n in names if n) or 'none'})",
                             hint="ask for a machine with that GPU model: @pytest.mark.rig_machine(gpu=...)")
        return result.stdout.strip()

    # ---------------------------------------------------------------- test windows

    def begin_test(self, nodeid: str) -> TestWindow:
        """Open a test's window: kmemleak's list emptied, pressure on, the start marker."""
        self._tests += 1
        window = TestWindow(marker_name(nodeid), self._tests)
        if self.kmemleak:
            try:
                if window.index == 1:
                    self._boot_leaks()
                self._loop.call(collect.kmemleak_clear(self.vm))
            except RigError as exc:
                window.problems.append(f"kmemleak clear: {exc.message.splitlines()[0]}")
        if self.pressure.label != "none":
            session = PressureSession(self.vm, self.pressure, self.run_dir / f"pressure-{window.index}",
                                      self.spec.memory_mib, time.monotonic())
            session.out.mkdir(parents=True, exist_ok=True)
            self._loop.call(session.__aenter__())
            window.session = session
            self._wrap = session.wrap
        self.kmsg(f"rig: start {window.marker}")
        window.started = time.monotonic()
        return window

    def _boot_leaks(self) -> None:
        """Leaks from before the first test (the boot's) are not its: one scan makes them
        reported (they are old enough by now), kept in kmemleak-boot.txt, and the clear
        that follows takes them off the list the tests' scans read."""
        scan = self._loop.call(self.vm.run(["sh", "-c", 'echo scan > "$0" && cat "$0"', collect.KMEMLEAK],
                                           timeout=collect.KMEMLEAK_SCAN_TIMEOUT_S))
        if scan.ok:
            (self.run_dir / "kmemleak-boot.txt").write_text(scan.stdout)

    def end_test(self, window: TestWindow) -> TestReports:
        """Close the window: pressure off, the end marker, a kmemleak scan; the reports
        rig attributes to this test. A dead guest still has its console to read."""
        if window.ended:
            raise RuntimeError(f"{window.marker} ended twice")
        window.ended = True
        quiet_since = time.monotonic()
        problems = window.problems
        if window.session is not None:
            self._wrap = None
            with contextlib.suppress(RigError):
                self._loop.call(window.session.__aexit__(None, None, None))
        kmemleak_path = None
        end_line = f"rig: end {window.marker}"
        if self.alive:
            try:
                self.kmsg(end_line)
                self._console_shows(end_line)
                if self.kmemleak:
                    kmemleak_path = self._loop.call(collect.kmemleak_report(
                        self.vm, self.run_dir / f"kmemleak-{window.index}.txt", problems, quiet_since=quiet_since))
            except RigError as exc:
                problems.append(f"after the test: {exc.message.splitlines()[0]}")
        else:
            problems.append("the guest died during the test; its console log says how")
        console = self.run_dir / f"test-{window.index}-console.log"
        console.write_bytes(test_window(self.console_log.read_bytes(), window.marker))
        findings = reports_of(window.marker, console, kmemleak_path)
        if self.lockdep_off_since is not None:
            problems.append(f"lockdep turned itself off after its report in {self.lockdep_off_since}: this test "
                            "was not checked for locking bugs")
        elif any(f.finding.kind == "lockdep" for f in findings):
            self.lockdep_off_since = window.marker.removeprefix(PYTEST_MARK)
        return TestReports(findings, console, kmemleak_path, tuple(problems))

    def _console_shows(self, line: str) -> None:
        deadline = time.monotonic() + CONSOLE_CATCH_UP_S
        while time.monotonic() < deadline:
            if line.encode() in self.console_log.read_bytes():
                return
            time.sleep(0.1)
        raise InfraError(f"the console log did not show {line!r} within {CONSOLE_CATCH_UP_S:.0f} s",
                         log=self.console_log)

    def describe(self) -> str:
        return (f"{self.arch} guest, {self.gpu}, {self.spec.memory_mib} MiB, pressure {self.pressure.label}, "
                f"{self.accel if self._vm else 'not booted'}; console {self.console_log}")


def test_window(console: bytes, marker: str) -> bytes:
    """What the console shows from the test's start marker to its end marker (to the end
    of the log when the guest died before writing it), whole lines. The same report in
    an earlier test's window stays that test's: rig's analysis counts a report once."""
    start = console.rfind(f"rig: start {marker}".encode())
    if start < 0:
        return b""
    start = console.rfind(b"\n", 0, start) + 1
    end = console.find(f"rig: end {marker}".encode(), start)
    if end < 0:
        return console[start:]
    newline = console.find(b"\n", end)
    return console[start:] if newline < 0 else console[start:newline + 1]


def reports_of(marker: str, console: Path, kmemleak: Path | None) -> tuple[AnalysedFinding, ...]:
    """The kernel reports of one test, as `rig run` would attribute them: reports on the
    console (its window, see test_window) that rig.splat.attribution places in the test's
    span (by the printing task or by time), and every leak of the kmemleak report read
    after it (kmemleak's list was emptied when the test began). Known emulator faults are
    not the test's."""
    analysis = analyse(RawMaterial(console=console, kmemleak=(kmemleak,) if kmemleak else ()))
    mine = TestName(TestKind.SCRIPT, marker)
    return tuple(f for f in analysis.findings if f.host_fault is None
                 and (f.test == mine or mine in f.also or (f.source is Source.KMEMLEAK and kmemleak is not None)))


def describe_reports(reports: TestReports) -> str:
    """The test's failure text: each report's title, kind, locks or leaks, then its text."""
    findings = reports.findings
    kinds = sorted({f.finding.kind for f in findings})
    lines = [f"the kernel reported {len(findings)} problem{'s' if len(findings) != 1 else ''} while this test ran "
             f"({', '.join(kinds)}):"]
    for judged in findings:
        lines.append(f"  {judged.finding.title}")
    for judged in findings:
        finding = judged.finding
        lines.append("")
        lines.append(f"--- {finding.title} ({finding.kind}, from the {judged.source}, placed by {judged.placement})")
        if finding.lock_chain:
            lines.append("locks: " + " -> ".join(finding.lock_chain))
        for group in finding.leak_groups[:3]:
            lines.append(f"leaked: {group.count} object(s), {group.total_bytes} bytes from "
                         + " < ".join(group.frames[:4]))
        lines.append(finding.report.rstrip())
    lines.append("")
    lines.append(f"console log: {reports.console_log}")
    if reports.kmemleak is not None:
        lines.append(f"kmemleak report: {reports.kmemleak}")
    return "\n".join(lines)
