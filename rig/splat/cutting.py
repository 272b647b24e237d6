"""Cutting reports out of a console log: where each one starts and where it ends.

The whole log is scanned for plain strings that every report header holds (one fast
scan each, no per-line work); only the lines holding one are matched against the header
patterns. From a header, lines are read a few at a time, only as far as the report goes:
lines of other printk callers and of user space are left out, and the report ends at its
end marker, at the next report, or after a few lines that are no part of any report.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from rig.splat.frames import parse_frame
from rig.splat.rules import (
    BOOT_PREAMBLE, END_MARKER, FOLLOW_ON, HEADER_HINTS, KINDS, PREAMBLE, ReportKind, TitleRule,
)
from rig.splat.text import Line, LogText



def _literal_first(header: str) -> str:
    """A header `(?<![A-Za-z])WORD:` as `WORD:(?<![A-Za-z]WORD:)`: the same matches, but
    the regex engine tries it only where its first letter is; an alternative that starts
    with a look-behind is entered at every character of the line."""
    m = re.fullmatch(r"\(\?<!\[A-Za-z\]\)([A-Z]+:)", header)
    return f"{m.group(1)}(?<![A-Za-z]{m.group(1)})" if m else header


HEADERS = re.compile("|".join(f"(?P<k{i}>{_literal_first(kind.header)})" for i, kind in enumerate(KINDS)))
_HINT_RE = re.compile("|".join(re.escape(hint) for hint in HEADER_HINTS))

MAX_REPORT_LINES = 2000  # deep recursions (stack overflows) print very long traces
HEAD_LINES = 8  # a title pattern may look this far below the header line
QUIET_LINES = 4  # this many unrelated lines after the stack end a report
QUIET_LINES_NO_STACK = 20  # ... and this many, in a row, before any stack (more in a ===== box)
NESTED_HEADER_LINES = 3  # a header this close below another, before any stack, is the same crash
MAX_FOREIGN_LINES = 64  # this many lines in a row from other sources: the report is over
# Messages that share a header's prefix but belong to the report already open.
_END_FIRST = frozenset("-KR=")  # first characters of END_MARKER's lines: a cheap test first
# A hung task report of newer kernels names the task holding what it waits for (6.16+,
# kernel/hung_task.c debug_show_blocker: "INFO: task a:1 is blocked on a mutex likely
# owned by task b:2."), then that task's stack: part of the same report.
_BELONGS = re.compile(r"\s*(?:INFO: lockdep is turned off|INFO: Slab|INFO: Object|INFO: Freed|"
                      r"INFO: Allocated|INFO: Stall ended|INFO: task .* blocked for more|"
                      r"INFO: task \S+ (?:is |<\S*> )?blocked on an? (?:mutex|semaphore|rw-semaphore))")

# Lines that keep a report going after its stack has started.
_REPORT_LINE = re.compile(
    r"^(?:\s|$|\?|\[<|<(?:/?IRQ|/?TASK|/?NMI|EOI)>|[A-Z0-9]{1,4}\s*:|[a-z][a-z0-9]{0,3}\s*:|"
    r"Code:|Modules linked in|CPU:|Hardware name|Call Trace|Call trace|Backtrace|Workqueue:|"
    r"RIP|Kernel Offset|Dumping ftrace|irq event stamp|hardirqs last|softirqs last|"
    r"Allocated by|Freed by|Last potentially|Second to last|The buggy address|Memory state|"
    r"page:|page |flags:|raw:|head:|memcg:|anon |Showing |\d+ locks? held|no locks held|"
    r"NMI backtrace|Sending NMI|other info|stack backtrace|Chain exists|\*\*\* DEADLOCK|"
    r"Possible (?:unsafe|interrupt)|the (?:existing|shortest)|which lock|but task|and this task|"
    r"-> #|\.\.\.|INFO: lockdep is turned off|Disabling lock debugging|turning off|"
    r"unreferenced object|comm \"|hex dump|backtrace|Read of size|Write of size|Object |"
    r"Redzone|Padding|Bytes b4|task:|Mem abort|ESR|  EC|  IL|  SET|  FnV|  EA|  S1PTW|"
    r"Data abort|Internal error|Process |Stack:|Exception stack|Kernel panic|Rebooting|"
    r"---\[|rcu:|\t|Task dump|(?:CPU|Node) \d|Uninit was|Local variable|Memory access|"
    r"in_atomic|preempt_count|Preemption|RCU nest|Hardware|lock\(|\s*CPU\d|DMA-API|"
    r"refcount_t|ODEBUG|list_|kobject|usercopy|UBSAN|KASAN|KFENCE|KMSAN|KCSAN|Sending|"
    r"Unable to|Oops|pc |lr |sp |x\d+|NIP|LR|REGS|MSR|GPR|TRAP|CFAR|DAR|DSISR|IRQMASK|"
    r"Instruction dump|PC is at|LR is at|psr:|Flags:|Control:|pgd|\*pgd|Mem-Info|"
    r"(?:\S+)?\[\s*\d+\]|asm_|entry_|RSP|RAX|RDX|RBP|R\d+|FS:|CS:|CR2|DR\d|Stack|Register |"
    r"[0-9a-f]{4,16}:? )"
)



@dataclass
class RawReport:
    """A report cut out of the log, before it is named."""

    kind: ReportKind
    lines: list[Line]  # the report's own lines (other callers' lines left out)
    header: int  # index of the header line in `lines`
    header_col: int  # where the header starts in that line's message
    truncated: bool  # the log ended inside the report

    @property
    def header_line(self) -> Line:
        return self.lines[self.header]

    def head(self) -> str:
        """The header from where it starts, and the lines below it a title may look at."""
        lines = self.lines[self.header:self.header + HEAD_LINES]
        return "\n".join([lines[0].msg[self.header_col:]] + [ln.msg for ln in lines[1:]])

    def rule(self) -> tuple[TitleRule, re.Match[str]] | None:
        """The first title rule of the report's kind that matches its head."""
        head = self.head()
        for rule in self.kind.rules:
            m = rule.pattern.match(head)
            if m is not None:
                return rule, m
        return None


