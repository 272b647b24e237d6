"""Extra scripts from the plan: one guest command each, its exit status the verdict.

Markers on the kernel log around each script ("rig: start script:NAME" ... "rig: end
script:NAME") attribute what the kernel reports meanwhile to the script, as IGT's own
"[IGT]" lines do for its tests."""

from __future__ import annotations

import contextlib
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rig.errors import RigError
from rig.guest import GuestTimeout
from rig.plan import Script
from rig.workloads import FAIL, PASS, TIMEOUT, TestResult, WorkloadContext

if TYPE_CHECKING:
    from rig.vm import VM


async def kmsg(vm: VM, line: str) -> None:
    """A line in the kernel log, so reports printed meanwhile are attributed to what it
    names. Best effort: a guest that cannot take it is dead, and the next command says so."""
    with contextlib.suppress(RigError):
        await vm.kmsg(line)


@dataclass(frozen=True)
class ScriptWorkload:
    """One plan script as a workload; its raw output goes to <out>/scripts/NAME.log."""

    script: Script

    @property
    def label(self) -> str:
        return f"script {self.script.name}"

    async def prepare(self, vm: VM) -> None:
        """Nothing to check ahead: the plan's argv runs as given, and a missing command is
        the script's failure (exit 127)."""

    async def run(self, ctx: WorkloadContext) -> list[TestResult]:
        name = f"script:{self.script.name}"
        await kmsg(ctx.vm, f"rig: start {name}")
        result = await run_script(ctx.vm, self.script, ctx.out / "scripts", t0=ctx.t0, wrap=ctx.wrap,
                                  timeout_s=min(self.script.timeout_s, ctx.budget_s))
        await kmsg(ctx.vm, f"rig: end {name}")
        return [result]


async def run_script(vm: VM, script: Script, out: Path, *, t0: float, wrap: list[str] | None = None,
                     timeout_s: float | None = None) -> TestResult:
    """Run the script once (within `timeout_s`, by default its own timeout) and judge it."""
    timeout = script.timeout_s if timeout_s is None else timeout_s
    out.mkdir(parents=True, exist_ok=True)
    argv = [*(wrap or []), *script.argv]
    env = {"IGT_FORCE_DRIVER": script.driver} if script.driver else None
    started = time.monotonic()
    log = out / f"{script.name}.log"
    try:
        result = await vm.run(argv, timeout=timeout, env=env)
    except GuestTimeout:
        # A script running too long is the script's failure; a dead guest raises on.
        log.write_text(f"$ {shlex.join(argv)}\n# timed out after {timeout:.0f} s\n")
        return TestResult(f"script:{script.name}", "script", TIMEOUT, "timeout", time.monotonic() - started,
                          script.driver, f"did not finish within {timeout:.0f} s", started - t0)
    log.write_text(f"$ {shlex.join(argv)}\n# exit status {result.exit_status} after {result.duration_s:.1f} s\n"
                   f"{result.stdout}\n--- stderr ---\n{result.stderr}")
    status = PASS if result.exit_status == 0 else FAIL
    detail = "" if status == PASS else "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
    return TestResult(f"script:{script.name}", "script", status, f"exit {result.exit_status}",
                      result.duration_s, script.driver, detail, started - t0)
