"""KUnit results (KTAP) read from a console log or dmesg.

    parse_ktap(data: bytes | str) -> KtapRun

KUnit prints KTAP on the console: a "KTAP version 1" (or "TAP version 14") header, a
plan "1..N", then one result line per test ("ok 3 name", "not ok 4 name",
"ok 5 name # SKIP reason"). A suite nests its cases one indentation level deeper,
announced by "# Subtest: name"; a parameterised case nests its parameters the same way.
Kernel messages from elsewhere interleave freely and are ignored.

    KtapRun.tests        top-level results (usually suites), each a KtapTest
    KtapRun.errors       what could not be read: lines out of place, a run cut short
    KtapRun.leaves()     every innermost result (cases, parameters), depth first
    KtapRun.counts()     {"pass": n, "fail": n, "skip": n, "error": n, ...} over leaves
    KtapTest.status      "pass" | "fail" | "skip" | "todo" | "error" (no result line:
                         the kernel crashed or the log ended while it ran)
    KtapTest.path        "suite.case" or "suite.case.parameter"
    KtapTest.start/end   offsets in the decoded log: from the line after the previous
                         result at the same level (or the nested header) to the end of
                         the test's own result line; what the test printed lies in between
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from rig.splat.text import decode, split_prefix

_VERSION = re.compile(r"^(\s*)(?:KTAP|TAP) version \d+\s*$")
_SUBTEST = re.compile(r"^(\s*)# Subtest: (.+?)\s*$")
_PLAN = re.compile(r"^(\s*)1\.\.(\d+)\s*$")
_RESULT = re.compile(r"^(\s*)(not ok|ok) (\d+)(?: -)?(?: ([^#]*?))?\s*(?:#\s*(\w+)\b\s*(.*?))?\s*$")
_DIAG = re.compile(r"^(\s*)# ?(.*)$")


@dataclass(frozen=True)
class KtapTest:
    name: str
    status: str
    number: int
    path: str
    reason: str = ""  # the SKIP/TODO reason, or why the result is an error
    diagnostics: tuple[str, ...] = ()  # "# ..." lines the test printed at its level
    subtests: tuple[KtapTest, ...] = ()
    start: int = 0
    end: int = 0
    start_time: float | None = None
    end_time: float | None = None


@dataclass(frozen=True)
class KtapRun:
    tests: tuple[KtapTest, ...]
    errors: tuple[str, ...] = ()

    def leaves(self) -> list[KtapTest]:
        out: list[KtapTest] = []

        def walk(test: KtapTest) -> None:
            if not test.subtests or test.status == "error":
                out.append(test)  # a suite cut short counts as an error of its own
            for sub in test.subtests:
                walk(sub)

        for test in self.tests:
            walk(test)
        return out

    def counts(self) -> dict[str, int]:
        return dict(Counter(t.status for t in self.leaves()))

    @property
    def ok(self) -> bool:
        return not self.errors and all(t.status in ("pass", "skip", "todo") for t in self.leaves())


@dataclass
class _Level:
    """A KTAP document (or nested one) being read."""

    indent: int
    name: str
    start: int
    start_time: float | None
    children: list[KtapTest] = field(default_factory=list)
    diagnostics: list[str] = field(default_factory=list)
    plan: int | None = None
    next_start: int = -1  # where the next test at this level begins
    next_time: float | None = None


def _status(ok: str, directive: str | None) -> str:
    directive = (directive or "").upper()
    if directive == "SKIP":
        return "skip"
    if directive in ("TODO", "XFAIL"):
        return "todo"
    return "pass" if ok == "ok" else "fail"


def parse_ktap(data: bytes | str) -> KtapRun:
    """Every KTAP document in `data`, innermost tests nested under their suites."""
    text = decode(data)
    stack: list[_Level] = []
    done: list[KtapTest] = []
    errors: list[str] = []
    pending_name: tuple[int, str] | None = None  # "# Subtest:" seen before its header
    pos = 0
    size = len(text)
    while pos < size:
        end = text.find("\n", pos)
        if end < 0:
            end = size
        msg, ts, _ = split_prefix(text[pos:end])
        line_start, pos = pos, end + 1
        m = _VERSION.match(msg)
        if m is not None:
            indent = len(m.group(1))
            if stack and indent <= stack[-1].indent:
                _close_to(stack, indent - 1, done, errors, line_start, ts)
            name = pending_name[1] if pending_name and pending_name[0] == indent else ""
            stack.append(_Level(indent, name, line_start, ts, next_start=pos, next_time=ts))
            pending_name = None
            continue
        if not stack:
            m = _RESULT.match(msg)
            if m is None or len(m.group(1)) != 0:
                continue
            # a result without a header: the log began in the middle of a run
            stack.append(_Level(0, "", line_start, ts, next_start=line_start, next_time=ts))
        m = _SUBTEST.match(msg)
        if m is not None:
            indent = len(m.group(1))
            if indent == stack[-1].indent and not stack[-1].name:
                stack[-1].name = m.group(2)
            else:
                pending_name = (indent, m.group(2))
            continue
        m = _PLAN.match(msg) or _RESULT.match(msg)
        if m is not None and len(m.group(1)) > stack[-1].indent:
            # older kernels open a nested level with "# Subtest:" and no header of its own
            indent = len(m.group(1))
            name = pending_name[1] if pending_name and pending_name[0] == indent else ""
            stack.append(_Level(indent, name, line_start, ts, next_start=line_start, next_time=ts))
            pending_name = None
        m = _PLAN.match(msg)
        if m is not None and len(m.group(1)) == stack[-1].indent:
            stack[-1].plan = int(m.group(2))
            continue
        m = _RESULT.match(msg)
        if m is not None:
            _result(stack, m, line_start, end, ts, done, errors)
            pending_name = None
            continue
        m = _DIAG.match(msg)
        if m is not None and len(m.group(1)) >= stack[-1].indent:
            stack[-1].diagnostics.append(m.group(2))
    if stack:
        _close_to(stack, -1, done, errors, size, None)
    return KtapRun(tuple(done), tuple(errors))


def _result(stack: list[_Level], m: re.Match[str], start: int, end: int, ts: float | None,
            done: list[KtapTest], errors: list[str]) -> None:
    indent = len(m.group(1))
    nested: _Level | None = None
    while stack and stack[-1].indent > indent:
        level = stack.pop()
        if nested is not None:
            # a level between ours and the result's was never closed by its own result
            errors.append(f"{_name_of(level)}: no result line")
            level.children.append(_incomplete(nested, level, end))
        nested = level
    if not stack:
        stack.append(_Level(indent, "", start, ts, next_start=start, next_time=ts))
    level = stack[-1]
    name = (m.group(4) or "").strip() or (nested.name if nested else "")
    parent_path = _path_of(stack)
    test = KtapTest(
        name=name,
        status=_status(m.group(2), m.group(5)),
        number=int(m.group(3)),
        path=f"{parent_path}.{name}" if parent_path else name,
        reason=(m.group(6) or "").strip(),
        diagnostics=tuple(level.diagnostics),
        subtests=tuple(_rename(nested.children, parent_path, name)) if nested else (),
        start=nested.start if nested else level.next_start,
        end=end,
        start_time=nested.start_time if nested else level.next_time,
        end_time=ts,
    )
    if nested is not None and nested.plan is not None and len(nested.children) < nested.plan:
        errors.append(f"{test.path}: {nested.plan} tests planned, {len(nested.children)} reported")
    level.children.append(test)
    level.diagnostics = []
    level.next_start, level.next_time = end + 1, ts
    if len(stack) == 1 and stack[0].indent == indent and indent == 0 and level.plan is not None \
            and len(level.children) >= level.plan:
        done.extend(level.children)
        stack.pop()


def _path_of(stack: list[_Level]) -> str:
    return ".".join(level.name for level in stack if level.name)


def _rename(children: list[KtapTest], parent_path: str, name: str) -> list[KtapTest]:
    """Children were read before their parent's name was known; give them full paths."""
    prefix = f"{parent_path}.{name}" if parent_path else name
    out = []
    for child in children:
        path = f"{prefix}.{child.name}"
        out.append(KtapTest(child.name, child.status, child.number, path, child.reason, child.diagnostics,
                            tuple(_rename(list(child.subtests), prefix, child.name)), child.start, child.end,
                            child.start_time, child.end_time))
    return out


