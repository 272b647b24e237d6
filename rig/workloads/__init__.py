"""What runs in the guest while rig watches: IGT, KUnit, scripts, and memory pressure
beside them. Every workload returns plain results (frozen dataclasses) and keeps its raw
output under the run directory."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

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
