"""PressureSession against a fake guest at the VM seam: which commands it sends, in
which order, and that stopping undoes every profile even when one step fails. (Real
guests run it in the slow tier.)"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from rig.errors import InfraError
from rig.guest import GuestResult
from rig.workloads.pressure import PressureSession, parse_pressure


class FakeMachine:
    def __init__(self) -> None:
        self.size = 2048
        self.targets: list[int] = []

    async def balloon(self, target_mib: int) -> None:
        self.targets.append(target_mib)
        self.size = target_mib

    async def query_balloon(self) -> int:
        return self.size


class FakeGuest:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def put(self, local: Path, remote: str, *, mode: int | None = None, timeout: float = 120) -> None:
        self.files[remote] = local.read_bytes()

    def get(self, remote: str, local: Path, *, timeout: float = 120) -> Path:
        local.write_text("30.0 1690112 1450240 sb-ext4-11=120\n31.0 612000 301000 sb-ext4-11=20\n")
        return local


class FakeVM:
    def __init__(self, fail_on: str = "") -> None:
        self.machine = FakeMachine()
        self.guest = FakeGuest()
        self.commands: list[list[str]] = []
        self.fail_on = fail_on

    async def run(self, argv: list[str], *, timeout: float, check: bool = False, env: Any = None) -> GuestResult:
        self.commands.append(list(argv))
        if self.fail_on and self.fail_on in " ".join(argv):
            raise InfraError("connection lost")
        stdout = "29.5 0.0\n" if argv[:2] == ["cat", "/proc/uptime"] else ""
        return GuestResult(tuple(argv), 0, stdout, "", 0.01)

    async def put(self, local: Path, remote: str, *, mode: int | None = None) -> None:
        self.guest.put(local, remote, mode=mode)

    async def get(self, remote: str, local: Path) -> Path:
        return self.guest.get(remote, local)


def _session(vm: FakeVM, spec: str, tmp_path: Path) -> PressureSession:
    return PressureSession(vm, parse_pressure(spec, 2048), tmp_path, 2048, time.monotonic())  # type: ignore[arg-type]


def test_every_profile_starts_and_stops(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("rig.workloads.pressure.SAMPLE_PERIOD_S", 0.01)
    vm = FakeVM()
    session = _session(vm, "balloon=768,stress=20%,memcg=512,shrink=2", tmp_path)

    async def scenario() -> None:
        await session.start()
        assert session.wrap is not None and session.wrap[-1] == "/sys/fs/cgroup/rig-workloads"
        await session.stop()

    asyncio.run(scenario())
    words = [" ".join(c) for c in vm.commands]
    assert any("sampler.sh" in w and "setsid" in w for w in words)
    assert any("memory.max" in w and str(512 * 1024 * 1024) in w for w in words)
    assert any("stress-ng" in w and "--vm-bytes 20%" in w for w in words)
    assert any("shrink.sh" in w for w in words) and "/tmp/rig/shrink.sh" in vm.guest.files
    assert vm.machine.targets == [768, 2048]  # squeezed, then given back
    assert words[-1] == "touch /tmp/rig/sampler.stop"
    timeline = session.timeline
    assert timeline is not None and timeline.samples and timeline.top_shrinkers == {"sb-ext4-11": 120}
    assert any("balloon back to 2048" in what for _, what in timeline.events)


def test_stop_undoes_the_rest_when_one_step_fails(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("rig.workloads.pressure.SAMPLE_PERIOD_S", 0.01)
    vm = FakeVM(fail_on="kill")
    session = _session(vm, "balloon,stress", tmp_path)

    async def scenario() -> None:
        await session.start()
        await session.stop()

    asyncio.run(scenario())
    assert vm.machine.targets[-1] == 2048  # the balloon came back although stopping stress failed
    assert ["touch", "/tmp/rig/sampler.stop"] in vm.commands


def test_no_pressure_only_samples(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("rig.workloads.pressure.SAMPLE_PERIOD_S", 0.01)
    vm = FakeVM()
    session = _session(vm, "none", tmp_path)

    async def scenario() -> None:
        await session.start()
        await session.stop()

    asyncio.run(scenario())
    assert session.wrap is None and vm.machine.targets == []
    assert not any("stress-ng" in " ".join(c) or "memory.max" in " ".join(c) for c in vm.commands)