def _name_of(level: _Level) -> str:
    return level.name or f"KTAP document at offset {level.start}"


def _incomplete(nested: _Level | None, level: _Level, end: int) -> KtapTest:
    """A test whose result line never came: it was running when the kernel died or the log ended."""
    children = nested.children if nested else level.children
    return KtapTest(
        name=level.name,
        status="error",
        number=len(children) + 1,
        path=level.name,
        reason="no result line: the kernel crashed or the log ended while it ran",
        diagnostics=tuple(level.diagnostics),
        subtests=tuple(_rename(level.children, "", level.name)),
        start=level.start,
        end=end,
        start_time=level.start_time,
    )


def _close_to(stack: list[_Level], indent: int, done: list[KtapTest], errors: list[str], end: int,
              ts: float | None) -> None:
    """Close every level deeper than `indent` that never got its result line."""
    while stack and stack[-1].indent > indent:
        level = stack.pop()
        finished_doc = not stack and level.plan is not None and len(level.children) >= level.plan
        if finished_doc or (not stack and not level.name):
            if level.plan is not None and len(level.children) < level.plan:
                errors.append(f"{_name_of(level)}: {level.plan} tests planned, {len(level.children)} reported")
            done.extend(level.children)
            continue
        errors.append(f"{_name_of(level)}: no result line (the kernel crashed or the log ended)")
        test = _incomplete(None, level, end)
        if stack:
            stack[-1].children.append(test)
        else:
            done.append(test)
