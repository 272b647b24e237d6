"""One `rig run` end to end: build -> image -> attempts (boot, workloads under pressure,
collect) -> analysis -> verdict -> one RunReport -> every renderer, under one deadline.

Attempts never raise (see rig.attempt): each returns what it gathered and how it ended,
so the report is written whatever happens once the kernel and image exist. An attempt
that hit a known host fault (an emulator problem, not a kernel bug) is followed by
another in a fresh guest while retries and time remain; the last attempt is judged.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rig import __version__
from rig.analysis import Analysis, RawMaterial, analyse, igt_kmemleak_reports
from rig.attempt import COLLECT_RESERVE_S, AttemptPlan, AttemptResult, run_attempt
from rig.build import BuildArtifacts, BuildRequest, build
from rig.collect import taint_letters
from rig.guest_spec import GuestSpec
from rig.image import GuestImage, ensure_image
from rig.plan import Plan
from rig.report import write_all
from rig.report.model import (
    Artifacts, AttemptRecord, ErrorKind, KernelInfo, MachineInfo, Patch, Phase, PlanInfo, RunReport,
    SeriesInfo,
)
from rig.rundir import write_metadata
from rig.results import TestResult, TestStatus
from rig.verdict import Baseline, judge
from rig.workloads.kunit import explain_absent, suites_in_source
from rig.workloads.pressure import Pressure

DEFAULT_DEADLINE_S = 3 * 3600.0

Say = Callable[[str], None]


@dataclass(frozen=True)
class RunSpec:
    """Everything `rig run` was asked, validated before anything starts."""

    request: BuildRequest
    plan: Plan
    pressure: Pressure
    guest: GuestSpec
    command: str  # how to run this again
    deadline_s: float = DEFAULT_DEADLINE_S
    retries: int = 1  # extra attempts after a known host fault
    baseline: Baseline | None = None
    kernel_image: Path | None = None  # boot this kernel as it is instead of building


def _quiet(_: str) -> None:
    pass


class Run:
    def __init__(self, spec: RunSpec, run_dir: Path, say: Say = _quiet, progress: bool = True) -> None:
        self.spec = spec
        self.run_dir = run_dir
        self.say = say
        self.progress = progress
        self.deadline = time.monotonic() + spec.deadline_s
        self.phases: dict[str, float] = {}
        self.artifacts: BuildArtifacts | None = None

    def run(self) -> RunReport:
        write_metadata(self.run_dir, {"command": self.spec.command, "rig_version": __version__,
                                      "plan": self.spec.plan.source, "pressure": self.spec.pressure.label,
                                      "guest": self.spec.guest.to_json()})
        what = AttemptPlan(self._kernel(), self._image(), self.spec.guest, self.spec.plan, self.spec.pressure)
        attempts: list[tuple[AttemptResult, Analysis]] = []
        notes: list[str] = []
        for number in range(1, self.spec.retries + 2):
            if attempts and self.deadline - time.monotonic() <= COLLECT_RESERVE_S:
                notes.append(f"no time left in the run's deadline ({self.spec.deadline_s:.0f} s) for attempt "
                             f"{number}; the last attempt is judged as it is")
                break
            directory = self.run_dir / f"attempt-{number}"
            directory.mkdir(parents=True, exist_ok=True)
            result = run_attempt(number, what, directory, deadline=self.deadline, say=self.say)
            for phase, seconds in result.durations.items():
                self.phases[phase] = round(self.phases.get(phase, 0.0) + seconds, 2)
            analysis = analyse(_raw_material(result, self._explain_absent))
            attempts.append((result, analysis))
            if result.error is not None and result.error.kind in (ErrorKind.INTERRUPT, ErrorKind.BUG):
                break
            if analysis.host_fault is None:
                break
            if number <= self.spec.retries:
                self.say(f"host fault in attempt {number} ({analysis.host_fault}); retrying in a fresh guest")
        return self._report(attempts, notes)

    def _kernel(self) -> Path:
        if self.spec.kernel_image is not None:
            return self.spec.kernel_image
        started = time.monotonic()
        request = self.spec.request
        self.say(f"building {request.kernel}" + (f" with {request.series}" if request.series else ""))
        self.artifacts = build(request, self.run_dir / "build", progress=self.progress)
        self.phases[Phase.BUILD.value] = round(time.monotonic() - started, 2)
        self.say(f"kernel {self.artifacts.kernel_release} "
                 f"({'cache hit' if self.artifacts.cache_hit else 'built'} in {self.phases['build']:.0f} s)")
        return self.artifacts.kernel_image

    def _image(self) -> GuestImage:
        started = time.monotonic()
        image = ensure_image(self.spec.guest.image, progress=self.progress, arch=self.spec.guest.target.name)
        self.phases[Phase.IMAGE.value] = round(time.monotonic() - started, 2)
        return image

    def _report(self, attempts: list[tuple[AttemptResult, Analysis]], notes: list[str]) -> RunReport:
        started = time.monotonic()
        judged, analysis = attempts[-1]
        problems = [*notes, *judged.collected.problems]
        verdict = judge(analysis, self.spec.plan, baseline=self.spec.baseline, problems=problems)
        report = RunReport(
            rig_version=__version__,
            command=self.spec.command,
            run_dir=self.run_dir,
            kernel=self._kernel_info(),
            series=self._series_info(),
            plan=PlanInfo(self.spec.plan.name, self.spec.plan.source, self.spec.plan.description),
            pressure=self.spec.pressure.label,
            machine=MachineInfo(self.spec.guest.target.name, self.spec.guest.gpu, self.spec.guest.memory_mib,
                                self.spec.guest.cpus, judged.accel),
            verdict=verdict,
            attempts=tuple(AttemptRecord(result.number, self._rel(result.directory) or "", result.accel,
                                         result.durations, result.error, found.host_fault)
                           for result, found in attempts),
            timeline=judged.timeline,
            artifacts=self._artifacts(judged, analysis),
            phases=self.phases,
        )
        self.phases[Phase.REPORT.value] = round(time.monotonic() - started, 2)
        report = dataclasses.replace(report, phases=dict(self.phases))
        write_all(report, self.run_dir)
        write_metadata(self.run_dir, {"phases": dict(self.phases), "exit_code": report.exit_code,
                                      "outcome": report.decision.outcome.value})
        return report

    def _explain_absent(self, tests: tuple[TestResult, ...]) -> tuple[TestResult, ...]:
        """KUnit suites the kernel lacks, told apart: in its source but not built, or not
        in this version at all (only the source of a kernel rig built can say)."""
        artifacts = self.artifacts
        if artifacts is None or artifacts.source_repo is None or not any(t.status is TestStatus.ABSENT for t in tests):
            return tests
        commit = artifacts.head_commit or artifacts.base_commit
        return tuple(explain_absent(tests, suites_in_source(artifacts.source_repo, commit) or None))

    def _rel(self, path: Path | None) -> str | None:
        if path is None:
            return None
        with contextlib.suppress(ValueError):
            return str(path.relative_to(self.run_dir))
        return str(path)

    def _kernel_info(self) -> KernelInfo:
        spec, artifacts = self.spec, self.artifacts
        if artifacts is None:
            return KernelInfo(spec=str(spec.kernel_image), release=None, base=str(spec.kernel_image),
                              profile=spec.request.profile, image=str(spec.kernel_image),
                              arch=spec.guest.target.name)
        base = (f"{spec.request.kernel} @ {artifacts.base_commit[:12]}" if artifacts.base_commit
                else spec.request.base or spec.request.kernel)
        return KernelInfo(spec=spec.request.kernel, release=artifacts.kernel_release, base=base,
                          profile=spec.request.profile, extra_configs=tuple(str(p) for p in spec.request.extra_configs),
                          image=self._rel(artifacts.kernel_image), cache_hit=artifacts.cache_hit,
                          arch=spec.guest.target.name)

    def _series_info(self) -> SeriesInfo | None:
        if not self.spec.request.series:
            return None
        patches = self.artifacts.patches if self.artifacts else ()
        return SeriesInfo(self.spec.request.series, tuple(Patch(p.number, p.subject, p.author) for p in patches))

    def _artifacts(self, attempt: AttemptResult, analysis: Analysis) -> Artifacts:
        collected = attempt.collected
        return Artifacts(
            console=self._rel(collected.console), dmesg=self._rel(collected.dmesg),
            kmemleak=self._rel(collected.kmemleak), screendump=self._rel(collected.screendump),
            igt_results=self._rel(attempt.directory / "igt"), tainted=collected.tainted,
            taint_flags=taint_letters(collected.tainted) if collected.tainted is not None else None,
            lockdep_debug_locks=analysis.debug_locks,
            problems=collected.problems)


def _raw_material(attempt: AttemptResult,
                  explain: Callable[[tuple[TestResult, ...]], tuple[TestResult, ...]] = lambda tests: tests
                  ) -> RawMaterial:
    collected = attempt.collected
    # kmemleak = "each": igt_runner saved a report after each test (clearing the list each
    # time), before rig's final scan: oldest first, so a leak is blamed on its first test.
    kmemleak = igt_kmemleak_reports(attempt.directory / "igt") + ((collected.kmemleak,) if collected.kmemleak else ())
    return RawMaterial(console=collected.console, dmesg=collected.dmesg, kmemleak=kmemleak, tests=explain(attempt.tests),
                       lockdep_stats=collected.lockdep_stats)


def run(spec: RunSpec, run_dir: Path, *, say: Say = _quiet, progress: bool = True) -> RunReport:
    return Run(spec, run_dir, say, progress).run()

