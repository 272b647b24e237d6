"""Which test a kernel report belongs to.

    log_test_spans(data: bytes | str, *, ktap=None) -> list[TestSpan]
        the IGT binaries, subtests and dynamic subtests (from the "[IGT] <binary>: ..."
        lines IGT writes to the kernel log), rig's own guest scripts and the cases of KTAP
        programs (their "rig: start NAME" and "rig: end NAME" lines: NAME is script:x, or
        ktap:suite.case, which rig's guest programs write themselves around each case)
        and the KUnit suites and cases (KTAP) of a log; give `ktap` when the log's KTAP is
        parsed already
    attribute(finding, spans, source) -> Attribution
        the one place a finding gets its test: (test, placement, also), see below
    started_by(spans, task, *, before=None) -> list[TestSpan]
        the spans whose first line that task printed (printk caller id "T123"), in order
    running_test(spans, *, offset=None, timestamp=None) -> TestSpan | None
        the innermost test whose span holds a log offset (same log) or a printk time
        (a finding from another capture of the same boot, e.g. dmesg over SSH)

A test that never logged its end (the kernel died in it) runs to the end of the log.

How a finding is placed, best evidence first (with printk caller ids every console line
says which task printed it, and the spans say which task started which test):
  pid   kmemleak names the task that allocated each leaked object, a hung-task report
        the task that is blocked, any other report the task that printed it: the last
        test that task started (an IGT subtest before its binary). A report belongs to
        that test even after the test's end line (its teardown still runs). A leak's
        objects may come from several tests: the first is the test, the others are
        `also`.
  time  the innermost test running at the report's console offset (a console finding)
        or at its printk time (a dmesg finding); a leak whose objects no test's task
        allocated (an IRQ thread's, a worker's) at the time its oldest object was
        allocated, when rig's analysis could tell (rig.analysis: the age kmemleak gives
        each object, counted back from when rig read the report)
  boot  the report came before any test started

An IGT test that a plan's script ran is reported as the script (the plan's test): runs,
repeats and bisection count and cut the plan by the tests it names.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum

from rig.results import TestKind, TestName
from rig.splat.igt import result_of_exit_code, word_result
from rig.splat.ktap import KtapRun, KtapTest, parse_ktap
from rig.splat.model import Finding, Source
from rig.splat.text import decode, split_prefix

_IGT = re.compile(r"\[IGT\] (\S+): (executing|exiting, ret=(-?\d+)|starting (dynamic )?subtest (\S+)|"
                  r"finished subtest (\S+), (\w+))")
_SCRIPT = re.compile(r"rig: (start|end) (\S+)")


@dataclass(frozen=True)
class TestSpan:
    __test__ = False  # not a pytest test class, despite the name

    framework: str  # "igt", "kunit", "script" or "ktap"
    name: str  # igt@binary[@subtest[@dynamic]], the KUnit path suite.case[.param], script:name or ktap:path
    start: int  # log offset of the line that started it
    end: int  # log offset just past the line that ended it (end of log if it never ended)
    start_time: float | None
    end_time: float | None
    result: str = ""  # pass/fail/skip/... when the log says, "" when it never finished
    task: str = ""  # printk caller id ("T123") of the line that started it, when the log has them

    @property
    def test(self) -> TestName:
        if self.framework in ("script", "ktap"):
            return TestName(TestKind(self.framework), self.name.removeprefix(f"{self.framework}:"))
        return TestName(TestKind(self.framework), self.name.removeprefix("igt@"))

    def holds(self, *, offset: int | None = None, timestamp: float | None = None) -> bool:
        if offset is not None:
            return self.start <= offset < self.end
        if timestamp is not None and self.start_time is not None:
            return self.start_time <= timestamp and (self.end_time is None or timestamp <= self.end_time)
        return False


def log_test_spans(data: bytes | str, *, ktap: KtapRun | None = None) -> list[TestSpan]:
    text = decode(data)
    spans = _igt_spans(text) + _script_spans(text)
    for test in (ktap if ktap is not None else parse_ktap(text)).tests:
        spans.extend(_kunit_spans(test))
    spans.sort(key=lambda s: (s.start, -s.end))
    return spans


def running_test(spans: list[TestSpan], *, offset: int | None = None,
                 timestamp: float | None = None) -> TestSpan | None:
    """The innermost (shortest) span holding the point; offsets win over times."""
    holding = [s for s in spans if s.holds(offset=offset, timestamp=timestamp)]
    if not holding:
        return None
    if offset is not None:
        return min(holding, key=lambda s: s.end - s.start)
    return max(holding, key=lambda s: s.start_time or 0.0)


def started_by(spans: Sequence[TestSpan], task: str, *, before: int | None = None) -> list[TestSpan]:
    """The spans `task` started (before a log offset, when given), in log order: a
    report printed by that task belongs to the last of them, even one already finished."""
    return [s for s in spans if s.task == task and (before is None or s.start <= before)]


class Placement(StrEnum):
    """How a finding's test was found (report.json's "attribution")."""

    PID = "pid"
    TIME = "time"
    BOOT = "boot"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class Attribution:
    test: TestName | None
    placement: Placement
    also: tuple[TestName, ...] = ()  # other tests the same report came from (a leak's objects)


def attribute(finding: Finding, spans: Sequence[TestSpan], source: Source) -> Attribution:
    """The test `finding` belongs to. `spans` come from the console log: only a console
    finding can be placed by its offset in it, a dmesg finding by its printk time, a
    kmemleak finding by the tasks that allocated its objects, else by its allocation
    time (its `timestamp`, set only when the analysis knew it)."""
    by_pid = tuple(dict.fromkeys(_in_script(spans, test)
                                 for test in _tests_of_tasks(spans, [f"T{pid}" for pid in finding.pids])))
    if by_pid:
        return Attribution(by_pid[0], Placement.PID, by_pid[1:])
    if finding.caller.startswith("T"):
        mine = started_by(spans, finding.caller, before=finding.start if source is Source.CONSOLE else None)
        if mine:
            return Attribution(_in_script(spans, mine[-1].test), Placement.PID)
    if source is Source.CONSOLE:
        span = running_test(spans, offset=finding.start)
        started_before = any(s.start < finding.start for s in spans if s.framework != "kunit")
    elif source in (Source.DMESG, Source.KMEMLEAK) and finding.timestamp is not None:
        span = running_test(spans, timestamp=finding.timestamp)
        started_before = any(s.start_time is not None and s.start_time < finding.timestamp
                             for s in spans if s.framework != "kunit")
    else:
        return Attribution(None, Placement.UNKNOWN)
    if span is not None:
        return Attribution(_in_script(spans, span.test), Placement.TIME)
    # KUnit runs at boot: its suites do not make a later report "after the tests started"
    return Attribution(None, Placement.UNKNOWN if started_before else Placement.BOOT)


def _in_script(spans: Sequence[TestSpan], test: TestName) -> TestName:
    """The plan's test for `test`: an IGT test that a plan script ran is the script's (the
    plan names the script, not the IGT test, so runs, repeats and bisection go by it)."""
    if test.kind is not TestKind.IGT:
        return test
    for own in (s for s in spans if s.framework == "igt" and s.test == test):
        for outer in spans:
            if outer.framework == "script" and outer.start <= own.start < outer.end:
                return outer.test
    return test


def _tests_of_tasks(spans: Sequence[TestSpan], tasks: Sequence[str]) -> tuple[TestName, ...]:
    """For each task, the last IGT subtest it started, else the last binary or script it
    started; each test once, in the tasks' order."""
    tests: dict[TestName, None] = {}
    for task in tasks:
        names = [s.test for s in started_by(spans, task)]
        subtests = [n for n in names if n.is_igt_subtest]
        if subtests or names:
            tests.setdefault((subtests or names)[-1], None)
    return tuple(tests)


