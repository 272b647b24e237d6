"""What the guest kernel says about reclaim, as events on the pressure timeline.

The sampler sees shrinker object counts every second; it cannot see what a shrinker did
between two samples. Some drivers say so on the console when their shrinker frees GPU
memory (panfrost prints each purge, rate-limited), and the OOM killer always does. Those
lines carry the printk time, which is guest uptime: with the session's offset between the
host's clock and the guest's uptime they land on the timeline beside the samples, so a
report shows the purge, the OOM kill or the reclaim stall next to the test that ran then.

Each entry names where the kernel prints it, so it can be checked against a new kernel.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

from rig.splat.text import split_prefix
from rig.workloads.pressure import Timeline


@dataclass(frozen=True)
class ReclaimMessage:
    """One console message that marks reclaim work, and how the timeline names it."""

    kind: str  # short label: "panfrost purge"
    pattern: re.Pattern[str]  # matched against the message after its printk prefix
    source: str  # where the kernel prints it
    mib_group: str | None = None  # the group giving bytes freed, when the message has one
    unit_bytes: int = 1  # what one unit of that group is worth
    ratelimited: bool = False  # printed rate-limited: the console shows some, not all

    def describe(self, match: re.Match[str]) -> str:
        if self.mib_group is None:
            return self.kind
        freed = int(match.group(self.mib_group)) * self.unit_bytes
        return f"{self.kind}: {freed / (1 << 20):.1f} MiB"


PAGE = 4096  # every guest rig boots has 4 KiB pages (arm64 is configured so: Mali's page tables)

MESSAGES = (
    ReclaimMessage("panfrost purge", re.compile(r"Purging (?P<n>\d+) bytes$"),
                   "drivers/gpu/drm/panfrost/panfrost_gem_shrinker.c, panfrost_gem_shrinker_scan()",
                   mib_group="n", ratelimited=True),
    ReclaimMessage("i915 purge", re.compile(r"Purging GPU memory, (?P<n>\d+) pages freed"),
                   "drivers/gpu/drm/i915/gem/i915_gem_shrinker.c, i915_gem_shrinker_oom()",
                   mib_group="n", unit_bytes=PAGE),
    ReclaimMessage("OOM kill", re.compile(r"Out of memory(?: \(oom_kill_allocating_task\))?: Killed process"),
                   "mm/oom_kill.c, __oom_kill_process()"),
    ReclaimMessage("memcg OOM kill", re.compile(r"Memory cgroup out of memory: Killed process"),
                   "mm/oom_kill.c, __oom_kill_process()"),
)

# A plain substring each message holds, to skip the regexes on the bulk of the console.
_QUICK = ("Purging ", "Killed process")


def reclaim_events(console: Iterable[str], uptime_offset_s: float) -> list[tuple[float, str]]:
    """(timeline time, what) for each reclaim message on the console; lines without a
    printk time cannot be placed and are left out."""
    events: list[tuple[float, str]] = []
    for raw in console:
        if not any(quick in raw for quick in _QUICK):
            continue
        message, uptime, _ = split_prefix(raw.rstrip("\n"))
        if uptime is None:
            continue
        for entry in MESSAGES:
            match = entry.pattern.search(message)
            if match is not None:
                events.append((round(uptime + uptime_offset_s, 2), entry.describe(match)))
                break
    return events


def with_reclaim_events(timeline: Timeline, console: Iterable[str]) -> Timeline:
    """The timeline with the console's reclaim events added (once: earlier ones are replaced)."""
    if timeline.uptime_offset_s is None:
        return timeline
    return replace(timeline, kernel_events=tuple(reclaim_events(console, timeline.uptime_offset_s)))


def summary(events: Iterable[tuple[float, str]]) -> list[str]:
    """One line per kind: how many, from when to when, and the memory freed where known."""
    by_kind: dict[str, list[tuple[float, float | None]]] = {}
    for t, what in events:
        kind, _, amount = what.partition(": ")
        mib = float(amount.removesuffix(" MiB")) if amount.endswith(" MiB") else None
        by_kind.setdefault(kind, []).append((t, mib))
    partial = {entry.kind for entry in MESSAGES if entry.ratelimited}
    lines = []
    for kind, seen in by_kind.items():
        times = [t for t, _ in seen]
        freed = [m for _, m in seen if m is not None]
        at_least = "at least " if kind in partial else ""
        text = f"{kind}: {at_least}{len(seen)} between {min(times):g} s and {max(times):g} s"
        if freed:
            text += f", {at_least}{sum(freed):.1f} MiB freed"
        if kind in partial:
            text += " (the kernel rate-limits this message)"
        lines.append(text)
    return lines
