"""junit.xml: one test case per test, plus one per kernel finding, for CI dashboards."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from typing import Any

_FAILING = {"fail", "timeout", "crash"}


def _clean(text: str) -> str:
    # XML 1.0 forbids most control characters; kernel logs sometimes carry them.
    return "".join(ch for ch in text if ch in "\t\n\r" or ord(ch) >= 0x20)


def render(data: dict[str, Any]) -> str:
    expected = {e["test"]: e["reason"] for e in data.get("verdict", {}).get("expected_failures", [])}
    root = ET.Element("testsuites", name="rig run")
    suites: dict[str, list[dict[str, Any]]] = {}
    for test in data.get("tests", []):
        suites.setdefault(test.get("kind", "test"), []).append(test)
    for kind, tests in suites.items():
        failures = sum(1 for t in tests if t["status"] in _FAILING and t["name"] not in expected)
        skipped = sum(1 for t in tests if t["status"] in ("skip", "absent"))
        suite = ET.SubElement(root, "testsuite", name=kind, tests=str(len(tests)), failures=str(failures),
                              skipped=str(skipped), errors="0")
        for test in tests:
            case = ET.SubElement(suite, "testcase", name=test["name"],
                                 classname=f"{kind}.{test.get('driver') or 'any'}",
                                 time=f"{test.get('duration_s') or 0:.3f}")
            if test["status"] in _FAILING:
                if test["name"] in expected:
                    ET.SubElement(case, "system-out").text = _clean(f"expected failure: {expected[test['name']]}")
                else:
                    failure = ET.SubElement(case, "failure", message=f"{test['raw_status']}", type=test["status"])
                    failure.text = _clean(test.get("detail") or "")
            elif test["status"] in ("skip", "absent"):
                ET.SubElement(case, "skipped", message=test["raw_status"])
    findings = data.get("findings", [])
    new = [f for f in findings if f.get("status") == "new"]
    suite = ET.SubElement(root, "testsuite", name="kernel-findings", tests=str(max(len(findings), 1)),
                          failures=str(len(new)), skipped="0", errors="0")
    if not findings:
        ET.SubElement(suite, "testcase", name="no kernel reports", classname="kernel")
    for finding in findings:
        case = ET.SubElement(suite, "testcase", name=finding["title"], classname=f"kernel.{finding['kind']}")
        text = _clean(f"test: {finding.get('test') or '-'}\n\n{finding['report']}")
        if finding.get("status") == "new":
            failure = ET.SubElement(case, "failure", message=_clean(finding["title"]), type=finding["kind"])
            failure.text = text
        else:
            ET.SubElement(case, "system-out").text = _clean(f"{finding.get('status')}: {finding.get('note', '')}\n\n"
                                                            + text)
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"
