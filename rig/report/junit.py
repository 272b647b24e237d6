"""junit.xml: one test case per test, plus one per kernel finding, for CI dashboards."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from rig.report.model import RunReport
from rig.workloads import TestResult, TestStatus


def _clean(text: str) -> str:
    # XML 1.0 forbids most control characters; kernel logs sometimes carry them.
    return "".join(ch for ch in text if ch in "\t\n\r" or ord(ch) >= 0x20)


def _skipped(test: TestResult) -> bool:
    return str(test.status) in ("skip", "absent")


def render(report: RunReport) -> str:
    verdict = report.verdict
    expected = dict(verdict.expected_failures)
    root = ET.Element("testsuites", name="rig run")
    suites: dict[str, list[TestResult]] = {}
    for test in verdict.tests:
        suites.setdefault(str(test.kind), []).append(test)
    for kind, tests in suites.items():
        failures = sum(1 for t in tests if t.failing and t.name not in expected)
        suite = ET.SubElement(root, "testsuite", name=kind, tests=str(len(tests)), failures=str(failures),
                              skipped=str(sum(1 for t in tests if _skipped(t))), errors="0")
        for test in tests:
            case = ET.SubElement(suite, "testcase", name=test.name, classname=f"{kind}.{test.driver or 'any'}",
                                 time=f"{test.duration_s or 0:.3f}")
            if test.failing:
                if test.name in expected:
                    ET.SubElement(case, "system-out").text = _clean(f"expected failure: {expected[test.name]}")
                else:
                    failure = ET.SubElement(case, "failure", message=test.raw_status, type=str(test.status))
                    failure.text = _clean(test.detail)
            elif _skipped(test):
                ET.SubElement(case, "skipped", message=test.raw_status)
            elif test.status is TestStatus.WARN and test.detail:
                ET.SubElement(case, "system-out").text = _clean(f"{test.raw_status}: {test.detail}")
    findings = verdict.findings
    suite = ET.SubElement(root, "testsuite", name="kernel-findings", tests=str(max(len(findings), 1)),
                          failures=str(len(verdict.new_findings)), skipped="0", errors="0")
    if not findings:
        ET.SubElement(suite, "testcase", name="no kernel reports", classname="kernel")
    for judged in findings:
        finding = judged.finding
        case = ET.SubElement(suite, "testcase", name=finding.title, classname=f"kernel.{finding.kind}")
        text = _clean(f"test: {judged.test or '-'}\n\n{finding.report}")
        if judged in verdict.new_findings:
            failure = ET.SubElement(case, "failure", message=_clean(finding.title), type=finding.kind)
            failure.text = text
        else:
            ET.SubElement(case, "system-out").text = _clean(f"{judged.status}: {judged.note}\n\n{text}")
    error = report.error
    if error is not None:
        # The run itself ended early: a CI dashboard shows it as an error, not a test failure.
        run_suite = ET.SubElement(root, "testsuite", name="rig", tests="1", failures="0", skipped="0", errors="1")
        case = ET.SubElement(run_suite, "testcase", name=f"attempt ended during {error.phase.value}", classname="rig")
        ET.SubElement(case, "error", message=_clean(error.headline), type=error.kind.value).text = _clean(
            error.message + (f"\nwhat to do: {error.hint}" if error.hint else ""))
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
