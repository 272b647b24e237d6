"""One attempt of a run: boot a fresh guest, run the plan's workloads under memory
pressure, collect, stop; as one unit that always returns a frozen result.

Whatever goes wrong inside (bad input found late, the host failing, the kernel dying or
hanging, Ctrl-C or SIGTERM, the run's deadline, even a bug in rig) is caught at this
boundary and recorded with the phase it happened in, next to everything gathered before
it: the caller always has something to report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from rig import collect
from rig.errors import DeadlineExceeded, RigError, disk_full
from rig.forensics import HangPolicy, HangRecord, HangWatch
from rig.gpu_plan import fit_to_gpu
from rig.guest_spec import GuestSpec
from rig.image import GuestImage
from rig.known import Pattern
from rig.plan import Plan
from rig.reclaim_events import with_reclaim_events
from rig.report.model import AttemptError, ErrorKind, Phase
from rig.workloads import TestResult, WorkloadContext
from rig.workloads.pressure import Pressure, PressureSession, Timeline

if TYPE_CHECKING:
    from rig.vm import VM

log = logging.getLogger(__name__)

# The kernel console goes to the GPU model's framebuffer (fb1; vkms, built in and probed
# first, is fb0), so the screendump at the end shows the guest's last messages.
FBCON_ON_GPU = "fbcon=map:1"
# Time kept back from the workloads for collection (two kmemleak scans, copies) and reports.
COLLECT_RESERVE_S = 240.0
# The least a workload is given, even late in a run: less cannot even start igt_runner.
MIN_WORKLOAD_BUDGET_S = 60.0

Say = Callable[[str], None]


@dataclass(frozen=True)
class AttemptPlan:
    """What every attempt of a run does: the same guest, plan and pressure each time."""

    kernel: Path
    image: GuestImage
    guest: GuestSpec
    plan: Plan
    pressure: Pressure
    skips: tuple[Pattern, ...] = ()  # tests a known skips list keeps from running (rig.known)
    hang: HangPolicy = HangPolicy()  # what to ask a hung guest's kernel (rig.forensics)


@dataclass(frozen=True)
class AttemptResult:
    """What one attempt gathered, and how it ended."""

    number: int
    directory: Path
    tests: tuple[TestResult, ...]
    timeline: Timeline | None
    collected: collect.Collected
    accel: str | None
    durations: dict[str, float]  # phase -> seconds, for the phases it reached
    error: AttemptError | None
    hang: HangRecord | None = None  # what rig asked the guest's kernel when it hung, and the answer
    # the GPU model's counters and pending injections at the end (rig.gpu_faults), when it has them
    gpu_counters: dict[str, int] = field(default_factory=dict)

    @property
    def vm_dir(self) -> Path:
        return self.directory / "vm"


@dataclass
class _Progress:
    """The attempt's state while it runs; frozen into an AttemptResult at the boundary."""

    phase: Phase = Phase.BOOT
    tests: list[TestResult] = field(default_factory=list)
    timeline: Timeline | None = None
    collected: collect.Collected | None = None
    accel: str | None = None
    durations: dict[str, float] = field(default_factory=dict)
    gpu_counters: dict[str, int] = field(default_factory=dict)
    phase_started: float = field(default_factory=time.monotonic)
    vm: VM | None = None  # the booted guest, for forensics when the deadline ends it
    hang: HangWatch | None = None  # what rig asked the guest's kernel when it hung (at boot too)

    def enter(self, phase: Phase) -> None:
        self.end_phase()
        self.phase = phase
        self.phase_started = time.monotonic()

    def end_phase(self) -> None:
        self.durations[self.phase.value] = round(time.monotonic() - self.phase_started, 2)


def run_attempt(number: int, what: AttemptPlan, directory: Path, *, deadline: float,
                say: Say = lambda _: None) -> AttemptResult:
    """Run one attempt until `deadline` (a time.monotonic() value); never raises RigError."""
    from rig.vm import run_sync

    progress = _Progress()
    error: AttemptError | None = None
    try:
        run_sync(_in_guest(what, directory, progress, deadline, say))
    except RigError as exc:
        error = AttemptError.from_exception(exc, progress.phase)
    except Exception as exc:
        if (full := disk_full(exc, directory)) is not None:  # the host's disk, not rig, failed the write
            error = AttemptError.from_exception(full, progress.phase)
        else:  # a bug in rig: keep the attempt's material and report it as one
            with contextlib.suppress(OSError):
                (directory / "rig-traceback.txt").write_text(traceback.format_exc())
            log.exception("attempt %d", number)
            error = AttemptError(ErrorKind.BUG, progress.phase, f"rig failed: {type(exc).__name__}: {exc}",
                                 hint="this is a bug in rig; report it with " + str(directory / "rig-traceback.txt"))
    finally:
        progress.end_phase()
    collected = collect.after_guest(progress.collected, directory / "collect", directory / "vm" / "console.log",
                                    directory / "vm" / "qmp-events.jsonl")
    timeline = progress.timeline
    if timeline is not None and collected.console is not None:
        # The whole console, not dmesg: it holds what a crashed guest printed last.
        with contextlib.suppress(OSError), collected.console.open(errors="replace") as console:
            timeline = with_reclaim_events(timeline, console)
    hang = progress.hang.record if progress.hang is not None else None
    if hang is not None:
        # What the kernel answered: the console from the first key on (a panic after the NMI too).
        hang = hang.with_console(directory / "vm" / "console.log")
    return AttemptResult(number, directory, tuple(progress.tests), timeline, collected, progress.accel,
                         dict(progress.durations), error, hang, dict(progress.gpu_counters))


