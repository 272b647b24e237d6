"""Which test was running when the kernel reported a problem.

    log_test_spans(data: bytes | str) -> list[TestSpan]
        the IGT binaries, subtests and dynamic subtests (from the "[IGT] <binary>: ..."
        lines IGT writes to the kernel log), rig's own guest scripts (its "rig: start NAME"
        and "rig: end NAME" lines) and the KUnit suites and cases (KTAP) of a log
    started_by(spans, task, *, before=None) -> list[TestSpan]
        the spans whose first line that task printed (printk caller id "T123"), in order
    running_test(spans, *, offset=None, timestamp=None) -> TestSpan | None
        the innermost test whose span holds a log offset (same log) or a printk time
        (a finding from another capture of the same boot, e.g. dmesg over SSH)
    attribute(findings, spans) -> list[tuple[Finding, TestSpan | None]]

A test that never logged its end (the kernel died in it) runs to the end of the log.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rig.splat.ktap import KtapTest, parse_ktap
from rig.splat.model import Finding
from rig.splat.text import decode, split_prefix

_IGT = re.compile(r"\[IGT\] (\S+): (executing|exiting, ret=(-?\d+)|starting (dynamic )?subtest (\S+)|"
                  r"finished subtest (\S+), (\w+))")
_SCRIPT = re.compile(r"rig: (start|end) (\S+)")
_IGT_WORDS = {"SUCCESS": "pass", "FAIL": "fail", "SKIP": "skip", "CRASH": "crash", "TIMEOUT": "timeout"}


@dataclass(frozen=True)
class TestSpan:
    __test__ = False  # not a pytest test class, despite the name

    framework: str  # "igt" or "kunit"
    name: str  # igt@binary[@subtest[@dynamic]], or the KUnit path suite.case[.param]
    start: int  # log offset of the line that started it
    end: int  # log offset just past the line that ended it (end of log if it never ended)
    start_time: float | None
    end_time: float | None
    result: str = ""  # pass/fail/skip/... when the log says, "" when it never finished
    task: str = ""  # printk caller id ("T123") of the line that started it, when the log has them

    def holds(self, *, offset: int | None = None, timestamp: float | None = None) -> bool:
        if offset is not None:
            return self.start <= offset < self.end
        if timestamp is not None and self.start_time is not None:
            return self.start_time <= timestamp and (self.end_time is None or timestamp <= self.end_time)
        return False


def log_test_spans(data: bytes | str) -> list[TestSpan]:
    text = decode(data)
    spans = _igt_spans(text) + _script_spans(text)
    for test in parse_ktap(text).tests:
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


def attribute(findings: list[Finding], spans: list[TestSpan]) -> list[tuple[Finding, TestSpan | None]]:
    return [(f, running_test(spans, offset=f.start)) for f in findings]


def started_by(spans: list[TestSpan], task: str, *, before: int | None = None) -> list[TestSpan]:
    """The spans `task` started (before a log offset, when given), in log order: a
    report printed by that task belongs to the last of them, even one already finished."""
    return [s for s in spans if s.task == task and (before is None or s.start <= before)]


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
        if m.group(1) == "start":
            opened[name] = _Open(name, line.start, line.time, line.caller)
        elif name in opened:
            span = opened.pop(name)
            out.append(TestSpan("script", name, span.start, line.end + 1, span.start_time, line.time, "", span.task))
    out += [TestSpan("script", n, s.start, len(text), s.start_time, None, "", s.task) for n, s in opened.items()]
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
            close(top, {0: "pass", 77: "skip", 98: "fail", 112: "abort"}.get(code, "fail"))
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
            result = _IGT_WORDS.get(m.group(7), m.group(7).lower())
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