@dataclass
class _Open:
    name: str
    start: int
    start_time: float | None
    task: str = ""


@dataclass(frozen=True)
class _Line:
    start: int
    end: int  # the offset of its newline (or of the log's end)
    message: str  # without the printk prefix
    time: float | None
    caller: str


def _line_at(text: str, start: int, end: int) -> _Line:
    """The line holding text[start:end], its printk prefix parsed."""
    line_start = text.rfind("\n", 0, start) + 1
    line_end = text.find("\n", end)
    line_end = len(text) if line_end < 0 else line_end
    message, ts, caller = split_prefix(text[line_start:line_end])
    return _Line(line_start, line_end, message, ts, caller)


def _script_spans(text: str) -> list[TestSpan]:
    out: list[TestSpan] = []
    opened: dict[str, _Open] = {}
    for m in _SCRIPT.finditer(text):
        line = _line_at(text, m.start(), m.end())
        if not line.message.startswith("rig: "):  # rig's own kernel-log line, not a quote of one
            continue
        name = m.group(2)
        framework = "ktap" if name.startswith("ktap:") else "script"
        if m.group(1) == "start":
            opened[name] = _Open(name, line.start, line.time, line.caller)
        elif name in opened:
            span = opened.pop(name)
            out.append(TestSpan(framework, name, span.start, line.end + 1, span.start_time, line.time, "", span.task))
    out += [TestSpan("ktap" if n.startswith("ktap:") else "script", n, s.start, len(text), s.start_time, None, "",
                     s.task) for n, s in opened.items()]
    return out


