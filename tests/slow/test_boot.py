"""Real boots: rig's 6.1 kernel on the default guest image under QEMU (TCG here), driven
over QMP and SSH. Every test checks that no QEMU outlives it. A TCG boot costs 15-30 s,
so related checks share a boot."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rig.errors import KernelError
from rig.guest import GuestTimeout
from rig.guest_spec import GuestSpec
from rig.vm import boot_guest

IGT = "/usr/libexec/igt-gpu-tools"


def processes() -> Iterator[tuple[int, list[bytes]]]:
    """(pid, argv) of every process whose command line can still be read."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0]:
            yield int(entry.name), argv


def qemu_processes(marker: str) -> list[int]:
    """PIDs of QEMU processes whose command line mentions `marker` (a run directory)."""
    return [pid for pid, argv in processes() if b"qemu-system-" in argv[0] and any(marker.encode() in a for a in argv)]


def rig(*args: str, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "rig", *args], capture_output=True, text=True, timeout=timeout)


def start_rig(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "rig", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def booted(out: Path) -> bool:
    """rig boot writes ready_s into the run's metadata once the guest answers SSH."""
    metadata = out / "metadata.json"
    return metadata.exists() and '"ready_s"' in metadata.read_text()


def wait_for(predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_boot_drm_igt_qmp_and_files(kernel_6_1, guest_image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """One boot: the kernel release, DRM drivers, an IGT test, balloon, screendump,
    files both ways and commands from several threads at once."""
    run_dir = tmp_path / "vm"

    async def scenario() -> None:
        async with boot_guest(kernel_6_1.kernel_image, guest_image, run_dir, GuestSpec()) as vm:
            assert vm.accel in ("kvm", "tcg") and vm.accel_reason
            uname = await vm.run(["uname", "-r"], timeout=60)
            assert uname.stdout.strip() == kernel_6_1.kernel_release
            names = await vm.run(["sh", "-c", "cat /sys/kernel/debug/dri/*/name"], timeout=60)
            drivers = {line.split()[0] for line in names.stdout.splitlines() if line.strip()}
            assert {"virtio_gpu", "vgem", "vkms"} <= drivers, names.stdout
            igt = await vm.run([f"{IGT}/vgem_basic"], timeout=300)
            assert igt.exit_status == 0, igt.stdout + igt.stderr
            assert "SUCCESS" in igt.stdout

            before = await vm.machine.query_balloon()
            await vm.machine.balloon(1024)
            deadline = time.monotonic() + 60
            while await vm.machine.query_balloon() > 1100 and time.monotonic() < deadline:
                await asyncio.sleep(1)
            assert before == 2048 and await vm.machine.query_balloon() <= 1100
            png = await vm.machine.screendump(run_dir / "screen.png")
            assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert any(event["event"] == "BALLOON_CHANGE" for _, event in vm.machine.events)

            local = tmp_path / "payload"
            local.write_bytes(os.urandom(100_000))
            await vm.put(local, "/tmp/payload")
            back = await vm.get("/tmp/payload", tmp_path / "back")
            assert back.read_bytes() == local.read_bytes()
            with pytest.raises(KernelError, match="has no file"):  # the guest's answer, not a lost guest
                await vm.get("/no/such/file", tmp_path / "none")

            results = await asyncio.gather(*(vm.run(["sh", "-c", f"sleep 1; echo {i}"], timeout=60) for i in range(4)))
            assert [r.stdout.strip() for r in results] == ["0", "1", "2", "3"]
            assert qemu_processes(str(run_dir))
            status = Path(f"/proc/{vm.machine.pid}/status").read_text()
            assert "Seccomp:\t2" in status  # QEMU runs under its own filter (-sandbox on)
        assert vm.machine.returncode == 0  # powered off by the guest, not killed

    asyncio.run(scenario())
    assert qemu_processes(str(run_dir)) == []
    assert "rig-init: [" in (run_dir / "console.log").read_text()


def test_rig_boot_runs_a_command_and_passes_its_status(any_arch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    result = rig("boot", *any_arch.args, "--out", str(out), "--",
                 "sh", "-c", "uname -rm; cat /sys/kernel/debug/dri/*/name; exit 7")
    assert result.returncode == 7, result.stderr
    assert any_arch.kernel.kernel_release in result.stdout
    for driver in ("virtio_gpu", "vgem", "vkms"):
        assert driver in result.stdout
    assert "SSH ready after" in result.stderr
    assert qemu_processes(str(out)) == []


@pytest.mark.parametrize("gpu, driver", [("bochs", "bochs-drm"), ("cirrus", "cirrus")])
def test_other_gpu_models_bind_their_driver(kernel_6_1, guest_image, tmp_path: Path, gpu: str, driver: str) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    result = rig("boot", "--bzimage", str(kernel_6_1.kernel_image), "--gpu", gpu, "--out", str(out), "--quiet", "--",
                 "sh", "-c", "cat /sys/kernel/debug/dri/*/name")
    assert result.returncode == 0, result.stderr
    drivers = {line.split()[0] for line in result.stdout.splitlines() if line.strip()}
    assert driver in drivers and "virtio_gpu" not in drivers
    assert qemu_processes(str(out)) == []


def test_guest_panic_exits_1_within_10_s_with_the_console(any_arch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    marker = tmp_path / "panicked-at"
    # The guest prints nothing more after the sysrq; rig's clock starts when the command is sent.
    command = "sleep 1; echo c > /proc/sysrq-trigger"
    rig_proc = start_rig("boot", *any_arch.args, "--out", str(out), "--", "sh", "-c", command)
    wait_for(lambda: booted(out),
             300, "the guest to boot")
    marker.write_text(str(time.monotonic()))
    _, stderr = rig_proc.communicate(timeout=60)
    took = time.monotonic() - float(marker.read_text())
    assert rig_proc.returncode == 1, stderr
    assert "kernel problem" in stderr and "Kernel panic - not syncing" in stderr
    assert "sysrq" in stderr.lower()
    assert took < 10 + 1, f"rig took {took:.1f} s after the command started"
    assert qemu_processes(str(out)) == []


def test_boot_failure_is_a_kernel_error_with_the_console(any_arch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_dir = tmp_path / "vm"

    async def scenario() -> None:
        async with boot_guest(any_arch.kernel_image, any_arch.image, run_dir, any_arch.spec(cmdline_extra=("root=/dev/vdz",))):
            raise AssertionError("a guest without its root filesystem answered SSH")

    with pytest.raises(KernelError) as info:
        asyncio.run(scenario())
    assert "panicked" in info.value.message and "VFS" in info.value.message
    assert qemu_processes(str(run_dir)) == []


def test_hanging_command_and_frozen_guest_hit_their_deadlines(any_arch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_dir = tmp_path / "vm"

    async def scenario() -> None:
        async with boot_guest(any_arch.kernel_image, any_arch.image, run_dir, any_arch.spec()) as vm:
            started = time.monotonic()
            with pytest.raises(GuestTimeout) as hang:
                await vm.run(["sleep", "600"], timeout=5)
            assert time.monotonic() - started < 15
            assert "did not finish within 5 s" in hang.value.message and "console tail" in hang.value.message
            await vm.machine.execute("stop")  # the kernel stops answering altogether
            started = time.monotonic()
            with pytest.raises(KernelError) as frozen:
                await vm.run(["true"], timeout=5)
            assert time.monotonic() - started < 40
            assert "console tail" in frozen.value.message
            raise GuestTimeout("the test ends the boot the way rig run would")

    with pytest.raises(GuestTimeout, match="the test ends"):
        asyncio.run(scenario())
    assert qemu_processes(str(run_dir)) == []


def test_qemu_killed_mid_run_is_reported_and_nothing_is_left(any_arch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    rig_proc = start_rig("boot", *any_arch.args, "--out", str(out), "--", "sleep", "600")
    wait_for(lambda: booted(out),
             300, "the guest to boot")
    (pid,) = qemu_processes(str(out))
    os.kill(pid, signal.SIGKILL)
    _, stderr = rig_proc.communicate(timeout=60)
    assert rig_proc.returncode == 3, stderr
    assert "QEMU was killed by signal 9" in stderr
    assert qemu_processes(str(out)) == []


@pytest.mark.parametrize("signum, words", [(signal.SIGINT, "interrupted (Ctrl-C)"), (signal.SIGTERM, "terminated")])
def test_rig_interrupted_mid_run_stops_qemu(any_arch, tmp_path: Path, signum: int, words: str) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    rig_proc = start_rig("boot", *any_arch.args, "--out", str(out), "--", "sleep", "600")
    wait_for(lambda: booted(out),
             300, "the guest to boot")
    assert qemu_processes(str(out))
    rig_proc.send_signal(signum)
    _, stderr = rig_proc.communicate(timeout=60)
    assert rig_proc.returncode == 130, stderr
    assert words in stderr
    assert qemu_processes(str(out)) == []


def test_even_a_sigkilled_rig_leaves_no_qemu(any_arch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    rig_proc = start_rig("boot", *any_arch.args, "--out", str(out), "--", "sleep", "600")
    wait_for(lambda: booted(out), 300, "the guest to boot")
    assert qemu_processes(str(out))
    rig_proc.kill()  # no finally block runs: the kernel's parent-death signal must do it
    rig_proc.communicate(timeout=30)
    wait_for(lambda: not qemu_processes(str(out)), 10, "QEMU to die with rig")


def test_rig_boot_command_past_its_timeout_exits_1_with_the_console(any_arch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    started = time.monotonic()
    result = rig("boot", *any_arch.args, "--out", str(out), "--timeout", "5", "--",
                 "sleep", "600")
    assert result.returncode == 1, result.stderr
    assert "did not finish within 5 s" in result.stderr and "console tail" in result.stderr
    assert "rig-init: [" in result.stderr
    assert time.monotonic() - started < 120
    assert qemu_processes(str(out)) == []
