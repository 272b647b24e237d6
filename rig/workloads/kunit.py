"""KUnit: suites built into the kernel (`--profile kunit`) run at boot; rig reads the
plan's suites afterwards, as a workload.

Each suite's results come from /sys/kernel/debug/kunit/<suite>/results (KTAP the kernel
keeps per suite, CONFIG_KUNIT_DEBUGFS), read in one guest command. The console's KTAP is
the fallback: for a kernel without that directory, and for a suite whose kept log is
incomplete (the kernel keeps a bounded log per case, 512 bytes in 6.1, and a case that
printed more loses its own result line there). Durations come from the console, whose
lines carry timestamps. A plan suite neither has is `absent`: the DRM suites differ
between kernel versions.
"""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rig.splat.ktap import KtapRun, KtapTest, parse_ktap
from rig.workloads import ABSENT, CRASH, FAIL, PASS, SKIP, TestResult, WorkloadContext

if TYPE_CHECKING:
    from rig.vm import VM

DEBUGFS = "/sys/kernel/debug/kunit"
# Reading a few dozen small debugfs files; a guest that needs longer is in trouble.
READ_TIMEOUT_S = 60.0

_STATUS = {"pass": PASS, "fail": FAIL, "skip": SKIP, "todo": SKIP, "error": CRASH}

# Prints, for every suite directory matching one of the patterns ($1...), a marker line
# with its name and then its results; nothing when the kernel has no such directory. The
# patterns are shell patterns, which read as fnmatch's for * ? [...].
#
# Nothing is read after a boot with kunit.filter_glob: the kernel then runs filtered copies
# of the suites and frees them, but (6.1 at least) keeps their debugfs files, whose read is
# a use-after-free (KASAN reports it in kunit_suite_has_succeeded). The console has the
# same KTAP.
_MARK = "@@rig-kunit-suite "
_READ = ('case " $(cat /proc/cmdline) " in *" kunit.filter_glob="*) exit 0;; esac; '
         'cd "$0" 2>/dev/null || exit 0; for d in */; do [ -d "$d" ] || continue; s=${d%/}; '
         'for p; do case $s in $p) '
         f"printf '\\n{_MARK}%s\\n' \"$s\"; cat \"$s/results\"; break;; esac; done; done")


def parse_debugfs(stdout: str) -> dict[str, str]:
    """suite -> its results file, from _READ's output (in the order the guest listed them)."""
    suites: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in stdout.splitlines():
        if line.startswith(_MARK):
            current = suites.setdefault(line[len(_MARK):].strip(), [])
        elif current is not None:
            current.append(line)
    return {suite: "\n".join(lines).strip("\n") + "\n" for suite, lines in suites.items()}


def _by_suite(run: KtapRun) -> dict[str, list[KtapTest]]:
    """suite -> its innermost results (cases, parameters), in run order."""
    suites: dict[str, list[KtapTest]] = {}
    for test in run.leaves():
        suites.setdefault(test.path.split(".", 1)[0], []).append(test)
    return suites


def _complete(run: KtapRun) -> bool:
    return not run.errors and bool(run.tests) and all(t.status != "error" for t in run.leaves())


def results_for(patterns: tuple[str, ...], debugfs: dict[str, str], console_text: str) -> list[TestResult]:
    """TestResults for the plan's suite patterns: each suite from its debugfs results when
    they are complete, else from the console; `absent` for a pattern neither has."""
    console = _by_suite(parse_ktap(console_text)) if console_text else {}
    durations = {t.path: t.end_time - t.start_time for cases in console.values() for t in cases
                 if t.start_time is not None and t.end_time is not None}
    kept = {suite: parse_ktap(text) for suite, text in debugfs.items()}
    results: list[TestResult] = []
    for pattern in patterns:
        names = [s for s in dict.fromkeys([*console, *kept]) if fnmatch.fnmatchcase(s, pattern)]
        if not names:
            results.append(TestResult(f"kunit:{pattern}", "kunit", ABSENT, "not in this kernel", None,
                                      detail=f"neither {DEBUGFS} nor the console has KTAP for this suite"))
            continue
        for suite in names:
            run = kept.get(suite)
            if run is not None and (_complete(run) or suite not in console):
                cases = _by_suite(run).get(suite, [])
            else:
                cases = console[suite]
            results += [TestResult(f"kunit:{case.path}", "kunit", _STATUS.get(case.status, FAIL), case.status,
                                   durations.get(case.path), detail=case.reason) for case in cases]
    return results


def results_from_console(console_text: str, suites: tuple[str, ...]) -> list[TestResult]:
    """The suites' results from the console alone (no guest to read debugfs in)."""
    return results_for(suites, {}, console_text)


@dataclass(frozen=True)
class KunitWorkload:
    """The plan's KUnit suites (fnmatch patterns); the debugfs text read goes to
    <out>/kunit/debugfs.txt."""

    suites: tuple[str, ...]

    @property
    def label(self) -> str:
        return "KUnit"

    async def prepare(self, vm: VM) -> None:
        """Nothing to check ahead: the suites already ran at boot, and a suite this kernel
        lacks is a result (`absent`), not an error."""

    async def run(self, ctx: WorkloadContext) -> list[TestResult]:
        read = await ctx.vm.run(["sh", "-c", _READ, DEBUGFS, *self.suites], timeout=min(READ_TIMEOUT_S, ctx.budget_s))
        local = ctx.out / "kunit"
        local.mkdir(parents=True, exist_ok=True)
        (local / "debugfs.txt").write_text(read.stdout)
        return results_for(self.suites, parse_debugfs(read.stdout), ctx.vm.machine.console_text())
