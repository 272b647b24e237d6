"""IGT results: igt_runner's results.json, a test binary's own output, and exit codes.

    parse_igt_output(stdout, *, binary="", exit_code=None) -> IgtRun
        what one IGT binary printed: "Starting subtest: X", "Subtest X: SUCCESS (0.001s)",
        "Starting dynamic subtest: Y", "Dynamic subtest Y: FAIL (0.100s)"; a subtest that
        started and never reported is "incomplete" (or "crash"/"timeout" from the exit code)
    parse_results_json(data) -> IgtRun
        igt_runner's results.json ("tests": {"igt@binary@subtest[@dynamic]": {...}})
    result_of_exit_code(code) -> str
        0 pass, 77 skip, 78 timeout, 79 notrun (no such subtest / bad option),
        98 fail, 112 abort, a signal (negative, or 128+N from a shell) crash
    RESULT_STATUS[result] -> TestStatus
        what an IGT result counts as in rig's verdict

Every result uses igt_runner's names: pass, fail, skip, crash, timeout, incomplete,
abort, notrun, warn, dmesg-warn, dmesg-fail. Test names use igt_runner's form
igt@<binary>[@<subtest>[@<dynamic subtest>]].
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass
from typing import Any

from rig.errors import UserError
from rig.results import TestStatus

EXIT_SUCCESS, EXIT_SKIP, EXIT_TIMEOUT, EXIT_INVALID, EXIT_FAILURE, EXIT_ABORT = 0, 77, 78, 79, 98, 112

# The one map of IGT's words, for everything rig reads from IGT: exit codes (a test
# binary's, or "[IGT] x: exiting, ret=N" in the kernel log), the words a binary prints for
# a finished subtest (also in the kernel log's "[IGT] x: finished subtest y, WORD"), and
# igt_runner's result names -> rig's statuses.
EXIT_RESULT = {EXIT_SUCCESS: "pass", EXIT_SKIP: "skip", EXIT_TIMEOUT: "timeout", EXIT_INVALID: "notrun",
               EXIT_FAILURE: "fail", EXIT_ABORT: "abort"}
WORD_RESULT = {"SUCCESS": "pass", "FAIL": "fail", "SKIP": "skip", "CRASH": "crash", "TIMEOUT": "timeout",
               "ABORT": "abort", "NOTRUN": "notrun", "WARN": "warn"}
# dmesg-warn is a passing test during which the kernel logged a warning: the warning
# itself becomes a finding, the test passed. A test that never finished (incomplete,
# abort) crashed as far as the verdict goes.
RESULT_STATUS = {
    "pass": TestStatus.PASS,
    "dmesg-warn": TestStatus.WARN,
    "warn": TestStatus.WARN,
    "skip": TestStatus.SKIP,
    "notrun": TestStatus.SKIP,
    "fail": TestStatus.FAIL,
    "dmesg-fail": TestStatus.FAIL,
    "timeout": TestStatus.TIMEOUT,
    "crash": TestStatus.CRASH,
    "incomplete": TestStatus.CRASH,
    "abort": TestStatus.CRASH,
}
RESULTS = tuple(RESULT_STATUS)
# what IgtResult.failed counts: everything but a clean pass or skip
_BAD = frozenset(r for r, status in RESULT_STATUS.items() if status.failing or status is TestStatus.WARN)


def word_result(word: str) -> str:
    """igt_runner's result name for a word IGT printed ("SUCCESS" -> "pass")."""
    return WORD_RESULT.get(word, word.lower())


_VERSION = re.compile(r"^IGT-Version: (\S+)")
_START = re.compile(r"^Starting (dynamic )?subtest: (\S+)")
_END = re.compile(r"^(Dynamic s|S)ubtest (\S+): ([A-Z]+)(?: \((\d+(?:\.\d+)?)s\))?")


@dataclass(frozen=True)
class IgtResult:
    name: str  # igt@binary[@subtest[@dynamic]]
    result: str
    duration: float | None = None  # seconds
    out: str = ""
    err: str = ""
    dmesg: str = ""

    @property
    def binary(self) -> str:
        return self.name.split("@")[1] if self.name.count("@") >= 1 else self.name

    @property
    def subtest(self) -> str:
        parts = self.name.split("@")
        return parts[2] if len(parts) > 2 else ""

    @property
    def dynamic(self) -> str:
        parts = self.name.split("@")
        return parts[3] if len(parts) > 3 else ""

    @property
    def failed(self) -> bool:
        return self.result in _BAD


