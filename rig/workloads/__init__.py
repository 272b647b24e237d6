"""What runs in the guest while rig watches: IGT, KUnit, scripts, and memory pressure
beside them. Every workload returns plain results (frozen dataclasses) and keeps its raw
output under the run directory."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from rig.vm import VM

# Normalised statuses: IGT, KUnit and scripts each have their own words for these.
PASS, FAIL, SKIP, TIMEOUT, CRASH, WARN, ABSENT = "pass", "fail", "skip", "timeout", "crash", "warn", "absent"
FAILING = frozenset({FAIL, TIMEOUT, CRASH})

# Where rig keeps its files inside the guest (a tmpfs).
GUEST_DIR = "/tmp/rig"


@dataclass(frozen=True)
class TestResult:
    """One test case: an IGT subtest, a KUnit case or a script."""

    __test__ = False  # a name pytest would otherwise try to collect

    name: str  # "vgem_basic@mmap", "kunit:drm_mm.drm_test_mm_init", "script:dri-clients"
    kind: str  # "igt" | "kunit" | "script"
    status: str  # one of PASS FAIL SKIP TIMEOUT CRASH WARN ABSENT
    raw_status: str  # what the test framework said ("dmesg-warn", "ok", exit code ...)
    duration_s: float | None
    driver: str | None = None  # IGT_FORCE_DRIVER it ran with
    detail: str = ""  # the end of the test's output, for failures
    started_s: float | None = None  # seconds since the workloads started (host clock)

    @property
    def failing(self) -> bool:
        return self.status in FAILING

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def result_from_json(data: dict[str, Any]) -> TestResult:
    return TestResult(**{k: data.get(k) for k in TestResult.__dataclass_fields__})  # type: ignore[arg-type]


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
    """One part of a plan: an IGT group, the KUnit suites, a script."""

    @property
    def label(self) -> str:
        """For progress lines and the pressure timeline's events ("IGT group 1-vgem")."""

    async def prepare(self, vm: VM) -> None:
        """Check what can be checked before the workloads start (UserError/InfraError)."""

    async def run(self, ctx: WorkloadContext) -> list[TestResult]:
        """Run within ctx.budget_s; return the test results (raw output kept under ctx.out)."""


def workloads_for(plan: Plan) -> list[Workload]:
    """The plan's workloads in the order they run: IGT groups, KUnit, scripts."""
    # Imported here: each workload module imports this package's results and constants.
    from rig.workloads.igt import igt_workloads
    from rig.workloads.kunit import KunitWorkload
    from rig.workloads.script import ScriptWorkload

    workloads: list[Workload] = list(igt_workloads(plan))
    if plan.kunit_suites:
        workloads.append(KunitWorkload(plan.kunit_suites))
    workloads += [ScriptWorkload(script) for script in plan.scripts]
    return workloads

