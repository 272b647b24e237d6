"""IGT in the guest through igt_runner: one runner per driver group of the plan.

The plan's patterns are expanded against what the guest's IGT really has (each binary
lists its subtests), every problem is reported before anything runs, and each group's
results directory comes back to the host whole (results.json, per-test out/err/dmesg).
"""

from __future__ import annotations

import contextlib
import re
import shlex
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from rig.errors import InfraError, UserError
from rig.plan import IgtGroup, Plan, expand
from rig.splat.igt import RESULT_STATUS as _STATUS
from rig.splat.igt import IgtResult, IgtRun, parse_results_json
from rig.workloads import CRASH, FAIL, GUEST_DIR, TIMEOUT, WARN, TestResult, WorkloadContext

if TYPE_CHECKING:
    from rig.vm import VM

IGT_DIR = "/usr/libexec/igt-gpu-tools"
RUNNER = "igt_runner"

# Listing a binary's subtests runs it once; under TCG that takes about a second.
LIST_TIMEOUT_S = 60.0
# Runner start-up, results.json generation and copying, beyond the tests' own budget.
RUNNER_SLACK_S = 120.0
RESULTS_TIMEOUT_S = 60.0

def group_label(index: int, group: IgtGroup) -> str:
    """"2-virtio_gpu": names the group's directory and its events on the timeline."""
    return f"{index}-{group.driver or 'any'}"


@dataclass(frozen=True)
class PreparedGroup:
    index: int
    group: IgtGroup
    tests: tuple[str, ...]  # binary@subtest, expanded

    @property
    def label(self) -> str:
        return group_label(self.index, self.group)


@dataclass(frozen=True)
class GroupRun:
    prepared: PreparedGroup
    results: tuple[TestResult, ...]
    results_dir: Path  # the runner's results directory, copied back
    runner_log: Path
    exit_status: int
    duration_s: float


def igt_testlist(tests: tuple[str, ...]) -> str:
    """igt_runner's test list: one igt@binary[@subtest] per line."""
    return "".join(f"igt@{test.replace('@*', '')}\n" for test in tests)


def runner_argv(prepared: PreparedGroup, testlist: str, results: str, *, inactivity_s: float,
                kmemleak_each: bool) -> list[str]:
    argv = [
        RUNNER,
        "--overwrite",
        "--sync",  # results on disk after every test: a kernel crash loses at most one
        "--log-level", "verbose",
        "--test-list", testlist,
        "--per-test-timeout", str(int(prepared.group.per_test_timeout_s)),
        "--inactivity-timeout", str(int(inactivity_s)),
        # rig judges the kernel's reports itself and keeps going after the first one, so
        # one lockdep splat does not hide a later leak.
        "--abort-on-monitored-error=",
    ]
    if prepared.group.driver:
        argv += ["--environment", f"IGT_FORCE_DRIVER={prepared.group.driver}"]
    if kmemleak_each:
        argv += ["--kmemleak=each"]
    return [*argv, IGT_DIR, results]


def parse_subtest_list(stdout: str) -> list[str]:
    return [line.strip() for line in stdout.splitlines() if line.strip() and " " not in line.strip()]


# Lists every binary's subtests in one guest command (one SSH round trip, not one per
# binary): each listing is followed by a line naming the binary and its exit status.
_LIST_ALL = 'd=$0; for b; do "$d/$b" --list-subtests 2>/dev/null; echo "@@rig-listed $b $?"; done'


def parse_listing(stdout: str) -> tuple[dict[str, list[str]], list[str]]:
    """binary -> subtests, and the binaries the guest does not have, from _LIST_ALL's output."""
    available: dict[str, list[str]] = {}
    missing: list[str] = []
    pending: list[str] = []
    for line in stdout.splitlines():
        if line.startswith("@@rig-listed "):
            words = line.split(" ", 2)
            if len(words) < 3:  # a marker cut short (the guest stopped mid-line): that binary is unanswered
                pending = []
                continue
            _, binary, status = words
            if status.strip() in ("126", "127"):
                missing.append(binary)
            else:
                # 79 (IGT_EXIT_INVALID) is how a binary without subtests answers --list-subtests.
                available[binary] = parse_subtest_list("\n".join(pending)) if status.strip() == "0" else []
            pending = []
        else:
            pending.append(line)
    return available, missing


async def list_available(vm: VM, binaries: list[str]) -> tuple[dict[str, list[str]], list[str]]:
    """binary -> subtests, for the binaries that exist in the guest; plus the missing ones."""
    if not binaries:
        return {}, []
    result = await vm.run(["sh", "-c", _LIST_ALL, IGT_DIR, *binaries], timeout=LIST_TIMEOUT_S * len(binaries))
    available, missing = parse_listing(result.stdout)
    unanswered = [b for b in binaries if b not in available and b not in missing]
    if unanswered:
        raise InfraError(f"listing IGT's subtests in the guest gave no answer for {', '.join(unanswered)}",
                         hint="see the console log; the guest may be out of memory")
    return available, missing


