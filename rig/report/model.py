"""The run report: one frozen, versioned value that every renderer reads.

`RunReport.to_json()` is report.json; `RunReport.from_json()` loads it back, old schema
versions included, so a report can be rendered again or used as a baseline later.
`decide()` is the one place that turns a verdict and the attempts into an outcome, an
exit code and the summary line: renderers print them, they never re-derive them.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from rig.errors import DeadlineExceeded, InfraError, Interrupted, KernelError, RigError, UserError
from rig.forensics import HangRecord
from rig.gpu_faults import GpuRecord
from rig.verdict import Verdict
from rig.workloads.pressure import Timeline, timeline_from_json

# 1: rig 0.x's untyped report (no attempt errors, no outcome); 2: typed attempts and
# outcome; 3: runs per side (base by default, repeats): findings[] and tests[] carry
# status, intermittent, seen and first_bad_patch, tests[].result is how a test ended
# (schema 2's tests[].status), attempts[] their side; a new one's confidence (added
# within schema 3: readers of older schema-3 reports find none).
SCHEMA_VERSION = 3


class Phase(StrEnum):
    """Where in a run something happened."""

    BUILD = "build"
    IMAGE = "image"
    BOOT = "boot"
    WORKLOADS = "workloads"
    COLLECT = "collect"
    SHUTDOWN = "shutdown"
    REPORT = "report"


class ErrorKind(StrEnum):
    """Whose fault an error was; each kind has its exit code."""

    USER = "user"
    HOST = "host"
    KERNEL = "kernel"
    DEADLINE = "deadline"
    INTERRUPT = "interrupt"
    BUG = "bug"

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES[self]


_EXIT_CODES = {ErrorKind.USER: UserError.exit_code, ErrorKind.HOST: InfraError.exit_code,
               ErrorKind.KERNEL: KernelError.exit_code, ErrorKind.DEADLINE: DeadlineExceeded.exit_code,
               ErrorKind.INTERRUPT: Interrupted.exit_code, ErrorKind.BUG: RigError.exit_code}
# Most specific first: DeadlineExceeded and Interrupted are RigErrors too.
_KINDS: tuple[tuple[type[RigError], ErrorKind], ...] = (
    (DeadlineExceeded, ErrorKind.DEADLINE), (Interrupted, ErrorKind.INTERRUPT), (UserError, ErrorKind.USER),
    (InfraError, ErrorKind.HOST), (KernelError, ErrorKind.KERNEL))


@dataclass(frozen=True)
class AttemptError:
    """How an attempt ended early: whose fault, in which phase, and what to do."""

    kind: ErrorKind
    phase: Phase
    message: str
    hint: str | None = None
    log: str | None = None

    @classmethod
    def from_exception(cls, exc: RigError, phase: Phase) -> AttemptError:
        kind = next((kind for type_, kind in _KINDS if isinstance(exc, type_)), ErrorKind.BUG)
        return cls(kind, phase, exc.message, exc.hint, str(exc.log) if exc.log else None)

    @property
    def headline(self) -> str:
        return self.message.splitlines()[0] if self.message else self.kind.value

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind.value, "phase": self.phase.value, "message": self.message, "hint": self.hint,
                "log": self.log, "exit_code": self.kind.exit_code}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttemptError:
        return cls(ErrorKind(data["kind"]), Phase(data["phase"]), str(data["message"]), data.get("hint"),
                   data.get("log"))


@dataclass(frozen=True)
class AttemptRecord:
    """One guest run of the report: where its files are and how it ended."""

    number: int
    directory: str  # relative to the run directory
    accel: str | None
    durations: Mapping[str, float]  # phase -> seconds
    error: AttemptError | None = None
    host_fault: str | None = None  # a known emulator fault seen in this attempt (then retried)
    side: str = "series"  # "series" (the kernel tested), "base" (without the series), "bisect"
    scope: str | None = None  # the tests it ran when not the whole plan
    kernel: str | None = None  # which kernel, when not the tested one ("base", "patches 1-2")
    hang: HangRecord | None = None  # what rig asked the guest's kernel when it hung (rig.forensics)
    # faults injected into the GPU model, its counters, the driver's GPU events (rig.gpu_faults)
    gpu: GpuRecord | None = None

    def to_json(self) -> dict[str, Any]:
        return {"number": self.number, "directory": self.directory, "accel": self.accel,
                "durations": dict(self.durations), "error": self.error.to_json() if self.error else None,
                "host_fault": self.host_fault, "side": self.side, "scope": self.scope, "kernel": self.kernel,
                "hang": self.hang.to_json() if self.hang else None,
                "gpu": self.gpu.to_json() if self.gpu else None}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> AttemptRecord:
        error = data.get("error")
        if isinstance(error, str):  # schema 1 kept only the first line of the message
            error = {"kind": "kernel", "phase": "workloads", "message": error}
        durations = data.get("durations") or {key.removesuffix("_s"): value for key in ("boot_s", "workloads_s",
                                                                                       "collect_s")
                                              if (value := data.get(key)) is not None}
        hang = data.get("hang")
        return cls(int(data["number"]), str(data.get("directory") or ""), data.get("accel"), dict(durations),
                   AttemptError.from_json(error) if error else None, data.get("host_fault"),
                   str(data.get("side") or "series"), data.get("scope"), data.get("kernel"),
                   HangRecord.from_json(hang) if hang else None,
                   GpuRecord.from_json(data["gpu"]) if data.get("gpu") else None)


class Outcome(StrEnum):
    PASS = "pass"
    FAIL = "fail"  # new findings or unexpected test failures: the series broke something
    KERNEL_PROBLEM = "kernel problem"  # the guest died or hung without a report rig could judge
    HOST_PROBLEM = "host problem"
    BAD_INPUT = "bad input"
    INTERRUPTED = "interrupted"
    RIG_BUG = "rig bug"


_OUTCOME_OF_ERROR = {ErrorKind.USER: Outcome.BAD_INPUT, ErrorKind.HOST: Outcome.HOST_PROBLEM,
                     ErrorKind.KERNEL: Outcome.KERNEL_PROBLEM, ErrorKind.DEADLINE: Outcome.KERNEL_PROBLEM,
                     ErrorKind.INTERRUPT: Outcome.INTERRUPTED, ErrorKind.BUG: Outcome.RIG_BUG}


@dataclass(frozen=True)
class Decision:
    outcome: Outcome
    exit_code: int
    summary: str
    reason: str = ""  # why, when it is not the verdict alone


def decide(verdict: Verdict, attempts: Sequence[AttemptRecord], ended: AttemptError | None = None) -> Decision:
    """The run's outcome, exit code and summary line: the only place they are decided.

    The judged attempt is the last one of the tested kernel (base and bisection runs
    are judged through the verdict's counts). Ctrl-C and rig's own bugs win (the verdict is
    incomplete); then new findings or unexpected failures (exit 1: what the developer came
    for, even if the guest died afterwards); then how the attempt ended; then a known
    emulator fault in every attempt (no verdict on the kernel); else a pass. `ended`: how
    a run that stopped before its first attempt (in its build or image phase) ended.
    """
    tested = [a for a in attempts if a.side == "series"] or list(attempts)
    last = tested[-1] if tested else None
    error = last.error if last else ended
    if error is None and any(a.error is not None and a.error.kind is ErrorKind.INTERRUPT for a in attempts):
        error = next(a.error for a in attempts if a.error is not None and a.error.kind is ErrorKind.INTERRUPT)
    failed = bool(verdict.new_findings or verdict.unexpected_failures)
    reason = ""
    if error is not None and error.kind in (ErrorKind.INTERRUPT, ErrorKind.BUG):
        outcome = _OUTCOME_OF_ERROR[error.kind]
    elif failed:
        outcome = Outcome.FAIL
    elif error is not None:
        outcome = _OUTCOME_OF_ERROR[error.kind]
    elif last is not None and last.host_fault is not None:
        outcome = Outcome.HOST_PROBLEM
        reason = (f"every attempt hit a known emulator fault ({last.host_fault}): no verdict on the kernel")
    elif last is None:
        outcome, reason = Outcome.HOST_PROBLEM, "no attempt ran"
    else:
        outcome = Outcome.PASS
    if error is not None:
        reason = f"{error.headline} (during {error.phase.value}" + (f", attempt {last.number})" if last else ")")
    exit_code = {Outcome.PASS: 0, Outcome.FAIL: 1, Outcome.KERNEL_PROBLEM: 1, Outcome.HOST_PROBLEM: 3,
                 Outcome.BAD_INPUT: 2, Outcome.INTERRUPTED: 130, Outcome.RIG_BUG: 4}[outcome]
    counts = _counts(verdict)
    summary = f"{outcome.value.upper()}: " + (f"{reason}; " if reason else "") + counts
    return Decision(outcome, exit_code, summary, reason)


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def _counts(verdict: Verdict) -> str:
    parts = [_plural(len(verdict.new_findings), "new finding")]
    if verdict.pre_existing:
        parts.append(f"{len(verdict.pre_existing)} pre-existing")
    for status in ("known", "fixed"):
        if found := [f for f in verdict.findings if str(f.status) == status]:
            parts.append(f"{len(found)} {status}")
    if verdict.host_faults:
        parts.append(_plural(len(verdict.host_faults), "host fault"))
    parts.append(f"{_plural(len(verdict.tests), 'test')}, {_plural(len(verdict.unexpected_failures), 'unexpected failure')}")
    if verdict.expected_failures:
        parts.append(f"{len(verdict.expected_failures)} expected")
    if verdict.runs.get("series", 1) > 1 or "base" in verdict.runs:
        parts.append(" and ".join(f"{_plural(n, 'run')} {'with the series' if side == 'series' else 'of the base'}"
                                  for side, n in verdict.runs.items()))
    return ", ".join(parts)


def flags_text(item: Any) -> str:
    """"intermittent; new with 93% confidence": what a finding's (or test's) counts mean,
    when they need saying. The percentage is rounded down: 99.6% is not yet 100%."""
    parts = ["intermittent"] if item.intermittent else []
    confidence = getattr(item, "confidence", None)
    if confidence is not None and confidence < 1:
        parts.append(f"new with {math.floor(confidence * 100)}% confidence")
    return "; ".join(parts)


# Tests named before "and N more": a leak from an open() every test makes comes from
# every test, and a line of forty names helps no one reading the report.
ALSO_SHOWN = 5


def also_text(also: Sequence[str], shown: int = ALSO_SHOWN) -> str:
    """"a, b, c and 40 more": the other tests a report came from, the first few by name
    (report.json keeps them all)."""
    if len(also) <= shown + 1:
        return ", ".join(also)
    return f"{', '.join(also[:shown])} and {len(also) - shown} more"


def headline(text: str) -> str:
    """The line that says what a test's output or a kernel report is about: the first
    with a letter or digit in it, since a splat opens with a rule of '=' or '-'."""
    return next((line.strip() for line in text.splitlines() if any(c.isalnum() for c in line)), "")


def seen_text(series: object, base: object) -> str:
    """"3/3 runs; base 0/3": how often each side showed a finding (or failed a test)."""
    parts = []
    if series is not None:
        parts.append(f"{series} runs")
    if base is not None:
        parts.append(f"base {base}")
    return "; ".join(parts)


# ---------------------------------------------------------------- what was run


@dataclass(frozen=True)
class Patch:
    number: int
    subject: str
    author: str


@dataclass(frozen=True)
class SeriesInfo:
    spec: str
    patches: tuple[Patch, ...]


@dataclass(frozen=True)
class KernelInfo:
    spec: str  # --kernel, or the image given with --kernel-image
    release: str | None
    base: str  # what the series was applied on
    profile: str
    extra_configs: tuple[str, ...] = ()
    image: str | None = None  # the booted kernel image, relative to the run directory when inside it
    cache_hit: bool | None = None
    arch: str = "x86_64"
    sandbox_denials: tuple[str, ...] = ()  # what the series' build tried that --sandbox refused


@dataclass(frozen=True)
class PlanInfo:
    name: str
    source: str
    description: str = ""


@dataclass(frozen=True)
class MachineInfo:
    arch: str
    gpu: str
    memory_mib: int
    cpus: int
    accel: str | None


@dataclass(frozen=True)
class Artifacts:
    """Files of the judged attempt, relative to the run directory."""

    console: str | None = None
    dmesg: str | None = None
    kmemleak: str | None = None
    screendump: str | None = None
    igt_results: str | None = None
    tainted: int | None = None
    taint_flags: str | None = None
    lockdep_debug_locks: int | None = None
    problems: tuple[str, ...] = ()  # what could not be collected, and why


# ---------------------------------------------------------------- the report


@dataclass(frozen=True)
class RunReport:
    rig_version: str
    command: str
    run_dir: Path
    kernel: KernelInfo
    series: SeriesInfo | None
    plan: PlanInfo
    pressure: str
    machine: MachineInfo
    verdict: Verdict
    attempts: tuple[AttemptRecord, ...]
    timeline: Timeline | None = None
    artifacts: Artifacts = field(default_factory=Artifacts)
    phases: Mapping[str, float] = field(default_factory=dict)
    # wall time per part of the run: builds, base_runs, series_runs, settle_runs, bisect_runs
    costs: Mapping[str, float] = field(default_factory=dict)
    # How the run ended before any attempt ran (its build or image phase failed, or was
    # interrupted); None once an attempt ran, whose own error says how it ended.
    ended: AttemptError | None = None

    @property
    def decision(self) -> Decision:
        return decide(self.verdict, self.attempts, self.ended)

    @property
    def exit_code(self) -> int:
        return self.decision.exit_code

    def answers(self) -> list[tuple[Patch | None, str]]:
        """The answer per patch: (the patch that introduced it, or None when not bisected,
        "what (3/3 runs; base 0/3)") for each new finding and new failure, patch order."""
        patches = {p.number: p for p in self.series.patches} if self.series else {}
        out: list[tuple[Patch | None, str]] = []
        for item in (*self.verdict.new_findings, *self.verdict.new_failures):
            what = item.finding.title if hasattr(item, "finding") else f"test {item.name} fails"
            rate = seen_text(item.series, item.base)
            if flags := flags_text(item):
                rate += f", {flags}"
            bad = item.first_bad_patch
            patch = (patches.get(bad.index) or Patch(bad.index, bad.subject, "")) if bad else None
            if bad is not None and bad.confidence < 1:
                rate += f"; bisected with {bad.confidence:.0%} confidence"
            out.append((patch, f"{what} ({rate})"))
        return sorted(out, key=lambda a: a[0].number if a[0] else 0)

    def patch_label(self, patch: Patch) -> str:
        total = len(self.series.patches) if self.series else patch.number
        return f"patch {patch.number}/{total} '{patch.subject}'"

    @property
    def error(self) -> AttemptError | None:
        """How the judged (last) attempt ended early, if it did; without attempts, how
        the run ended before its first."""
        return self.attempts[-1].error if self.attempts else self.ended

    @property
    def gpu(self) -> GpuRecord | None:
        """The judged (last) attempt's GPU record: injected faults, counters, driver events."""
        return self.attempts[-1].gpu if self.attempts else None

    def to_json(self) -> dict[str, Any]:
        from dataclasses import asdict

        decision = self.decision
        verdict = self.verdict.to_json()
        verdict.update(exit_code=decision.exit_code, summary=decision.summary)
        return {
            "schema": SCHEMA_VERSION,
            "rig_version": self.rig_version,
            "command": self.command,
            "run_dir": str(self.run_dir),
            "exit_code": decision.exit_code,
            "outcome": decision.outcome.value,
            "summary": decision.summary,
            "error": self.error.to_json() if self.error else None,
            "gpu": self.gpu.to_json() if self.gpu else None,
            "kernel": {**asdict(self.kernel), "extra_configs": list(self.kernel.extra_configs),
                       "sandbox_denials": list(self.kernel.sandbox_denials)},
            "series": ({"spec": self.series.spec, "patches": [asdict(p) for p in self.series.patches]}
                       if self.series else None),
            "plan": asdict(self.plan),
            "pressure": self.pressure,
            "machine": asdict(self.machine),
            "verdict": verdict,
            "findings": [f.to_json() for f in self.verdict.findings],
            "tests": [t.to_json() for t in self.verdict.judged_tests],
            "totals": self.verdict.totals(),
            "timeline": self.timeline.to_json() if self.timeline else None,
            "attempts": [a.to_json() for a in self.attempts],
            "artifacts": {**asdict(self.artifacts), "problems": list(self.artifacts.problems)},
            "lockdep_debug_locks": self.artifacts.lockdep_debug_locks,
            "phases": dict(self.phases),
            "costs": dict(self.costs),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RunReport:
        """A report.json of any schema version back into a RunReport."""
        from rig.verdict import verdict_from_json

        schema = int(data.get("schema", 1))
        if schema > SCHEMA_VERSION:
            raise UserError(f"this report.json has schema {schema}, newer than this rig understands "
                            f"({SCHEMA_VERSION})", hint="upgrade rig to read it")
        kernel = dict(data.get("kernel") or {})
        machine = dict(data.get("machine") or {})
        series = data.get("series")
        artifacts = dict(data.get("artifacts") or {})
        collected = dict(data.get("collected") or {})  # schema 1 kept taint and problems here
        timeline = data.get("timeline")
        attempts = tuple(AttemptRecord.from_json(a) for a in data.get("attempts") or ())
        error = data.get("error")
        return cls(
            rig_version=str(data.get("rig_version", "")),
            command=str(data.get("command", "")),
            run_dir=Path(str(data.get("run_dir", "."))),
            kernel=KernelInfo(
                spec=str(kernel.get("spec", "")), release=kernel.get("release"),
                base=str(kernel.get("base") or kernel.get("spec", "")), profile=str(kernel.get("profile", "default")),
                extra_configs=tuple(kernel.get("extra_configs") or ()),
                image=kernel.get("image", kernel.get("bzimage")), cache_hit=kernel.get("cache_hit"),
                arch=str(kernel.get("arch", machine.get("arch", "x86_64"))),
                sandbox_denials=tuple(kernel.get("sandbox_denials") or ())),
            series=(SeriesInfo(str(series.get("spec", "")),
                               tuple(Patch(int(p["number"]), str(p.get("subject", "")), str(p.get("author", "")))
                                     for p in series.get("patches", [])))
                    if series else None),
            plan=PlanInfo(**{k: str(v) for k, v in (data.get("plan") or {"name": "?", "source": "?"}).items()
                             if k in ("name", "source", "description")}),
            pressure=str(data.get("pressure", "")),
            machine=MachineInfo(str(machine.get("arch", "x86_64")), str(machine.get("gpu", "")),
                                int(machine.get("memory_mib", 0)), int(machine.get("cpus", 0)), machine.get("accel")),
            verdict=verdict_from_json(data),
            attempts=attempts,
            timeline=timeline_from_json(timeline) if timeline else None,
            artifacts=Artifacts(
                console=artifacts.get("console"), dmesg=artifacts.get("dmesg"), kmemleak=artifacts.get("kmemleak"),
                screendump=artifacts.get("screendump"), igt_results=artifacts.get("igt_results"),
                tainted=artifacts.get("tainted", collected.get("tainted")),
                taint_flags=artifacts.get("taint_flags", collected.get("taint_flags")),
                lockdep_debug_locks=data.get("lockdep_debug_locks"),
                problems=tuple(artifacts.get("problems", collected.get("problems")) or ())),
            phases=dict(data.get("phases") or {}),
            costs=dict(data.get("costs") or {}),
            ended=AttemptError.from_json(error) if error and not attempts and isinstance(error, Mapping) else None,
        )
