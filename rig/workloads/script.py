"""Extra scripts from the plan: one guest command each, its exit status the verdict."""

from __future__ import annotations

import shlex
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rig.guest import GuestTimeout
from rig.plan import Script
from rig.workloads import FAIL, PASS, TIMEOUT, TestResult

if TYPE_CHECKING:
    from rig.vm import VM


async def run_script(vm: VM, script: Script, out: Path, *, t0: float, wrap: list[str] | None = None) -> TestResult:
    out.mkdir(parents=True, exist_ok=True)
    argv = [*(wrap or []), *script.argv]
    env = {"IGT_FORCE_DRIVER": script.driver} if script.driver else None
    started = time.monotonic()
    log = out / f"{script.name}.log"
    try:
        result = await vm.run(argv, timeout=script.timeout_s, env=env)
    except GuestTimeout:
        # A script running too long is the script's failure; a dead guest raises on.
        log.write_text(f"$ {shlex.join(argv)}\n# timed out after {script.timeout_s:.0f} s\n")
        return TestResult(f"script:{script.name}", "script", TIMEOUT, "timeout", time.monotonic() - started,
                          script.driver, f"did not finish within {script.timeout_s:.0f} s", started - t0)
    log.write_text(f"$ {shlex.join(argv)}\n# exit status {result.exit_status} after {result.duration_s:.1f} s\n"
                   f"{result.stdout}\n--- stderr ---\n{result.stderr}")
    status = PASS if result.exit_status == 0 else FAIL
    detail = "" if status == PASS else "\n".join((result.stderr or result.stdout).strip().splitlines()[-15:])
    return TestResult(f"script:{script.name}", "script", status, f"exit {result.exit_status}",
                      result.duration_s, script.driver, detail, started - t0)
