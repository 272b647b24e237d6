"""Test results, the shape every workload returns and every report reads.

    TestStatus     pass, fail, skip, timeout, crash, warn, absent (a StrEnum: its members
                   are the strings report.json has always carried)
    TestKind       igt, kunit, script, ktap
    TestName       one test's name in its four forms, parsed and printed:
                   igt "binary@subtest[@dynamic]", kunit "kunit:suite.case[.param]",
                   script "script:name", ktap "ktap:suite.case" (a plan's KTAP program)
    TestResult     one test case's outcome (frozen; to_json/from_json)

IGT, KUnit and scripts each have their own words for an outcome; the workloads map them
to TestStatus (IGT's map is rig.splat.igt.RESULT_STATUS) and keep the original word in
raw_status.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from enum import StrEnum
from typing import Any


class TestStatus(StrEnum):
    __test__ = False  # a name pytest would otherwise try to collect

    PASS = "pass"
    FAIL = "fail"
    SKIP = "skip"
    TIMEOUT = "timeout"
    CRASH = "crash"
    WARN = "warn"  # passed, but the kernel logged a warning meanwhile (the warning is a finding)
    ABSENT = "absent"  # the plan names it, this kernel or guest does not have it

    @property
    def failing(self) -> bool:
        return self in FAILING


FAILING = frozenset({TestStatus.FAIL, TestStatus.TIMEOUT, TestStatus.CRASH})


class TestKind(StrEnum):
    __test__ = False

    IGT = "igt"
    KUNIT = "kunit"
    SCRIPT = "script"
    KTAP = "ktap"  # a case of a program that prints KTAP (rig's own guest test programs)


@dataclass(frozen=True, order=True)
class TestName:
    """A test's name. Its string form is the one results, plans and reports use: IGT's
    without igt_runner's "igt@" (plans match their patterns against it), KUnit's and
    scripts' with their kind in front (they share no namespace with IGT binaries)."""

    __test__ = False

    kind: TestKind
    path: str  # igt: binary[@subtest[@dynamic]]; kunit, ktap: suite.case[.param]; script: its name

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", TestKind(self.kind))
        if not self.path:
            raise ValueError(f"a {self.kind} test needs a name")

    @classmethod
    def parse(cls, text: str) -> TestName:
        """"kunit:x", "script:x" and "ktap:x" by their prefix; anything else is IGT (with
        or without igt_runner's "igt@")."""
        for kind in (TestKind.KUNIT, TestKind.SCRIPT, TestKind.KTAP):
            if text.startswith(f"{kind}:"):
                return cls(kind, text[len(kind) + 1:])
        return cls(TestKind.IGT, text.removeprefix("igt@"))

    def __str__(self) -> str:
        return self.path if self.kind is TestKind.IGT else f"{self.kind}:{self.path}"

    @property
    def runner_name(self) -> str:
        """igt_runner's form (igt@binary@subtest); the string form for the others."""
        return f"igt@{self.path}" if self.kind is TestKind.IGT else str(self)

    @property
    def parts(self) -> tuple[str, ...]:
        """igt: (binary, subtest, dynamic) as far as given; kunit, ktap: (suite, case, param...)."""
        if self.kind is TestKind.IGT:
            return tuple(self.path.split("@"))
        if self.kind in (TestKind.KUNIT, TestKind.KTAP):
            return tuple(self.path.split("."))
        return (self.path,)

    @property
    def is_igt_subtest(self) -> bool:
        return self.kind is TestKind.IGT and len(self.parts) > 1


@dataclass(frozen=True)
class TestResult:
    """One test case: an IGT subtest, a KUnit case, a script or a KTAP program's case."""

    __test__ = False  # a name pytest would otherwise try to collect

    name: str  # str(TestName): "vgem_basic@mmap", "kunit:drm_mm.drm_test_mm_init", "script:dri-clients",
    #       "ktap:panfrost_submit.pan-submit"
    kind: TestKind
    status: TestStatus
    raw_status: str  # what the test framework said ("dmesg-warn", "ok", exit code ...)
    duration_s: float | None
    driver: str | None = None  # IGT_FORCE_DRIVER it ran with
    detail: str = ""  # the end of the test's output, for failures
    started_s: float | None = None  # seconds since the workloads started (host clock)

    def __post_init__(self) -> None:
        # Workloads may pass the plain strings; a word outside the enums is a bug, caught here.
        object.__setattr__(self, "kind", TestKind(self.kind))
        object.__setattr__(self, "status", TestStatus(self.status))

    @property
    def failing(self) -> bool:
        return self.status.failing

    @property
    def test_name(self) -> TestName:
        return TestName.parse(self.name) if self.kind is TestKind.IGT else TestName(
            self.kind, self.name.removeprefix(f"{self.kind}:"))

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data.update(kind=str(self.kind), status=str(self.status))
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> TestResult:
        return cls(**{k: data.get(k) for k in cls.__dataclass_fields__})  # type: ignore[arg-type]


def result_from_json(data: dict[str, Any]) -> TestResult:
    return TestResult.from_json(data)
