"""The verdict: which findings are the series' doing, which tests failed unexpectedly.

    judge(analysis, plan, *, baseline=None, problems=()) -> Verdict

rig.analysis has already read the attempt once: each finding comes with its test (see
rig.splat.attribution) and, when it is an emulator's fault rather than the kernel's, the
known host fault it is. The verdict classifies each finding (a host fault, one the base
kernel shows too, or new) and sorts the failing tests into those the plan expects and
the rest. Only new findings and unexpected failures fail a run.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from rig.analysis import KNOWN_HOST_FAULTS, AnalysedFinding, Analysis, HostFault, host_fault_of
from rig.errors import UserError
from rig.plan import Plan
from rig.results import TestResult
from rig.splat.model import Finding

__all__ = ["HOST_FAULT", "KNOWN_HOST_FAULTS", "NEW", "PRE_EXISTING", "Baseline", "FindingStatus", "HostFault",
           "JudgedFinding", "Verdict", "baseline_from_report", "host_fault_of", "judge", "load_baseline"]


class FindingStatus(StrEnum):
    """report.json's findings[].status."""

    NEW = "new"
    PRE_EXISTING = "pre-existing"
    HOST_FAULT = "host-fault"


NEW, PRE_EXISTING, HOST_FAULT = FindingStatus.NEW, FindingStatus.PRE_EXISTING, FindingStatus.HOST_FAULT


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
    analysed: AnalysedFinding
    status: FindingStatus
    note: str = ""

    @property
    def finding(self) -> Finding:
        return self.analysed.finding

    @property
    def source(self) -> str:  # "console", "kmemleak", "dmesg"
        return str(self.analysed.source)

    @property
    def test(self) -> str | None:
        return str(self.analysed.test) if self.analysed.test is not None else None

    @property
    def attribution(self) -> str:  # "pid", "time", "boot", "unknown"
        return str(self.analysed.placement)

    @property
    def count(self) -> int:
        return self.analysed.count

    @property
    def also(self) -> tuple[str, ...]:
        return tuple(str(t) for t in self.analysed.also)

    def to_json(self) -> dict[str, Any]:
        data = self.finding.to_json()
        data.update(source=self.source, test=self.test, attribution=self.attribution, status=str(self.status),
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
    def pre_existing(self) -> tuple[JudgedFinding, ...]:
        return tuple(f for f in self.findings if f.status == PRE_EXISTING)

    @property
    def failed(self) -> bool:
        """The series broke something: a new finding or an unexpected test failure
        (rig.report.model.decide turns this, and how the run ended, into the exit code)."""
        return bool(self.new_findings or self.unexpected_failures)

    def totals(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for test in self.tests:
            counts[str(test.status)] = counts.get(str(test.status), 0) + 1
        return dict(sorted(counts.items()))

    def to_json(self) -> dict[str, Any]:
        return {
            "new_findings": len(self.new_findings),
            "host_faults": len(self.host_faults),
            "unexpected_failures": list(self.unexpected_failures),
            "expected_failures": [{"test": t, "reason": r} for t, r in self.expected_failures],
            "baseline": self.baseline.to_json() if self.baseline else None,
            "problems": list(self.problems),
        }


def judge(analysis: Analysis, plan: Plan, *, baseline: Baseline | None = None,
          problems: Iterable[str] = ()) -> Verdict:
    """Classify an attempt's findings and tests: the whole verdict of one run.
    `problems` are what went wrong with the run itself (the analysis adds its own)."""
    judged: list[JudgedFinding] = []
    for analysed in analysis.findings:
        if analysed.host_fault is not None:
            judged.append(JudgedFinding(analysed, HOST_FAULT, analysed.host_fault.explanation))
        elif baseline is not None and baseline.has(analysed.finding):
            judged.append(JudgedFinding(analysed, PRE_EXISTING,
                                        f"also seen on the base kernel ({baseline.kernel_release})"))
        else:
            judged.append(JudgedFinding(analysed, NEW))
    expected: list[tuple[str, str]] = []
    unexpected: list[str] = []
    for test in analysis.tests:
        if not test.failing:
            continue
        allowance = plan.expected_failure(test.name)
        if allowance is not None:
            expected.append((test.name, allowance.reason))
        else:
            unexpected.append(test.name)
    return Verdict(tuple(judged), analysis.tests, tuple(expected), tuple(unexpected), baseline,
                   (*problems, *analysis.problems))


def verdict_from_json(data: dict[str, Any]) -> Verdict:
    """A report.json's verdict, findings and tests back into a Verdict (any schema)."""
    from rig.results import TestName
    from rig.splat.attribution import Placement
    from rig.splat.model import Source

    def test_name(text: str | None) -> TestName | None:
        return TestName.parse(text) if text else None

    findings = []
    for item in data.get("findings", ()):
        analysed = AnalysedFinding(Finding.from_json(item), Source(item.get("source", "console")),
                                   test_name(item.get("test")), Placement(item.get("attribution", "unknown")),
                                   tuple(TestName.parse(t) for t in item.get("also", ())), int(item.get("count", 1)))
        findings.append(JudgedFinding(analysed, FindingStatus(item.get("status", "new")), str(item.get("note", ""))))
    verdict = data.get("verdict") or {}
    baseline = verdict.get("baseline")
    return Verdict(
        findings=tuple(findings),
        tests=tuple(TestResult.from_json(t) for t in data.get("tests", ())),
        expected_failures=tuple((e["test"], e.get("reason", "")) for e in verdict.get("expected_failures", ())),
        unexpected_failures=tuple(verdict.get("unexpected_failures", ())),
        baseline=(Baseline(str(baseline.get("source", "")), str(baseline.get("kernel_release", "")),
                           frozenset(baseline.get("signatures", ())), frozenset(baseline.get("titles", ())))
                  if baseline else None),
        problems=tuple(verdict.get("problems", ())),
    )
