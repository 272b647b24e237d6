"""Plans that follow the machine's GPU: `driver = "@gpu"` groups resolved, other GPU
models' groups skipped with the reason, names that differ between kernels picked in the guest."""

from __future__ import annotations

from rig.gpu_plan import fit_to_gpu
from rig.plan import MACHINE_GPU, IgtGroup, load_plan
from rig.target import ARM64, X86_64
from rig.workloads.igt import drm_driver_names, pick_driver_name


def _drivers(plan) -> list[str | None]:  # type: ignore[no-untyped-def]
    return [group.driver for group in plan.igt]


def test_the_default_plan_on_virtio_gpu_runs_every_group() -> None:
    plan = load_plan("default")
    fitted, dropped = fit_to_gpu(plan, X86_64.gpu("virtio-gpu"))
    assert dropped == []
    assert _drivers(fitted) == ["vgem", "virtio_gpu", "virtio_gpu", "vkms", None]


def test_on_bochs_the_gpu_group_is_gem_vram_and_virtio_gpu_tests_are_skipped_with_the_reason() -> None:
    fitted, dropped = fit_to_gpu(load_plan("default"), X86_64.gpu("bochs"))
    assert _drivers(fitted) == ["vgem", "bochs-drm", "vkms", None]
    assert dropped == [("drm_virtgpu@*", "virtio_gpu",
                        "not run: needs a virtio_gpu GPU; the machine's GPU is bochs (bochs-drm)")]


def test_a_gpu_without_display_or_no_gpu_skips_the_gpu_group() -> None:
    _, on_mali = fit_to_gpu(load_plan("smoke"), ARM64.gpu("mali"))
    assert {why for _, _, why in on_mali} == {
        "not run: the machine's GPU (mali, panfrost) has no display for these tests"}
    fitted, on_none = fit_to_gpu(load_plan("default"), X86_64.gpu("none"))
    assert MACHINE_GPU not in _drivers(fitted) and "virtio_gpu" not in _drivers(fitted)
    assert {why for _, _, why in on_none} == {"not run: the machine has no GPU (--gpu none)",
                                             "not run: needs a virtio_gpu GPU; the machine's GPU is none (--gpu none)"}


def test_cirrus_keeps_the_name_the_running_kernel_gives_its_driver() -> None:
    fitted, _ = fit_to_gpu(load_plan("smoke"), X86_64.gpu("cirrus"))
    group = next(g for g in fitted.igt if g.driver == "cirrus")
    assert group.driver_aliases == ("cirrus-qemu",)
    on_7_2 = drm_driver_names("vgem dev=vgem unique=vgem\ncirrus-qemu dev=0000:00:02.0 unique=0000:00:02.0\n")
    assert pick_driver_name(group, on_7_2).driver == "cirrus-qemu"
    assert pick_driver_name(group, {"cirrus", "vkms"}).driver == "cirrus"
    assert pick_driver_name(group, set()).driver == "cirrus"  # IGT then says what it could not open
    plain = IgtGroup("vgem", ("vgem_basic@*",), 60.0)
    assert pick_driver_name(plain, {"vgem"}) is plain
