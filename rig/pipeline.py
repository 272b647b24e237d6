"""One `rig run` end to end: build -> image -> boot -> workloads under pressure ->
collect -> parse -> verdict -> reports, under one overall deadline.

Everything a stage produces is written into the run directory as it comes, and the
report is written whatever happens after the guest booted (a panic, a hang, Ctrl-C):
what was collected is never lost. A run whose guest hit a known host fault (an emulator
problem, not a kernel bug) is retried in a fresh guest.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig import __version__, collect
from rig.analysis import Analysis, RawMaterial, analyse, igt_kmemleak_reports
from rig.build import BuildArtifacts, BuildRequest, build
from rig.errors import InfraError, Interrupted, KernelError, RigError
from rig.image import GuestImage, ensure_image
from rig.plan import Plan
from rig.report import write_all
from rig.rundir import write_metadata
from rig.verdict import Baseline, Verdict, judge
from rig.workloads import TestResult
from rig.workloads import igt as igt_workload
from rig.workloads.pressure import Pressure, PressureSession, Timeline
from rig.workloads.script import run_script

# The kernel console goes to the GPU device model's framebuffer (fb1; vkms, built in and
# probed first, is fb0), so the screendump at the end shows the guest's last messages.
FBCON_ON_GPU = "fbcon=map:1"

# Time kept back from the workloads for collection (two kmemleak scans, copies) and reports.
COLLECT_RESERVE_S = 240.0
DEFAULT_DEADLINE_S = 3 * 3600.0


@dataclass(frozen=True)
class RunSpec:
    """Everything `rig run` was asked, validated before anything starts."""

    request: BuildRequest
    plan: Plan
    pressure: Pressure
    command: str  # how to run this again
    gpu: str = "virtio-gpu"
    memory_mib: int = 2048
    cpus: int = 2
    accel: str | None = None
    image: str = "default"
    cmdline_extra: tuple[str, ...] = ()
    ready_timeout_s: float = 300.0
    deadline_s: float = DEFAULT_DEADLINE_S
    retries: int = 1  # extra attempts after a known host fault
    baseline: Baseline | None = None
    bzimage: Path | None = None  # boot this kernel as it is instead of building


@dataclass
class _Attempt:
    """What one guest run gathered so far; filled in as it goes so an error loses nothing."""

    number: int
    directory: Path
    tests: list[TestResult] = field(default_factory=list)
    timeline: Timeline | None = None
    collected: collect.Collected | None = None
    boot_s: float | None = None
    workloads_s: float | None = None
    collect_s: float | None = None
    accel: str = ""
    error: RigError | None = None
    host_fault: str | None = None
    analysis: Analysis | None = None

    @property
    def vm_dir(self) -> Path:
        return self.directory / "vm"


@dataclass(frozen=True)
class RunOutcome:
    run_dir: Path
    verdict: Verdict
    data: dict[str, Any]
    exit_code: int


Say = Callable[[str], None]


def _quiet(_: str) -> None:
    pass


class Pipeline:
    def __init__(self, spec: RunSpec, run_dir: Path, say: Say = _quiet, progress: bool = True) -> None:
        self.spec = spec
        self.run_dir = run_dir
        self.say = say
        self.progress = progress
        self.started = time.monotonic()
        self.phases: dict[str, float] = {}
        self.artifacts: BuildArtifacts | None = None
        self.attempts: list[_Attempt] = []

    def remaining(self) -> float:
        return self.spec.deadline_s - (time.monotonic() - self.started)

    # ------------------------------------------------------------ the stages

    def run(self) -> RunOutcome:
        from rig.vm import run_sync

        write_metadata(self.run_dir, {"command": self.spec.command, "rig_version": __version__,
                                      "plan": self.spec.plan.source, "pressure": self.spec.pressure.label})
        kernel = self._build()
        image = self._image()
        attempt: _Attempt | None = None
        try:
            for number in range(1, self.spec.retries + 2):
                attempt = _Attempt(number, self.run_dir / f"attempt-{number}")
                self.attempts.append(attempt)
                if self.remaining() <= COLLECT_RESERVE_S:
                    raise InfraError(f"the run's deadline ({self.spec.deadline_s:.0f} s) left no time for the guest",
                                     hint="raise --deadline")
                run_sync(self._guest(attempt, kernel, image))
                attempt.host_fault = self._analysis(attempt).host_fault
                if attempt.host_fault is None or number > self.spec.retries:
                    break
                self.say(f"host fault in attempt {number} ({attempt.host_fault}); retrying in a fresh guest")
        except Interrupted as exc:
            if attempt is not None:
                attempt.error = exc
                self._report(attempt)
            raise
        assert attempt is not None
        return self._report(attempt)

    def _build(self) -> Path:
        if self.spec.bzimage is not None:
            return self.spec.bzimage
        started = time.monotonic()
        self.say(f"building {self.spec.request.kernel}" + (f" with {self.spec.request.series}"
                                                           if self.spec.request.series else ""))
        self.artifacts = build(self.spec.request, self.run_dir / "build", progress=self.progress)
        self.phases["build"] = time.monotonic() - started
        self.say(f"kernel {self.artifacts.kernel_release} "
                 f"({'cache hit' if self.artifacts.cache_hit else 'built'} in {self.phases['build']:.0f} s)")
        return self.artifacts.bzimage

    def _image(self) -> GuestImage:
        started = time.monotonic()
        image = ensure_image(self.spec.image, progress=self.progress)
        self.phases["image"] = time.monotonic() - started
        return image

    async def _guest(self, attempt: _Attempt, kernel: Path, image: GuestImage) -> None:
        budget = self.remaining()
        try:
            await asyncio.wait_for(self._guest_work(attempt, kernel, image), budget)
        except asyncio.TimeoutError:
            attempt.error = KernelError(f"the run did not finish within its deadline ({self.spec.deadline_s:.0f} s); "
                                        "the guest was stopped", hint="raise --deadline, or use a smaller --plan")
        except KernelError as exc:
            # The kernel died or hung: its console has the story; the report tells it.
            attempt.error = exc
        finally:
            attempt.collected = collect.after_guest(
                attempt.collected, attempt.directory / "collect", attempt.vm_dir / "console.log",
                attempt.vm_dir / "qmp-events.jsonl",
                (f"the guest run ended early: {attempt.error.message.splitlines()[0]}",) if attempt.error else ())

    async def _guest_work(self, attempt: _Attempt, kernel: Path, image: GuestImage) -> None:
        from rig.vm import boot_guest

        spec = self.spec
        started = time.monotonic()
        self.say(f"booting the guest (attempt {attempt.number})")
        cmdline = spec.cmdline_extra
        if spec.gpu != "none" and not any(arg.startswith("fbcon=") for arg in cmdline):
            cmdline = (*cmdline, FBCON_ON_GPU)
        async with boot_guest(kernel, image, attempt.vm_dir, gpu=spec.gpu, memory_mib=spec.memory_mib,
                              cpus=spec.cpus, cmdline_extra=cmdline,
                              ready_timeout_s=spec.ready_timeout_s, accel=spec.accel) as vm:
            attempt.accel = vm.accel
            attempt.boot_s = time.monotonic() - started
            self.phases["boot"] = self.phases.get("boot", 0.0) + attempt.boot_s
            self.say(f"guest ready in {attempt.boot_s:.0f} s ({vm.accel}); running plan '{spec.plan.name}' "
                     f"under pressure '{spec.pressure.label}'")
            t0 = time.monotonic()
            quiet_since: float | None = None  # when the last workload ended
            prepared = await igt_workload.prepare(vm, spec.plan)
            session = PressureSession(vm, spec.pressure, attempt.directory / "pressure", spec.memory_mib, t0)
            try:
                await session.start()
                for group in prepared:
                    session.note(f"IGT group {group.label}")
                    self.say(f"IGT on {group.group.driver or 'any driver'}: {len(group.tests)} tests")
                    run = await igt_workload.run_group(
                        vm, group, attempt.directory / "igt", inactivity_s=spec.plan.inactivity_timeout_s,
                        kmemleak_each=spec.plan.kmemleak_scan == "each",
                        budget_s=max(60.0, self.remaining() - COLLECT_RESERVE_S), t0=t0, wrap=session.wrap)
                    attempt.tests += run.results
                for script in spec.plan.scripts:
                    session.note(f"script {script.name}")
                    await _kmsg(vm, f"rig: start script:{script.name}")
                    attempt.tests.append(await run_script(vm, script, attempt.directory / "scripts", t0=t0,
                                                          wrap=session.wrap))
                    await _kmsg(vm, f"rig: end script:{script.name}")
                quiet_since = time.monotonic()
            finally:
                if vm.machine.exited or vm.machine.panicked:
                    attempt.timeline = session.partial_timeline()
                else:
                    with contextlib.suppress(RigError):
                        attempt.timeline = await session.stop()
                    if attempt.timeline is None:
                        attempt.timeline = session.partial_timeline()
                attempt.workloads_s = time.monotonic() - t0
                self.phases["workloads"] = self.phases.get("workloads", 0.0) + attempt.workloads_s
            started_collect = time.monotonic()
            counts: dict[str, int] = {}
            for test in attempt.tests:
                counts[test.status] = counts.get(test.status, 0) + 1
            # Lands on the guest's display too (the console is on its framebuffer).
            await _kmsg(vm, f"rig: {len(attempt.tests)} tests done ("
                        + ", ".join(f"{n} {status}" for status, n in sorted(counts.items())) + "); collecting reports")
            self.say("collecting kmemleak, dmesg, lockdep state and a screendump")
            attempt.collected = await collect.from_guest(vm, attempt.directory / "collect",
                                                         kmemleak=spec.plan.kmemleak_scan != "off",
                                                         quiet_since=quiet_since)
            attempt.collect_s = time.monotonic() - started_collect
            self.phases["collect"] = self.phases.get("collect", 0.0) + attempt.collect_s

    # ------------------------------------------------------------ judging

    def _analysis(self, attempt: _Attempt) -> Analysis:
        if attempt.analysis is None:
            collected = attempt.collected
            kmemleak = (collected.kmemleak,) if collected is not None and collected.kmemleak is not None else ()
            raw = RawMaterial(console=collected.console if collected else None,
                              dmesg=collected.dmesg if collected else None,
                              kmemleak=kmemleak + igt_kmemleak_reports(attempt.directory / "igt"),
                              tests=tuple(attempt.tests),
                              lockdep_stats=collected.lockdep_stats if collected else None)
            attempt.analysis = analyse(raw, self.spec.plan)
        return attempt.analysis

    def _report(self, attempt: _Attempt) -> RunOutcome:
        started = time.monotonic()
        problems: list[str] = []
        if attempt.error is not None:
            problems.append(attempt.error.message.splitlines()[0])
        verdict = judge(self._analysis(attempt), self.spec.plan, baseline=self.spec.baseline,
                        problems=problems + list(attempt.collected.problems if attempt.collected else ()))
        data = self._data(attempt, verdict)
        self.phases["report"] = time.monotonic() - started
        data["phases"] = {name: round(seconds, 2) for name, seconds in self.phases.items()}
        write_all(data, self.run_dir)
        write_metadata(self.run_dir, {"phases": data["phases"], "exit_code": data["exit_code"]})
        return RunOutcome(self.run_dir, verdict, data, data["exit_code"])

    def _exit_code(self, attempt: _Attempt, verdict: Verdict) -> int:
        if verdict.exit_code:
            return 1
        if attempt.host_fault is not None:
            return InfraError.exit_code  # every attempt hit the emulator fault: no verdict on the kernel
        if isinstance(attempt.error, KernelError):
            return 1  # the guest died or hung without a report the parser knows
        if isinstance(attempt.error, Interrupted):
            return Interrupted.exit_code
        return 0

    def _data(self, attempt: _Attempt, verdict: Verdict) -> dict[str, Any]:
        spec = self.spec
        artifacts = self.artifacts
        collected = attempt.collected

        def rel(path: Path | None) -> str | None:
            if path is None:
                return None
            with contextlib.suppress(ValueError):
                return str(path.relative_to(self.run_dir))
            return str(path)

        series = None
        if spec.request.series:
            series = {"spec": spec.request.series,
                      "patches": [{"number": p.number, "subject": p.subject, "author": p.author}
                                  for p in (artifacts.patches if artifacts else ())]}
        verdict_json = verdict.to_json()
        verdict_json["totals"] = verdict.totals()
        exit_code = self._exit_code(attempt, verdict)
        verdict_json["exit_code"] = exit_code
        return {
            "rig_version": __version__,
            "command": spec.command,
            "run_dir": str(self.run_dir),
            "exit_code": exit_code,
            "kernel": {
                "spec": spec.request.kernel if spec.bzimage is None else str(spec.bzimage),
                "release": artifacts.kernel_release if artifacts else None,
                "base": (f"{spec.request.kernel} @ {artifacts.base_commit[:12]}" if artifacts and artifacts.base_commit
                         else spec.request.base or spec.request.kernel),
                "profile": spec.request.profile,
                "extra_configs": [str(p) for p in spec.request.extra_configs],
                "bzimage": rel(artifacts.bzimage) if artifacts else str(spec.bzimage),
                "cache_hit": artifacts.cache_hit if artifacts else None,
            },
            "series": series,
            "plan": {"name": spec.plan.name, "source": spec.plan.source, "description": spec.plan.description},
            "pressure": spec.pressure.label,
            "machine": {"gpu": spec.gpu, "memory_mib": spec.memory_mib, "cpus": spec.cpus, "accel": attempt.accel},
            "verdict": verdict_json,
            "findings": [f.to_json() for f in verdict.findings],
            "tests": [t.to_json() for t in verdict.tests],
            "totals": verdict.totals(),
            "timeline": attempt.timeline.to_json() if attempt.timeline else None,
            "attempts": [{"number": a.number, "directory": rel(a.directory), "host_fault": a.host_fault,
                          "error": a.error.message.splitlines()[0] if a.error else None,
                          "boot_s": a.boot_s, "workloads_s": a.workloads_s, "collect_s": a.collect_s}
                         for a in self.attempts],
            "collected": collected.to_json() if collected else None,
            "artifacts": {
                "console": rel(collected.console) if collected else None,
                "dmesg": rel(collected.dmesg) if collected else None,
                "kmemleak": rel(collected.kmemleak) if collected else None,
                "screendump": rel(collected.screendump) if collected else None,
                "igt_results": rel(attempt.directory / "igt"),
            },
            "lockdep_debug_locks": self._analysis(attempt).debug_locks,
        }


async def _kmsg(vm: Any, line: str) -> None:
    """A marker in the kernel log, so reports printed meanwhile are attributed to it."""
    with contextlib.suppress(RigError):
        await vm.run(["sh", "-c", 'echo "$0" > /dev/kmsg', line], timeout=30)


def run(spec: RunSpec, run_dir: Path, *, say: Say = _quiet, progress: bool = True) -> RunOutcome:
    return Pipeline(spec, run_dir, say, progress).run()
