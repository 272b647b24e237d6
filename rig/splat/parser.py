"""parse_log: every kernel report in a console log or dmesg, in log order.

The scan is two-level so that huge logs stay cheap: one regex pass over the whole text
finds lines that may start a report; only around those does rig split lines, strip
printk prefixes, cut the report out and name it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rig.splat import kmemleak, lockdep
from rig.splat.frames import COMMON_SKIP, SkipRule, arm_caller, parse_frame, pc_function
from rig.splat.model import Finding
from rig.splat.rules import (
    BOOT_PREAMBLE, BOOT_SPAN, END_MARKER, FOLLOW_ON, HEADER_HINTS, KINDS, PREAMBLE, Place, ReportKind, TitleRule,
)
from rig.splat.signature import canonical_function, normalize_numbers, signature_of
from rig.splat.stall import hang_frame, stall_frame
from rig.splat.text import Line, LogText, decode

_HEADERS = re.compile("|".join(f"(?P<k{i}>{kind.header})" for i, kind in enumerate(KINDS)))
# Plain strings every header contains: the whole log is scanned for these with str.find
# (fast), and only lines holding one are matched against the header patterns.
_HINTS = HEADER_HINTS
_HINT_RE = re.compile("|".join(re.escape(hint) for hint in _HINTS))

MAX_REPORT_LINES = 2000  # deep recursions (stack overflows) print very long traces
HEAD_LINES = 8  # a title pattern may look this far below the header line
QUIET_LINES = 4  # this many unrelated lines after the stack end a report
QUIET_LINES_NO_STACK = 20  # ... and this many, in a row, before any stack (more in a ===== box)
NESTED_HEADER_LINES = 3
MAX_FOREIGN_LINES = 64  # this many lines in a row from other sources: the report is over  # a header this close below another, before any stack, is the same crash

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
class _Raw:
    """A report cut out of the log, before it is named."""

    kind: ReportKind
    lines: list[Line]  # the report's own lines (other callers' lines left out)
    header: int  # index of the header line in `lines`
    header_col: int  # where the header starts in that line's message
    truncated: bool  # the log ended inside the report


def parse_log(data: bytes | str) -> list[Finding]:
    """Every kernel report in `data`, in log order."""
    log = LogText(decode(data))
    findings: list[tuple[int, Finding]] = []  # (header offset, finding): log order is header order
    pending_leaks: list[_Raw] = []
    taken_until: dict[str, int] = {}  # caller -> offset up to which lines belong to a report
    for raw in _cut_reports(log, taken_until):
        if raw.kind.name == "leak":
            if pending_leaks and not _adjacent(log, pending_leaks[-1], raw):
                findings.extend(_leak_findings(log, pending_leaks))
                pending_leaks = []
            pending_leaks.append(raw)
            continue
        if pending_leaks:
            findings.extend(_leak_findings(log, pending_leaks))
            pending_leaks = []
        finding = _name(log, raw)
        if finding is not None:
            findings.append((raw.lines[raw.header].start, finding))
    if pending_leaks:
        findings.extend(_leak_findings(log, pending_leaks))
    findings.sort(key=lambda pair: pair[0])
    return [finding for _, finding in findings]


def _kind_of(match: re.Match[str]) -> ReportKind:
    return KINDS[int(match.lastgroup[1:])]  # type: ignore[index]


def _header_lines(text: str) -> list[int]:
    """Start offsets of the lines holding a header hint, in order."""
    starts: set[int] = set()
    for hint in _HINTS:
        pos = text.find(hint)
        while pos >= 0:
            line_start = text.rfind("\n", 0, pos) + 1
            starts.add(line_start)
            line_end = text.find("\n", pos)
            if line_end < 0:
                break
            pos = text.find(hint, line_end)
    return sorted(starts)


def _cut_reports(log: LogText, taken_until: dict[str, int]):  # noqa: ANN202 - generator of _Raw
    text = log.text
    last_boot = -1
    for line_start in _header_lines(text):
        line_end = text.find("\n", line_start)
        match = _HEADERS.search(text, line_start, line_end if line_end >= 0 else len(text))
        if match is None:
            continue
        line = log.line_at(line_start)
        if taken_until.get(line.caller, -1) > line_start:
            continue  # inside a report already cut (a follow-on line or its own echo)
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
                yield _Raw(kind, [line], 0, col, False)
            continue
        probe = _Raw(kind, log.lines_from(line_start, HEAD_LINES), 0, col, False)
        if _match_rule(probe) is None:
            continue  # a header cut short ("INFO: t"): the full line usually follows
        raw = _extent(log, line, col, kind)
        taken_until[line.caller] = raw.lines[-1].end
        yield raw


def _is_reboot(log: LogText, banner: Line, last_boot: int) -> bool:
    """A boot banner after the machine had been running (not the log's own first boot)."""
    if last_boot >= 0:
        return banner.start - last_boot > BOOT_SPAN
    return any(not BOOT_PREAMBLE.match(ln.msg) for ln in log.lines_before(banner.start, 200))


def _extent(log: LogText, header: Line, col: int, kind: ReportKind) -> _Raw | None:
    """Cut the report that starts at `header`: its own lines up to where it ends."""
    caller = header.caller
    mine = [header]
    follow = _Ahead(log, header.end + 1, MAX_REPORT_LINES)
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
    pos = -1
    while (line := follow.get(pos + 1)) is not None:
        pos += 1
        if caller and line.caller and line.caller != caller:
            if not nmi_dump:
                skipped += 1
                if skipped > MAX_FOREIGN_LINES:
                    break
                continue  # another CPU or task printing in between
        elif line.msg.startswith(("Sending NMI from CPU", "NMI backtrace for cpu")):
            nmi_dump = True  # the other CPUs' stacks, asked for by this report, print from NMI context
        if foreign_untimed and line.timestamp is None and line.msg.strip():
            skipped += 1
            if skipped > MAX_FOREIGN_LINES:
                break
            continue  # not printk output: user space writing to the same console
        skipped = 0
        msg = line.msg
        if after_end >= 0:
            # A panic right after the end marker is part of the same crash.
            if pos - after_end > 3 or not (FOLLOW_ON.search(msg) or not msg.strip()):
                break
            if FOLLOW_ON.search(msg):
                after_end = -1
        elif END_MARKER.match(msg) and (not msg.startswith("=") or (len(mine) > 2 and boxed)):
            mine.append(line)
            after_end = pos
            continue
        if _starts_report(msg) and not FOLLOW_ON.search(msg) and not _belongs(kind, msg):
            if _inside_stack(mine, follow, pos):
                continue  # another CPU's one-line message printed in the middle of our stack
            if not seen_stack and len(mine) <= NESTED_HEADER_LINES:
                mine.append(line)  # a second header right below ours: one crash, two messages
                continue
            break
        if is_leak and msg and not msg[0].isspace() and not msg.startswith("unreferenced"):
            # a leak report is the object line and its indented details
            if not msg.startswith("BUG: memory leak"):
                break
        if parse_frame(msg) is not None:
            seen_stack = True
            quiet = 0
        elif not _REPORT_LINE.match(msg):
            quiet += 1
            if quiet >= (QUIET_LINES if seen_stack else QUIET_LINES_NO_STACK * (3 if boxed else 1)):
                del mine[len(mine) - (quiet - 1):]
                break
        else:
            quiet = 0
        mine.append(line)
    else:
        # the log ended inside the report: damaged unless its stack made it out
        truncated = follow.at_end and after_end < 0 and not seen_stack
        if quiet:
            del mine[len(mine) - quiet:]  # unrelated lines after the stack, up to the end of the log
    while len(mine) > 1 and not mine[-1].msg.strip():
        mine.pop()
    before = _preamble(log, header)
    return _Raw(kind, before + mine, len(before), col, truncated)


class _Ahead:
    """The lines after a header, read only as far as the report goes."""

    def __init__(self, log: LogText, start: int, limit: int) -> None:
        self._log, self._next, self._limit = log, start, limit
        self._lines: list[Line] = []

    def get(self, i: int) -> Line | None:
        text = self._log.text
        while len(self._lines) <= i and self._next < len(text) and len(self._lines) < self._limit:
            line = self._log.line_at(self._next)
            self._lines.append(line)
            self._next = line.end + 1
        return self._lines[i] if i < len(self._lines) else None

    @property
    def at_end(self) -> bool:
        return self._next >= len(self._log.text)


def _starts_report(msg: str) -> bool:
    """A header that is not one of the harmless lines sharing its prefix."""
    if _HINT_RE.search(msg) is None:
        return False
    m = _HEADERS.search(msg)
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
    return bool(re.match(r"\s*(?:INFO: lockdep is turned off|INFO: Slab|INFO: Object|INFO: Freed|"
                         r"INFO: Allocated|INFO: Stall ended|INFO: task .* blocked for more)", msg)) and (
        "blocked for more" not in msg or kind.name == "info")


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


def _adjacent(log: LogText, prev: _Raw, nxt: _Raw) -> bool:
    """Two leak objects are one kmemleak dump when only a few lines separate them."""
    return log.text.count("\n", prev.lines[-1].end, nxt.lines[0].start) <= 4


# ---------------------------------------------------------------------------- naming


def _head(raw: _Raw) -> str:
    lines = raw.lines[raw.header:raw.header + HEAD_LINES]
    return "\n".join([lines[0].msg[raw.header_col:]] + [ln.msg for ln in lines[1:]])


def _match_rule(raw: _Raw) -> tuple[TitleRule, re.Match[str]] | None:
    head = _head(raw)
    for rule in raw.kind.rules:
        m = rule.pattern.match(head)
        if m is not None:
            return rule, m
    return None


def _name(log: LogText, raw: _Raw) -> Finding | None:
    found = _match_rule(raw)
    if found is None:
        return None
    rule, match = found
    msgs = [ln.msg for ln in raw.lines[raw.header:]]
    candidates, trace = _candidates(msgs, rule.places)
    frame = _pick(rule, candidates, msgs)
    corrupted = raw.truncated and not trace
    trace = _main_trace(msgs)
    if rule.places and frame is None:
        corrupted = True
    title = _fill(rule.title, match, frame or "corrupted")
    alt = (_fill(rule.alt, match, frame or "corrupted"),) if rule.alt else ()
    chain = lockdep.lock_chain(msgs) if rule.kind == "lockdep" else ()
    first = raw.lines[0]
    return Finding(
        title=title,
        kind=rule.kind,
        corrupted=corrupted,
        signature=signature_of(rule.kind, title, chain),
        report="\n".join(ln.msg for ln in raw.lines),
        start=first.start,
        end=raw.lines[-1].end,
        line=log.line_number(first.start),
        timestamp=raw.lines[raw.header].timestamp if raw.lines[raw.header].timestamp is not None else first.timestamp,
        frames=tuple(trace),
        lock_chain=chain,
        caller=raw.lines[raw.header].caller,
        alt_titles=alt,
    )


def _candidates(msgs: list[str], places: tuple[Place, ...]) -> tuple[list[tuple[str, int]], list[str]]:
    """Functions the places point at, in order, each with the line it came from; and the trace."""
    out: list[tuple[str, int]] = []
    fallback: list[tuple[str, int]] = []
    trace: list[str] = []
    cursor = 0
    for place in places:
        if place.fallback:
            assert place.pattern is not None
            for i, msg in enumerate(msgs):
                m = place.pattern.search(msg)
                if m is not None:
                    fallback.append((m.group("func").split(".", 1)[0], i))
                    break
        elif place.kind == "pc":
            for i in range(cursor, len(msgs)):
                func = pc_function(msgs[i])
                if func is not None:
                    out.append((func, i))
                    cursor = i + 1
                    break
        elif place.kind == "line":
            assert place.pattern is not None
            for i in range(cursor, len(msgs)):
                m = place.pattern.search(msgs[i])
                if m is not None:
                    if "func" in m.groupdict():
                        out.append((m.group("func").split(".", 1)[0], i))
                    cursor = i + 1
                    break
        else:
            i = cursor
            if place.start is not None:
                i = next((j + 1 for j in range(cursor, len(msgs)) if place.start.search(msgs[j])), cursor)
            begin = i
            last_caller: str | None = None
            while i < len(msgs):
                msg = msgs[i]
                if place.stop is not None and i > begin and place.stop.search(msg):
                    break
                parsed = parse_frame(msg)
                caller = arm_caller(msg) if parsed is not None else None
                if parsed is not None and not parsed[1] and parsed[0] != last_caller:
                    out.append((parsed[0], i))
                    if len(trace) < 64:
                        trace.append(parsed[0])
                if caller is not None:
                    # an ARM line names its caller too; the next line repeats it as its callee
                    out.append((caller, i))
                    if len(trace) < 64:
                        trace.append(caller)
                if parsed is not None:
                    last_caller = caller
                elif place.with_pc:
                    func = pc_function(msg)
                    if func is not None:
                        out.append((func, i))
                i += 1
            cursor = i
    return out + fallback, trace


_TRACE_MARKER = re.compile(r"^(?:Call Trace|Call trace|Backtrace)\s*:")
_IN_TRACE = re.compile(r"^\s*(?:<(?:/?IRQ|/?TASK|/?NMI|/?SOFTIRQ|EOI)>|\r?$|r\d+:| r\d+:|Exception stack)")


def _main_trace(msgs: list[str]) -> list[str]:
    """The report's own call trace (the first one under "Call Trace:", else the first stack)."""
    begin = next((i + 1 for i, msg in enumerate(msgs) if _TRACE_MARKER.match(msg)), None)
    if begin is None:
        begin = next((i for i, msg in enumerate(msgs) if parse_frame(msg) is not None), len(msgs))
    frames: list[str] = []
    for msg in msgs[begin:]:
        parsed = parse_frame(msg)
        if parsed is None:
            if _IN_TRACE.match(msg):
                continue
            if frames:
                break
            continue
        if not parsed[1]:
            frames.append(parsed[0])
    return frames[:64]


class _Both:
    """The common skip rule and a title rule's own, without compiling them into one."""

    def __init__(self, own: SkipRule) -> None:
        self.own = own

    def skips(self, func: str) -> bool:
        return COMMON_SKIP.skips(func) or self.own.skips(func)


def _skip_for(rule: TitleRule) -> _Both:
    return _Both(rule.skip)


def _pick(rule: TitleRule, candidates: list[tuple[str, int]], msgs: list[str]) -> str | None:
    skip = _skip_for(rule)
    if rule.stall:
        return stall_frame(candidates, msgs, skip, own_cpu=rule.kind in ("soft-lockup", "stack-overflow"))
    if rule.hung:
        return hang_frame([func for func, _ in candidates if not skip.skips(func)])
    if rule.anchor is not None:
        m = rule.anchor.search(msgs[0])
        faulting = m.group("func").split(".", 1)[0] if m else None
        at = next((i for i, (func, line) in enumerate(candidates) if func == faulting and line > 0), 0)
        candidates = candidates[at:]
    for func, _ in candidates:
        if not skip.skips(func):
            return func
    return None


def _fill(template: str, match: re.Match[str], frame: str) -> str:
    groups = {str(i): normalize_numbers(g or "") for i, g in enumerate(match.groups(), start=1)}
    groups["0"] = normalize_numbers(match.group(0).split("\n", 1)[0])
    named = match.groupdict()
    header = ""
    if named.get("func"):
        header = canonical_function(named["func"].split(".", 1)[0])
        if named.get("func2"):
            header += " / " + canonical_function(named["func2"].split(".", 1)[0])
    title = template
    for key, value in groups.items():
        title = title.replace("{" + key + "}", value)
    title = title.replace("{frame}", canonical_function(frame)).replace("{header}", header)
    return " ".join(title.split())


def _leak_findings(log: LogText, objects: list[_Raw]) -> list[tuple[int, Finding]]:
    """One finding per distinct leak title in a kmemleak dump, objects grouped by backtrace."""
    by_title: dict[str, list[tuple[_Raw, kmemleak.LeakObject]]] = {}
    corrupted_titles: set[str] = set()
    for raw in objects:
        found = _match_rule(raw)
        if found is None:
            continue
        rule, match = found
        msgs = [ln.msg for ln in raw.lines[raw.header:]]
        obj = kmemleak.parse_object(msgs)
        candidates, _ = _candidates(msgs, rule.places)
        frame = _pick(rule, candidates, msgs)
        title = _fill(rule.title, match, frame or "corrupted")
        if frame is None:
            corrupted_titles.add(title)
        by_title.setdefault(title, []).append((raw, obj))
    out: list[tuple[int, Finding]] = []
    for title, members in by_title.items():
        first_raw = members[0][0]
        first = first_raw.lines[0]
        groups = kmemleak.group_objects([obj for _, obj in members])
        report = "\n".join("\n".join(ln.msg for ln in raw.lines) for raw, _ in members)
        out.append((first_raw.lines[first_raw.header].start, Finding(
            title=title,
            kind="kmemleak",
            corrupted=title in corrupted_titles or any(raw.truncated for raw, _ in members),
            signature=signature_of("kmemleak", title, ()),
            report=report,
            start=first.start,
            end=members[-1][0].lines[-1].end,
            line=log.line_number(first.start),
            timestamp=first.timestamp,
            frames=members[0][1].frames,
            leak_groups=groups,
            caller=first.caller,
        )))
    return out
