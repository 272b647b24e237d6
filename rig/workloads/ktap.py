"""Programs that print KTAP (rig's own guest test programs, such as rig-panfrost): one
guest command each, and every case the program reports is a test named ktap:suite.case.

The program writes its own kernel-log markers around each case ("rig: start
ktap:suite.case", from the task that runs the case), so a kernel report lands on the case
that caused it; the workload's markers around the whole program ("rig: start ktap:NAME")
catch what happens between cases. The program bounds each case itself; the plan's
timeout bounds the whole run, and what the program printed until then is kept (its
stdout is read as it comes), so a hang loses only the case that hung.
"""

from __future__ import annotations

import re
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rig.errors import UserError
from rig.guest import GuestTimeout
from rig.plan import KtapProgram
from rig.splat.ktap import KtapRun, KtapTest, parse_ktap
from rig.workloads import CRASH, FAIL, PASS, SKIP, TIMEOUT, TestResult, TestStatus, WorkloadContext
from rig.workloads.script import kmsg

if TYPE_CHECKING:
    from rig.vm import VM

# `command -v` in a guest that answers SSH; longer means the guest is in trouble.
PREPARE_TIMEOUT_S = 60.0
# How much of a failing case's output goes into its result (the whole is in the log).
DETAIL_LINES = 15

_STATUS = {"pass": PASS, "fail": FAIL, "skip": SKIP, "todo": SKIP, "error": CRASH}
# rig's guest harness prints "# start: NAME" before a case runs and "# duration: 0.123 s"
# before its result line.
_DURATION = re.compile(r"^duration: (\d+(?:\.\d+)?) s$")
_START = re.compile(r"^start: (\S+)$")


def _bookkeeping(line: str) -> bool:
    return bool(_DURATION.match(line.strip()) or _START.match(line.strip()))


def _duration(case: KtapTest) -> float | None:
    for line in case.diagnostics:
        m = _DURATION.match(line.strip())
        if m:
            return float(m.group(1))
    return None


def _detail(case: KtapTest, status: TestStatus) -> str:
    if status is SKIP or not case.diagnostics:
        return case.reason
    lines = [line for line in case.diagnostics if not _bookkeeping(line)]
    return "\n".join([*lines[-DETAIL_LINES:], *([case.reason] if case.reason else [])]).strip()


def _cases(run: KtapRun) -> list[KtapTest]:
    """The innermost results in the order the program ran them: a suite cut short (an
    error of its own) comes after the cases it finished."""
    out: list[KtapTest] = []

    def walk(test: KtapTest) -> None:
        for sub in test.subtests:
            walk(sub)
        if not test.subtests or test.status == "error":
            out.append(test)

    for test in run.tests:
        walk(test)
    return out


def results_from_output(program: KtapProgram, stdout: str, stderr: str, exit_status: int | None, *,
                        started_s: float | None = None, duration_s: float | None = None,
                        timeout_s: float | None = None) -> list[TestResult]:
    """The program's cases as TestResults, from what it printed; `exit_status` None: its
    time (`timeout_s`, by default the plan's for it) ran out. A program that ended badly without saying so in KTAP (no
    KTAP at all, an exit status its cases do not explain, a document cut short) gets a
    result of its own, ktap:NAME, with the end of its stderr."""
    run = parse_ktap(stdout)
    limit = program.timeout_s if timeout_s is None else timeout_s
    results: list[TestResult] = []
    at = started_s
    for case in _cases(run):
        path = case.path
        if case.status == "error":
            # a suite cut short: the case it was running is the one its last "start:" names
            started = [m.group(1) for m in map(_START.match, case.diagnostics) if m]
            if started and started[-1] not in (sub.name for sub in case.subtests):
                path = f"{case.path}.{started[-1]}"
        status = _STATUS.get(case.status, FAIL)
        if case.status == "error" and exit_status is None:
            status = TIMEOUT  # the case running when the plan's timeout ended the program
        took = _duration(case)
        detail = _detail(case, status)
        if status is TIMEOUT:
            detail = f"still running when the program's {limit:.0f} s ran out"
        results.append(TestResult(f"ktap:{path}", "ktap", status, case.status, took, None, detail, at))
        if at is not None and took is not None:
            at += took

    failing = any(r.failing for r in results)
    tail = "\n".join((stderr.strip() or stdout.strip()).splitlines()[-DETAIL_LINES:])
    whole: tuple[TestStatus, str, str] | None = None
    if exit_status is None and not failing:
        whole = (TIMEOUT, "timeout", f"did not finish within {limit:.0f} s")
    elif exit_status is not None and not results:
        whole = (CRASH, f"exit {exit_status}", f"printed no KTAP result\n{tail}".strip())
    elif run.errors and not failing:
        whole = (CRASH, f"exit {exit_status}", "\n".join([*run.errors, tail]).strip())
    elif exit_status not in (None, 0) and not failing:
        # 1 is "a case failed", which a case should show; anything else is the program's end
        whole = (FAIL if exit_status == 1 else CRASH, f"exit {exit_status}", tail)
    if whole is not None:
        status, raw, detail = whole
        results.append(TestResult(f"ktap:{program.name}", "ktap", status, raw, duration_s, None, detail, started_s))
    return results


