"""Console text: decoding, line positions and the printk prefixes in front of each line.

A console line may carry a syslog level (`<4>`), a printk time (`[   12.345678]`) and a
caller id (`[ T123]` task, `[ C0]` interrupt context on CPU 0). rig works on the message
after these prefixes and keeps the caller id, which tells interleaved reports apart.

Kernel messages read back from the journal or a syslog file carry the logger's own
prefix in front of that: `journalctl -k` prints `Nov 29 05:00:01 host kernel: ` (with
-o short-iso `2026-11-29T05:00:01+0000 host kernel: `, with -o short-monotonic
`[   12.345678] host kernel: `), rsyslog and syslog-ng write the same forms, and
`dmesg -T` puts the wall-clock time in brackets (`[Sun Nov 29 05:00:01 2026] `). Those
prefixes are taken off too; the printk time is kept where the line has one.
"""

from __future__ import annotations

import re
from typing import NamedTuple

# The logger's prefix of a kernel line in the journal or syslog, before the printk time: a
# wall-clock time (BSD syslog's "Nov 29 05:00:01", with or without fractions, or ISO 8601),
# the host name and the "kernel:" tag, then one space; or dmesg -T's bracketed date.
SYSLOG_PREFIX = (r"(?:(?:[A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d(?:\.\d+)?"
                 r"|\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d(?:[.,]\d+)?(?:Z|[+-]\d\d:?\d\d)?) [^\s:\[\]]+ kernel: "
                 r"|\[[A-Z][a-z]{2} [A-Z][a-z]{2} [ \d]\d \d\d:\d\d:\d\d \d{4}\] )")
# journalctl -o short-monotonic puts the host and tag after the printk time instead.
_HOST_TAG = r"(?: [^\s:\[\]]+ kernel:(?= ))"

# An overloaded or dying console says how many messages it lost, in front of the next line
# it prints (kernel/printk/printk.c).
_DROPPED = r"(?:\*\* \d+ printk messages dropped \*\* ?)"

# For patterns that look for a line start (a boot banner): any logger prefix and printk time.
SYSLOG_PREFIX_PLAIN = SYSLOG_PREFIX + r"?(?:\[[ \d.]+\]" + _HOST_TAG + r"? ?)?"

# The whole line in one match: [dropped messages][logger prefix][syslog level][printk time]
# [host and tag][caller id][one space]message. Groups: printk time, caller, message. The
# space is the prefix's only when a prefix part is there (a prefix starts with "<", "[",
# "*", a capital letter or a digit). A prefix never reaches into the next line.
# Every quantifier is possessive (?+, *+): the message part matches whatever is left, so
# the greedy first path is always the match, and not keeping backtracking state for each
# optional part makes the match of a line (the parser's inner loop) about a fifth cheaper.
_LINE = re.compile(r"(?:(?=[<\[A-Z0-9*])" + _DROPPED + r"?+" + SYSLOG_PREFIX + r"?+"
                   r"(?:<\d{1,2}>)?+(?:\[[^\S\n]*+(\d+\.\d+)\]" + _HOST_TAG + r"?+)?+"
                   # util-linux dmesg prints the caller id as a field of its own: "[ 1.0] [ T1] "
                   r"(?: (?=\[[^\S\n]*+[TC]\d+\]))?+"
                   r"(?:\[[^\S\n]*+([TC]\d+)\])?+ ?+)?+"
                   r"([^\n]*+)")
# The same match for the commonest line, a serial console's "[   12.345678][  T123] msg",
# tried first as it is about a tenth cheaper: the printk time first, then the caller id.
# It refuses the lines _LINE reads further ("[ 1.0] host kernel: msg" of journalctl -o
# short-monotonic, util-linux dmesg's "[ 1.0] [ T1] msg"); a line starting with anything
# but "[" and a digit (or blanks) is no journal, syslog, dmesg -T or syslog-level form
# either, so where this matches, _LINE gives the same groups and end.
_CONSOLE_LINE = re.compile(r"\[[^\S\n]*+(\d+\.\d+)\](?!" + _HOST_TAG + r")(?! \[[^\S\n]*+[TC]\d+\])"
                           r"(?:\[[^\S\n]*+([TC]\d+)\])?+ ?+([^\n]*+)")


