"""PressureSession against a fake guest at the VM seam: which commands it sends, in
which order, that leaving the `async with` undoes every kind even when one step fails,
and that a dead guest or a failed stop still leaves a timeline. (Real guests run it in
the slow tier.)"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from rig.errors import InfraError
from rig.workloads.pressure import CGROUP, PressureSession, parse_pressure
from tests.unit.guestfake import FakeVM

SAMPLER = b"30.0 1690112 1450240 sb-ext4-11=120\n31.0 612000 301000 sb-ext4-11=20\n"


@pytest.fixture(autouse=True)
def fast_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("rig.workloads.pressure.SAMPLE_PERIOD_S", 0.01)


def _vm(fail_on: str = "") -> FakeVM:
    vm = FakeVM(lambda argv: "29.5 0.0\n" if argv[:2] == ["cat", "/proc/uptime"] else None, fail_on=fail_on)
    vm.guest.files["/tmp/rig/timeline.txt"] = SAMPLER
    return vm


def _session(vm: FakeVM, spec: str, tmp_path: Path) -> PressureSession:
    return PressureSession(vm, parse_pressure(spec, 2048), tmp_path, 2048, time.monotonic())  # type: ignore[arg-type]


def test_every_kind_starts_inside_and_stops_on_leaving(tmp_path: Path) -> None:
    vm = _vm()
    session = _session(vm, "balloon=768,stress=20%,memcg=512,shrink=2", tmp_path)
    seen_inside: list[str] = []

    async def scenario() -> None:
        async with session as inside:
            assert inside is session and session.timeline is None
            assert session.wrap == ["sh", "-c", 'echo $$ > "$0/cgroup.procs" && exec "$@"', CGROUP]
            assert vm.machine.targets == [768]  # squeezed before the workloads run
            seen_inside.extend(vm.words())
            session.note("IGT group 1-vgem")

    asyncio.run(scenario())
    assert any("sampler.sh" in w and "setsid" in w for w in seen_inside)
    started = [next(i for i, w in enumerate(seen_inside) if needle in w)
               for needle in ("memory.max", "shrink.sh", "stress-ng")]
    assert started == sorted(started)  # memcg, shrink, stress, then the balloon
    assert any(str(512 * 1024 * 1024) in w for w in seen_inside) and "/tmp/rig/shrink.sh" in vm.guest.files
    stopping = vm.words()[len(seen_inside):]
    assert stopping[0] == "touch /tmp/rig/shrink.stop"
    assert stopping[1].startswith("sh -c kill") and "stress.pid" in stopping[1]
    assert stopping[2:] == ["touch /tmp/rig/sampler.stop"]  # the sampler last: it records the recovery
    assert vm.machine.targets == [768, 2048]  # given back, after stress-ng stopped
    timeline = session.timeline
    assert timeline is not None and len(timeline.samples) >= 2 and timeline.top_shrinkers == {"sb-ext4-11": 120}
    events = [what for _, what in timeline.events]
    assert events.index("IGT group 1-vgem") < events.index("stress-ng stopped") < events.index("balloon back to 2048 MiB")


def test_one_kind_failing_to_stop_does_not_keep_the_others_running(tmp_path: Path) -> None:
    vm = _vm(fail_on="kill")
    session = _session(vm, "balloon,stress", tmp_path)

    async def scenario() -> None:
        async with session:
            pass

    asyncio.run(scenario())
    assert vm.machine.targets[-1] == 2048  # the balloon came back although stopping stress failed
    assert ["touch", "/tmp/rig/sampler.stop"] in vm.commands
    assert session.timeline is not None and session.timeline.top_shrinkers == {"sb-ext4-11": 120}


def test_no_pressure_only_samples(tmp_path: Path) -> None:
    vm = _vm()
    session = _session(vm, "none", tmp_path)

    async def scenario() -> None:
        async with session:
            assert session.wrap is None

    asyncio.run(scenario())
    assert vm.machine.targets == []
    assert not any("stress-ng" in w or "memory.max" in w or "shrink" in w for w in vm.words())
    assert session.timeline is not None and session.timeline.samples


def test_a_dead_guest_gets_no_commands_and_leaves_the_balloon_readings(tmp_path: Path) -> None:
    vm = _vm()
    session = _session(vm, "balloon,shrink", tmp_path)

    async def scenario() -> None:
        with pytest.raises(InfraError):
            async with session:
                await asyncio.sleep(0.05)  # a few balloon readings
                vm.machine.exited = True
                died_at.append(len(vm.commands))
                raise InfraError("QEMU was killed")
        readings = len(session.balloon_samples)
        await asyncio.sleep(0.05)
        assert len(session.balloon_samples) == readings  # the host stopped asking QMP too

    died_at: list[int] = []
    asyncio.run(scenario())
    assert died_at and vm.commands[died_at[0]:] == []
    assert vm.machine.targets == [819]  # no QMP call to give memory back to a dead guest
    timeline = session.timeline
    assert timeline is not None and timeline.top_shrinkers == {}  # nothing from the guest's sampler
    assert timeline.samples and all(s.mem_available_mib is None and s.balloon_mib for s in timeline.samples)
    assert any("balloon to 819" in what for _, what in timeline.events)


def test_a_failed_start_undoes_what_started_and_raises(tmp_path: Path) -> None:
    vm = _vm(fail_on="stress-ng")
    session = _session(vm, "shrink,stress,balloon", tmp_path)

    async def scenario() -> None:
        async with session:
            raise AssertionError("the block must not run when the pressure did not start")

    with pytest.raises(InfraError):
        asyncio.run(scenario())
    assert "touch /tmp/rig/shrink.stop" in vm.words() and "touch /tmp/rig/sampler.stop" in vm.words()
    assert session.timeline is not None


def test_a_cancelled_stop_still_leaves_the_partial_timeline(tmp_path: Path) -> None:
    vm = _vm()

    async def give_back_cancelled(target_mib: int) -> None:
        vm.machine.targets.append(target_mib)
        vm.machine.size = target_mib
        if target_mib == 2048:
            raise asyncio.CancelledError  # the run's deadline struck while stopping

    vm.machine.balloon = give_back_cancelled  # type: ignore[method-assign]
    session = _session(vm, "balloon", tmp_path)

    async def scenario() -> None:
        async with session:
            await asyncio.sleep(0.03)

    with pytest.raises(asyncio.CancelledError):
        asyncio.run(scenario())
    assert session.timeline is not None and session.timeline.top_shrinkers == {}
    assert session.timeline.samples  # the balloon readings the host took


def test_the_body_error_propagates_after_stopping(tmp_path: Path) -> None:
    vm = _vm()
    session = _session(vm, "stress", tmp_path)

    async def scenario() -> None:
        async with session:
            raise InfraError("igt_runner lost")

    with pytest.raises(InfraError, match="igt_runner lost"):
        asyncio.run(scenario())
    assert any("stress.pid" in w and "kill" in w for w in vm.words())
    assert session.timeline is not None and session.timeline.top_shrinkers == {"sb-ext4-11": 120}
