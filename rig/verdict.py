"""The verdict: which findings are the series' doing, which tests it broke.

    judge(analysis, plan, *, baseline=None, problems=()) -> Verdict         one attempt
    judge_runs(series, base, plan, *, known=..., baseline=None, ...) -> Verdict

rig.analysis has already read each attempt once: each finding comes with its test (see
rig.splat.attribution) and, when it is an emulator's fault rather than the kernel's, the
known host fault it is. rig.tally counts every finding (by signature) and every test's
failures per side, the kernel with the series and the base kernel without it, over the
repeated runs. The verdict then gives each one status:

    new           the series shows it, the base never did
    pre-existing  both show it
    fixed         only the base shows it (or a fails list names a test that passes now)
    known         a known-issues entry (rig.known) covers it, with its reason
    host-fault    a known emulator fault, not the kernel's (findings only)
    expected      a failure the plan expects (tests only); ok: a test that never failed

and a flag `intermittent` when a side saw it in some of its runs but not all. Only new
findings and new test failures fail a run.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from rig.analysis import KNOWN_HOST_FAULTS, AnalysedFinding, Analysis, HostFault, host_fault_of
from rig.errors import UserError
from rig.known import KnownIssues
from rig.plan import Plan
from rig.results import TestResult
from rig.splat.model import Finding
from rig.tally import MISS, Seen, SideRun, new_confidence, tally_findings, tally_tests

__all__ = ["FIXED", "HOST_FAULT", "KNOWN", "KNOWN_HOST_FAULTS", "NEW", "PRE_EXISTING", "Baseline", "FindingStatus",
           "FirstBadPatch", "HostFault", "JudgedFinding", "JudgedTest", "TestVerdict", "Verdict",
           "baseline_from_report", "host_fault_of", "judge", "judge_runs", "load_baseline", "unsettled"]


class FindingStatus(StrEnum):
    """report.json's findings[].status."""

    NEW = "new"
    PRE_EXISTING = "pre-existing"
    FIXED = "fixed"
    KNOWN = "known"
    HOST_FAULT = "host-fault"


NEW, PRE_EXISTING, HOST_FAULT = FindingStatus.NEW, FindingStatus.PRE_EXISTING, FindingStatus.HOST_FAULT
FIXED, KNOWN = FindingStatus.FIXED, FindingStatus.KNOWN


class TestVerdict(StrEnum):
    """report.json's tests[].status (schema 3; tests[].result is how the test ended)."""

    __test__ = False

    NEW = "new"  # fails with the series, never on the base: the series broke it
    PRE_EXISTING = "pre-existing"
    FIXED = "fixed"
    KNOWN = "known"
    EXPECTED = "expected"  # the plan expects this failure on rig's virtual hardware
    OK = "ok"  # never failed


@dataclass(frozen=True)
class FirstBadPatch:
    """The first patch whose prefix of the series shows a finding (or a failure)."""

    index: int  # 1-based
    subject: str
    confidence: float = 1.0  # below 1 for an intermittent finding: a clean probe may have missed it
    runs: int = 0  # targeted runs the search took

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "subject": self.subject, "confidence": round(self.confidence, 3),
                "runs": self.runs}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> FirstBadPatch | None:
        if not data:
            return None
        return cls(int(data["index"]), str(data.get("subject", "")), float(data.get("confidence", 1.0)),
                   int(data.get("runs", 0)))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _seen_json(series: Seen | None, base: Seen | None) -> dict[str, Any]:
    return {"series": series.to_json() if series else None, "base": base.to_json() if base else None}


def _intermittent(series: Seen | None, base: Seen | None) -> bool:
    return any(side is not None and side.intermittent for side in (series, base))


def _confidence(new: bool, series: Seen | None, base: Seen | None) -> float | None:
    """For a new finding or failure the base ran beside: how sure rig is that it is the
    series' doing (rig.tally.new_confidence); None otherwise."""
    if not new or series is None or base is None:
        return None
    return new_confidence(series, base)


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
    """The findings of the kernel a report tested (with schema 3, those its own side saw:
    not a host fault, nor one that only its base showed)."""
    findings = [f for f in data.get("findings", []) if f.get("status") not in (HOST_FAULT, FIXED)
                and ((f.get("seen") or {}).get("series") or [1])[0]]
    return Baseline(source, str(data.get("kernel", {}).get("release", "")),
                    frozenset(str(f.get("signature", "")) for f in findings),
                    frozenset(str(f.get("title", "")) for f in findings))


