"""One `rig run` end to end: build -> image -> attempts (boot, workloads under pressure,
collect) -> analysis -> verdict -> one RunReport -> every renderer, under one deadline.

With a series, rig also runs the base kernel (the same tree without the series) with the
same plan, pressure, machine and image, and judges the series against it. Each side
runs `repeat` times, each in a fresh guest, base and series interleaved (B S B S ...) so
that a drift in the host's load hits both; the base runs are kept in rig's cache
(rig.baseruns), so a second series on the same base runs only its own side. Intermittent
new findings are settled by targeted runs of their tests, until each is the series' doing
with 95% confidence or the base shows it too, up to `max_repeat` runs a side; `bisect` names the first patch that shows each new finding (rig.bisect).

Attempts never raise (see rig.attempt): each returns what it gathered and how it ended,
so the report is written whatever happens once the kernel and image exist. An attempt
that hit a known host fault (an emulator problem, not a kernel bug) is followed by
another in a fresh guest while retries and time remain; the last attempt of each run is
the one counted.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from rig import __version__, baseruns
from rig.analysis import Analysis, RawMaterial, analyse, igt_kmemleak_reports
from rig.attempt import COLLECT_RESERVE_S, AttemptPlan, AttemptResult, run_attempt
from rig.bisect import Target, probe_limit, search
from rig.build import BuildArtifacts, BuildRequest, ResolvedBuild, build_prefix, resolve
from rig.collect import taint_letters
from rig.forensics import HangPolicy, HangRecord
from rig.gpu_faults import GpuRecord
from rig.guest_spec import GuestSpec
from rig.image import GuestImage, ensure_image
from rig.known import KnownIssues
from rig.narrow import narrow
from rig.plan import Plan
from rig.progress import Reporter
from rig.report import write_all
from rig.report.model import (
    Artifacts, AttemptError, AttemptRecord, ErrorKind, KernelInfo, MachineInfo, Patch, Phase, PlanInfo,
    RunReport, SeriesInfo, flags_text, seen_text,
)
from rig.errors import DISK_FULL_HINT, RigError, Terminated, disk_full
from rig.rundir import SpaceReserve, write_metadata
from rig.results import TestResult, TestStatus
from rig.tally import Seen, SideRun, finding_key
from rig.verdict import NEW, Baseline, FirstBadPatch, JudgedFinding, TestVerdict, Verdict, judge_runs, unsettled
from rig.workloads.kunit import explain_absent, suites_in_source
from rig.workloads.pressure import Pressure

DEFAULT_DEADLINE_S = 3 * 3600.0

Say = Callable[[str], None]
log = logging.getLogger(__name__)
T = TypeVar("T")


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
    repeat: int = 1  # runs of each side, each in a fresh guest
    base: bool = True  # with a series: run the base kernel beside it (--no-base: False)
    bisect: bool = False  # name the first bad patch of each new finding
    max_repeat: int = 0  # settle intermittent new findings with targeted runs up to this many a side
    known: KnownIssues = field(default_factory=KnownIssues)
    hang: HangPolicy = HangPolicy()  # what to ask a hung guest's kernel (--dump-on-hang, --task-list-on-hang)

    @property
    def compares_base(self) -> bool:
        """Whether the base kernel runs beside the series (it is built, not given)."""
        return (self.base and self.baseline is None and self.kernel_image is None
                and self.request.series is not None)


def _quiet(_: str) -> None:
    pass


@dataclass
class _Side:
    """The runs of one kernel: every attempt, and the one counted of each run."""

    name: str  # "series", "base", "bisect"
    directory: Path
    attempts: list[tuple[AttemptResult, Analysis, AttemptRecord]] = field(default_factory=list)
    counted: list[SideRun] = field(default_factory=list)
    next_number: int = 1


class Run:
    def __init__(self, spec: RunSpec, run_dir: Path, say: Say = _quiet, progress: bool = True) -> None:
        self.spec = spec
        self.run_dir = run_dir
        self.say = say
        self.progress = progress
        self.deadline = time.monotonic() + spec.deadline_s
        self.phases: dict[str, float] = {}
        self.costs: dict[str, float] = {}
        self.artifacts: BuildArtifacts | None = None
        self.base_artifacts: BuildArtifacts | None = None
        self.resolved: ResolvedBuild | None = None
        self.notes: list[str] = []
        self.series = _Side("series", run_dir)
        self.base = _Side("base", run_dir / "base")
        self.bisect = _Side("bisect", run_dir / "bisect")
        self.base_note = ""
        self.settle_note = ""
        self.records: list[AttemptRecord] = []  # every attempt of every side, in the order they ran
        self.reserve = SpaceReserve(run_dir)
        self.disk_full = False  # an attempt ended on a full disk: no more attempts can keep their files

    # --- the run ------------------------------------------------------------------------

    def run(self) -> RunReport:
        spec = self.spec
        write_metadata(self.run_dir, {"command": spec.command, "rig_version": __version__,
                                      "plan": spec.plan.source, "pressure": spec.pressure.label,
                                      "guest": spec.guest.to_json(), "repeat": spec.repeat,
                                      "base": spec.compares_base, "bisect": spec.bisect})
        self.reserve.hold()
        try:
            return self._run()
        finally:
            self.reserve.release()

    def _run(self) -> RunReport:
        spec = self.spec
        phase = Phase.BUILD
        try:
            kernel = self._kernel()
            base_kernel = self._base_kernel() if spec.compares_base else None
            phase = Phase.IMAGE
            image = self._image()
        except BaseException as exc:
            # No attempt to report on, but the run still says how and where it ended;
            # the error itself goes on up (its message, its exit code).
            self._report_ended(exc, phase)
            raise
        skips = spec.known.skips
        what = AttemptPlan(kernel, image, spec.guest, spec.plan, spec.pressure, skips, spec.hang)
        cached = self._timed("base_runs", lambda: self._cached_base(image)) if base_kernel is not None else None
        base_what = dataclasses.replace(what, kernel=base_kernel) if base_kernel and cached is None else None
        # B S B S ...: a drift in the host's load hits both sides alike.
        for index in range(1, spec.repeat + 1):
            if self._stopped():
                break
            if base_what is not None:
                self._timed("base_runs", lambda: self._one_run(self.base, base_what, spec.plan, index))
            self._timed("series_runs", lambda: self._one_run(self.series, what, spec.plan, index))
        if base_what is not None and not self._stopped():
            self._store_base(image)
        base_runs = self.base.counted if base_kernel is not None else None
        if spec.max_repeat > spec.repeat and base_kernel is not None and not self._stopped():
            self._timed("settle_runs", lambda: self._settle(what, dataclasses.replace(what, kernel=base_kernel)))
        verdict = self._verdict(base_runs)
        if spec.bisect and not self._stopped():
            verdict = self._timed("bisect_runs", lambda: self._bisect(verdict, what))
        return self._report(verdict)

    def _timed(self, cost: str, step: Callable[[], T]) -> T:
        started = time.monotonic()
        try:
            return step()
        finally:
            self.costs[cost] = round(self.costs.get(cost, 0.0) + time.monotonic() - started, 2)

    def _stopped(self) -> bool:
        """Whether the run must start no more guests: rig was interrupted, a bug in rig, or
        the disk filled up."""
        return self.disk_full or any(
            record.error is not None and record.error.kind in (ErrorKind.INTERRUPT, ErrorKind.BUG)
            for side in (self.series, self.base, self.bisect) for _, _, record in side.attempts)

    def _one_run(self, side: _Side, what: AttemptPlan, plan: Plan, index: int, *, kernel: str | None = None,
                 scope: str | None = None) -> SideRun | None:
        """One run of a side: an attempt, and another in a fresh guest after a known host
        fault while retries and time remain. The last attempt is the run's."""
        if self.disk_full:  # its files would have nowhere to go
            return None
        what = dataclasses.replace(what, plan=plan)
        last: tuple[AttemptResult, Analysis] | None = None
        for retry in range(self.spec.retries + 1):
            if (last is not None or side.attempts or self.series.attempts) and \
                    self.deadline - time.monotonic() <= COLLECT_RESERVE_S:
                self.notes.append(f"no time left in the run's deadline ({self.spec.deadline_s:.0f} s) for "
                                  f"{side.name} run {index}" + ("" if last is None else "; its last attempt counts"))
                break
            number = side.next_number
            side.next_number += 1
            directory = side.directory / f"attempt-{number}"
            directory.mkdir(parents=True, exist_ok=True)
            if self.spec.repeat > 1 or side.name != "series":
                self.say(f"{side.name} run {index}" + (f" ({kernel})" if kernel else "")
                         + (f", only {scope}" if scope else "") + (f", retry {retry}" if retry else ""))
            result = run_attempt(number, what, directory, deadline=self.deadline, say=self.say)
            if side is not self.bisect:
                for phase, seconds in result.durations.items():
                    self.phases[phase] = round(self.phases.get(phase, 0.0) + seconds, 2)
            analysis = analyse(_raw_material(result, self._explain_absent))
            record = AttemptRecord(number, self._rel(result.directory) or "", result.accel, result.durations,
                                   result.error, analysis.host_fault, side.name, scope, kernel,
                                   self._hang(result), _gpu_record(self.spec.guest, result, analysis))
            side.attempts.append((result, analysis, record))
            self.records.append(record)
            last = (result, analysis)
            if result.error is not None and result.error.hint == DISK_FULL_HINT:
                self.disk_full = True
                self.notes.append(f"the disk filled up during {side.name} run {index}: rig started no more guests")
            if result.error is not None and (self.disk_full or result.error.kind in (ErrorKind.INTERRUPT,
                                                                                     ErrorKind.BUG)):
                break
            if analysis.host_fault is None:
                break
            if retry < self.spec.retries:
                self.say(f"host fault in attempt {number} ({analysis.host_fault}); retrying in a fresh guest")
        if last is None:
            return None
        counted = SideRun(index, last[1], plan)
        side.counted.append(counted)
        return counted

    # --- kernels ------------------------------------------------------------------------

    def _resolved(self) -> ResolvedBuild:
        if self.resolved is None:
            self.resolved = resolve(self.spec.request, self.run_dir / "build",
                                    reporter=Reporter(enabled=self.progress))
        return self.resolved

    def _build(self, k: int, out: Path) -> BuildArtifacts:
        started = time.monotonic()
        try:
            return build_prefix(self._resolved(), k, out, reporter=Reporter(enabled=self.progress))
        finally:
            seconds = time.monotonic() - started
            self.phases[Phase.BUILD.value] = round(self.phases.get(Phase.BUILD.value, 0.0) + seconds, 2)
            self.costs["builds"] = round(self.costs.get("builds", 0.0) + seconds, 2)

    def _kernel(self) -> Path:
        if self.spec.kernel_image is not None:
            return self.spec.kernel_image
        request = self.spec.request
        self.say(f"building {request.kernel}" + (f" with {request.series}" if request.series else ""))
        started = time.monotonic()
        resolved = self._resolved()
        self.artifacts = self._build(len(resolved.patches), self.run_dir / "build")
        self.say(f"kernel {self.artifacts.kernel_release} "
                 f"({'cache hit' if self.artifacts.cache_hit else 'built'} in {time.monotonic() - started:.0f} s)")
        return self.artifacts.kernel_image

    def _base_kernel(self) -> Path:
        self.base_artifacts = self._build(0, self.run_dir / "base" / "build")
        self.say(f"base kernel (without the series): "
                 f"{'cache hit' if self.base_artifacts.cache_hit else 'built'}")
        return self.base_artifacts.kernel_image

    def _image(self) -> GuestImage:
        started = time.monotonic()
        image = ensure_image(self.spec.guest.image, progress=self.progress, arch=self.spec.guest.target.name)
        self.phases[Phase.IMAGE.value] = round(time.monotonic() - started, 2)
        return image

    # --- the base runs' cache -----------------------------------------------------------

    def _base_key(self, image: GuestImage | None) -> str:
        assert self.base_artifacts is not None
        spec = self.spec
        return baseruns.base_key(self.base_artifacts.cache_key, spec.plan, spec.pressure.label, spec.guest,
                                 getattr(image, "recipe_hash", "") or spec.guest.image, spec.repeat,
                                 spec.known.skips)

    def _cached_base(self, image: GuestImage | None) -> baseruns.CachedBase | None:
        cached = baseruns.load(self._base_key(image))
        if cached is None:
            self.base_note = f"{self.spec.repeat} base run(s) made in this run ({self._rel(self.base.directory)})"
            return None
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(cached.created))
        self.base_note = (f"{len(cached.runs)} base run(s) reused from rig's cache (made {when} in {cached.source}; "
                          f"same base build, plan, pressure, machine and image)")
        self.say(f"base kernel: reusing {len(cached.runs)} cached base run(s) from {cached.source} "
                 f"({when}): same base build, plan, pressure, machine and image; running only the series side")
        for index, run in enumerate(cached.runs, 1):
            record = dataclasses.replace(run.record, side="base", kernel="base (cached)")
            self.base.attempts.append((None, run.analysis, record))  # type: ignore[arg-type]
            self.records.append(record)
            self.base.counted.append(SideRun(index, run.analysis, self.spec.plan))
        return cached

    def _store_base(self, image: GuestImage | None) -> None:
        counted = {id(run.analysis) for run in self.base.counted}
        kept = [(record, analysis) for _, analysis, record in self.base.attempts if id(analysis) in counted]
        if len(kept) != self.spec.repeat or any(r.error is not None or r.host_fault for r, _ in kept):
            return  # only whole, clean base runs are worth reusing
        baseruns.store(self._base_key(image), kept, self.base.directory)

    # --- settling intermittent findings -------------------------------------------------

    def _settle(self, what: AttemptPlan, base_what: AttemptPlan) -> None:
        """Targeted runs (only their tests) of the new findings one side saw in some runs
        but not all, base and series interleaved, until each is settled (rig.verdict.unsettled)
        or max_repeat runs a side have run. Why it stopped goes in the report."""
        open_ = unsettled(self._verdict(self.base.counted))
        if not open_:
            return
        watched = {finding_key(f.analysed) for f in open_}
        before = {finding_key(f.analysed): _seen_and_flags(f) for f in open_}
        self.say(f"settling {len(open_)} intermittent new finding(s) with runs of their tests only "
                 f"(up to {self.spec.max_repeat} runs a side)")
        ran, scopes = 0, []
        stop = f"stopped at --max-repeat {self.spec.max_repeat}"
        for index in range(self.spec.repeat + 1, self.spec.max_repeat + 1):
            if self._stopped() or self.deadline - time.monotonic() <= COLLECT_RESERVE_S:
                stop = "stopped early: interrupted or no time left in the run's deadline"
                break
            tests = tuple(dict.fromkeys(str(f.test) for f in open_))
            plan, scope = narrow(self.spec.plan, tests), ", ".join(tests)
            scopes.append(scope)
            self._one_run(self.base, base_what, plan, index, scope=scope)
            self._one_run(self.series, what, plan, index, scope=scope)
            ran += 1
            open_ = tuple(f for f in unsettled(self._verdict(self.base.counted)) if finding_key(f.analysed) in watched)
            if not open_:
                stop = "settled"
                break
        outcomes = [f"{f.finding.title}: {f.status}, {_seen_and_flags(f)} (after the whole-plan runs: "
                    f"{before[finding_key(f.analysed)]})"
                    for f in self._verdict(self.base.counted).findings if finding_key(f.analysed) in watched]
        self.settle_note = (f"{ran} targeted run(s) a side of {' / '.join(dict.fromkeys(scopes)) or 'no test'} only "
                            f"after {self.spec.repeat} whole-plan run(s), {stop}: " + "; ".join(outcomes))
        self.say(f"settling: {self.settle_note}")

    # --- bisection ----------------------------------------------------------------------

    def _bisect(self, verdict: Verdict, what: AttemptPlan) -> Verdict:
        patches = self.artifacts.patches if self.artifacts else ()
        findings = [f for f in verdict.new_findings]
        failures = [t for t in verdict.judged_tests if t.status is TestVerdict.NEW]
        if not patches or not (findings or failures):
            return verdict
        subjects = [p.subject for p in patches]
        targets = [Target(finding_key(f.analysed), (f.test,) if f.test else (() if f.attribution == "boot" else None),
                          f.series or Seen(1, 1)) for f in findings]
        targets += [Target(f"test:{t.name}", (t.name,), t.series or Seen(1, 1)) for t in failures]
        if len(patches) == 1:
            self.say("one patch: it is the first bad patch of every new finding, no search needed")
            found = {t.key: FirstBadPatch(1, subjects[0]) for t in targets}
        else:
            self.say(f"bisecting {len(targets)} new finding(s) and failure(s) over {len(patches)} patches")
            found = search(targets, subjects, self._probe(what),
                           max_runs=probe_limit(self.spec.repeat, self.spec.max_repeat))
        for target in targets:
            answer = found[target.key]
            self.say(f"first bad patch of {target.key if target.key.startswith('test:') else 'a finding'}: "
                     f"{answer.index}/{len(patches)} {answer.subject!r}"
                     + (f" (confidence {answer.confidence:.0%})" if answer.confidence < 1 else ""))
        return dataclasses.replace(verdict, findings=tuple(
            dataclasses.replace(f, first_bad_patch=found.get(finding_key(f.analysed))) if f.status == NEW else f
            for f in verdict.findings), judged_tests=tuple(
            dataclasses.replace(t, first_bad_patch=found.get(f"test:{t.name}")) if t.status is TestVerdict.NEW else t
            for t in verdict.judged_tests))

    def _probe(self, what: AttemptPlan) -> Callable[[int, tuple[str, ...] | None, tuple[str, ...]], dict[str, bool]]:
        kernels: dict[int, Path] = {}
        counter = iter(range(1, 10_000))

        def probe(k: int, tests: tuple[str, ...] | None, wanted: tuple[str, ...]) -> dict[str, bool]:
            if k not in kernels:
                kernels[k] = self._build(k, self.bisect.directory / f"prefix-{k}" / "build").kernel_image
            plan = self.spec.plan if tests is None else narrow(self.spec.plan, tests)
            scope = None if tests is None else (", ".join(tests) or "boot only")
            label = f"patches 1-{k}" if k > 1 else "patch 1"
            run = self._one_run(self.bisect, dataclasses.replace(what, kernel=kernels[k]), plan, next(counter),
                                kernel=label, scope=scope)
            if run is None:
                return {key: False for key in wanted}
            keys = {finding_key(f) for f in run.analysis.findings}
            failing = {f"test:{t.name}" for t in run.analysis.tests if t.failing}
            return {key: key in keys or key in failing for key in wanted}

        return probe

    # --- the report ---------------------------------------------------------------------

    def _verdict(self, base_runs: list[SideRun] | None) -> Verdict:
        problems = [*self.notes]
        if self.series.attempts:
            problems += list(self.series.attempts[-1][0].collected.problems)
        plan = self.spec.plan.for_gpu(self.spec.guest.gpu)
        if self.artifacts is not None:  # a --bzimage run's kernel version is not known here
            plan = plan.for_kernel(self.artifacts.kernel_release)
        return judge_runs(self.series.counted, base_runs, plan, known=self.spec.known,
                          baseline=self.spec.baseline, problems=problems, base_note=self.base_note,
                          settle_note=self.settle_note)

    def _report(self, verdict: Verdict) -> RunReport:
        started = time.monotonic()
        # The timeline and files shown are those of the last run of the whole plan.
        judged, analysis, _ = next((a for a in reversed(self.series.attempts) if a[2].scope is None),
                                   self.series.attempts[-1])
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
            attempts=tuple(self.records),
            timeline=judged.timeline,
            artifacts=self._artifacts(judged, analysis),
            phases=self.phases,
            costs=self.costs,
        )
        self.phases[Phase.REPORT.value] = round(time.monotonic() - started, 2)
        report = dataclasses.replace(report, phases=dict(self.phases), costs=dict(self.costs))
        self.reserve.release()  # the room held for this moment
        write_all(report, self.run_dir)
        write_metadata(self.run_dir, {"phases": dict(self.phases), "costs": dict(self.costs),
                                      "exit_code": report.exit_code, "outcome": report.decision.outcome.value})
        return report

    def _report_ended(self, exc: BaseException, phase: Phase) -> None:
        """report.json, report.md and the rest for a run that ended in its build or image
        phase: whose fault, in which phase, what to do. Never hides `exc`."""
        ended = _ended_by(exc, phase)
        if ended is None:
            return
        report = RunReport(
            rig_version=__version__, command=self.spec.command, run_dir=self.run_dir, kernel=self._kernel_info(),
            series=self._series_info(),
            plan=PlanInfo(self.spec.plan.name, self.spec.plan.source, self.spec.plan.description),
            pressure=self.spec.pressure.label,
            machine=MachineInfo(self.spec.guest.target.name, self.spec.guest.gpu, self.spec.guest.memory_mib,
                                self.spec.guest.cpus, None),
            verdict=judge_runs((), None, self.spec.plan), attempts=(), phases=dict(self.phases),
            costs=dict(self.costs), ended=ended)
        self.reserve.release()  # the room held for this moment
        try:
            write_all(report, self.run_dir)
            write_metadata(self.run_dir, {"phases": dict(self.phases), "costs": dict(self.costs),
                                          "exit_code": report.exit_code, "outcome": report.decision.outcome.value})
        except Exception:  # a report that cannot be written (a full disk) must not mask why the run ended
            log.warning("could not write the report of a run that ended during %s", phase.value, exc_info=True)

    def _explain_absent(self, tests: tuple[TestResult, ...]) -> tuple[TestResult, ...]:
        """KUnit suites the kernel lacks, told apart: in its source but not built, or not
        in this version at all (only the source of a kernel rig built can say)."""
        artifacts = self.artifacts
        if not any(t.status is TestStatus.ABSENT for t in tests) or artifacts is None or artifacts.source_repo is None:
            return tests
        commit = artifacts.head_commit or artifacts.base_commit
        return tuple(explain_absent(tests, suites_in_source(artifacts.source_repo, commit) or None))

    def _hang(self, result: AttemptResult) -> HangRecord | None:
        """The attempt's hang record, its dump's path relative to the run directory."""
        hang = result.hang
        if hang is None or hang.dump is None:
            return hang
        return dataclasses.replace(hang, dump=self._rel(Path(hang.dump)))

    def _rel(self, path: Path | None) -> str | None:
        if path is None:
            return None
        with contextlib.suppress(ValueError):
            return str(path.relative_to(self.run_dir))
        return str(path)

    def _kernel_info(self) -> KernelInfo:
        spec, artifacts = self.spec, self.artifacts
        if artifacts is None and spec.kernel_image is None:  # the build did not finish
            return KernelInfo(spec=spec.request.kernel, release=None, base=spec.request.base or spec.request.kernel,
                              profile=spec.request.profile,
                              extra_configs=tuple(str(p) for p in spec.request.extra_configs), image=None,
                              arch=spec.guest.target.name)
        if artifacts is None:
            return KernelInfo(spec=str(spec.kernel_image), release=None, base=str(spec.kernel_image),
                              profile=spec.request.profile, image=str(spec.kernel_image),
                              arch=spec.guest.target.name)
        base = (f"{spec.request.kernel} @ {artifacts.base_commit[:12]}" if artifacts.base_commit
                else spec.request.base or spec.request.kernel)
        return KernelInfo(spec=spec.request.kernel, release=artifacts.kernel_release, base=base,
                          profile=spec.request.profile, extra_configs=tuple(str(p) for p in spec.request.extra_configs),
                          image=self._rel(artifacts.kernel_image), cache_hit=artifacts.cache_hit,
                          arch=spec.guest.target.name, sandbox_denials=artifacts.sandbox_denials)

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