@dataclass(frozen=True)
class KtapWorkload:
    """One plan [[ktap]] program as a workload; its output goes to <out>/ktap/NAME.ktap
    (stdout) and NAME.log (command, exit status, stderr)."""

    program: KtapProgram

    @property
    def label(self) -> str:
        return f"KTAP program {self.program.name}"

    async def prepare(self, vm: VM) -> None:
        """The program must be in the guest image, before any pressure starts."""
        command = self.program.argv[0]
        found = await vm.run(["sh", "-c", 'command -v "$0"', command], timeout=PREPARE_TIMEOUT_S)
        if found.exit_status != 0:
            raise UserError(
                f"the plan's [[ktap]] program '{self.program.name}' runs {command}, which this guest does not have",
                hint="rig's guest programs are built into the images whose recipe lists them "
                     "(images/arm64.toml: programs = [\"panfrost\"]): run this plan with --arch arm64")

    async def run(self, ctx: WorkloadContext) -> list[TestResult]:
        name = f"ktap:{self.program.name}"
        await kmsg(ctx.vm, f"rig: start {name}")
        try:
            return await run_program(ctx.vm, self.program, ctx.out / "ktap", t0=ctx.t0, wrap=ctx.wrap,
                                     timeout_s=min(self.program.timeout_s, ctx.budget_s))
        finally:
            await kmsg(ctx.vm, f"rig: end {name}")


async def run_program(vm: VM, program: KtapProgram, out: Path, *, t0: float, wrap: list[str] | None = None,
                      timeout_s: float | None = None) -> list[TestResult]:
    """Run the program once (within `timeout_s`, by default its own) and read its cases."""
    timeout = program.timeout_s if timeout_s is None else timeout_s
    out.mkdir(parents=True, exist_ok=True)
    argv = [*(wrap or []), *program.argv]
    chunks: list[bytes] = []
    started = time.monotonic()
    try:
        result = await vm.run(argv, timeout=timeout, on_stdout=chunks.append)
        stdout, stderr, status = result.stdout, result.stderr, result.exit_status
    except GuestTimeout:
        # The program's own per-case limit did not end it: keep what it printed so far.
        stdout, stderr, status = b"".join(chunks).decode(errors="replace"), "", None
    took = time.monotonic() - started
    (out / f"{program.name}.ktap").write_text(stdout)
    ended = f"exit status {status}" if status is not None else f"timed out after {timeout:.0f} s"
    (out / f"{program.name}.log").write_text(f"$ {shlex.join(argv)}\n# {ended} after {took:.1f} s\n"
                                             f"--- stderr ---\n{stderr}")
    return results_from_output(program, stdout, stderr, status, started_s=started - t0, duration_s=took,
                               timeout_s=timeout)
