"""The verdict: which findings are the series' doing, which tests failed unexpectedly.

Each finding is attributed to the test that was running when it appeared: IGT writes
"[IGT] <binary>: starting subtest <name>" to the kernel log, and with printk caller ids
every line says which task printed it, so a report printed by (or a kmemleak object
allocated by) a test's process names that test; otherwise the last test started before
the report is taken. Known host faults (emulator trouble, not kernel bugs) are marked
and make the pipeline retry. Findings that the base kernel shows too are pre-existing.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig.errors import UserError
from rig.plan import Plan
from rig.splat.attribution import TestSpan, log_test_spans, running_test, started_by
from rig.splat.model import Finding
from rig.workloads import TestResult

NEW, PRE_EXISTING, HOST_FAULT = "new", "pre-existing", "host-fault"

_KMEMLEAK_PID_RE = re.compile(r'comm "(?P<comm>[^"]*)", pid (?P<pid>\d+)')


def _span_name(span: TestSpan) -> str:
    if span.framework == "igt":
        return span.name.removeprefix("igt@")
    return f"kunit:{span.name}" if span.framework == "kunit" else span.name


def _last_test_of_pid(spans: list[TestSpan], pid: str) -> str | None:
    """The last IGT subtest the task started, else the last binary or script it started."""
    names = [_span_name(s) for s in started_by(spans, f"T{pid}")]
    subtests = [n for n in names if "@" in n]
    return (subtests or names or [None])[-1]


def leak_tests(finding: Finding, spans: list[TestSpan]) -> tuple[str, ...]:
    """Every test whose process allocated one of a kmemleak finding's objects, in order."""
    tests: dict[str, None] = {}
    for match in _KMEMLEAK_PID_RE.finditer(finding.report):
        test = _last_test_of_pid(spans, match["pid"])
        if test:
            tests.setdefault(test, None)
    return tuple(tests)


def attribute(finding: Finding, spans: list[TestSpan], source: str) -> tuple[str | None, str]:
    """(test, how): how is "pid", "time", "boot" or "unknown".

    `spans` come from the console log: only console findings can be placed by their
    offset in it; a kmemleak or dmesg finding is placed by the task that printed or
    allocated it."""
    if source == "kmemleak":
        tests = leak_tests(finding, spans)
        return (tests[0], "pid") if tests else (None, "unknown")
    if finding.caller.startswith("T"):
        # the last test the reporting task started: a report it printed belongs to it,
        # even after that test's own end line (its teardown still runs)
        mine = started_by(spans, finding.caller, before=finding.start if source == "console" else None)
        if mine:
            return _span_name(mine[-1]), "pid"
    if source != "console":
        return None, "unknown"
    span = running_test(spans, offset=finding.start)
    if span is not None:
        return _span_name(span), "time"
    if not any(s.start < finding.start for s in spans if s.framework != "kunit"):
        return None, "boot"
    return None, "unknown"


# ------------------------------------------------------------------ host faults


@dataclass(frozen=True)
class HostFault:
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


# ------------------------------------------------------------------ baseline


@dataclass(frozen=True)
class Baseline:
    """Findings of the same plan on the base kernel (without the series)."""

    source: str  # the report.json it came from
    kernel_release: str
    signatures: frozenset[str]
    titles: frozenset[str]

    def has(self, finding: Finding) -> bool:
        return finding.signature in self.signatures or finding.title in self.titles

    def to_json(self) -> dict[str, Any]:
        return {"source": self.source, "kernel_release": self.kernel_release,
                "signatures": sorted(self.signatures), "titles": sorted(self.titles)}


def baseline_from_report(data: dict[str, Any], source: str) -> Baseline:
    findings = [f for f in data.get("findings", []) if f.get("status") != HOST_FAULT]
    return Baseline(source, str(data.get("kernel", {}).get("release", "")),
                    frozenset(str(f.get("signature", "")) for f in findings),
                    frozenset(str(f.get("title", "")) for f in findings))


