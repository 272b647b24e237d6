"""parse_log: every kernel report in a console log or dmesg, in log order.

rig.splat.cutting finds and cuts the reports out, rig.splat.naming names them; this
module turns them into findings, and gathers kmemleak's objects into one finding per
leak with the objects grouped by allocation backtrace.
"""

from __future__ import annotations

import re

from rig.splat import kmemleak, lockdep
from rig.splat.corruption import damaged
from rig.splat.cutting import RawReport, adjacent, cut_reports
from rig.splat.model import Finding
from rig.splat.naming import candidates, fill, main_trace, pick
from rig.splat.rules import TitleRule
from rig.splat.signature import signature_of
from rig.splat.text import LogText, decode


def parse_log(data: bytes | str) -> list[Finding]:
    """Every kernel report in `data`, in log order."""
    log = LogText(decode(data), data if isinstance(data, bytes) else None)
    findings: list[tuple[int, Finding]] = []  # (header offset, finding): log order is header order
    pending_leaks: list[RawReport] = []
    for raw in cut_reports(log):
        if raw.kind.name == "leak":
            if pending_leaks and not adjacent(log, pending_leaks[-1], raw):
                findings.extend(_leak_findings(log, pending_leaks))
                pending_leaks = []
            pending_leaks.append(raw)
            continue
        if pending_leaks:
            findings.extend(_leak_findings(log, pending_leaks))
            pending_leaks = []
        finding = _name(log, raw)
        if finding is not None:
            findings.append((raw.header_line.start, finding))
    if pending_leaks:
        findings.extend(_leak_findings(log, pending_leaks))
    findings.sort(key=lambda pair: pair[0])
    return [finding for _, finding in findings]


def _name(log: LogText, raw: RawReport) -> Finding | None:
    found = raw.rule()
    if found is None:
        return None
    rule, match = found
    msgs = [ln.msg for ln in raw.lines[raw.header:]]
    frame = pick(rule, candidates(msgs, rule.places), msgs)
    trace = main_trace(msgs)
    title = fill(rule.title, match, frame or "corrupted")
    # a title read off the header line alone holds however much of the report was lost
    corrupted = (rule.corrupted or (bool(rule.places) and (frame is None or (raw.truncated and not trace)))
                 or damaged(title, msgs, needs_stack=_needs_stack(rule)))
    alt = (fill(rule.alt, match, frame or "corrupted"),) if rule.alt else ()
    chain = lockdep.lock_chain(msgs) if rule.kind == "lockdep" else ()
    first = raw.lines[0]
    return Finding(
        title=title,
        kind=rule.kind,
        corrupted=corrupted,
        signature=signature_of(rule.kind, title, chain),
        report="\n".join([ln.msg for ln in raw.lines[:raw.header]] + msgs),
        start=first.start,
        end=raw.lines[-1].end,
        line=log.line_number(first.start),
        timestamp=raw.header_line.timestamp if raw.header_line.timestamp is not None else first.timestamp,
        frames=tuple(trace),
        lock_chain=chain,
        caller=raw.header_line.caller,
        alt_titles=alt,
        pids=_blocked_pid(rule, msgs[0]),
    )


# "INFO: task vgem_basic:287 blocked for more than 10 seconds." (kernel/hung_task.c)
_BLOCKED_TASK = re.compile(r"INFO: task .{1,16}:(\d+) (?:blocked|can't die)")


def _blocked_pid(rule: TitleRule, header: str) -> tuple[int, ...]:
    """A hung-task report's blocked task: the report is printed by khungtaskd, long after,
    but the task it names is the one whose test hangs (rig.splat.attribution)."""
    if not rule.hung:
        return ()
    m = _BLOCKED_TASK.search(header)
    return (int(m.group(1)),) if m else ()


# Reports that print their frames without a "Call Trace:" line above them, or none at all.
_NO_TRACE_HEADER = frozenset({"kmsan", "kcsan", "kfence"})


def _needs_stack(rule: TitleRule) -> bool:
    """The report always prints a stack trace under a trace header: one without is damaged."""
    return bool(rule.places) and not rule.stackless and rule.kind not in _NO_TRACE_HEADER


def _leak_findings(log: LogText, objects: list[RawReport]) -> list[tuple[int, Finding]]:
    """One finding per distinct leak title in a kmemleak dump, objects grouped by backtrace."""
    by_title: dict[str, list[tuple[RawReport, kmemleak.LeakObject]]] = {}
    corrupted_titles: set[str] = set()
    for raw in objects:
        found = raw.rule()
        if found is None:
            continue
        rule, match = found
        msgs = [ln.msg for ln in raw.lines[raw.header:]]
        obj = kmemleak.parse_object(msgs)
        frame = pick(rule, candidates(msgs, rule.places), msgs)
        title = fill(rule.title, match, frame or "corrupted")
        if frame is None:
            corrupted_titles.add(title)
        by_title.setdefault(title, []).append((raw, obj))
    out: list[tuple[int, Finding]] = []
    for title, members in by_title.items():
        first_raw = members[0][0]
        first = first_raw.lines[0]
        groups = kmemleak.group_objects([obj for _, obj in members])
        report = "\n".join("\n".join(ln.msg for ln in raw.lines) for raw, _ in members)
        out.append((first_raw.header_line.start, Finding(
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
            pids=kmemleak.pids_of([obj for _, obj in members]),
        )))
    return out