async def prepare(vm: VM, plan: Plan) -> list[PreparedGroup]:
    """Expand every group's patterns in the guest; all problems at once as a UserError."""
    binaries: dict[str, None] = {}
    for group in plan.igt:
        for binary in group.binaries:
            if "*" not in binary and "?" not in binary and "[" not in binary:
                binaries.setdefault(binary, None)
    available, missing = await list_available(vm, list(binaries))
    problems = [f"IGT test '{b}' is not in the guest image (looked in {IGT_DIR})" for b in missing]
    prepared: list[PreparedGroup] = []
    groups = await _named_as_in_guest(vm, plan.igt)
    for index, group in enumerate(groups, 1):
        tests, group_problems = expand(group.tests, available)
        problems += [f"igt.group #{index} ({group.driver or 'any driver'}): {p}" for p in group_problems
                     if not any(m in p for m in missing)]
        if tests:
            prepared.append(PreparedGroup(index, group, tuple(tests)))
    if problems:
        raise UserError(f"plan {plan.source} names tests this guest cannot run:\n    " + "\n    ".join(problems),
                        hint="fix the test names (run `<test> --list-subtests` in `rig boot` to see them)")
    return prepared


# Every DRM device's driver name, as the kernel gives it ("virtio_gpu dev=... unique=...").
_DRM_NAMES = "cat /sys/kernel/debug/dri/*/name 2>/dev/null; true"


def drm_driver_names(listing: str) -> set[str]:
    return {line.split()[0] for line in listing.splitlines() if line.strip()}


def pick_driver_name(group: IgtGroup, in_guest: set[str]) -> IgtGroup:
    """The group with the name its driver has in this kernel, of those it may have."""
    if not group.driver_aliases:
        return group
    found = next((n for n in (group.driver, *group.driver_aliases) if n in in_guest), group.driver)
    return replace(group, driver=found, driver_aliases=())


async def _named_as_in_guest(vm: VM, groups: tuple[IgtGroup, ...]) -> tuple[IgtGroup, ...]:
    if not any(group.driver_aliases for group in groups):
        return groups  # no guest round trip for the usual plan
    listing = await vm.run(["sh", "-c", _DRM_NAMES], timeout=LIST_TIMEOUT_S)
    in_guest = drm_driver_names(listing.stdout)
    return tuple(pick_driver_name(group, in_guest) for group in groups)


class _Listing:
    """The plan's IGT patterns expanded in one guest: listed once for all groups (one
    guest command, and every problem of every group in one error), again in a new guest."""

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self._vm: VM | None = None
        self._groups: dict[int, PreparedGroup] = {}

    async def group(self, vm: VM, index: int) -> PreparedGroup | None:
        """Group `index` (1-based) expanded in `vm`; None: no test of it is in the guest."""
        if self._vm is not vm:
            self._groups = {prepared.index: prepared for prepared in await prepare(vm, self.plan)}
            self._vm = vm
        return self._groups.get(index)


@dataclass(frozen=True)
class IgtWorkload:
    """One IGT group of the plan, run by one igt_runner; its raw output goes to
    <out>/igt/group-<index>-<driver>/ (the runner's log and results directory)."""

    index: int
    group: IgtGroup
    listing: _Listing
    inactivity_s: float
    kmemleak_each: bool

    @property
    def label(self) -> str:
        return f"IGT group {group_label(self.index, self.group)}"

    async def prepare(self, vm: VM) -> None:
        """Expand the group's patterns against the guest's IGT (a UserError names every
        test of every group the guest cannot run)."""
        await self.listing.group(vm, self.index)

    async def run(self, ctx: WorkloadContext) -> list[TestResult]:
        prepared = await self.listing.group(ctx.vm, self.index)
        if prepared is None:
            return []
        ctx.say(f"IGT on {self.group.driver or 'any driver'}: {len(prepared.tests)} tests")
        run = await run_group(ctx.vm, prepared, ctx.out / "igt", inactivity_s=self.inactivity_s,
                              kmemleak_each=self.kmemleak_each, budget_s=ctx.budget_s, t0=ctx.t0, wrap=ctx.wrap)
        return list(run.results)


def igt_workloads(plan: Plan) -> list[IgtWorkload]:
    """One workload per IGT group, sharing one listing of the guest's tests."""
    listing = _Listing(plan)
    return [IgtWorkload(index, group, listing, plan.inactivity_timeout_s, plan.kmemleak_scan == "each")
            for index, group in enumerate(plan.igt, 1)]


