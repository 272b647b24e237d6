from __future__ import annotations

from tests.timeline import Span, by_test, summary, worker_use


def test_phases_of_a_test_become_one_span_and_idle_time_is_what_is_left() -> None:
    phases = [Span("gw0", "a", 0.0, 10.0), Span("gw0", "a", 10.0, 50.0), Span("gw0", "a", 50.0, 51.0),
              Span("gw1", "b", 1.0, 21.0), Span("gw1", "c", 30.0, 90.0), Span("gw0", "d", 60.0, 120.0)]
    tests = by_test(phases)
    assert [(s.nodeid, s.start, s.stop) for s in tests] == [("a", 0, 51), ("b", 1, 21), ("c", 30, 90), ("d", 60, 120)]
    uses = {u.worker: u for u in worker_use(tests)}
    assert (uses["gw0"].busy_s, uses["gw0"].idle_s, uses["gw0"].tests) == (111.0, 9.0, 2)
    assert (uses["gw1"].busy_s, uses["gw1"].idle_s) == (80.0, 40.0)


def test_the_summary_names_the_tests_that_ended_last() -> None:
    phases = [Span("gw0", f"t{i}", i * 60.0, i * 60.0 + 30.0) for i in range(8)]
    lines = summary(phases, last=2)
    assert lines[0].startswith("gw0: 8 tests, busy 4.0 min, idle 3.5 min")
    assert lines[-2:] == ["  gw0    6.0 ->    6.5  t6", "  gw0    7.0 ->    7.5  t7"]
    assert summary([]) == []


def test_cpu_adds_up_over_phases_and_the_costliest_come_first() -> None:
    phases = [Span("gw0", "build", 0.0, 1.0, 600.0), Span("gw0", "build", 1.0, 2.0, 60.0),
              Span("gw1", "boot", 0.0, 3.0, 120.0)]
    lines = summary(phases, costliest=2)
    assert "CPU in tests: 13.0 min" in lines
    assert lines[-2:] == ["    11.0  build", "     2.0  boot"]