def _seen_and_flags(judged: JudgedFinding) -> str:
    """"2/4 runs; base 0/4, intermittent; new with 93% confidence"."""
    flags = flags_text(judged)
    return seen_text(judged.series, judged.base) + (f", {flags}" if flags else "")


def _gpu_record(guest: GuestSpec, result: AttemptResult, analysis: Analysis) -> GpuRecord | None:
    """What the attempt's GPU was told to do, counted and reported (None: nothing to say,
    a GPU model without injection whose driver printed nothing about its health)."""
    record = GpuRecord(guest.gpu_faults, result.gpu_counters, analysis.gpu_events)
    return None if record.empty else record


def _raw_material(attempt: AttemptResult,
                  explain: Callable[[tuple[TestResult, ...]], tuple[TestResult, ...]] = lambda tests: tests
                  ) -> RawMaterial:
    collected = attempt.collected
    # kmemleak = "each": igt_runner saved a report after each test (clearing the list each
    # time), before rig's final scan: oldest first, so a leak is blamed on its first test.
    kmemleak = igt_kmemleak_reports(attempt.directory / "igt") + ((collected.kmemleak,) if collected.kmemleak else ())
    return RawMaterial(console=collected.console, dmesg=collected.dmesg, kmemleak=kmemleak, tests=explain(attempt.tests),
                       lockdep_stats=collected.lockdep_stats, final_kmemleak_marked=collected.kmemleak is not None)


def _ended_by(exc: BaseException, phase: Phase) -> AttemptError | None:
    """How `exc` ended a run in `phase`, as a report says it; None for what is no end of a
    run (SystemExit, a generator closed)."""
    if isinstance(exc, RigError):
        return AttemptError.from_exception(exc, phase)
    if isinstance(exc, KeyboardInterrupt):
        how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted (Ctrl-C)"
        return AttemptError(ErrorKind.INTERRUPT, phase, how,
                            hint="run the same command again: finished builds and images are cached")
    if isinstance(exc, Exception):
        if (full := disk_full(exc)) is not None:
            return AttemptError.from_exception(full, phase)
        return AttemptError(ErrorKind.BUG, phase, f"rig failed: {type(exc).__name__}: {exc}",
                            hint="this is a bug in rig; report it with the traceback rig printed")
    return None


def run(spec: RunSpec, run_dir: Path, *, say: Say = _quiet, progress: bool = True) -> RunReport:
    return Run(spec, run_dir, say, progress).run()