def _igt_spans(text: str) -> list[TestSpan]:
    out: list[TestSpan] = []
    opened: dict[str, _Open] = {}  # igt name -> open span
    current: dict[str, str] = {}  # binary -> running subtest name
    for m in _IGT.finditer(text):
        line = _line_at(text, m.start(), m.end())
        line_start, line_end, ts, caller = line.start, line.end, line.time, line.caller
        binary = m.group(1)
        top = f"igt@{binary}"
        what = m.group(2)

        def close(name: str, result: str = "") -> None:
            span = opened.pop(name, None)
            if span is not None:
                out.append(TestSpan("igt", name, span.start, line_end + 1, span.start_time, ts, result, span.task))

        if what == "executing":
            for name in [n for n in opened if n == top or n.startswith(top + "@")]:
                close(name)
            opened[top] = _Open(top, line_start, ts, caller)
        elif what.startswith("exiting"):
            for name in [n for n in opened if n.startswith(top + "@")]:
                close(name)
            code = int(m.group(3))
            close(top, result_of_exit_code(code))
        elif what.startswith("starting"):
            if top not in opened:
                opened[top] = _Open(top, line_start, ts, caller)
            if m.group(4):  # dynamic subtest inside the running subtest
                parent = current.get(binary, top)
                opened[f"{parent}@{m.group(5)}"] = _Open(f"{parent}@{m.group(5)}", line_start, ts, caller)
            else:
                for name in [n for n in opened if n.startswith(top + "@")]:
                    close(name)
                current[binary] = f"{top}@{m.group(5)}"
                opened[current[binary]] = _Open(current[binary], line_start, ts, caller)
        else:  # finished subtest NAME, RESULT: NAME is a subtest or a dynamic subtest
            result = word_result(m.group(7))
            parent = current.get(binary, "")
            dynamic = f"{parent}@{m.group(6)}"
            if parent and dynamic in opened:
                close(dynamic, result)
            else:
                for name in [n for n in opened if n.startswith(f"{top}@{m.group(6)}@")]:
                    close(name)
                close(f"{top}@{m.group(6)}", result)
    for name, span in opened.items():
        out.append(TestSpan("igt", name, span.start, len(text), span.start_time, None, "", span.task))
    return out


def _kunit_spans(test: KtapTest) -> list[TestSpan]:
    result = "" if test.status == "error" else test.status
    out = [TestSpan("kunit", test.path, test.start, test.end + 1, test.start_time, test.end_time, result)]
    for sub in test.subtests:
        out.extend(_kunit_spans(sub))
    return out
