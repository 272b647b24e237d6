"""One analysis of an attempt's raw material: every source parsed exactly once.

    analyse(raw: RawMaterial) -> Analysis

The raw material is what a guest run leaves behind: the serial console log, dmesg read
over SSH, kmemleak reports (the one collected at the end, and igt_runner's copy after each
test with `kmemleak = "each"`), /proc/lockdep_stats, and the test results the workloads
returned. The analysis reads each file once and returns typed findings (each with its
source, its test, and the host fault it is, if any), the test spans of the console, the
tests, the host fault that spoilt the attempt, and lockdep's debug_locks.

Judging those against a baseline and the plan's expected failures is rig.verdict.judge;
nothing here decides pass or fail.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
import dataclasses
from dataclasses import dataclass
from pathlib import Path

from rig.collect import KMEMLEAK_READ_MARKER, lockdep_debug_locks
from rig.gpu_faults import GpuEvent, gpu_events
from rig.results import TestName, TestResult
from rig.splat import parse_log
from rig.splat.attribution import Placement, TestSpan, attribute, log_test_spans
from rig.splat.ktap import parse_ktap
from rig.splat.model import Finding, Source
from rig.splat.text import decode, split_prefix

# ------------------------------------------------------------------ host faults


@dataclass(frozen=True)
class HostFault:
    """A report that is the emulator's fault, not the kernel's: the attempt is retried."""

    name: str
    explanation: str

    def matches(self, finding: Finding) -> bool:
        raise NotImplementedError


@dataclass(frozen=True)
class _Int3InGetrandom(HostFault):
    def matches(self, finding: Finding) -> bool:
        text = finding.report
        return ("int3" in finding.title or "int3:" in text) and (
            "getrandom" in text or any("getrandom" in f for f in finding.frames))


# Seen under multi-threaded TCG: a static key patched right after "crng init done" makes
# a vCPU execute a half-written instruction (cross-modifying code), an emulator fault.
KNOWN_HOST_FAULTS: tuple[HostFault, ...] = (
    _Int3InGetrandom("mttcg-int3-getrandom",
                     "int3 in __x64_sys_getrandom right after crng init: QEMU multi-threaded TCG executing "
                     "code while a static key is patched; not a kernel bug. rig retries the run."),
)


def host_fault_of(finding: Finding) -> HostFault | None:
    return next((fault for fault in KNOWN_HOST_FAULTS if fault.matches(finding)), None)


# ------------------------------------------------------------------ the raw material


@dataclass(frozen=True)
class RawMaterial:
    """What one attempt left on disk. A path that is None or missing counts as not
    collected (a guest that died early leaves little); none of them is required."""

    console: Path | None
    dmesg: Path | None = None
    kmemleak: tuple[Path, ...] = ()  # oldest first: igt_runner's per-test reports, then the final scan
    tests: tuple[TestResult, ...] = ()  # what the workloads returned, in order
    lockdep_stats: Path | None = None  # /proc/lockdep_stats, when the guest was alive to read it
    # the last of `kmemleak` is rig's own read, which rig marked on the console just before
    # (rig.collect.KMEMLEAK_READ_MARKER): its objects' ages count back from that line's time
    final_kmemleak_marked: bool = False


def igt_kmemleak_reports(igt_dir: Path) -> tuple[Path, ...]:
    """igt_runner's per-test kmemleak reports (`--kmemleak=each`) under an attempt's IGT
    directory (group-*/results/<n>/kmemleak.txt), in group and test order."""
    return tuple(path for results in sorted(igt_dir.glob("group-*/results"))
                 for path in sorted(results.rglob("kmemleak.txt")))


# ------------------------------------------------------------------ the analysis


@dataclass(frozen=True)
class AnalysedFinding:
    finding: Finding
    source: Source
    test: TestName | None  # the test it belongs to (rig.splat.attribution.attribute)
    placement: Placement  # how that test was found
    also: tuple[TestName, ...] = ()  # other tests the same report came from (a leak's objects)
    count: int = 1  # the same report (same signature) seen this many times
    host_fault: HostFault | None = None  # the emulator's fault, not the kernel's


@dataclass(frozen=True)
class Analysis:
    findings: tuple[AnalysedFinding, ...]  # each report once, console first, in log order
    spans: tuple[TestSpan, ...]  # the tests the console shows, in log order
    tests: tuple[TestResult, ...]
    host_fault: str | None  # the name of the first known host fault among the findings
    # lockdep's debug_locks: 1 while lockdep validates, 0 once it turned itself off (after
    # its first report, or an oops), None when this kernel has no lockdep or nobody knows
    debug_locks: int | None
    problems: tuple[str, ...] = ()  # sources that were there but could not be read
    gpu_events: tuple[GpuEvent, ...] = ()  # the GPU driver's timeouts, faults and resets (rig.gpu_faults)


def analyse(raw: RawMaterial) -> Analysis:
    problems: list[str] = []
    console_bytes = _read(raw.console, "console log", problems)
    console = decode(console_bytes or b"")
    ktap = parse_ktap(console)
    spans = tuple(log_test_spans(console, ktap=ktap))
    console_findings = parse_log(console_bytes) if console_bytes else []
    read_at = _kmemleak_read_time(console) if raw.final_kmemleak_marked else None
    kmemleak_findings = [_allocated_at(f, read_at if i == len(raw.kmemleak) - 1 else None)
                         for i, path in enumerate(raw.kmemleak)
                         for f in parse_log(_read(path, "kmemleak report", problems) or b"")]
    # dmesg is the same kernel log read over SSH: it only counts when the console (which
    # survives a panic, and has every line) has nothing.
    dmesg_findings = [] if console_findings else parse_log(_read(raw.dmesg, "dmesg", problems) or b"")
    ordered = ([(f, Source.CONSOLE) for f in console_findings] + [(f, Source.KMEMLEAK) for f in kmemleak_findings]
               + [(f, Source.DMESG) for f in dmesg_findings])
    findings = tuple(_analysed(finding, source, count, spans) for finding, source, count in _dedupe(ordered))
    host_fault = next((f.host_fault.name for f in findings if f.host_fault is not None), None)
    stats = _read(raw.lockdep_stats, "lockdep_stats", problems)
    debug_locks = (lockdep_debug_locks(decode(stats)) if stats is not None
                   else _debug_locks_from_console(console, console_findings))
    return Analysis(findings, spans, tuple(raw.tests), host_fault, debug_locks, tuple(problems),
                    gpu_events(console, spans))


def _kmemleak_read_time(console: str) -> float | None:
    """The printk time of rig's last "kmemleak read" marker on the console."""
    at = console.rfind(KMEMLEAK_READ_MARKER)
    if at < 0:
        return None
    start = console.rfind("\n", 0, at) + 1
    end = console.find("\n", at)
    message, uptime, _ = split_prefix(console[start:end if end >= 0 else len(console)])
    return uptime if message.startswith(KMEMLEAK_READ_MARKER) else None


