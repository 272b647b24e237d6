"""The first bad patch: a binary search over the series' prefixes, for every new finding
and new test failure at once.

    search(targets, patches, probe) -> {target key: FirstBadPatch}

The base (prefix 0) is known not to show a target (that is what made it new) and the
whole series (prefix n) shows it. Each step builds the prefix in the middle of a
target's interval and runs only the target's tests there; every target whose interval
holds the same middle is probed by the same runs (their tests together), so a series
with two bugs costs no more boots than one with a single bug when their searches meet.

A probe that shows a target settles its step for good. One that does not can miss an
intermittent target: it is repeated until a miss is unlikely, (1 - p)^r <= MISS, at most
`max_runs` times, and each clean step multiplies the answer's confidence by
1 - (1 - p)^r. The rate p is not the series' k of n but Laplace's estimate (k + 1) /
(n + 2): a finding seen in the one run it had may still be one a run can miss (a leak
that kmemleak finds referenced by a stale pointer, a race), and taking 1/1 for certain
put such a leak on the wrong patch after one clean probe.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from rig.tally import MISS, Seen
from rig.verdict import FirstBadPatch

__all__ = ["MISS", "MIN_RUNS", "Probe", "Target", "probe_limit", "runs_for", "search"]

# Probes of a prefix allowed to clear it, whatever the run's --repeat: enough for a
# finding seen once (p = 2/3) to be missed by all of them at most 4% of the time.
MIN_RUNS = 3


@dataclass(frozen=True)
class Target:
    """A new finding (by signature) or a new test failure (by name) to place."""

    key: str
    tests: tuple[str, ...] | None  # the tests to run; () boot only; None: the whole plan
    seen: Seen  # in how many of the whole series' runs

    @property
    def rate(self) -> float:
        """How often a run of a prefix that has the bug shows it, estimated without
        taking a few runs that all showed it for proof that every run does."""
        return (self.seen.k + 1) / (self.seen.n + 2)


# probe(k, tests, wanted) -> for each of `wanted` (target keys), whether that run showed
# it; one call is one guest run of prefix k with the cut plan.
Probe = Callable[[int, tuple[str, ...] | None, tuple[str, ...]], dict[str, bool]]


def probe_limit(repeat: int, max_repeat: int = 0) -> int:
    """The most probes of one prefix a run allows (search's max_runs): its --repeat or
    --max-repeat, and never fewer than MIN_RUNS."""
    return max(repeat, max_repeat, MIN_RUNS)


def runs_for(rate: float, max_runs: int) -> int:
    """Probes of one prefix that make a miss of a target of this rate unlikely."""
    if rate >= 1.0:
        return 1
    if rate <= 0.0:
        return max(1, max_runs)
    return max(1, min(max_runs, math.ceil(math.log(MISS) / math.log(1.0 - rate))))


def _union(tests: Sequence[tuple[str, ...] | None]) -> tuple[str, ...] | None:
    if any(t is None for t in tests):
        return None
    return tuple(dict.fromkeys(name for group in tests for name in group or ()))


def search(targets: Sequence[Target], subjects: Sequence[str], probe: Probe, *, max_runs: int = MIN_RUNS
           ) -> dict[str, FirstBadPatch]:
    """Each target's first bad patch (1-based) among `subjects`, the series' patches."""
    n = len(subjects)
    if n == 0:
        return {}
    interval = {t.key: [0, n] for t in targets}
    confidence = {t.key: 1.0 for t in targets}
    spent = {t.key: 0 for t in targets}
    by_key = {t.key: t for t in targets}
    while True:
        open_ = [t for t in targets if interval[t.key][1] - interval[t.key][0] > 1]
        if not open_:
            break
        lo, hi = interval[open_[0].key]
        mid = (lo + hi) // 2
        group = [t for t in open_ if interval[t.key][0] < mid < interval[t.key][1]]
        tests = _union([t.tests for t in group])
        runs = max(runs_for(t.rate, max_runs) for t in group)
        shown: set[str] = set()
        # the probes that looked for each target: a target shown early is not charged
        # for the runs the others still needed
        looked = {t.key: 0 for t in group}
        for _ in range(runs):
            pending = tuple(t.key for t in group if t.key not in shown)
            if not pending:
                break
            seen = probe(mid, tests, pending)
            for key in pending:
                looked[key] += 1
            shown |= {key for key, yes in seen.items() if yes}
        for target in group:
            spent[target.key] += looked[target.key]
            if target.key in shown:
                interval[target.key][1] = mid
            else:
                interval[target.key][0] = mid
                confidence[target.key] *= 1.0 - (1.0 - by_key[target.key].rate) ** looked[target.key]
    return {t.key: FirstBadPatch(interval[t.key][1], subjects[interval[t.key][1] - 1], confidence[t.key],
                                 spent[t.key])
            for t in targets}