async def run_group(vm: VM, prepared: PreparedGroup, out: Path, *, inactivity_s: float, kmemleak_each: bool,
                    budget_s: float, t0: float, wrap: list[str] | None = None) -> GroupRun:
    """Run one group with igt_runner and bring its results directory back."""
    local = out / f"group-{prepared.label}"
    local.mkdir(parents=True, exist_ok=True)
    testlist = local / "testlist.txt"
    testlist.write_text(igt_testlist(prepared.tests))
    remote_list = f"{GUEST_DIR}/igt-{prepared.label}.testlist"
    remote_results = f"{GUEST_DIR}/igt-results-{prepared.label}"
    await vm.put(testlist, remote_list)
    argv = runner_argv(prepared, remote_list, remote_results, inactivity_s=inactivity_s, kmemleak_each=kmemleak_each)
    if wrap:
        argv = [*wrap, *argv]
    env = {"IGT_FORCE_DRIVER": prepared.group.driver} if prepared.group.driver else None
    timeout = min(budget_s, len(prepared.tests) * (prepared.group.per_test_timeout_s + 15) + RUNNER_SLACK_S)
    runner_log = local / "runner.log"
    started = time.monotonic()
    result = await vm.run(argv, timeout=timeout, env=env)
    duration = time.monotonic() - started
    runner_log.write_text(f"$ {shlex.join(argv)}\n# exit status {result.exit_status} after {duration:.1f} s\n"
                          f"{result.stdout}\n--- stderr ---\n{result.stderr}")
    # An interrupted runner leaves no results.json; igt_results rebuilds it from the journal.
    await vm.run(["sh", "-c", 'test -f "$0/results.json" || igt_results "$0"', remote_results],
                 timeout=RESULTS_TIMEOUT_S)
    results_dir = local / "results"
    try:
        await vm.get_dir(remote_results, results_dir)
    except InfraError:
        results_dir.mkdir(parents=True, exist_ok=True)  # nothing came back: results say "not run"
    results = results_from_dir(results_dir, prepared, started_s=started - t0)
    return GroupRun(prepared, tuple(results), results_dir, runner_log, result.exit_status, duration)


def _tail(text: str, lines: int = 15) -> str:
    """Why a test failed: IGT's CRITICAL lines (the failed assertion) when there are
    any, else the end of its output."""
    critical = [line for line in text.splitlines() if "CRITICAL:" in line]
    chosen = list(dict.fromkeys(critical)) or text.rstrip().splitlines()
    return "\n".join(chosen[-lines:])


# igt_runner's dmesg lines: "<level> [seconds] message". It calls a test dmesg-warn when a
# line of level 4 (KERN_WARNING) or more urgent (a lower number) is not on its ignore list.
_DMESG_LINE = re.compile(r"^<(\d)>\s*(?:\[\s*[\d.]+\]\s*)?(.*)$")
IGT_WARN_LEVEL = 4


def warn_reason(entry: IgtResult, lines: int = 15) -> str:
    """Why IGT said warn: the kernel warnings its dmesg capture holds (dmesg-warn; under
    emulation often vkms' "vblank timer overrun"), else the test's own WARNING lines on
    stderr (igt_warn: result warn), else the end of its stderr."""
    warnings = []
    for line in entry.dmesg.splitlines():
        match = _DMESG_LINE.match(line)
        if match and int(match.group(1)) <= IGT_WARN_LEVEL and not match.group(2).startswith("[IGT] "):
            warnings.append(match.group(2).rstrip())
    if not warnings:
        warnings = [line for line in entry.err.splitlines() if "WARNING:" in line]
    chosen = list(dict.fromkeys(warnings)) or entry.err.rstrip().splitlines()
    if not chosen:
        return ""
    more = len(chosen) - lines
    return "\n".join(chosen[:lines] + ([f"... and {more} more"] if more > 0 else []))


def results_from_run(run: IgtRun | None, prepared: PreparedGroup, *, started_s: float | None = None
                     ) -> list[TestResult]:
    """TestResults from igt_runner's results, plus "not run" for listed tests it lacks."""
    found: dict[str, TestResult] = {}
    for entry in run.results if run is not None else ():
        name = entry.name.removeprefix("igt@")
        status = _STATUS.get(entry.result, FAIL)
        detail = (_tail(entry.out + "\n" + entry.err) if status in (FAIL, TIMEOUT, CRASH)
                  else warn_reason(entry) if status is WARN else "")
        found[name] = TestResult(name, "igt", status, entry.result, entry.duration, prepared.group.driver, detail,
                                 started_s)
    results = list(found.values())
    for test in prepared.tests:
        prefix = test[:-1] if test.endswith("@*") else test + "@"
        if test not in found and not any(name.startswith(prefix) for name in found):
            results.append(TestResult(test, "igt", CRASH, "notrun", None, prepared.group.driver,
                                      "igt_runner produced no result for this test", started_s))
    return results


def results_from_dir(results_dir: Path, prepared: PreparedGroup, *, started_s: float | None = None
                     ) -> list[TestResult]:
    path = results_dir / "results.json"
    run = None
    if path.is_file():
        with contextlib.suppress(UserError):  # a results.json cut short: the tests count as not run
            run = parse_results_json(path.read_bytes())
    return results_from_run(run, prepared, started_s=started_s)
