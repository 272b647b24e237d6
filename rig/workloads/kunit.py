"""KUnit: suites built into the kernel run at boot and print KTAP on the console; rig
reads the plan's suites from there. A suite this kernel does not have is listed as
absent (the DRM suites differ between kernel versions; `--profile kunit` builds them)."""

from __future__ import annotations

import fnmatch
from typing import Any

from rig.workloads import ABSENT, FAIL, PASS, SKIP, TestResult

_STATUS = {"ok": PASS, "pass": PASS, "not ok": FAIL, "fail": FAIL, "skip": SKIP, "todo": SKIP}


def _cases(console_text: str) -> list[tuple[str, str, str, float | None]]:
    """(suite, case, raw status, duration) for every KUnit case on the console."""
    try:
        from rig.splat import ktap  # type: ignore[attr-defined]
    except ImportError:
        return []
    parsed: Any = ktap.parse_ktap(console_text)
    cases = []
    for suite in getattr(parsed, "suites", parsed) or []:
        for case in getattr(suite, "cases", ()):
            raw = str(getattr(case, "status", getattr(case, "result", "")))
            cases.append((str(suite.name), str(case.name), raw, getattr(case, "duration_s", None)))
    return cases


def results_from_console(console_text: str, suites: tuple[str, ...]) -> list[TestResult]:
    if not suites:
        return []
    cases = _cases(console_text)
    results: list[TestResult] = []
    for pattern in suites:
        matched = [c for c in cases if fnmatch.fnmatchcase(c[0], pattern)]
        if not matched:
            results.append(TestResult(f"kunit:{pattern}", "kunit", ABSENT, "not in this kernel", None,
                                      detail="no KTAP output for this suite on the console"))
            continue
        for suite, case, raw, duration in matched:
            status = _STATUS.get(raw.lower(), FAIL if "not" in raw.lower() else PASS)
            results.append(TestResult(f"kunit:{suite}.{case}", "kunit", status, raw, duration))
    return results
