"""The script workload against a fake guest: kernel-log markers around the script, the
pressure wrap, the budget, and a timeout as the script's own failure."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rig.guest import GuestResult, GuestTimeout
from rig.plan import Script
from rig.workloads import FAIL, PASS, TIMEOUT, WorkloadContext
from rig.workloads.script import ScriptWorkload
from tests.unit.guestfake import FakeVM

SCRIPT = Script("gem-objects", ("cat", "/sys/kernel/debug/dri/0/gem_names"), 300.0, "vgem")


def _ctx(vm: FakeVM, tmp_path: Path, budget_s: float = 1000.0) -> WorkloadContext:
    return WorkloadContext(vm, tmp_path, t0=0.0, budget_s=budget_s, wrap=["sh", "-c", "enter", "/cg"])  # type: ignore[arg-type]


def test_markers_around_the_script_attribute_the_kernel_log_to_it(tmp_path: Path) -> None:
    def answer(argv: list[str]) -> GuestResult | None:
        if "gem_names" in " ".join(argv):
            return GuestResult(tuple(argv), 0, "name 1\n", "", 0.2)
        return None

    vm = FakeVM(answer)
    results = asyncio.run(ScriptWorkload(SCRIPT).run(_ctx(vm, tmp_path)))
    assert [r.name for r in results] == ["script:gem-objects"] and results[0].status == PASS
    assert results[0].driver == "vgem"
    assert vm.commands[0][-1] == "rig: start script:gem-objects" and "/dev/kmsg" in vm.commands[0][2]
    assert vm.commands[1] == ["sh", "-c", "enter", "/cg", "cat", "/sys/kernel/debug/dri/0/gem_names"]
    assert vm.commands[2][-1] == "rig: end script:gem-objects"
    assert "name 1" in (tmp_path / "scripts" / "gem-objects.log").read_text()
    assert ScriptWorkload(SCRIPT).label == "script gem-objects"


def test_the_budget_caps_the_script_and_a_timeout_is_its_failure(tmp_path: Path) -> None:
    def answer(argv: list[str]) -> None:
        if "gem_names" in " ".join(argv):
            raise GuestTimeout("cat did not finish")

    vm = FakeVM(answer)
    results = asyncio.run(ScriptWorkload(SCRIPT).run(_ctx(vm, tmp_path, budget_s=42.0)))
    assert results[0].status == TIMEOUT and "42 s" in results[0].detail
    assert vm.timeouts[1] == 42.0
    assert vm.commands[-1][-1] == "rig: end script:gem-objects"


def test_a_failing_script_and_a_guest_refusing_the_marker(tmp_path: Path) -> None:
    def answer(argv: list[str]) -> GuestResult | None:
        return GuestResult(tuple(argv), 2, "", "no such file\n", 0.1) if "gem_names" in " ".join(argv) else None

    vm = FakeVM(answer, fail_on="/dev/kmsg")  # the markers are best effort
    results = asyncio.run(ScriptWorkload(SCRIPT).run(_ctx(vm, tmp_path)))
    assert results[0].status == FAIL and results[0].raw_status == "exit 2" and results[0].detail == "no such file"
