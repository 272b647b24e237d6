"""The `kasan` and `kunit` build profiles (kernel-configs/profiles.toml) for real, in one
build to keep CI's cold run short: the kasan profile plus the kunit profile's fragment
(`--config kernel-configs/kunit.config`, what `--profile kunit` adds to the default),
booted and tested by `rig run`: KASAN's runtime is in the kernel, IGT passes on it, and
the DRM KUnit suites ran at boot and passed."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.slow.test_run import rig_run

REPO = Path(__file__).resolve().parent.parent.parent
PLANS = REPO / "tests" / "data" / "plans"

BUILD_AND_RUN_TIMEOUT_S = 5400.0

# A cold KASAN build alone may pass pyproject's per-test ceiling.
pytestmark = pytest.mark.timeout(BUILD_AND_RUN_TIMEOUT_S + 300)


@pytest.mark.long
def test_kasan_and_kunit_profiles_build_boot_and_pass(guest_image, tmp_path: Path) -> None:
    out = tmp_path / "kasan-kunit"
    # the suites run at boot, before init: SSH answers only after them. drm_buddy and drm_mm
    # take over ten minutes under TCG with KASAN, so only the quick suites run (one glob;
    # rig then reads their results from the console, see rig.workloads.kunit).
    done, data = rig_run("--profile", "kasan", "--config", str(REPO / "kernel-configs" / "kunit.config"),
                         "--plan", str(PLANS / "kasan-kunit.toml"), "--pressure", "none", "--ready-timeout", "1500",
                         "--append", "kunit.filter_glob=drm_[fr]*",
                         out=out, timeout=BUILD_AND_RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tests = {t["name"]: t["result"] for t in data["tests"]}
    assert tests["script:kernel-has-kasan"] == "pass"  # KASAN's runtime is in the booted kernel
    # "warn": a kernel warning during a subtest that passed (vkms' vblank timer overrun on a loaded host)
    assert tests["dumb_buffer@create-valid-dumb"] in ("pass", "warn") and tests["vgem_basic@mmap"] in ("pass", "warn")
    kunit = {name: status for name, status in tests.items() if name.startswith("kunit:")}
    passed = {name for name, status in kunit.items() if status == "pass"}
    # 6.1 has these suites (drivers/gpu/drm/tests); every case ran and passed
    for suite in ("drm_format", "drm_format_helper_test", "drm_framebuffer", "drm_rect"):
        assert any(name.startswith(f"kunit:{suite}.") for name in passed), (suite, sorted(kunit))
    assert not [name for name, status in kunit.items() if status in ("fail", "timeout", "crash")]
    # a suite 6.1 does not have is listed as absent, not failed
    assert kunit["kunit:drm_gem_shmem"] == "absent"
    assert data["findings"] == [] and data["verdict"]["unexpected_failures"] == []
