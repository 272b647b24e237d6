from __future__ import annotations

from pathlib import Path

import pytest

from rig.errors import UserError
from rig.plan import expand, load_plan, parse_plan, shipped_plans


def test_shipped_plans_load_and_default_covers_the_three_drivers() -> None:
    assert {"default", "smoke", "kunit"} <= set(shipped_plans())
    plan = load_plan("default")
    assert {g.driver for g in plan.igt} >= {"vgem", "virtio_gpu", "vkms"}
    assert plan.expected_failure("kms_addfb_basic@too-high") is not None
    assert plan.expected_failure("drm_virtgpu@drm-virtgpu-get-caps") is not None
    assert plan.expected_failure("vgem_basic@mmap") is None
    # create-clear alone takes 41 s under TCG: the default plan must not run it
    assert not any("create-clear" in t for g in plan.igt for t in g.tests)


def test_a_plan_file_by_path(tmp_path: Path) -> None:
    path = tmp_path / "mine.toml"
    path.write_text('[[igt.group]]\ndriver = "vgem"\ntests = ["vgem_basic@create"]\nper_test_timeout_s = 10\n')
    plan = load_plan(str(path))
    assert plan.name == "mine" and plan.igt[0].per_test_timeout_s == 10.0


def test_every_problem_is_listed_at_once() -> None:
    text = """
bogus = 1
[igt]
per_test_timeout_s = -3
[[igt.group]]
driver = "nouveau"
tests = ["vgem basic"]
[[script]]
name = "x"
argv = "cat /proc/meminfo"
[[expected_failure]]
test = "kms_addfb_basic@too-high"
[kmemleak]
scan = "sometimes"
"""
    with pytest.raises(UserError) as info:
        parse_plan(text, name="bad", source="bad.toml")
    message = info.value.message
    for needle in ("unknown key 'bogus'", "per_test_timeout_s", "nouveau", "'vgem basic'", "argv must be",
                   "give a reason", "kmemleak.scan"):
        assert needle in message, needle
    assert "7 problems" in message


def test_unknown_plan_names_the_shipped_ones() -> None:
    with pytest.raises(UserError) as info:
        load_plan("no-such-plan")
    assert "default" in (info.value.hint or "")


def test_invalid_toml_is_a_user_error() -> None:
    with pytest.raises(UserError, match="not valid TOML"):
        parse_plan("[igt", name="x", source="x.toml")


def test_expand_patterns_against_the_guest() -> None:
    available = {"vgem_basic": ["create", "mmap", "dmabuf-fence"], "dumb_buffer": ["create-clear", "map-valid"],
                 "core_hotunplug": []}
    tests, problems = expand(("vgem_basic@*", "dumb_buffer@map-*", "vgem_basic@mmap", "core_hotunplug",
                              "dumb_buffer@nope", "missing@x"), available)
    assert tests == ["vgem_basic@create", "vgem_basic@mmap", "vgem_basic@dmabuf-fence", "dumb_buffer@map-valid",
                     "core_hotunplug"]
    assert len(problems) == 2
    assert "nope" in problems[0] and "missing" in problems[1]


def test_workloads_run_igt_groups_then_kunit_then_scripts() -> None:
    from rig.workloads import workloads_for

    plan = parse_plan("""
[[igt.group]]
driver = "vgem"
tests = ["vgem_basic@*"]
[[igt.group]]
driver = "vkms"
tests = ["kms_prop_blob@basic"]
[kunit]
suites = ["drm_mm"]
[[script]]
name = "one"
argv = ["true"]
[[script]]
name = "two"
argv = ["false"]
""", name="t", source="t.toml")
    assert [w.label for w in workloads_for(plan)] == [
        "IGT group 1-vgem", "IGT group 2-vkms", "KUnit", "script one", "script two"]
    bare = parse_plan('[[script]]\nname = "only"\nargv = ["true"]\n', name="t", source="t.toml")
    assert [w.label for w in workloads_for(bare)] == ["script only"]  # no KUnit workload without suites