async def _in_guest(what: AttemptPlan, directory: Path, progress: _Progress, deadline: float, say: Say) -> None:
    work = asyncio.ensure_future(_boot_and_work(what, directory, progress, deadline, say))
    try:
        done, _ = await asyncio.wait({work}, timeout=max(0.0, deadline - time.monotonic()))
        if done:
            return work.result()
        # The deadline, most often a guest that hangs without a report: ask its kernel
        # what it is doing before the guest is stopped.
        if progress.vm is not None:
            say("the run's deadline was reached; asking the guest kernel for its blocked tasks and CPU backtraces")
            await progress.vm.investigate(f"the run's deadline was reached during {progress.phase.value}")
    finally:
        if not work.done():
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await work
    raise DeadlineExceeded(f"the run's deadline was reached during {progress.phase.value}; the guest was stopped",
                           hint="raise --deadline, or use a smaller --plan")


async def _boot_and_work(what: AttemptPlan, directory: Path, progress: _Progress, deadline: float,
                         say: Say) -> None:
    from rig.vm import boot_guest
    from rig.workloads import workloads_for
    from rig.workloads.script import kmsg

    guest = what.guest
    if guest.gpu != "none" and not any(arg.startswith("fbcon=") for arg in guest.cmdline_extra):
        guest = guest.with_cmdline(FBCON_ON_GPU)
    say(f"booting the guest ({guest.target.name}, {guest.gpu})")
    progress.hang = HangWatch(what.hang)
    async with boot_guest(what.kernel, what.image, directory / "vm", guest, progress.hang) as vm:
        progress.vm = vm
        progress.accel = vm.accel
        progress.enter(Phase.WORKLOADS)  # preparing them (checks in the guest) is part of the workloads
        say(f"guest ready in {progress.durations['boot']:.0f} s ({vm.accel}); running plan '{what.plan.name}' "
            f"under pressure '{what.pressure.label}'")
        t0 = time.monotonic()
        plan, not_for_this_gpu = fit_to_gpu(what.plan, what.guest.gpu_model)
        progress.tests = [TestResult(name, "script" if name.startswith("script:") else "igt", "skip",
                                     "not-applicable", None, driver, why)
                          for name, driver, why in not_for_this_gpu]
        if what.skips:
            plan, skipped = await _without_skipped(vm, plan, what.skips)
            progress.tests += skipped
        workloads = workloads_for(plan)
        for workload in workloads:
            await workload.prepare(vm)
        quiet_since: float | None = None
        session = PressureSession(vm, what.pressure, directory / "pressure", guest.memory_mib, t0)
        try:
            async with session:
                for workload in workloads:
                    session.note(workload.label)
                    budget = max(MIN_WORKLOAD_BUDGET_S, deadline - time.monotonic() - COLLECT_RESERVE_S)
                    context = WorkloadContext(vm, directory, t0, budget, session.wrap, say)
                    progress.tests += await workload.run(context)
            quiet_since = time.monotonic()
        finally:
            progress.timeline = session.timeline
        progress.enter(Phase.COLLECT)
        # Lands on the guest's display too (the console is on its framebuffer).
        await kmsg(vm, f"rig: {_tally(progress.tests)}; collecting reports")
        progress.gpu_counters = await _gpu_counters(vm, guest)
        say("collecting kmemleak, dmesg, lockdep state and a screendump")
        progress.collected = await collect.from_guest(vm, directory / "collect",
                                                      kmemleak=what.plan.kmemleak_scan != "off",
                                                      quiet_since=quiet_since)
        progress.enter(Phase.SHUTDOWN)


async def _gpu_counters(vm: object, guest: GuestSpec) -> dict[str, int]:
    """The GPU model's counters, first thing after the workloads (nothing runs on the GPU
    then); a model that cannot answer costs the report its counters, not the attempt."""
    from rig.gpu_faults import read_counters

    try:
        return await read_counters(vm.machine, guest.gpu_model)  # type: ignore[attr-defined]
    except RigError as exc:
        log.warning("GPU counters: %s", exc.message.splitlines()[0])
        return {}


async def _without_skipped(vm: object, plan: Plan, skips: tuple[Pattern, ...]) -> tuple[Plan, list[TestResult]]:
    """The plan without the tests a skips list names (its IGT patterns expanded in this
    guest first, as the workload would), and a `skip` result for each of those."""
    from rig.narrow import without_skipped
    from rig.workloads.igt import list_available

    binaries = list(dict.fromkeys(b for group in plan.igt for b in group.binaries))
    available, _ = await list_available(vm, binaries)  # type: ignore[arg-type]

    def reason(name: str) -> str | None:
        pattern = next((p for p in skips if p.matches(name)), None)
        return f"not run: {pattern.source} skips {pattern.regex.pattern!r}" if pattern else None

    narrowed, dropped = without_skipped(plan, available, reason)
    return narrowed, [TestResult(name, "script" if name.startswith("script:") else "igt", "skip", "known-skip", None,
                                 driver, why) for name, driver, why in dropped]


def _tally(tests: list[TestResult]) -> str:
    counts: dict[str, int] = {}
    for test in tests:
        counts[str(test.status)] = counts.get(str(test.status), 0) + 1
    return f"{len(tests)} tests done (" + ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) + ")"

