"""KUnit: suites built into the kernel run at boot and print KTAP on the console; rig
reads the plan's suites from there. A suite this kernel does not have is listed as
absent (the DRM suites differ between kernel versions; `--profile kunit` builds them)."""

from __future__ import annotations

import fnmatch

from rig.splat.ktap import parse_ktap
from rig.workloads import ABSENT, CRASH, FAIL, PASS, SKIP, TestResult

_STATUS = {"pass": PASS, "fail": FAIL, "skip": SKIP, "todo": SKIP, "error": CRASH}


def _cases(console_text: str) -> list[tuple[str, str, str, float | None, str]]:
    """(suite, case path, status, duration, reason) for every innermost KUnit result."""
    run = parse_ktap(console_text)
    cases = []
    for test in run.leaves():
        suite = test.path.split(".", 1)[0]
        duration = (test.end_time - test.start_time
                    if test.start_time is not None and test.end_time is not None else None)
        cases.append((suite, test.path, test.status, duration, test.reason))
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
        for _, path, raw, duration, reason in matched:
            results.append(TestResult(f"kunit:{path}", "kunit", _STATUS.get(raw, FAIL), raw, duration,
                                      detail=reason))
    return results