def load_baseline(path: Path) -> Baseline:
    """The base run a --baseline names (its directory or its report.json), checked: a
    file that is no report, or a report of a schema this rig does not read, is bad input."""
    from rig.report.model import SCHEMA_VERSION  # the report module imports this one

    report = path / "report.json" if path.is_dir() else path
    hint = "pass --baseline with the run directory (or report.json) of a `rig run` of the base kernel"
    try:
        data = json.loads(report.read_bytes())
    # ValueError: JSON's, and UTF-8's of a binary file; RecursionError: brackets nested too deep
    except (OSError, ValueError, RecursionError) as exc:
        raise UserError(f"cannot read the base run's report {report}: {exc}", hint=hint) from exc
    if not isinstance(data, dict) or not isinstance(data.get("findings"), list):
        raise UserError(f"{report} is not a rig run report (no findings list)", hint=hint)
    schema = data.get("schema", 1)
    if isinstance(schema, bool) or not isinstance(schema, int) or not 1 <= schema <= SCHEMA_VERSION:
        raise UserError(f"{report} is a report of schema {schema!r}; this rig reads schemas 1 to {SCHEMA_VERSION}",
                        hint="run the base again with this rig (or pass a report this rig wrote)")
    try:
        return baseline_from_report(data, str(report))
    except (AttributeError, TypeError, IndexError) as exc:  # a field of another shape than rig writes
        raise UserError(f"{report} is not a rig run report rig can read: its findings are malformed ({exc})",
                        hint=hint) from exc


# ------------------------------------------------------------------ judging


@dataclass(frozen=True)
class JudgedFinding:
    analysed: AnalysedFinding
    status: FindingStatus
    note: str = ""
    series: Seen | None = None  # in how many runs with the series (of those that ran its test)
    base: Seen | None = None  # in how many runs of the base kernel; None: no base ran
    first_bad_patch: FirstBadPatch | None = None
    link: str | None = None  # a known issue's link

    @property
    def intermittent(self) -> bool:
        return _intermittent(self.series, self.base)

    @property
    def confidence(self) -> float | None:
        return _confidence(self.status == NEW, self.series, self.base)

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
                    note=self.note, count=self.count, also=list(self.also), intermittent=self.intermittent,
                    seen=_seen_json(self.series, self.base), confidence=_round(self.confidence),
                    first_bad_patch=self.first_bad_patch.to_json() if self.first_bad_patch else None)
        if self.link:
            data["link"] = self.link
        return data


@dataclass(frozen=True)
class JudgedTest:
    """One test over every run: how it ended (in a run with the series that failed it, else
    the last), its status, and how often it failed on each side."""

    __test__ = False

    result: TestResult
    status: TestVerdict
    series: Seen | None = None  # failed in k of the n runs with the series that ran it
    base: Seen | None = None
    note: str = ""
    first_bad_patch: FirstBadPatch | None = None
    warned: Seen | None = None  # passed with a warning in k of the n runs with the series
    warned_base: Seen | None = None

    @property
    def name(self) -> str:
        return self.result.name

    @property
    def intermittent(self) -> bool:
        return _intermittent(self.series, self.base)

    @property
    def confidence(self) -> float | None:
        return _confidence(self.status is TestVerdict.NEW, self.series, self.base)

    @property
    def warns(self) -> bool:
        """Passed with a warning (IGT's warn: a kernel warning in dmesg) in some run (a
        report from before the counts has only the test's result to say so)."""
        return str(self.result.status) == "warn" or any(side is not None and side.k
                                                        for side in (self.warned, self.warned_base))

    def to_json(self) -> dict[str, Any]:
        data = self.result.to_json()
        data["result"] = data.pop("status")
        data.update(status=str(self.status), intermittent=self.intermittent, seen=_seen_json(self.series, self.base),
                    confidence=_round(self.confidence),
                    warned=(_seen_json(self.warned, self.warned_base)
                            if any(side is not None and side.k for side in (self.warned, self.warned_base)) else None),
                    first_bad_patch=self.first_bad_patch.to_json() if self.first_bad_patch else None, note=self.note)
        return data


