"""A plan cut down: to the tests a finding was attributed to (targeted re-runs and
bisection run those, not the whole plan), or without the tests a skips list names.

    narrow(plan, tests) -> Plan
    without_skipped(plan, available, skipped) -> (Plan, [(test, driver, pattern)])

Plans name IGT tests by pattern (`vgem_basic@*`) and the guest expands them; a cut plan
names the tests themselves, so it runs exactly those.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Callable, Iterable

from rig.plan import IgtGroup, Plan, expand
from rig.results import TestKind, TestName


def narrow(plan: Plan, tests: Iterable[str]) -> Plan:
    """`plan` running only `tests` (rig's test names), each in every IGT group whose
    patterns cover it; KUnit suites and scripts by name. An empty set of tests gives a
    plan that only boots and collects (a finding at boot needs nothing more)."""
    names = [TestName.parse(t) for t in dict.fromkeys(tests)]
    groups = []
    for group in plan.igt:
        chosen = tuple(str(n) for n in names if n.kind is TestKind.IGT and any(_igt_covers(n, p) for p in group.tests))
        if chosen:
            groups.append(dataclasses.replace(group, tests=chosen))
    suites = tuple(s for s in plan.kunit_suites
                   if any(n.kind is TestKind.KUNIT and fnmatch.fnmatchcase(n.parts[0], s) for n in names))
    wanted_scripts = {n.path for n in names if n.kind is TestKind.SCRIPT}
    scripts = tuple(s for s in plan.scripts if s.name in wanted_scripts)
    label = ", ".join(str(n) for n in names) or "boot only"
    return dataclasses.replace(plan, igt=tuple(groups), kunit_suites=suites, scripts=scripts,
                               description=f"{plan.name} cut to {label}")


def _igt_covers(name: TestName, pattern: str) -> bool:
    """A pattern covers a test it names, every subtest of a binary it names alone, and
    every dynamic subtest of a subtest it names."""
    parts = name.parts
    if "@" not in pattern:
        return fnmatch.fnmatchcase(parts[0], pattern)
    return fnmatch.fnmatchcase(name.path, pattern) or fnmatch.fnmatchcase("@".join(parts[:2]), pattern)


def covers(plan: Plan, test: str) -> bool:
    """Whether `plan` runs `test` (a cut plan runs fewer tests than the whole one)."""
    name = TestName.parse(test)
    if name.kind is TestKind.IGT:
        return any(_igt_covers(name, p) for g in plan.igt for p in g.tests)
    if name.kind is TestKind.KUNIT:
        return any(fnmatch.fnmatchcase(name.parts[0], s) for s in plan.kunit_suites)
    return any(s.name == name.path for s in plan.scripts)


def without_skipped(plan: Plan, available: dict[str, list[str]], skipped: Callable[[str], str | None]
                    ) -> tuple[Plan, list[tuple[str, str | None, str]]]:
    """The plan's IGT groups expanded against the guest's tests (`available`, binary ->
    subtests) minus the tests `skipped` names a reason for; the skipped tests with their
    group's driver and the reason. Scripts are dropped by name the same way."""
    groups: list[IgtGroup] = []
    dropped: list[tuple[str, str | None, str]] = []
    for group in plan.igt:
        tests: list[str] = []
        kept: list[str] = []
        for pattern in group.tests:
            expanded, problems = expand((pattern,), available)
            if problems:
                kept.append(pattern)  # left to the workload, which names what is wrong with it
            tests += expanded
        for test in tests:
            names = [test] if not test.endswith("@*") else [f"{test[:-2]}@{s}" for s in available.get(test[:-2], [])]
            for name in names:
                reason = skipped(name)
                if reason is None:
                    kept.append(name)
                else:
                    dropped.append((name, group.driver, reason))
        if kept:
            groups.append(dataclasses.replace(group, tests=tuple(kept)))
    scripts = []
    for script in plan.scripts:
        reason = skipped(f"script:{script.name}")
        if reason is None:
            scripts.append(script)
        else:
            dropped.append((f"script:{script.name}", script.driver, reason))
    return dataclasses.replace(plan, igt=tuple(groups), scripts=tuple(scripts)), dropped
