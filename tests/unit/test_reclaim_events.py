"""Reclaim messages from the guest console placed on the pressure timeline."""

from __future__ import annotations

import json

from rig.reclaim_events import reclaim_events, summary, with_reclaim_events
from rig.report.html import timeline_svg
from rig.workloads.pressure import Sample, Timeline, timeline_from_json

# From a real arm64 7.2 guest on rig's Mali (ktap:panfrost_rig.madvise-purge), and the
# OOM killer's line as mm/oom_kill.c prints it, for the memcg and the global case.
CONSOLE = """\
[   22.421371][  T100] rig: start ktap:panfrost_rig.madvise-purge
[   23.696237][  T100] Purging 1048576 bytes
[   23.706464][  T100] Purging 2097152 bytes
[   24.001000][  T100] rig: end ktap:panfrost_rig.madvise-purge
[   30.500000][  T412] Memory cgroup out of memory: Killed process 412 (stress-ng) total-vm:1048576kB, anon-rss:524288kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:1100kB oom_score_adj:1000
[   31.250000][  T413] Out of memory: Killed process 413 (igt_runner) total-vm:8192kB, anon-rss:1024kB, file-rss:0kB, shmem-rss:0kB, UID:0 pgtables:44kB oom_score_adj:0
Purging 4096 bytes
"""


def test_messages_land_on_the_host_clock_with_what_they_freed() -> None:
    events = reclaim_events(CONSOLE.splitlines(keepends=True), uptime_offset_s=-20.0)
    assert events == [
        (3.70, "panfrost purge: 1.0 MiB"),
        (3.71, "panfrost purge: 2.0 MiB"),
        (10.5, "memcg OOM kill"),
        (11.25, "OOM kill"),
    ]  # the last line has no printk time: it cannot be placed


def test_summary_counts_each_kind_and_says_when_the_kernel_rate_limits() -> None:
    lines = summary(reclaim_events(CONSOLE.splitlines(), 0.0))
    assert lines[0] == ("panfrost purge: at least 2 between 23.7 s and 23.71 s, at least 3.0 MiB freed "
                        "(the kernel rate-limits this message)")
    assert lines[1:] == ["memcg OOM kill: 1 between 30.5 s and 30.5 s", "OOM kill: 1 between 31.25 s and 31.25 s"]


def test_a_timeline_without_a_measured_offset_is_left_alone() -> None:
    timeline = Timeline((Sample(1.0, 100.0),), ((0.5, "sampling started"),))
    assert with_reclaim_events(timeline, CONSOLE.splitlines()) is timeline


def test_events_survive_report_json_and_are_drawn() -> None:
    timeline = with_reclaim_events(Timeline((Sample(1.0, 100.0), Sample(5.0, 80.0)), (), {}, -20.0),
                                   CONSOLE.splitlines())
    again = timeline_from_json(json.loads(json.dumps(timeline.to_json())))
    assert again == timeline
    svg = timeline_svg(timeline.to_json())
    assert "panfrost purge: 1.0 MiB at 3.7 s" in svg
    assert "OOM kill at" not in svg  # outside the sampled span: not drawn off the plot


def test_reports_from_before_kernel_events_still_load() -> None:
    old = {"samples": [{"t": 1.0, "mem_available_mib": 5.0}], "events": [[0.5, "x"]], "top_shrinkers": {"a": 1}}
    timeline = timeline_from_json(old)
    assert timeline.kernel_events == () and timeline.uptime_offset_s is None