@dataclass(frozen=True)
class Verdict:
    findings: tuple[JudgedFinding, ...]
    tests: tuple[TestResult, ...]
    expected_failures: tuple[tuple[str, str], ...]  # (test, reason) for failing tests the plan expects
    unexpected_failures: tuple[str, ...]
    baseline: Baseline | None = None
    problems: tuple[str, ...] = field(default=())  # the run itself did not go as planned
    judged_tests: tuple[JudgedTest, ...] = ()  # every test, with its status and counts
    runs: dict[str, int] = field(default_factory=dict)  # side -> runs judged ("series", "base")
    base_note: str = ""  # where the base runs came from (run now, or the cache)
    settle_note: str = ""  # the targeted runs --max-repeat added, and why they stopped

    @property
    def new_findings(self) -> tuple[JudgedFinding, ...]:
        return tuple(f for f in self.findings if f.status == NEW)

    @property
    def new_failures(self) -> tuple[JudgedTest, ...]:
        return tuple(t for t in self.judged_tests if t.status is TestVerdict.NEW)

    def by_status(self, status: str) -> tuple[JudgedFinding | JudgedTest, ...]:
        return (*(f for f in self.findings if str(f.status) == status),
                *(t for t in self.judged_tests if str(t.status) == status))

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
            "runs": dict(self.runs),
            "base_note": self.base_note,
            "settle_note": self.settle_note,
        }


def unsettled(verdict: Verdict) -> tuple[JudgedFinding, ...]:
    """The new findings that targeted re-runs could still settle (--max-repeat): seen in
    some runs but not all, attributed to a test to re-run, and not yet the series' doing
    with 1 - MISS confidence (a finding the base shows too is pre-existing, not new)."""
    return tuple(f for f in verdict.new_findings
                 if f.intermittent and f.test is not None and (f.confidence or 0.0) < 1.0 - MISS)


def judge(analysis: Analysis, plan: Plan, *, baseline: Baseline | None = None,
          problems: Iterable[str] = ()) -> Verdict:
    """The verdict of one attempt (no base run beside it, maybe a --baseline report)."""
    return judge_runs((SideRun(1, analysis, plan),), None, plan, baseline=baseline, problems=problems)


def judge_runs(series: Sequence[SideRun], base: Sequence[SideRun] | None, plan: Plan, *,
               known: KnownIssues = KnownIssues(), baseline: Baseline | None = None,
               problems: Iterable[str] = (), base_note: str = "", settle_note: str = "") -> Verdict:
    """Classify every finding and test over the runs of both sides. `base` None: no base
    kernel ran (then a --baseline report, if any, says what is pre-existing).
    `problems` are what went wrong with the run itself (the analyses add their own)."""
    judged: list[JudgedFinding] = []
    for tally in tally_findings(series, base):
        analysed, on_series, on_base = tally.analysed, tally.series, tally.base
        match = known.finding_match(analysed.finding)
        if analysed.host_fault is not None:
            status, note, link = HOST_FAULT, analysed.host_fault.explanation, None
        elif match is not None:
            status, note, link = KNOWN, match.reason, match.link
        elif base is None:
            if baseline is not None and baseline.has(analysed.finding):
                status, note, link = PRE_EXISTING, f"also seen on the base kernel ({baseline.kernel_release})", None
            else:
                status, note, link = NEW, "", None
        elif on_series.k and on_base is not None and on_base.k:
            status, note, link = PRE_EXISTING, "the base kernel shows it too", None
        elif on_series.k:
            status, note, link = NEW, "", None
        else:
            status, note, link = FIXED, "only the base kernel shows it", None
        judged.append(JudgedFinding(analysed, status, note, on_series, on_base, link=link))
    tests: list[JudgedTest] = []
    for tally in tally_tests(series, base):
        test = _judge_test(tally.result, tally.series, tally.base, plan, known, base is not None)
        tests.append(dataclasses.replace(test, warned=tally.warned, warned_base=tally.warned_base,
                                         note=test.note or (_warning_note(tally.warned, tally.warned_base)
                                                            if test.status is TestVerdict.OK else "")))
    expected = tuple((t.name, t.note) for t in tests if t.status is TestVerdict.EXPECTED)
    unexpected = tuple(t.name for t in tests if t.status is TestVerdict.NEW)
    every_problem = [*problems, *(p for run in (*series, *(base or ())) for p in run.analysis.problems)]
    runs = {"series": len(series)} | ({"base": len(base)} if base is not None else {})
    representative = tuple(t.result for t in tests if t.series is not None)
    return Verdict(tuple(judged), representative, expected, unexpected, baseline,
                   tuple(dict.fromkeys(every_problem)), tuple(tests), runs, base_note, settle_note)


def _warning_note(series: Seen | None, base: Seen | None) -> str:
    """Who a test's warnings are on: a warning never fails a run, but one both kernels
    print (vkms' vblank timer overrun under emulation) is none of the series' doing."""
    if series is None or base is None or not (series.k or base.k):
        return ""
    if series.k and base.k:
        return f"warned in {series} runs; base {base}: the base kernel warns too, not the series' doing"
    if series.k:
        return f"warned in {series} runs; base {base}: with the series only"
    return f"warned on the base kernel only ({base} runs)"


