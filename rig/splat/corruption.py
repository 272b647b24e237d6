"""Whether a report came out damaged: cut short by a dying console, or mixed with other
output so that its title may name the wrong thing.

The checks are syzkaller's (pkg/report: linux.go isCorrupted, linuxCorruptedTitles and
linuxStackParams.corruptedLines), written for rig's reports: a damaged report still gets
a title, and rig marks it so that nobody takes the title for certain.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from rig.splat.frames import parse_frame

# A printk time inside a title: two lines ran into one (linuxCorruptedTitles); titles
# have their numbers normalised already.
_TIME_IN_TITLE = re.compile(r"\[ *(?:\d+|NUM)\.(?:\d+|NUM)\]")
# Lines that start a stack trace; each must be followed by a frame (stackStartRes). Not
# lockdep's "stack backtrace:", which is followed by the CPU line and then "Call Trace:".
_STACK_START = re.compile(r"Call [Tt]race|Allocated:|Allocated by task \d+:|Freed:|Freed by task \d+:|"
                          r"(?<!k) backtrace(?: \(crc [0-9a-f]*\))?:|^backtrace(?: \(crc [0-9a-f]*\))?:|"
                          r"Backtrace:|Uninit was stored to memory at")
# Plain words of which every such line holds one (each a scan of the report: few and short).
_STACK_START_WORDS = ("Call ", "Allocated", "Freed", "acktrace", "Uninit was stored")
# How far below a stack start its first frame may be (x86's <TASK>/<IRQ> markers, arm64's
# register dump lines).
_FRAME_WITHIN = 15
# Fault injection prints its own stack, which interleaves with reports (corruptedLines).
_FAULT_INJECTION_FRAME = re.compile(r"^should_fail(?:slab|_usercopy|_alloc_page|_ex)?$")


def damaged(title: str, msgs: list[str], *, needs_stack: bool) -> bool:
    """The report in `msgs` (header line first) or its title shows damage.

    needs_stack: the kind of report always prints a stack trace under a trace header, so
    one without any, or a trace header without frames, was cut short or mixed up; the
    traces of other reports (lockdep's "lock held when returning to user space", KCSAN,
    KMSAN, a workqueue lockup) are not checked.
    """
    if _TIME_IN_TITLE.search(title):
        return True
    if not needs_stack:
        return False  # a report without a trace of its own says nothing by its traces
    # One search of the whole report finds its few trace headers; lines are read one by
    # one only below them (a report runs to hundreds of lines, most of them frames).
    joined = "\n".join(msgs)
    starts = _trace_header_lines(joined, msgs)
    if not starts:
        return True  # no trace at all
    for i in starts:
        following = msgs[i + 1:i + 1 + _FRAME_WITHIN]
        if len(following) < 2:
            return True  # the log ends at the trace's first line
        found = False
        for line in following:
            if _starts_stack(line):
                break  # the next trace starts before this one showed a frame
            if parse_frame(line) is not None or "(stack is not available)" in line:
                found = True
                break
        if not found:
            return True  # a trace header with no frame below it
    return "should_fail" in joined and any(_fault_injection(msg) for msg in msgs)


def _scan(word: str) -> Callable[[str, int], int]:
    """A search for `word`: the regex engine's loop over the first character for a word that
    starts with a capital, rare in a report (less time, though more instructions), else
    str.find's skip search; as for the header hints (rig.splat.cutting)."""
    if word[0].islower() or len(word) >= 15:
        return lambda text, start: text.find(word, start)
    search = re.compile(re.escape(word)).search

    def find(text: str, start: int) -> int:
        m = search(text, start)
        return -1 if m is None else m.start()

    return find


_WORD_SCANS = tuple(_scan(word) for word in _STACK_START_WORDS)


def _trace_header_lines(joined: str, msgs: list[str]) -> list[int]:
    """Indexes in `msgs` of the lines that start a trace, found by plain-text scans of the
    joined report (a scan per word beats a pattern tried at every character)."""
    found: set[int] = set()
    for find in _WORD_SCANS:
        pos = find(joined, 0)
        while pos >= 0:
            line_start = joined.rfind("\n", 0, pos) + 1
            found.add(line_start)
            end = joined.find("\n", pos)
            if end < 0:
                break
            pos = find(joined, end)
    if not found:
        return []
    # offsets of line starts -> line indexes, in one pass over the sorted offsets
    out: list[int] = []
    line = pos = 0
    for start in sorted(found):
        line += joined.count("\n", pos, start)
        pos = start
        if _STACK_START.search(msgs[line]):
            out.append(line)
    return out


def _starts_stack(line: str) -> bool:
    """The line starts a stack trace: the pattern only for lines holding one of its words
    (most lines below a trace header are frames, which hold none)."""
    return any(word in line for word in _STACK_START_WORDS) and _STACK_START.search(line) is not None


def _fault_injection(msg: str) -> bool:
    if "should_fail" not in msg:
        return False
    parsed = parse_frame(msg)
    return parsed is not None and _FAULT_INJECTION_FRAME.match(parsed[0]) is not None
