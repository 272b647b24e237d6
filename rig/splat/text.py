"""Console text: decoding, line positions and the printk prefixes in front of each line.

A console line may carry a syslog level (`<4>`), a printk time (`[   12.345678]`) and a
caller id (`[ T123]` task, `[ C0]` interrupt context on CPU 0). rig works on the message
after these prefixes and keeps the caller id, which tells interleaved reports apart.
"""

from __future__ import annotations

import re
from typing import NamedTuple

_PREFIX = re.compile(
    r"(?:<\d{1,2}>)?"
    r"(?:\[\s*(?P<ts>\d+\.\d+)\])?"
    r"(?:\[\s*(?P<caller>[TC]\d+)\])?"
)


# The whole line in one match: [syslog level][printk time][caller id][one space]message.
# Groups: time, caller, message. The space is the prefix's only when a prefix part is
# there (a prefix starts with "<" or "["). A prefix never reaches into the next line.
_LINE = re.compile(r"(?:(?=[<\[])(?:<\d{1,2}>)?(?:\[[^\S\n]*(\d+\.\d+)\])?(?:\[[^\S\n]*([TC]\d+)\])? ?)?"
                   r"([^\n]*)")


class Line(NamedTuple):
    """One console line with its printk prefix taken apart (a tuple: logs have millions)."""

    start: int  # offset of the line in the text
    end: int  # offset of the line's newline (or of the end of the text)
    msg: str  # the message, prefixes and the one space after them removed, no '\r'
    timestamp: float | None
    caller: str  # "T123", "C0" or ""


def decode(data: bytes | str) -> str:
    """Console logs are mostly UTF-8 with stray binary; never fail on them."""
    if isinstance(data, str):
        return data
    return data.decode("utf-8", errors="replace")


def split_prefix(raw: str) -> tuple[str, float | None, str]:
    """(message, timestamp, caller) of one raw line without its newline."""
    if raw.endswith("\r"):
        raw = raw[:-1]
    if not raw or raw[0] not in "<[":
        return raw, None, ""
    m = _PREFIX.match(raw)
    assert m is not None  # every part of the prefix is optional
    cut = m.end()
    if cut == 0:
        return raw, None, ""
    if cut < len(raw) and raw[cut] == " ":
        cut += 1
    ts = m.group("ts")
    return raw[cut:], (float(ts) if ts else None), (m.group("caller") or "")


class LogText:
    """Random access to the lines of a decoded log, parsed lazily: logs can be huge."""

    def __init__(self, text: str, raw: bytes | None = None) -> None:
        self.text = text
        self.raw = raw  # the bytes `text` was decoded from (see decode()), when it was
        self._line_count_pos = 0
        self._line_count = 1

    def line_at(self, start: int) -> Line:
        """The line beginning at offset `start`."""
        m = _LINE.match(self.text, start)
        assert m is not None  # every part is optional
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
        match = _LINE.match
        new = tuple.__new__
        pos = start
        for _ in range(count):
            if pos >= size:
                break
            m = match(text, pos)  # never None: every part is optional
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
