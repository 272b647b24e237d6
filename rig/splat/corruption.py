"""Whether a report came out damaged: cut short by a dying console, or mixed with other
output so that its title may name the wrong thing.

The checks are syzkaller's (pkg/report: linux.go isCorrupted, linuxCorruptedTitles and
linuxStackParams.corruptedLines), written for rig's reports: a damaged report still gets
a title, and rig marks it so that nobody takes the title for certain.
"""

from __future__ import annotations

import re

from rig.splat.frames import parse_frame

# A printk time inside a title: two lines ran into one (linuxCorruptedTitles); titles
# have their numbers normalised already.
_TIME_IN_TITLE = re.compile(r"\[ *(?:\d+|NUM)\.(?:\d+|NUM)\]")
# Lines that start a stack trace; each must be followed by a frame (stackStartRes). Not
# lockdep's "stack backtrace:", which is followed by the CPU line and then "Call Trace:".
_STACK_START = re.compile(r"Call [Tt]race|Allocated:|Allocated by task \d+:|Freed:|Freed by task \d+:|"
                          r"(?<!k) backtrace(?: \(crc [0-9a-f]*\))?:|^backtrace(?: \(crc [0-9a-f]*\))?:|"
                          r"Backtrace:|Uninit was stored to memory at")
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
    has_stack = False
    for i, msg in enumerate(msgs):
        if _STACK_START.search(msg) is None:
            continue
        following = msgs[i + 1:i + 1 + _FRAME_WITHIN]
        if len(following) < 2:
            return True  # the log ends at the trace's first line
        found = False
        for line in following:
            if _STACK_START.search(line):
                break  # the next trace starts before this one showed a frame
            if parse_frame(line) is not None or "(stack is not available)" in line:
                found = True
                break
        if not found:
            return True  # a trace header with no frame below it
        has_stack = True
    if not has_stack:
        return True
    return any(_fault_injection(msg) for msg in msgs)


def _fault_injection(msg: str) -> bool:
    if "should_fail" not in msg:
        return False
    parsed = parse_frame(msg)
    return parsed is not None and _FAULT_INJECTION_FRAME.match(parsed[0]) is not None
