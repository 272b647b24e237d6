"""rig.bisect's search over a series' prefixes, against probes that say which prefixes
show which target (no guest)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from rig.bisect import MIN_RUNS, Target, runs_for, search
from rig.tally import MISS, Seen

SUBJECTS = ("patch one", "patch two", "patch three", "patch four")


def _probe(first_bad: dict[str, int], misses: dict[tuple[str, int], int] | None = None):  # type: ignore[no-untyped-def]
    """A probe where target `key` shows from prefix first_bad[key] on, except that the
    first misses[(key, prefix)] runs of that prefix miss it; and its log of calls."""
    misses = dict(misses or {})
    calls: list[tuple[int, tuple[str, ...]]] = []

    def probe(prefix: int, tests: tuple[str, ...] | None, wanted: tuple[str, ...]) -> dict[str, bool]:
        calls.append((prefix, wanted))
        seen = {}
        for key in wanted:
            if misses.get((key, prefix), 0) > 0:
                misses[(key, prefix)] -= 1
                seen[key] = False
            else:
                seen[key] = prefix >= first_bad[key]
        return seen

    return probe, calls


def _target(key: str, k: int = 1, n: int = 1) -> Target:
    return Target(key, (f"test-{key}",), Seen(k, n))


def test_a_finding_seen_once_is_not_taken_for_one_every_run_shows() -> None:
    # Seen in the one series run it had: a clean prefix is probed MIN_RUNS times, and
    # a miss on the first probes of the bad prefix does not move the answer.
    probe, calls = _probe({"leak": 2}, misses={("leak", 2): 2})
    found = search([_target("leak")], SUBJECTS[:3], probe)
    assert found["leak"].index == 2 and found["leak"].subject == "patch two"
    assert [prefix for prefix, _ in calls] == [1, 1, 1, 2, 2, 2]
    assert 0.95 <= found["leak"].confidence < 1.0


def test_two_targets_share_the_probes_of_a_prefix() -> None:
    probe, calls = _probe({"leak": 2, "deadlock": 3})
    found = search([_target("leak"), _target("deadlock")], SUBJECTS[:3], probe)
    assert (found["leak"].index, found["deadlock"].index) == (2, 3)
    # prefix 1: neither shows, MIN_RUNS runs for both; prefix 2: the leak shows at once
    # and the deadlock's runs go on alone
    assert calls == [(1, ("leak", "deadlock"))] * MIN_RUNS + [(2, ("leak", "deadlock"))] + [(2, ("deadlock",))] * 2
    # each is charged the runs that looked for it
    assert (found["leak"].runs, found["deadlock"].runs) == (MIN_RUNS + 1, MIN_RUNS * 2)


def test_a_finding_seen_in_every_one_of_many_runs_needs_fewer_probes() -> None:
    assert runs_for(_target("x", 9, 9).rate, 10) < runs_for(_target("x", 1, 1).rate, 10) == MIN_RUNS


@pytest.mark.parametrize(("k", "n"), [(1, 1), (3, 3), (2, 4), (1, 8)])
def test_the_runs_make_a_miss_unlikely_or_reach_the_cap(k: int, n: int) -> None:
    rate = _target("x", k, n).rate
    runs = runs_for(rate, 20)
    assert (1 - rate) ** runs <= MISS < (1 - rate) ** (runs - 1)
    assert runs_for(rate, 2) == min(runs, 2)


def test_an_intermittent_answer_says_it_is_not_certain(subjects: Sequence[str] = SUBJECTS) -> None:
    probe, _ = _probe({"race": 4})
    found = search([_target("race", 1, 4)], subjects, probe, max_runs=2)
    assert found["race"].index == 4
    assert found["race"].confidence < 0.9  # two clean steps of two runs each at p = 1/3


def test_a_run_allows_its_repeats_or_max_repeat_but_never_fewer_than_min_runs() -> None:
    from rig.bisect import probe_limit

    assert probe_limit(1) == MIN_RUNS
    assert probe_limit(5) == 5
    assert probe_limit(3, 8) == 8