def _allocated_at(finding: Finding, read_at: float | None) -> Finding:
    """A leak read at printk time `read_at`, with the time its oldest object was allocated
    as its timestamp: attribution places a leak no test's task allocated by it."""
    age = finding.oldest_age_s
    if read_at is None or age is None or finding.timestamp is not None:
        return finding
    return dataclasses.replace(finding, timestamp=round(read_at - age, 3))


def _read(path: Path | None, what: str, problems: list[str]) -> bytes | None:
    if path is None or not path.exists():
        return None
    try:
        return path.read_bytes()
    except OSError as exc:
        problems.append(f"cannot read the {what} {path}: {exc.strerror or exc}")
        return None


def _dedupe(findings: Iterable[tuple[Finding, Source]]) -> list[tuple[Finding, Source, int]]:
    """The same report (same signature, else title) once, where it was first seen, with
    the pids of every copy: with kmemleak = "each", igt_runner clears the leak list after
    each test, so the objects of one leak are spread over several reports; given in the
    order they were written, the first task that leaked names the test."""
    seen: dict[str, int] = {}
    out: list[tuple[Finding, Source, int]] = []
    for finding, source in findings:
        key = finding.signature or finding.title
        if key in seen:
            f, s, n = out[seen[key]]
            if finding.pids:
                f = dataclasses.replace(f, pids=tuple(dict.fromkeys(f.pids + finding.pids)))
            out[seen[key]] = (f, s, n + 1)
            continue
        seen[key] = len(out)
        out.append((finding, source, 1))
    return out


def _analysed(finding: Finding, source: Source, count: int, spans: tuple[TestSpan, ...]) -> AnalysedFinding:
    where = attribute(finding, spans, source)
    return AnalysedFinding(finding, source, where.test, where.placement, where.also, count, host_fault_of(finding))


# The validator's banner at boot: without it the kernel has no lockdep.
_LOCKDEP_BANNER = "Lock dependency validator:"
# What turns debug_locks off, as the console shows it: lockdep's own reports (it stops
# after its first) and its "turning off" notes; die(), whose header ends in the error
# code and the oops count ("Oops: 0002 [#1]", "invalid opcode: 0000 [#1]", arm64's
# "Internal error: Oops: 0000000096000005 [#1]"), and panic(): both call debug_locks_off().
_DEBUG_LOCKS_OFF = re.compile(r"turning off the locking correctness validator|: [0-9a-f]+ \[#\d+\]|"
                              r"Kernel panic - not syncing")


def _debug_locks_from_console(console: str, findings: list[Finding]) -> int | None:
    """What /proc/lockdep_stats would have said, when it could not be read."""
    if _LOCKDEP_BANNER not in console:
        return None
    if any(f.kind == "lockdep" for f in findings) or _DEBUG_LOCKS_OFF.search(console):
        return 0
    return 1