def _judge_test(result: TestResult, series: Seen | None, base: Seen | None, plan: Plan, known: KnownIssues,
                compared: bool) -> JudgedTest:
    failing_series = series is not None and series.k > 0
    failing_base = base is not None and base.k > 0
    if failing_series or failing_base:
        allowance = plan.expected_failure(result.name)
        if allowance is not None:
            return JudgedTest(result, TestVerdict.EXPECTED, series, base, allowance.reason)
        match = known.test_match(result)
        if match is not None:
            return JudgedTest(result, TestVerdict.KNOWN, series, base, match.reason)
    if not failing_series and series is not None and series.n and str(result.status) in ("pass", "warn"):
        listed = known.failure(result.name)
        if listed is not None:
            return JudgedTest(result, TestVerdict.FIXED, series, base,
                              f"{listed.reason} but passes now: drop it from the list")
    if failing_series and failing_base:
        return JudgedTest(result, TestVerdict.PRE_EXISTING, series, base, "fails on the base kernel too")
    if failing_series:
        return JudgedTest(result, TestVerdict.NEW, series, base,
                          "" if compared else "no base kernel ran beside it: new unless the plan expects it")
    if failing_base:
        return JudgedTest(result, TestVerdict.FIXED, series, base, "fails on the base kernel only")
    return JudgedTest(result, TestVerdict.OK, series, base)


def _seen_from_json(value: Any) -> Seen | None:
    return Seen(int(value[0]), int(value[1])) if value else None


def verdict_from_json(data: dict[str, Any]) -> Verdict:
    """A report.json's verdict, findings and tests back into a Verdict (any schema: before
    schema 3, tests[].status was how the test ended and there were no counts)."""
    from rig.results import TestName
    from rig.splat.attribution import Placement
    from rig.splat.model import Source

    def test_name(text: str | None) -> TestName | None:
        return TestName.parse(text) if text else None

    schema = int(data.get("schema", 1))
    findings = []
    for item in data.get("findings", ()):
        analysed = AnalysedFinding(Finding.from_json(item), Source(item.get("source", "console")),
                                   test_name(item.get("test")), Placement(item.get("attribution", "unknown")),
                                   tuple(TestName.parse(t) for t in item.get("also", ())), int(item.get("count", 1)))
        seen = item.get("seen") or {}
        findings.append(JudgedFinding(analysed, FindingStatus(item.get("status", "new")), str(item.get("note", "")),
                                      _seen_from_json(seen.get("series")) if seen else Seen(1, 1),
                                      _seen_from_json(seen.get("base")),
                                      FirstBadPatch.from_json(item.get("first_bad_patch")), item.get("link")))
    verdict = data.get("verdict") or {}
    baseline = verdict.get("baseline")
    expected_failures = tuple((e["test"], e.get("reason", "")) for e in verdict.get("expected_failures", ()))
    unexpected_failures = tuple(verdict.get("unexpected_failures", ()))
    judged_tests = []
    for item in data.get("tests", ()):
        if schema >= 3:
            result = TestResult.from_json({**item, "status": item.get("result")})
            seen = item.get("seen") or {}
            warned = item.get("warned") or {}
            judged_tests.append(JudgedTest(result, TestVerdict(item.get("status", "ok")),
                                           _seen_from_json(seen.get("series")), _seen_from_json(seen.get("base")),
                                           str(item.get("note", "")),
                                           FirstBadPatch.from_json(item.get("first_bad_patch")),
                                           _seen_from_json(warned.get("series")), _seen_from_json(warned.get("base"))))
            continue
        result = TestResult.from_json(item)
        reasons = dict(expected_failures)
        status = (TestVerdict.NEW if result.name in unexpected_failures else
                  TestVerdict.EXPECTED if result.name in reasons and result.failing else TestVerdict.OK)
        judged_tests.append(JudgedTest(result, status, Seen(int(result.failing), 1), None,
                                       reasons.get(result.name, "") if status is TestVerdict.EXPECTED else ""))
    return Verdict(
        findings=tuple(findings),
        tests=tuple(t.result for t in judged_tests if t.series is not None),
        expected_failures=expected_failures,
        unexpected_failures=unexpected_failures,
        baseline=(Baseline(str(baseline.get("source", "")), str(baseline.get("kernel_release", "")),
                           frozenset(baseline.get("signatures", ())), frozenset(baseline.get("titles", ())))
                  if baseline else None),
        problems=tuple(verdict.get("problems", ())),
        judged_tests=tuple(judged_tests),
        runs=dict(verdict.get("runs") or {"series": 1}),
        base_note=str(verdict.get("base_note", "")),
        settle_note=str(verdict.get("settle_note", "")),
    )
