"""junit.xml: one test case per test, plus one per kernel finding, for CI dashboards. New
findings and new failures fail; known and pre-existing ones are skipped with their
reason; the counts per side are in each case's output."""

from __future__ import annotations

import xml.etree.ElementTree as ET

from rig.report.model import RunReport, flags_text, seen_text
from rig.results import TestStatus
from rig.verdict import JudgedTest


def _clean(text: str) -> str:
    # XML 1.0 forbids most control characters; kernel logs sometimes carry them.
    return "".join(ch for ch in text if ch in "\t\n\r" or ord(ch) >= 0x20)


_SKIPPED_STATUSES = ("known", "pre-existing")


def _skipped(test: JudgedTest) -> bool:
    return str(test.result.status) in ("skip", "absent") or str(test.status) in _SKIPPED_STATUSES


def render(report: RunReport) -> str:
    verdict = report.verdict
    root = ET.Element("testsuites", name="rig run")
    suites: dict[str, list[JudgedTest]] = {}
    for test in verdict.judged_tests:
        suites.setdefault(str(test.result.kind), []).append(test)
    for kind, tests in suites.items():
        failures = sum(1 for t in tests if str(t.status) == "new")
        suite = ET.SubElement(root, "testsuite", name=kind, tests=str(len(tests)), failures=str(failures),
                              skipped=str(sum(1 for t in tests if _skipped(t))), errors="0")
        for test in tests:
            result = test.result
            case = ET.SubElement(suite, "testcase", name=test.name, classname=f"{kind}.{result.driver or 'any'}",
                                 time=f"{result.duration_s or 0:.3f}")
            status, seen = str(test.status), seen_text(test.series, test.base)
            if status == "new":
                failure = ET.SubElement(case, "failure", message=f"{result.raw_status} ({seen})",
                                        type=str(result.status))
                bad = test.first_bad_patch
                failure.text = _clean((f"first bad patch: {bad.index} '{bad.subject}'\n" if bad else "")
                                      + result.detail)
            elif status in _SKIPPED_STATUSES:
                ET.SubElement(case, "skipped", message=_clean(f"{status}: {test.note} ({seen})"))
            elif status == "expected":
                ET.SubElement(case, "system-out").text = _clean(f"expected failure: {test.note}")
            elif status == "fixed":
                ET.SubElement(case, "system-out").text = _clean(f"fixed: {test.note} ({seen})")
            elif _skipped(test):
                ET.SubElement(case, "skipped", message=_clean(result.raw_status + (f": {result.detail}"
                                                                                   if result.detail else "")))
            elif result.status is TestStatus.WARN and result.detail:
                ET.SubElement(case, "system-out").text = _clean(f"{result.raw_status}: {result.detail}")
    findings = verdict.findings
    skipped = [f for f in findings if str(f.status) in _SKIPPED_STATUSES]
    suite = ET.SubElement(root, "testsuite", name="kernel-findings", tests=str(max(len(findings), 1)),
                          failures=str(len(verdict.new_findings)), skipped=str(len(skipped)), errors="0")
    if not findings:
        ET.SubElement(suite, "testcase", name="no kernel reports", classname="kernel")
    for judged in findings:
        finding = judged.finding
        case = ET.SubElement(suite, "testcase", name=finding.title, classname=f"kernel.{finding.kind}")
        seen = seen_text(judged.series, judged.base)
        bad = judged.first_bad_patch
        flags = flags_text(judged)
        text = _clean(f"test: {judged.test or '-'}\nseen: {seen}" + (f" ({flags})" if flags else "")
                      + (f"\nfirst bad patch: {bad.index} '{bad.subject}'" if bad else "") + f"\n\n{finding.report}")
        if str(judged.status) == "new":
            failure = ET.SubElement(case, "failure", message=_clean(f"{finding.title} ({seen})"), type=finding.kind)
            failure.text = text
        elif str(judged.status) in _SKIPPED_STATUSES:
            ET.SubElement(case, "skipped", message=_clean(f"{judged.status}: {judged.note}"))
            ET.SubElement(case, "system-out").text = text
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
