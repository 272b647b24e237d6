"""Counting over repeated runs: each finding (by signature) and each test's failures, per
side (the kernel with the series, the base kernel without it).

    tally_findings(series, base) -> [FindingTally]
    tally_tests(series, base) -> [TestTally]

A run counts for a finding only when it ran the finding's test: targeted re-runs (rig.narrow)
run a few tests, so "seen in 3 of 5" means 3 of the 5 runs that ran that test. A finding
of no test (at boot, or unplaced) counts in every run of its side.

    new_confidence(series, base) -> float

How sure rig is that a finding the base never showed is the series' doing: the chance
that a base kernel showing it as often as the series did would have shown it at least
once in the runs it had.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from rig.analysis import AnalysedFinding, Analysis
from rig.narrow import covers
from rig.plan import Plan
from rig.results import TestResult, TestStatus

# The chance rig accepts of calling a finding the series' doing when the base has it too
# but missed it in every run (and, per bisection step, of a clean probe missing it).
MISS = 0.05


@dataclass(frozen=True)
class Seen:
    """In k of n runs."""

    k: int
    n: int

    @property
    def intermittent(self) -> bool:
        return 0 < self.k < self.n

    @property
    def rate(self) -> float:
        return self.k / self.n if self.n else 0.0

    def to_json(self) -> list[int]:
        return [self.k, self.n]

    def __str__(self) -> str:
        return f"{self.k}/{self.n}"


@dataclass(frozen=True)
class SideRun:
    """One judged attempt of a side: what it found, and the plan it ran (the whole plan,
    or one cut to a few tests)."""

    number: int
    analysis: Analysis
    plan: Plan


@dataclass(frozen=True)
class FindingTally:
    key: str  # the signature (else the title)
    analysed: AnalysedFinding  # where it was first seen: a run with the series, else a base run
    series: Seen
    base: Seen | None


@dataclass(frozen=True)
class TestTally:
    __test__ = False

    name: str
    # a run with the series that failed it, else one that warned, else its last run with the series, else the base's
    result: TestResult
    series: Seen | None  # failed in k of the n runs with the series that have a result for it
    base: Seen | None
    warned: Seen | None = None  # passed with a warning (IGT's warn) in k of those n runs with the series
    warned_base: Seen | None = None


def new_confidence(series: Seen, base: Seen) -> float:
    """1 - (1 - k/n)^m for a finding seen in k of n runs with the series and in none of m
    base runs: 1 when the series always showed it; 0 with no base run or no sighting."""
    if base.k or not series.n or not series.k:
        return 0.0
    return 1.0 - (1.0 - series.rate) ** base.n


def finding_key(analysed: AnalysedFinding) -> str:
    return analysed.finding.signature or analysed.finding.title


def _runs_covering(runs: Sequence[SideRun], analysed: AnalysedFinding) -> int:
    test = analysed.test
    if test is None:
        return len(runs)
    return sum(1 for run in runs if covers(run.plan, str(test)))


def tally_findings(series: Sequence[SideRun], base: Sequence[SideRun] | None) -> list[FindingTally]:
    """Every finding once, in the order first seen (the series' runs first)."""
    first: dict[str, AnalysedFinding] = {}
    counts: dict[str, dict[str, int]] = {}
    for side, runs in (("series", series), ("base", base or ())):
        for run in runs:
            for key in dict.fromkeys(finding_key(f) for f in run.analysis.findings):
                counts.setdefault(key, {"series": 0, "base": 0})[side] += 1
            for analysed in run.analysis.findings:
                first.setdefault(finding_key(analysed), analysed)
    out = []
    for key, analysed in first.items():
        on_series = Seen(counts[key]["series"], _runs_covering(series, analysed))
        on_base = Seen(counts[key]["base"], _runs_covering(base, analysed)) if base is not None else None
        out.append(FindingTally(key, analysed, on_series, on_base))
    return out


def tally_tests(series: Sequence[SideRun], base: Sequence[SideRun] | None) -> list[TestTally]:
    """Every test once, in the order first seen (the series' runs first)."""
    results: dict[str, dict[str, list[TestResult]]] = {}
    for side, runs in (("series", series), ("base", base or ())):
        for run in runs:
            for test in run.analysis.tests:
                results.setdefault(test.name, {"series": [], "base": []})[side].append(test)
    out = []
    for name, sides in results.items():
        on_series, on_base = sides["series"], sides["base"]
        failing = [t for t in on_series if t.failing] or [t for t in on_series if t.status is TestStatus.WARN]
        result = failing[0] if failing else (on_series[-1] if on_series else on_base[0])
        with_base = base is not None and bool(on_base)
        out.append(TestTally(name, result, _failed(on_series) if on_series else None,
                             _failed(on_base) if with_base else None,
                             _warned(on_series) if on_series else None, _warned(on_base) if with_base else None))
    return out


def _failed(results: list[TestResult]) -> Seen:
    return Seen(sum(1 for t in results if t.failing), len(results))


def _warned(results: list[TestResult]) -> Seen:
    return Seen(sum(1 for t in results if t.status is TestStatus.WARN), len(results))
