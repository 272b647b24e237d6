"""Plans that follow the machine's GPU: `driver = "@gpu"` groups resolved, other GPU
models' groups skipped with the reason, names that differ between kernels picked in the guest."""

from __future__ import annotations

from rig.gpu_plan import fit_to_gpu
from rig.plan import MACHINE_GPU, IgtGroup, load_plan, parse_plan
from rig.target import ARM64, X86_64
from rig.workloads.igt import drm_driver_names, pick_driver_name


def _drivers(plan) -> list[str | None]:  # type: ignore[no-untyped-def]
    return [group.driver for group in plan.igt]


def test_the_default_plan_on_virtio_gpu_runs_every_group_but_bochs_own() -> None:
    plan = load_plan("default")
    fitted, dropped = fit_to_gpu(plan, X86_64.gpu("virtio-gpu"))
    assert _drivers(fitted) == ["vgem", "virtio_gpu", "virtio_gpu", "vkms", None]
    bochs_group = next(g for g in plan.igt if g.driver == "bochs-drm")
    not_bochs = "not run: needs a bochs-drm GPU; the machine's GPU is virtio-gpu (virtio_gpu)"
    assert dropped == [(test, "bochs-drm", not_bochs) for test in bochs_group.tests] + [
        ("script:gem-vram-fbdev", "bochs-drm", not_bochs), ("script:gem-vram-eviction", "bochs-drm", not_bochs)]
    assert fitted.scripts == ()


def test_on_bochs_the_gpu_group_is_gem_vram_and_virtio_gpu_tests_are_skipped_with_the_reason() -> None:
    fitted, dropped = fit_to_gpu(load_plan("default"), X86_64.gpu("bochs"))
    assert _drivers(fitted) == ["vgem", "bochs-drm", "bochs-drm", "vkms", None]
    assert dropped == [("drm_virtgpu@*", "virtio_gpu",
                        "not run: needs a virtio_gpu GPU; the machine's GPU is bochs (bochs-drm)")]
    # gem-vram's fbdev mappings and VRAM eviction, by script, on bochs' own device
    assert [(s.name, s.driver) for s in fitted.scripts] == [("gem-vram-fbdev", "bochs-drm"),
                                                            ("gem-vram-eviction", "bochs-drm")]


def test_scripts_follow_the_gpu_as_groups_do() -> None:
    plan = parse_plan("""
[[script]]
name = "on-the-gpu"
argv = ["true"]
driver = "@gpu"
[[script]]
name = "on-bochs"
argv = ["true"]
driver = "bochs-drm"
[[script]]
name = "anywhere"
argv = ["true"]
""", name="t", source="t.toml")
    on_cirrus, dropped = fit_to_gpu(plan, X86_64.gpu("cirrus"))
    # the machine's GPU is named to the script as IGT is told it: IGT_FORCE_DRIVER
    assert [(s.name, s.driver) for s in on_cirrus.scripts] == [("on-the-gpu", "cirrus"), ("anywhere", None)]
    assert dropped == [("script:on-bochs", "bochs-drm",
                        "not run: needs a bochs-drm GPU; the machine's GPU is cirrus (cirrus)")]
    on_bochs, dropped = fit_to_gpu(plan, X86_64.gpu("bochs"))
    assert [s.driver for s in on_bochs.scripts] == ["bochs-drm", "bochs-drm", None] and dropped == []
    on_none, dropped = fit_to_gpu(plan, X86_64.gpu("none"))
    assert [s.name for s in on_none.scripts] == ["anywhere"]
    assert [(name, why) for name, _, why in dropped] == [
        ("script:on-the-gpu", "not run: the machine has no GPU (--gpu none)"),
        ("script:on-bochs", "not run: needs a bochs-drm GPU; the machine's GPU is none (--gpu none)")]
    assert fit_to_gpu(parse_plan('[[script]]\nname = "x"\nargv = ["true"]\n', name="t", source="t"),
                      X86_64.gpu("bochs"))[1] == []


def test_a_gpu_without_display_or_no_gpu_skips_the_gpu_group() -> None:
    _, on_mali = fit_to_gpu(load_plan("smoke"), ARM64.gpu("mali"))
    assert {why for _, _, why in on_mali} == {
        "not run: the machine's GPU (mali, panfrost) has no display for these tests"}
    fitted, on_none = fit_to_gpu(load_plan("default"), X86_64.gpu("none"))
    assert MACHINE_GPU not in _drivers(fitted) and "virtio_gpu" not in _drivers(fitted)
    assert {why for _, _, why in on_none} == {"not run: the machine has no GPU (--gpu none)",
                                             "not run: needs a virtio_gpu GPU; the machine's GPU is none (--gpu none)",
                                             "not run: needs a bochs-drm GPU; the machine's GPU is none (--gpu none)"}


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
