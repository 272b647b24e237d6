from __future__ import annotations

import json
from pathlib import Path

import pytest

from rig.analysis import KNOWN_HOST_FAULTS, AnalysedFinding, Analysis
from rig.errors import UserError
from rig.plan import load_plan
from rig.report.model import AttemptRecord, decide
from rig.results import TestName, TestResult
from rig.splat.attribution import Placement
from rig.splat.model import Finding, Source
from rig.verdict import HOST_FAULT, NEW, PRE_EXISTING, FindingStatus, judge, load_baseline, verdict_from_json
from rig.workloads import FAIL, PASS

PLAN = load_plan("default")


def _finding(title: str, signature: str = "sig", **more: object) -> Finding:
    return Finding(title=title, kind="warning", corrupted=False, signature=signature, report="WARNING: x", start=0,
                   end=10, line=1, timestamp=None, frames=(), **more)  # type: ignore[arg-type]


def _analysis(*findings: AnalysedFinding, tests: tuple[TestResult, ...] = ()) -> Analysis:
    return Analysis(findings, (), tests, None, None)


def _analysed(finding: Finding, **more: object) -> AnalysedFinding:
    return AnalysedFinding(finding, Source.CONSOLE, None, Placement.UNKNOWN, **more)  # type: ignore[arg-type]


def test_a_host_fault_is_not_a_finding_of_the_series() -> None:
    fault = _analysed(_finding("int3 in __x64_sys_getrandom"), host_fault=KNOWN_HOST_FAULTS[0])
    verdict = judge(_analysis(fault), PLAN)
    assert verdict.findings[0].status is HOST_FAULT is FindingStatus.HOST_FAULT and not verdict.failed
    assert verdict.findings[0].note == KNOWN_HOST_FAULTS[0].explanation
    assert decide(verdict, [AttemptRecord(1, "attempt-1", "tcg", {})]).summary == (
        "PASS: 0 new findings, 1 host fault, 0 tests, 0 unexpected failures")


def test_expected_and_unexpected_failures() -> None:
    tests = (TestResult("kms_addfb_basic@too-high", "igt", FAIL, "fail", 0.1, "virtio_gpu"),
             TestResult("dumb_buffer@map-valid", "igt", FAIL, "fail", 0.1, "virtio_gpu"),
             TestResult("vgem_basic@create", "igt", PASS, "pass", 0.1, "vgem"))
    verdict = judge(_analysis(tests=tests), PLAN)
    assert [t for t, _ in verdict.expected_failures] == ["kms_addfb_basic@too-high"]
    assert verdict.unexpected_failures == ("dumb_buffer@map-valid",)
    assert verdict.failed
    passing = judge(_analysis(tests=(tests[0], tests[2])), PLAN)
    assert not passing.failed and passing.totals() == {"fail": 1, "pass": 1}


def test_findings_of_the_base_kernel_are_pre_existing(tmp_path: Path) -> None:
    base_report = {"kernel": {"release": "6.1.176"}, "findings": [
        {"title": "memory leak in drm_prime_pages_to_sg", "signature": "leak", "status": "new"},
        {"title": "int3 in __x64_sys_getrandom", "signature": "int3", "status": "host-fault"}]}
    (tmp_path / "report.json").write_text(json.dumps(base_report))
    baseline = load_baseline(tmp_path)
    assert baseline.signatures == {"leak"}  # a host fault of the base run says nothing about its kernel
    old = _analysed(_finding("memory leak in drm_prime_pages_to_sg", "leak"))
    new = _analysed(_finding("WARNING in drm_gem_shmem_put_pages", "warn"))
    verdict = judge(_analysis(old, new), PLAN, baseline=baseline)
    assert [f.status for f in verdict.findings] == [PRE_EXISTING, NEW]
    assert "6.1.176" in verdict.findings[0].note
    assert judge(_analysis(old), PLAN, baseline=baseline).failed is False


def test_a_baseline_that_is_not_a_report_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text("[]")
    with pytest.raises(UserError):
        load_baseline(tmp_path)
    with pytest.raises(UserError):
        load_baseline(tmp_path / "missing")


def test_report_json_keeps_its_keys_and_strings() -> None:
    """report.json's consumers read these: findings[].title/kind/status/test/lock_chain,
    tests[].name/status, verdict.unexpected_failures."""
    leak = AnalysedFinding(_finding("possible deadlock in f", lock_chain=("a", "b"), pids=(97,)), Source.KMEMLEAK,
                           TestName.parse("kunit:drm_mm.drm_test_mm_init"), Placement.PID,
                           (TestName.parse("script:dri-clients"),), 2)
    tests = (TestResult("dumb_buffer@map-valid", "igt", "fail", "fail", 0.1),)
    verdict = judge(_analysis(leak, tests=tests), PLAN)
    data = json.loads(json.dumps({"verdict": verdict.to_json(), "findings": [f.to_json() for f in verdict.findings],
                                  "tests": [t.to_json() for t in verdict.tests]}))
    (finding,) = data["findings"]
    assert {k: finding[k] for k in ("title", "kind", "status", "test", "lock_chain", "source", "attribution",
                                    "count", "also", "pids")} == {
        "title": "possible deadlock in f", "kind": "warning", "status": "new", "test": "kunit:drm_mm.drm_test_mm_init",
        "lock_chain": ["a", "b"], "source": "kmemleak", "attribution": "pid", "count": 2,
        "also": ["script:dri-clients"], "pids": [97]}
    assert data["tests"] == [{"name": "dumb_buffer@map-valid", "kind": "igt", "status": "fail", "raw_status": "fail",
                              "duration_s": 0.1, "driver": None, "detail": "", "started_s": None}]
    assert data["verdict"]["unexpected_failures"] == ["dumb_buffer@map-valid"]
    # report.json loads back into the same verdict
    again = verdict_from_json(data)
    assert again.to_json() == verdict.to_json() and again.findings[0].to_json() == verdict.findings[0].to_json()
    assert again.tests == verdict.tests
    assert TestResult.from_json(data["tests"][0]) == tests[0]


@pytest.mark.parametrize("series,base,expected", [
    ((3, 3), (0, 3), 1.0),  # always with the series: no base as prone to it misses it
    ((2, 4), (0, 4), 1 - 0.5 ** 4),
    ((1, 4), (0, 8), 1 - 0.75 ** 8),
    ((1, 1), (0, 0), 0.0),  # no base run: nothing to be sure of
    ((2, 4), (1, 4), 0.0),  # the base shows it: not new at all
    ((0, 4), (0, 4), 0.0),
])
def test_how_sure_rig_is_that_a_new_finding_is_the_series_doing(series, base, expected) -> None:
    from rig.tally import Seen, new_confidence

    assert new_confidence(Seen(*series), Seen(*base)) == pytest.approx(expected)