def test_expected_failures_can_be_limited_to_kernel_versions(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[[script]]\nname = "a"\nargv = ["true"]\n'
                    '[[expected_failure]]\ntest = "script:a"\nreason = "fixed in 6.12"\nkernels = "<6.12"\n'
                    '[[expected_failure]]\ntest = "script:b"\nreason = "new in 6.12, fixed in 7.1"\n'
                    'kernels = ">=6.12,<7.1"\n'
                    '[[expected_failure]]\ntest = "script:c"\nreason = "on every kernel"\n')
    plan = load_plan(str(path))
    on = {release: {e.test for e in plan.for_kernel(release).expected_failures}
          for release in ("6.1.176-g54cdf296c40b", "6.12.117", "7.2.13-g4d545b379a7c")}
    assert on == {"6.1.176-g54cdf296c40b": {"script:a", "script:c"}, "6.12.117": {"script:b", "script:c"},
                  "7.2.13-g4d545b379a7c": {"script:c"}}
    # a release rig cannot read keeps every entry: one too many is reported with its reason
    assert len(plan.for_kernel("custom").expected_failures) == 3


def test_a_kernel_range_that_is_not_one_is_named(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[[script]]\nname = "a"\nargv = ["true"]\n'
                    '[[expected_failure]]\ntest = "script:a"\nreason = "r"\nkernels = "6.12+"\n')
    with pytest.raises(UserError, match=r"expected_failure.*kernels \(script:a\): '6.12\+' is not a version range"):
        load_plan(str(path))


def test_expected_failures_can_be_limited_to_gpu_models(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[[script]]\nname = "a"\nargv = ["true"]\n'
                    '[[expected_failure]]\ntest = "script:a"\nreason = "2D only"\ngpus = ["virtio-gpu", "virtio-vga"]\n'
                    '[[expected_failure]]\ntest = "script:b"\nreason = "on every GPU"\n')
    plan = load_plan(str(path))
    on = {gpu: {e.test for e in plan.for_gpu(gpu).expected_failures} for gpu in ("virtio-gpu", "virgl", "bochs")}
    assert on == {"virtio-gpu": {"script:a", "script:b"}, "virgl": {"script:b"}, "bochs": {"script:b"}}


def test_gpu_models_that_are_not_ones_are_named(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text('[[script]]\nname = "a"\nargv = ["true"]\n'
                    '[[expected_failure]]\ntest = "script:a"\nreason = "r"\ngpus = ["virtio_gpu"]\n'
                    '[[expected_failure]]\ntest = "script:b"\nreason = "r"\ngpus = "virgl"\n')
    with pytest.raises(UserError) as caught:
        load_plan(str(path))
    assert "gpus (script:a): 'virtio_gpu' is not a GPU model" in caught.value.message  # a driver, not a --gpu
    assert "gpus (script:b): must be a non-empty list" in caught.value.message


def test_the_default_plans_virtio_gpu_3d_failures_are_expected_on_2d_only() -> None:
    plan = load_plan("default")
    three_d = ("drm_virtgpu@drm-virtgpu-execbuffer", "drm_virtgpu@drm-virtgpu-get-caps",
               "drm_virtgpu@drm-virtgpu-3d-transfer-to-host", "drm_virtgpu@drm-virtgpu-3d-transfer-from-host")
    for gpu in ("virtio-gpu", "virtio-vga"):
        assert all(plan.for_gpu(gpu).expected_failure(test) is not None for test in three_d)
    assert all(plan.for_gpu("virgl").expected_failure(test) is None for test in three_d)
    # a failure of the driver itself, not of the 2D model, stays expected on virgl
    assert plan.for_gpu("virgl").expected_failure("kms_addfb_basic@too-high") is not None
    # what Debian 12's QEMU cannot offer with virgl is expected there, with that reason
    blob = plan.for_gpu("virgl").expected_failure("drm_virtgpu@drm-virtgpu-resource-create-blob")
    assert blob is not None and "QEMU 7.2" in blob.reason
    assert "2D" in (plan.for_gpu("virtio-gpu").expected_failure("drm_virtgpu@drm-virtgpu-context-init")
                    or blob).reason
    # the virtgpu plan expects nothing: on virgl every subtest must pass
    assert load_plan("virtgpu").expected_failures == ()