def _kind_of(match: re.Match[str]) -> ReportKind:
    return KINDS[int(match.lastgroup[1:])]  # type: ignore[index]


def _find_with_re(needle: bytes) -> Callable[[bytes, int], int]:
    search = re.compile(re.escape(needle)).search

    def find(haystack: bytes, start: int) -> int:
        m = search(haystack, start)
        return -1 if m is None else m.start()

    return find


def _find_with_str_find(needle: bytes) -> Callable[[bytes, int], int]:
    return lambda haystack, start: haystack.find(needle, start)


def _scan_for(needle: bytes) -> Callable[[bytes, int], int]:
    """The faster search of the two for `needle` (see _HINT_SCANS)."""
    return (_find_with_re if len(needle) < 15 and not needle[:1].islower() else _find_with_str_find)(needle)


def _find_any_of(word: bytes, hints: tuple[bytes, ...]) -> Callable[[bytes, int], int]:
    """Hints that begin with the same word: one scan for the word, then which follows."""
    find = _scan_for(word)

    def found(haystack: bytes, start: int) -> int:
        pos = find(haystack, start)
        while pos >= 0 and not any(haystack.startswith(hint, pos) for hint in hints):
            pos = find(haystack, pos + 1)
        return pos

    return found


def _hint_scans(hints: tuple[str, ...]) -> tuple[Callable[[bytes, int], int], ...]:
    """One scan per hint, but one for all the hints that begin with the same word."""
    by_word: dict[bytes, list[bytes]] = {}
    for hint in (h.encode() for h in hints):
        word, space, _ = hint.partition(b" ")
        by_word.setdefault(word + space if space else hint, []).append(hint)
    return tuple(_scan_for(group[0]) if len(group) == 1 else _find_any_of(word, tuple(group))
                 for word, group in by_word.items())


# Every hint is one scan of the whole log, the bulk of the time on a log with few reports.
# The regex engine's tight loop over the first character beats bytes.find's skip search
# for a string that starts with a capital, rare in console text, up to 14 characters
# ("Linux version "; it costs more instructions, but less time); it stops at every
# occurrence of a lowercase first character ("error:", "fault"), which bytes.find skips
# over in a third to half of the instructions and no more time. bytes.find skips far
# enough to win for long strings. Hints that share their first word ("VFS: ") are found
# by one short scan for it: cheaper than a long scan for each.
_HINT_SCANS = _hint_scans(HEADER_HINTS)


def _header_lines(log: LogText) -> list[int]:
    """Start offsets (in the text) of the lines holding a header hint, in order.

    The scans run over bytes, one per character: the regex engine scans a str that holds
    any character beyond Latin-1 at two bytes a character, half as fast. Those bytes are
    the ones the log was decoded from (offsets carried over to the text when they hold
    anything beyond ASCII), or, for a log given as str, its ASCII image with "?" for
    every other character: hints are ASCII, so they are found at the same places.
    """
    raw = log.raw
    mapped = raw is not None and not raw.isascii()
    haystack = raw if raw is not None else log.text.encode("ascii", "replace")
    starts: set[int] = set()
    for find in _HINT_SCANS:
        pos = find(haystack, 0)
        while pos >= 0:
            starts.add(haystack.rfind(b"\n", 0, pos) + 1)
            line_end = haystack.find(b"\n", pos)
            if line_end < 0:
                break
            pos = find(haystack, line_end)
    ordered = sorted(starts)
    return _text_offsets(haystack, ordered) if mapped else ordered


