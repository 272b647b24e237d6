"""The attempt's boundary: whatever ends a guest run early is caught, recorded with the
phase it happened in, and what was gathered before is kept (the guest is faked at the
boot_guest seam; the real thing is in tests/slow/test_run_faults.py)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import rig.vm
import rig.workloads
from rig.attempt import AttemptPlan, run_attempt
from rig.errors import InfraError, KernelError
from rig.guest_spec import GuestSpec
from rig.plan import load_plan
from rig.report.model import ErrorKind, Phase
from rig.results import TestResult
from rig.workloads.pressure import parse_pressure
from tests.unit.guestfake import FakeVM

PLANS = Path(__file__).resolve().parent.parent / "data" / "plans"  # wait.toml: no kmemleak scan


@dataclass(frozen=True)
class Step:
    """A workload that returns one result, or raises."""

    name: str
    error: Exception | None = None

    @property
    def label(self) -> str:
        return self.name

    async def prepare(self, vm: object) -> None:
        pass

    async def run(self, ctx: object) -> list[TestResult]:
        if self.error is not None:
            raise self.error
        return [TestResult(f"script:{self.name}", "script", "pass", "exit 0", 0.1)]


def _attempt(tmp_path: Path, monkeypatch, steps: list[Step], *, boot_error: Exception | None = None,
             deadline_s: float = 600.0, guest: GuestSpec | None = None, qom: dict[str, int] | None = None):
    @contextlib.asynccontextmanager
    async def fake_boot(kernel, image, run_dir, guest, hang=None) -> AsyncIterator[FakeVM]:
        run_dir.mkdir(parents=True, exist_ok=True)
        (run_dir / "console.log").write_text("[    1.0] Run /sbin/rig-init as init process\n")
        if boot_error is not None:
            raise boot_error
        vm = FakeVM(lambda argv: "29.5 0.0\n" if argv[:2] == ["cat", "/proc/uptime"] else None)
        vm.accel = "tcg"
        vm.hang = hang  # the attempt's, where it reads the record back
        vm.machine.qom = qom or {}
        yield vm

    monkeypatch.setattr(rig.vm, "boot_guest", fake_boot)
    monkeypatch.setattr(rig.workloads, "workloads_for", lambda plan: steps)
    monkeypatch.setattr("rig.workloads.pressure.SAMPLE_PERIOD_S", 0.01)
    what = AttemptPlan(tmp_path / "bzImage", None, guest or GuestSpec(), load_plan(str(PLANS / "wait.toml")),  # type: ignore[arg-type]
                       parse_pressure("none", 2048))
    return run_attempt(1, what, tmp_path / "attempt-1", deadline=time.monotonic() + deadline_s)


def test_a_failing_boot_is_recorded_with_its_phase_and_the_console_kept(tmp_path: Path, monkeypatch) -> None:
    result = _attempt(tmp_path, monkeypatch, [], boot_error=KernelError("the guest kernel panicked: oops"))
    assert result.error is not None
    assert (result.error.kind, result.error.phase) == (ErrorKind.KERNEL, Phase.BOOT)
    assert result.collected.console is not None and result.collected.console.read_text().startswith("[    1.0]")
    assert result.tests == ()


@pytest.mark.parametrize("error,kind", [(InfraError("QEMU was killed by signal 9 (not by rig)"), ErrorKind.HOST),
                                        (KernelError("the guest stopped answering SSH"), ErrorKind.KERNEL),
                                        (ValueError("a bug"), ErrorKind.BUG)])
def test_an_error_mid_plan_keeps_the_results_before_it(error: Exception, kind: ErrorKind, tmp_path: Path,
                                                       monkeypatch) -> None:
    result = _attempt(tmp_path, monkeypatch, [Step("first"), Step("second", error), Step("third")])
    assert result.error is not None and (result.error.kind, result.error.phase) == (kind, Phase.WORKLOADS)
    assert [t.name for t in result.tests] == ["script:first"]
    assert result.timeline is not None  # the pressure session left its timeline
    assert set(result.durations) == {"boot", "workloads"}
    if kind is ErrorKind.BUG:
        assert (tmp_path / "attempt-1" / "rig-traceback.txt").read_text().count("ValueError") >= 1


def test_the_run_deadline_ends_an_attempt_as_a_deadline(tmp_path: Path, monkeypatch) -> None:
    class Slow(Step):
        async def run(self, ctx: object) -> list[TestResult]:
            import asyncio

            await asyncio.sleep(60)
            return []

    result = _attempt(tmp_path, monkeypatch, [Step("first"), Slow("slow")], deadline_s=1.0)
    assert result.error is not None and (result.error.kind, result.error.phase) == (ErrorKind.DEADLINE, Phase.WORKLOADS)
    assert [t.name for t in result.tests] == ["script:first"]
    # before the guest was stopped, rig asked its kernel what it was doing
    assert result.hang is not None and result.hang.reason == "the run's deadline was reached during workloads"


def test_an_attempt_without_a_hang_has_no_hang_record(tmp_path: Path, monkeypatch) -> None:
    result = _attempt(tmp_path, monkeypatch, [Step("first")])
    assert result.error is None and result.hang is None


def test_a_clean_attempt_has_no_error_and_every_phase(tmp_path: Path, monkeypatch) -> None:
    result = _attempt(tmp_path, monkeypatch, [Step("first"), Step("second")])
    assert result.error is None and [t.name for t in result.tests] == ["script:first", "script:second"]
    assert set(result.durations) >= {"boot", "workloads", "collect", "shutdown"}


def test_an_attempt_on_a_gpu_model_with_counters_keeps_them(tmp_path: Path, monkeypatch) -> None:
    from rig.target import ARM64, MALI_FAULTS

    qom = {name: 7 for name in MALI_FAULTS.counters} | {f"inject-{name}": 0 for name in MALI_FAULTS.names}
    result = _attempt(tmp_path, monkeypatch, [Step("first")], guest=GuestSpec(target=ARM64, gpu="mali"), qom=qom)
    assert result.error is None and result.gpu_counters["jobs-run"] == 7
    assert set(result.gpu_counters) == set(qom)
    # a model that cannot answer costs the counters, not the attempt
    broken = _attempt(tmp_path / "broken", monkeypatch, [Step("first")], guest=GuestSpec(target=ARM64, gpu="mali"))
    assert broken.error is None and broken.gpu_counters == {} and [t.name for t in broken.tests] == ["script:first"]