@dataclass(frozen=True)
class IgtRun:
    results: tuple[IgtResult, ...]
    exit_code: int | None = None
    version: str = ""

    def counts(self) -> dict[str, int]:
        return dict(Counter(r.result for r in self.results))

    @property
    def failed(self) -> tuple[IgtResult, ...]:
        return tuple(r for r in self.results if r.failed)


def result_of_exit_code(code: int | None) -> str:
    """igt_runner's name for how an IGT binary exited."""
    if code is None:
        return "incomplete"
    if code < 0 or code > 128:
        return "crash"  # killed by a signal (negative from Python, 128+N from a shell)
    return EXIT_RESULT.get(code, "fail")


def parse_igt_output(stdout: bytes | str, *, binary: str = "", exit_code: int | None = None) -> IgtRun:
    """Subtest results from what one IGT binary printed on its standard output."""
    text = stdout.decode("utf-8", "replace") if isinstance(stdout, bytes) else stdout
    binary = binary.rsplit("/", 1)[-1]
    version = ""
    results: list[IgtResult] = []
    open_subtest = ""
    open_dynamic = ""
    for raw in text.splitlines():
        line = raw.strip()
        if not version:
            m = _VERSION.match(line)
            if m is not None:
                version = m.group(1)
                continue
        m = _START.match(line)
        if m is not None:
            if m.group(1):
                open_dynamic = m.group(2)
            else:
                open_subtest, open_dynamic = m.group(2), ""
            continue
        m = _END.match(line)
        if m is not None:
            dynamic = m.group(1) == "Dynamic s"
            name = f"igt@{binary}@{open_subtest}@{m.group(2)}" if dynamic else f"igt@{binary}@{m.group(2)}"
            result = word_result(m.group(3))
            duration = float(m.group(4)) if m.group(4) else None
            results.append(IgtResult(name, result, duration))
            if dynamic:
                open_dynamic = ""
            else:
                open_subtest = open_dynamic = ""
    # a subtest that started and never finished: the binary died in it
    died_as = result_of_exit_code(exit_code)
    if died_as in ("pass", "skip", "fail", "notrun"):
        died_as = "incomplete"
    if open_dynamic:
        results.append(IgtResult(f"igt@{binary}@{open_subtest}@{open_dynamic}", died_as))
    if open_subtest:
        results.append(IgtResult(f"igt@{binary}@{open_subtest}", died_as))
    if not results and exit_code is not None:
        results.append(IgtResult(f"igt@{binary}", result_of_exit_code(exit_code)))
    return IgtRun(tuple(results), exit_code, version)


def parse_results_json(data: bytes | str) -> IgtRun:
    """igt_runner's results.json: one result per test name, in name order."""
    try:
        doc = json.loads(data)
    except (ValueError, RecursionError) as exc:  # and UnicodeDecodeError, a ValueError; nesting too deep
        raise UserError(f"results.json is not valid JSON: {exc}",
                        hint="give the results.json that igt_runner (or igt_resume) wrote") from None
    tests = doc.get("tests") if isinstance(doc, dict) else None
    if not isinstance(tests, dict):
        raise UserError("results.json has no \"tests\" object",
                        hint="give the results.json that igt_runner (or igt_resume) wrote")
    results = [_json_result(name, entry) for name, entry in sorted(tests.items()) if isinstance(entry, dict)]
    version = ""
    for entry in tests.values():
        words = str(entry.get("igt-version") or "").removeprefix("IGT-Version: ").split() \
            if isinstance(entry, dict) else []
        if words:  # a blank version (only spaces) names none: look on
            version = words[0]
            break
    return IgtRun(tuple(results), None, version)


def _json_result(name: str, entry: dict[str, Any]) -> IgtResult:
    time = entry.get("time")
    duration = None
    if isinstance(time, dict) and isinstance(time.get("start"), (int, float)) \
            and isinstance(time.get("end"), (int, float)):
        duration = float(time["end"]) - float(time["start"])
    return IgtResult(
        name=name,
        result=str(entry.get("result", "notrun")),
        duration=duration,
        out=str(entry.get("out", "")),
        err=str(entry.get("err", "")),
        dmesg=str(entry.get("dmesg", "")),
    )
