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

import dataclasses
import fnmatch
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rig import cache, proc
from rig.errors import RigError
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
            results.append(TestResult(f"kunit:{pattern}", "kunit", ABSENT, NOT_IN_KERNEL, None,
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


# ------------------------------------------------------------------ absent: not built, or not there
# A suite the running kernel lacks is either not in this kernel version at all (the DRM
# suites come and go between versions) or in the source but not built (its Kconfig symbol
# is off: not built with --profile kunit). Only the source can tell which.

NOT_IN_KERNEL = "not in this kernel"
NOT_IN_SOURCE = "not in this kernel's source"
NOT_BUILT = "in the source, not built"
# Where kernels keep their KUnit suites (all of 6.1's; all but two of 6.12's, none in DRM):
# reading only these takes git grep a second, the whole tree tens of seconds.
SUITE_FILES = ("*test*.c", "*kunit*.c")
GREP_TIMEOUT_S = 300.0
# A suite definition: `static struct kunit_suite drm_mm_test_suite = { .name = "drm_mm", ...`
_SUITE_START = re.compile(r"struct\s+kunit_suite\s+\w+\s*=\s*\{")
_SUITE_START_ERE = r"struct[[:space:]]+kunit_suite[[:space:]]+[[:alnum:]_]+[[:space:]]*=[[:space:]]*\{"
_SUITE_NAME = re.compile(r'\.name\s*=\s*"([^"]+)"')
# The lines after a definition's first one that may hold its .name.
_NAME_WITHIN = 6


def parse_suite_grep(output: str) -> dict[str, str]:
    """suite name -> file, from `git grep -z -n -A6 <suite definition> <commit>`: lines
    "<commit>:<path>\\0<line>\\0<text>", groups of a match and its context split by "--"."""
    found: dict[str, str] = {}
    pending: str | None = None  # the file of a definition whose .name is still to come
    left = 0
    for line in output.splitlines():
        parts = line.split("\0")
        if len(parts) < 3:
            pending = None  # "--" between groups
            continue
        path, text = parts[0].split(":", 1)[-1], "\0".join(parts[2:])
        if _SUITE_START.search(text):
            pending, left = path, _NAME_WITHIN
        if pending is not None:
            name = _SUITE_NAME.search(text)
            if name and pending == path:
                found.setdefault(name.group(1), path)
                pending = None
            else:
                left -= 1
                if left < 0:
                    pending = None
    return found


def suites_in_source(repo: Path, commit: str) -> dict[str, str]:
    """Every KUnit suite the source at `commit` defines (name -> file), cached per commit
    in rig's cache (a commit's files never change); {} when git cannot tell."""
    if not commit or not (repo / ".git").exists() and not (repo / "HEAD").exists():
        return {}
    cached = cache.cache_dir("kunit-suites") / f"{commit}.json"
    if cached.is_file():
        return dict(json.loads(cached.read_text()))
    try:
        result = proc.run(["git", "grep", "-z", "-n", f"-A{_NAME_WITHIN}", "-E", _SUITE_START_ERE, commit, "--",
                           *SUITE_FILES],
                          cwd=repo, timeout=GREP_TIMEOUT_S, check=False, what=f"git grep for KUnit suites at {commit[:12]}")
    except RigError:
        return {}  # the rows keep "not in this kernel": true, if less precise
    if result.returncode not in (0, 1):  # 1: no match; anything else: git could not look
        return {}
    found = parse_suite_grep(result.stdout)
    cached.write_text(json.dumps(found, sort_keys=True))
    return found


def explain_absent(results: Sequence[TestResult], in_source: Mapping[str, str] | None) -> list[TestResult]:
    """The absent suites' rows, saying whether the source has them (then: not built) or
    not; `in_source` None leaves them as they are (no source to look in)."""
    if in_source is None:
        return list(results)
    out: list[TestResult] = []
    for result in results:
        if result.status is not ABSENT or result.kind != "kunit":
            out.append(result)
            continue
        pattern = result.name.removeprefix("kunit:")
        files = sorted({path for suite, path in in_source.items() if fnmatch.fnmatchcase(suite, pattern)})
        if files:
            out.append(dataclasses.replace(
                result, raw_status=NOT_BUILT,
                detail=f"defined in {', '.join(files)} but not built into this kernel: its Kconfig option is off "
                       "(build with --profile kunit, or a --config fragment that enables it)"))
        else:
            out.append(dataclasses.replace(
                result, raw_status=NOT_IN_SOURCE,
                detail="no KUnit suite of this name in the kernel's source: this kernel version does not have it"))
    return out


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