def load_baseline(path: Path) -> Baseline:
    report = path / "report.json" if path.is_dir() else path
    try:
        data = json.loads(report.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise UserError(f"cannot read the base run's report {report}: {exc}",
                        hint="pass --baseline with the run directory (or report.json) of a `rig run` "
                             "of the base kernel") from exc
    if not isinstance(data, dict) or "findings" not in data:
        raise UserError(f"{report} is not a rig run report (no findings list)",
                        hint="pass --baseline with the report.json of a `rig run` of the base kernel")
    return baseline_from_report(data, str(report))


# ------------------------------------------------------------------ judging


@dataclass(frozen=True)
class JudgedFinding:
    finding: Finding
    source: str  # "console", "kmemleak", "dmesg"
    test: str | None
    attribution: str  # "pid", "time", "boot", "unknown"
    status: str  # NEW, PRE_EXISTING, HOST_FAULT
    note: str = ""
    count: int = 1  # the same report (same signature) seen this many times
    also: tuple[str, ...] = ()  # other tests the same report came from (kmemleak objects of several tests)

    def to_json(self) -> dict[str, Any]:
        data = self.finding.to_json()
        data.update(source=self.source, test=self.test, attribution=self.attribution, status=self.status,
                    note=self.note, count=self.count, also=list(self.also))
        return data


@dataclass(frozen=True)
class Verdict:
    findings: tuple[JudgedFinding, ...]
    tests: tuple[TestResult, ...]
    expected_failures: tuple[tuple[str, str], ...]  # (test, reason) for failing tests the plan expects
    unexpected_failures: tuple[str, ...]
    baseline: Baseline | None = None
    problems: tuple[str, ...] = field(default=())  # the run itself did not go as planned

    @property
    def new_findings(self) -> tuple[JudgedFinding, ...]:
        return tuple(f for f in self.findings if f.status == NEW)

    @property
    def host_faults(self) -> tuple[JudgedFinding, ...]:
        return tuple(f for f in self.findings if f.status == HOST_FAULT)

    @property
    def exit_code(self) -> int:
        return 1 if self.new_findings or self.unexpected_failures else 0

    def totals(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for test in self.tests:
            counts[test.status] = counts.get(test.status, 0) + 1
        return dict(sorted(counts.items()))

    def summary(self) -> str:
        parts = []
        new = self.new_findings
        parts.append(f"{len(new)} new finding{'s' if len(new) != 1 else ''}")
        pre = [f for f in self.findings if f.status == PRE_EXISTING]
        if pre:
            parts.append(f"{len(pre)} pre-existing")
        if self.host_faults:
            parts.append(f"{len(self.host_faults)} host fault{'s' if len(self.host_faults) != 1 else ''}")
        parts.append(f"{len(self.tests)} tests, {len(self.unexpected_failures)} unexpected failure"
                     f"{'s' if len(self.unexpected_failures) != 1 else ''}")
        if self.expected_failures:
            parts.append(f"{len(self.expected_failures)} expected")
        return ("FAIL: " if self.exit_code else "PASS: ") + ", ".join(parts)

    def to_json(self) -> dict[str, Any]:
        return {
            "exit_code": self.exit_code,
            "summary": self.summary(),
            "new_findings": len(self.new_findings),
            "host_faults": len(self.host_faults),
            "unexpected_failures": list(self.unexpected_failures),
            "expected_failures": [{"test": t, "reason": r} for t, r in self.expected_failures],
            "baseline": self.baseline.to_json() if self.baseline else None,
            "problems": list(self.problems),
        }


def _dedupe(findings: Iterable[tuple[Finding, str]]) -> list[tuple[Finding, str, int]]:
    seen: dict[str, int] = {}
    out: list[tuple[Finding, str, int]] = []
    for finding, source in findings:
        key = finding.signature or finding.title
        if key in seen:
            f, s, n = out[seen[key]]
            out[seen[key]] = (f, s, n + 1)
            continue
        seen[key] = len(out)
        out.append((finding, source, 1))
    return out


def judge(
    sources: dict[str, list[Finding]],
    console_text: str,
    tests: Iterable[TestResult],
    plan: Plan,
    *,
    baseline: Baseline | None = None,
    problems: Iterable[str] = (),
) -> Verdict:
    """Attribute, classify and count: the whole verdict of one run.

    `sources` maps where findings came from ("console", "kmemleak", "dmesg") to what the
    parser found there; dmesg only counts when the console had nothing (they overlap).
    """
    spans = log_test_spans(console_text)
    ordered: list[tuple[Finding, str]] = []
    for source in ("console", "kmemleak", "dmesg"):
        if source == "dmesg" and sources.get("console"):
            continue
        ordered += [(f, source) for f in sources.get(source, [])]
    judged: list[JudgedFinding] = []
    for finding, source, count in _dedupe(ordered):
        test, how = attribute(finding, spans, source)
        fault = host_fault_of(finding)
        if fault is not None:
            status, note = HOST_FAULT, fault.explanation
        elif baseline is not None and baseline.has(finding):
            status, note = PRE_EXISTING, f"also seen on the base kernel ({baseline.kernel_release})"
        else:
            status, note = NEW, ""
        also = leak_tests(finding, spans)[1:] if source == "kmemleak" else ()
        judged.append(JudgedFinding(finding, source, test, how, status, note, count, also))
    expected: list[tuple[str, str]] = []
    unexpected: list[str] = []
    test_list = tuple(tests)
    for test in test_list:
        if not test.failing:
            continue
        allowance = plan.expected_failure(test.name)
        if allowance is not None:
            expected.append((test.name, allowance.reason))
        else:
            unexpected.append(test.name)
    return Verdict(tuple(judged), test_list, tuple(expected), tuple(unexpected), baseline, tuple(problems))
