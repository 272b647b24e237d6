"""Naming a report: the function its title points at, and the title itself.

A title rule lists places to read in order (the faulting pc, an "at:" line, the call
trace); the first function found there that is not reporting machinery names the bug,
unless the rule names stalls or hangs by their own conventions (see rig.splat.stall).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

from rig.splat.frames import COMMON_SKIP, SkipRule, arm_caller, parse_frame, pc_function
from rig.splat.rules import Place, TitleRule
from rig.splat.signature import canonical_function, normalize_numbers
from rig.splat.stall import hang_frame, stall_frame

def candidates(msgs: list[str], places: tuple[Place, ...]) -> Iterator[tuple[str, int]]:
    """Functions the places point at, in order, each with its line in `msgs`; lazily, as
    most titles are settled by the first few."""
    fallback: list[tuple[str, int]] = []
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
                    yield func, i
                    cursor = i + 1
                    break
        elif place.kind == "line":
            assert place.pattern is not None
            for i in range(cursor, len(msgs)):
                m = place.pattern.search(msgs[i])
                if m is not None:
                    if "func" in m.groupdict():
                        yield m.group("func").split(".", 1)[0], i
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
                    yield parsed[0], i
                if caller is not None:
                    # an ARM line names its caller too; the next line repeats it as its callee
                    yield caller, i
                if parsed is not None:
                    last_caller = caller
                elif place.with_pc:
                    func = pc_function(msg)
                    if func is not None:
                        yield func, i
                i += 1
            cursor = i
    yield from fallback


_TRACE_MARKER = re.compile(r"^(?:Call Trace|Call trace|Backtrace)\s*:")
_TRACE_MARKER_STARTS = ("Call Trace", "Call trace", "Backtrace")  # a cheap test before the pattern
_IN_TRACE = re.compile(r"^\s*(?:<(?:/?IRQ|/?TASK|/?NMI|/?SOFTIRQ|EOI)>|\r?$|r\d+:| r\d+:|Exception stack)")


def main_trace(msgs: list[str]) -> list[str]:
    """The report's own call trace (the first one under "Call Trace:", else the first stack)."""
    begin = next((i + 1 for i, msg in enumerate(msgs)
                  if msg.startswith(_TRACE_MARKER_STARTS) and _TRACE_MARKER.match(msg)), None)
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


def pick(rule: TitleRule, found: Iterable[tuple[str, int]], msgs: list[str]) -> str | None:
    """The function the title names, from `found` (see candidates()); None if none fits."""
    skip = _skip_for(rule)
    if rule.stall:
        return stall_frame(list(found), msgs, skip, own_cpu=rule.kind in ("soft-lockup", "stack-overflow"),
                           interrupted=rule.kind == "rcu-stall")
    if rule.hung:
        return hang_frame([func for func, _ in found if not skip.skips(func)])
    candidates: Iterable[tuple[str, int]] = found
    if rule.anchor is not None:
        candidates = list(found)
        m = rule.anchor.search(msgs[0])
        faulting = m.group("func").split(".", 1)[0] if m else None
        at = next((i for i, (func, line) in enumerate(candidates) if func == faulting and line > 0), 0)
        candidates = candidates[at:]
    for func, _ in candidates:
        if not skip.skips(func):
            return func
    return None


def fill(template: str, match: re.Match[str], frame: str) -> str:
    """The title: the rule's template with the pattern's groups ({1}, {2}; numbers become
    NUM/ADDR), the named frame ({frame}) and the header's own functions ({header})."""
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
