"""What runs in the guest while rig watches: IGT, KUnit, scripts, KTAP programs, and memory
pressure beside them. Every workload returns plain results (frozen dataclasses) and keeps its raw
output under the run directory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

# Statuses and results live in rig.results; these names stay for the workloads' imports.
from rig.results import FAILING, TestResult, TestStatus, result_from_json

if TYPE_CHECKING:
    from rig.vm import VM

PASS, FAIL, SKIP, TIMEOUT, CRASH, WARN, ABSENT = (TestStatus.PASS, TestStatus.FAIL, TestStatus.SKIP,
                                                  TestStatus.TIMEOUT, TestStatus.CRASH, TestStatus.WARN,
                                                  TestStatus.ABSENT)
__all__ = ["ABSENT", "CRASH", "FAIL", "FAILING", "GUEST_DIR", "PASS", "SKIP", "TIMEOUT", "WARN", "TestResult",
           "TestStatus", "Workload", "WorkloadContext", "result_from_json"]

# Where rig keeps its files inside the guest (a tmpfs).
GUEST_DIR = "/tmp/rig"


# ---------------------------------------------------------------- the workload protocol
# A run's attempt boots a guest, prepares every workload of the plan (checks that may
# fail fast, before pressure starts), then runs them one after the other inside one
# pressure session. Each workload returns its test results; the attempt records them as
# they come, so an error in a later workload loses nothing.

if TYPE_CHECKING:
    from rig.plan import Plan


@dataclass(frozen=True)
class WorkloadContext:
    """What a running workload may use: the guest, where to keep raw output, the time
    base of the timeline, its time budget, and the pressure session's wrapper."""

    vm: VM
    out: Path  # the attempt's directory; each workload writes under its own subdirectory
    t0: float  # time.monotonic() when the workloads started (the timeline's zero)
    budget_s: float  # time this workload may take at most
    wrap: list[str] | None = None  # argv prefix that puts a guest command under pressure (memcg)
    say: Callable[[str], None] = print


class Workload(Protocol):
    """One part of a plan: an IGT group, the KUnit suites, a script, a KTAP program."""

    @property
    def label(self) -> str:
        """For progress lines and the pressure timeline's events ("IGT group 1-vgem")."""

    async def prepare(self, vm: VM) -> None:
        """Check what can be checked before the workloads start (UserError/InfraError)."""

    async def run(self, ctx: WorkloadContext) -> list[TestResult]:
        """Run within ctx.budget_s; return the test results (raw output kept under ctx.out)."""


def workloads_for(plan: Plan) -> list[Workload]:
    """The plan's workloads in the order they run: IGT groups, KUnit, scripts, KTAP programs."""
    # Imported here: each workload module imports this package's results and constants.
    from rig.workloads.igt import igt_workloads
    from rig.workloads.ktap import KtapWorkload
    from rig.workloads.kunit import KunitWorkload
    from rig.workloads.script import ScriptWorkload

    workloads: list[Workload] = list(igt_workloads(plan))
    if plan.kunit_suites:
        workloads.append(KunitWorkload(plan.kunit_suites))
    workloads += [ScriptWorkload(script) for script in plan.scripts]
    workloads += [KtapWorkload(program) for program in plan.ktap]
    return workloads

