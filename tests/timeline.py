"""When each test ran on which worker and the CPU it used, for the summary at the end of
a session: how busy each worker was, which tests ended last and which took the most CPU.
A cold CI run is budgeted in minutes, and pytest's --durations says how long each test
took but not whether the two workers were both kept busy until the end, nor which tests'
builds and guests the two cores spent their time on."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    worker: str  # xdist's worker id ("gw0"), or "main" without xdist
    nodeid: str
    start: float  # seconds since the epoch
    stop: float
    cpu_s: float = 0.0  # CPU time of the worker and the programs it waited for (make, QEMU)


@dataclass(frozen=True)
class WorkerUse:
    worker: str
    busy_s: float  # time inside tests (setup, call, teardown)
    idle_s: float  # from the session's first test start to its last test end, not in a test
    tests: int


def by_test(phases: list[Span]) -> list[Span]:
    """One span per test and worker from its phases (setup, call, teardown)."""
    merged: dict[tuple[str, str], Span] = {}
    for span in phases:
        key = (span.worker, span.nodeid)
        seen = merged.get(key)
        merged[key] = span if seen is None else Span(span.worker, span.nodeid, min(seen.start, span.start),
                                                      max(seen.stop, span.stop), seen.cpu_s + span.cpu_s)
    return sorted(merged.values(), key=lambda s: s.start)


def worker_use(tests: list[Span]) -> list[WorkerUse]:
    if not tests:
        return []
    first = min(s.start for s in tests)
    last = max(s.stop for s in tests)
    uses = []
    for worker in sorted({s.worker for s in tests}):
        mine = [s for s in tests if s.worker == worker]
        busy = sum(s.stop - s.start for s in mine)
        uses.append(WorkerUse(worker, busy, max(0.0, (last - first) - busy), len(mine)))
    return uses


def summary(phases: list[Span], *, last: int = 5, costliest: int = 10) -> list[str]:
    """Lines for the terminal: each worker's busy and idle time over the session, the
    tests that ended last, with their start and end from the session's start, and the
    tests that used the most CPU."""
    tests = by_test(phases)
    if not tests:
        return []
    first = tests[0].start
    cpu = sum(s.cpu_s for s in tests)
    lines = [f"{u.worker}: {u.tests} tests, busy {u.busy_s / 60:.1f} min, idle {u.idle_s / 60:.1f} min"
             for u in worker_use(tests)]
    lines.append(f"CPU in tests: {cpu / 60:.1f} min")
    lines.append("ended last (minutes from the first test's start):")
    for span in sorted(tests, key=lambda s: s.stop)[-last:]:
        lines.append(f"  {span.worker} {(span.start - first) / 60:6.1f} -> {(span.stop - first) / 60:6.1f}  {span.nodeid}")
    heavy = sorted(tests, key=lambda s: s.cpu_s)[-costliest:]
    if heavy and heavy[-1].cpu_s > 0:
        lines.append("most CPU (minutes, with the builds and guests a test's fixtures made):")
        lines += [f"  {span.cpu_s / 60:6.1f}  {span.nodeid}" for span in reversed(heavy)]
    return lines
