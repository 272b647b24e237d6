"""--gpu virgl for real: virtio-gpu-gl in Debian's QEMU, rendering through virglrenderer
on Mesa's llvmpipe behind SDL's offscreen EGL (no GPU, no X server), with rig's 6.1
kernel and IGT's drm_virtgpu 3D subtests. One boot."""

from __future__ import annotations

import asyncio
from pathlib import Path

from rig.guest_spec import GuestSpec
from rig.vm import boot_guest
from tests.slow.test_boot import IGT, qemu_processes

# The 3D path: command submission, capability sets from virglrenderer, transfers of a 3D
# resource both ways. Each fails with ENOSYS/EINVAL on the 2D model.
SUBTESTS = ("drm-virtgpu-execbuffer", "drm-virtgpu-get-caps", "drm-virtgpu-3d-transfer-to-host",
            "drm-virtgpu-3d-transfer-from-host")


def test_virgl_runs_virtio_gpus_3d_path(kernel_6_1, guest_image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    run_dir = tmp_path / "vm"

    async def scenario() -> None:
        async with boot_guest(kernel_6_1.kernel_image, guest_image, run_dir, GuestSpec(gpu="virgl")) as vm:
            dmesg = await vm.run(["dmesg"], timeout=60)
            features = [line for line in dmesg.stdout.splitlines() if "features:" in line]
            assert any("+virgl" in line for line in features), features  # the host offered 3D
            for subtest in SUBTESTS:
                result = await vm.run([f"{IGT}/drm_virtgpu", "--run-subtest", subtest], timeout=300)
                assert result.exit_status == 0 and "SUCCESS" in result.stdout, (
                    f"{subtest}:\n{result.stdout[-2000:]}{result.stderr[-2000:]}")
            assert qemu_processes(str(run_dir))
        assert vm.machine.returncode == 0  # powered off by the guest, not killed

    asyncio.run(scenario())
    assert qemu_processes(str(run_dir)) == []