def _text_offsets(raw: bytes, line_starts: list[int]) -> list[int]:
    """The offsets in the decoded text of line starts given as offsets in `raw` (sorted).

    UTF-8 decoding starts afresh at every newline, so the bytes between two line starts
    decode to the same characters on their own as within the whole log.
    """
    out: list[int] = []
    prev_raw = prev_text = 0
    for start in line_starts:
        span = raw[prev_raw:start]
        prev_text += len(span) if span.isascii() else len(span.decode("utf-8", errors="replace"))
        out.append(prev_text)
        prev_raw = start
    return out


def cut_reports(log: LogText) -> Iterator[RawReport]:
    """Every report in the log, in the order their headers appear."""
    taken_until: dict[str, int] = {}  # printk caller -> offset up to which its lines are taken
    text = log.text
    last_boot = -1
    hint_lines = _header_lines(log)
    hinted = frozenset(hint_lines)  # a line holds a header hint iff it starts at one of these
    for line_start in hint_lines:
        line = log.line_at(line_start)
        if taken_until.get(line.caller, -1) > line_start:
            continue  # inside a report already cut (a follow-on line or its own echo)
        match = HEADERS.search(text, line_start, line.end)  # the costlier test second
        if match is None:
            continue
        raw_len = line.end - line_start - (1 if text.endswith("\r", line_start, line.end) else 0)
        col = max(match.start() - line_start - (raw_len - len(line.msg)), 0)
        kind = _kind_of(match)
        head_msg = line.msg[col:]
        if kind.ignore is not None and kind.ignore.match(head_msg):
            continue
        if kind.boot:
            rebooted = _is_reboot(log, line, last_boot)
            last_boot = line.end
            if rebooted:
                yield RawReport(kind, [line], 0, col, False)
            continue
        probe = RawReport(kind, log.lines_from(line_start, HEAD_LINES), 0, col, False)
        if probe.rule() is None:
            continue  # a header cut short ("INFO: t"): the full line usually follows
        raw = _extent(log, line, col, kind, hinted, probe.lines[1:])
        taken_until[line.caller] = raw.lines[-1].end
        yield raw


def _is_reboot(log: LogText, banner: Line, last_boot: int) -> bool:
    """A boot banner after the machine had been running: some line since the previous
    banner (or the start of the log) is neither firmware nor early boot output."""
    for line in reversed(log.lines_before(banner.start, 200)):
        if line.start < last_boot:
            return False
        if not BOOT_PREAMBLE.match(line.msg):
            return True
    return False


def _extent(log: LogText, header: Line, col: int, kind: ReportKind, hinted: frozenset[int],
            read: list[Line]) -> RawReport:
    """Cut the report that starts at `header`: its own lines up to where it ends.

    hinted: start offsets of the lines that hold a header hint (see _header_lines), which
    spares a search of every line; read: the lines after the header already read.
    """
    caller = header.caller
    mine = [header]
    follow = _Ahead(log, header.end + 1, MAX_REPORT_LINES, read)
    lines = follow.lines  # read ahead in small batches, as far as the report goes
    seen_stack = False
    nmi_dump = False
    skipped = 0  # consecutive lines from other sources
    quiet = 0
    after_end = -1
    truncated = follow.get(0) is None
    is_leak = kind.name == "leak"
    # "=====" closes only the reports it opened (KASAN, UBSAN, KCSAN...), not a hung task's lock dump
    boxed = any(ln.msg.startswith("===") for ln in log.lines_before(header.start, 1))
    foreign_untimed = header.timestamp is not None
    quiet_limit = QUIET_LINES_NO_STACK * (3 if boxed else 1)
    follow_on = FOLLOW_ON.search
    end_marker = END_MARKER.match
    report_line = _REPORT_LINE.match
    append = mine.append
    pos = -1
    have = len(lines)
    while True:
        pos += 1
        if pos >= have:
            if not follow.more():
                # the log ended inside the report: damaged unless its stack made it out
                truncated = follow.at_end and after_end < 0 and not seen_stack
                if quiet:
                    del mine[len(mine) - quiet:]  # unrelated lines after the stack, up to the end of the log
                break
            have = len(lines)
        line = lines[pos]
        msg = line[2]
        line_caller = line[4]
        if caller and line_caller and line_caller != caller:
            if not nmi_dump:
                skipped += 1
                if skipped > MAX_FOREIGN_LINES:
                    break
                continue  # another CPU or task printing in between
        elif not nmi_dump and "NMI" in msg and msg.startswith(_NMI_DUMP):
            nmi_dump = True  # the other CPUs' stacks, asked for by this report, print from NMI context
        if foreign_untimed and line[3] is None and msg.strip():
            skipped += 1
            if skipped > MAX_FOREIGN_LINES:
                break
            continue  # not printk output: user space writing to the same console
        skipped = 0
        if after_end >= 0:
            # A panic right after the end marker is part of the same crash.
            if pos - after_end > 3 or not (follow_on(msg) or not msg.strip()):
                break
            if follow_on(msg):
                after_end = -1
        # most report lines: no header, no end marker (parse_frame's own first test, inline)
        if msg and (msg[0] in _FRAME_FIRST or "+0x" in msg) and parse_frame(msg) is not None:
            seen_stack = True
            quiet = 0
            append(line)
            continue
        if after_end < 0 and msg[:1] in _END_FIRST and end_marker(msg) and (
                msg[0] != "=" or (len(mine) > 2 and boxed)):
            append(line)
            after_end = pos
            continue
        if line[0] in hinted and _starts_report(msg) and not follow_on(msg) and not _belongs(kind, msg):
            if _inside_stack(mine, follow, pos):
                continue  # another CPU's one-line message printed in the middle of our stack
            if not seen_stack and len(mine) <= NESTED_HEADER_LINES:
                append(line)  # a second header right below ours: one crash, two messages
                continue
            break
        if is_leak and msg and not msg[0].isspace() and not msg.startswith("unreferenced"):
            # a leak report is the object line and its indented details
            if not msg.startswith("BUG: memory leak"):
                break
        if not report_line(msg):
            quiet += 1
            if quiet >= (QUIET_LINES if seen_stack else quiet_limit):
                del mine[len(mine) - (quiet - 1):]
                break
        else:
            quiet = 0
        append(line)
    while len(mine) > 1 and not mine[-1].msg.strip():
        mine.pop()
    before = _preamble(log, header)
    return RawReport(kind, before + mine, len(before), col, truncated)