def decode(data: bytes | str) -> str:
    """Console logs are mostly UTF-8 with stray binary; never fail on them."""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", errors="replace")


def split_prefix(raw: str) -> tuple[str, float | None, str]:
    """(message, timestamp, caller) of one raw line without its newline."""
    if raw.endswith("\r"):
        raw = raw[:-1]
    m = _CONSOLE_LINE.match(raw) or _LINE.match(raw)
    assert m is not None  # every part of _LINE is optional
    ts, caller, msg = m.groups("")
    return msg, (float(ts) if ts else None), caller


class Line(NamedTuple):
    """One console line with its printk prefix taken apart (a tuple: logs have millions)."""

    start: int  # offset of the line in the text
    end: int  # offset of the line's newline (or of the end of the text)
    msg: str  # the message, prefixes and the one space after them removed, no '\r'
    timestamp: float | None
    caller: str  # "T123", "C0" or ""


class LogText:
    """Random access to the lines of a decoded log, parsed lazily: logs can be huge."""

    def __init__(self, text: str, raw: bytes | None = None) -> None:
        self.text = text
        self.raw = raw  # the bytes `text` was decoded from (see decode()), when it was
        self._line_count_pos = 0
        self._line_count = 1

    def line_at(self, start: int) -> Line:
        """The line beginning at offset `start`."""
        m = _CONSOLE_LINE.match(self.text, start) or _LINE.match(self.text, start)
        assert m is not None  # every part of _LINE is optional
        ts, caller, msg = m.groups("")
        if msg[-1:] == "\r":
            msg = msg[:-1]
        return Line(start, m.end(), msg, float(ts) if ts else None, caller)

    def line_start(self, pos: int) -> int:
        return self.text.rfind("\n", 0, pos) + 1

    def lines_from(self, start: int, limit: int) -> list[Line]:
        """Up to `limit` lines beginning with the line at offset `start`."""
        out: list[Line] = []
        self.read_lines(start, limit, out)
        return out

    def read_lines(self, start: int, count: int, out: list[Line]) -> int:
        """Append up to `count` lines beginning at offset `start` to `out`; the offset
        after the last one read. line_at() inlined: reports are read a line at a time."""
        text = self.text
        size = len(text)
        console = _CONSOLE_LINE.match
        match = _LINE.match
        new = tuple.__new__
        pos = start
        for _ in range(count):
            if pos >= size:
                break
            m = console(text, pos) or match(text, pos)  # never None: every part of _LINE is optional
            ts, caller, msg = m.groups("")  # type: ignore[union-attr]
            if msg[-1:] == "\r":
                msg = msg[:-1]
            end = m.end()  # type: ignore[union-attr]
            out.append(new(Line, (pos, end, msg, float(ts) if ts else None, caller)))
            pos = end + 1
        return pos

    def lines_before(self, start: int, limit: int) -> list[Line]:
        """Up to `limit` lines ending just before offset `start`, nearest last."""
        out: list[Line] = []
        pos = start
        while pos > 0 and len(out) < limit:
            prev = self.text.rfind("\n", 0, pos - 1) + 1
            out.append(self.line_at(prev))
            pos = prev
        out.reverse()
        return out

    def line_number(self, pos: int) -> int:
        """1-based line number of offset `pos`; counts only from the offset asked before,
        forwards or back (reports come in nearly increasing order, interleaved ones not)."""
        if pos >= self._line_count_pos:
            self._line_count += self.text.count("\n", self._line_count_pos, pos)
        else:
            self._line_count -= self.text.count("\n", pos, self._line_count_pos)
        self._line_count_pos = pos
        return self._line_count