_NMI_DUMP = ("Sending NMI from CPU", "NMI backtrace for cpu")
_FRAME_FIRST = frozenset(" \t[0?")  # how a stack line without "+0x" in it may start
_BATCH = 16  # lines read at a time after a header: most reports end within a few batches


class _Ahead:
    """The lines after a header, read only as far as the report goes."""

    def __init__(self, log: LogText, start: int, limit: int, read: list[Line]) -> None:
        self._log, self._next, self._limit = log, start, limit
        self.lines: list[Line] = read[:limit]
        if self.lines:
            self._next = self.lines[-1].end + 1

    def more(self) -> bool:
        """Read the next few lines; False when the log or the limit is reached."""
        room = self._limit - len(self.lines)
        if room <= 0 or self._next >= len(self._log.text):
            return False
        self._next = self._log.read_lines(self._next, min(_BATCH, room), self.lines)
        return True

    def get(self, i: int) -> Line | None:
        while len(self.lines) <= i:
            if not self.more():
                return None
        return self.lines[i]

    @property
    def at_end(self) -> bool:
        """The lines read reach the end of the log."""
        return self._next >= len(self._log.text)


def _starts_report(msg: str) -> bool:
    """A header that is not one of the harmless lines sharing its prefix."""
    if _HINT_RE.search(msg) is None:
        return False
    m = HEADERS.search(msg)
    if m is None:
        return False
    kind = _kind_of(m)
    return kind.ignore is None or kind.ignore.match(msg, m.start()) is None


def _inside_stack(mine: list[Line], follow: _Ahead, pos: int) -> bool:
    """The line at `pos` sits between two frames of the report's stack."""
    after = follow.get(pos + 1)
    nxt = after.msg if after is not None else ""
    return parse_frame(mine[-1].msg) is not None and parse_frame(nxt) is not None


def _belongs(kind: ReportKind, msg: str) -> bool:
    """Headers that are part of the open report rather than a new one."""
    return _BELONGS.match(msg) is not None and ("blocked for more" not in msg or kind.name == "info")


def _preamble(log: LogText, header: Line) -> list[Line]:
    """Marker lines printed just above a header ("cut here", "=====", "refcount_t: ...")."""
    out: list[Line] = []
    for line in reversed(log.lines_before(header.start, 3)):
        if header.caller and line.caller and line.caller != header.caller:
            continue
        if not line.msg.strip() or not PREAMBLE.match(line.msg):
            break
        out.append(line)
    out.reverse()
    return out


def adjacent(log: LogText, prev: RawReport, nxt: RawReport) -> bool:
    """Two leak objects are one kmemleak dump when only a few lines separate them."""
    return log.text.count("\n", prev.lines[-1].end, nxt.lines[0].start) <= 4
