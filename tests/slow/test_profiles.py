"""The `kasan` and `kunit` build profiles (kernel-configs/profiles.toml) for real: each is
a full build of debian:6.1 (about 10 to 15 minutes cold on two cores; the rig cache makes
a second session fast), booted and tested by `rig run`. Both live in this module so CI
pays for the two extra builds in one place (`-k 'not profiles'` leaves them out)."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.slow.test_run import rig_run

REPO = Path(__file__).resolve().parent.parent.parent
PLANS = REPO / "tests" / "data" / "plans"

BUILD_AND_RUN_TIMEOUT_S = 5400.0

# A cold build of each profile alone may pass pyproject's per-test ceiling.
pytestmark = pytest.mark.timeout(BUILD_AND_RUN_TIMEOUT_S + 300)


def test_kasan_profile_boots_a_kasan_kernel_that_passes_smoke(guest_image, tmp_path: Path) -> None:
    out = tmp_path / "kasan"
    done, data = rig_run("--profile", "kasan", "--plan", str(PLANS / "kasan-check.toml"), "--pressure", "none",
                         out=out, timeout=BUILD_AND_RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tests = {t["name"]: t["status"] for t in data["tests"]}
    assert tests["script:kernel-has-kasan"] == "pass"  # KASAN's runtime is in the booted kernel
    assert tests["dumb_buffer@create-valid-dumb"] == "pass" and tests["vgem_basic@mmap"] == "pass"
    assert data["findings"] == [] and data["verdict"]["unexpected_failures"] == []


def test_kunit_profile_runs_the_drm_suites_at_boot(guest_image, tmp_path: Path) -> None:
    out = tmp_path / "kunit"
    # the suites run at boot, before init: SSH answers only after them (minutes under TCG)
    done, data = rig_run("--profile", "kunit", "--plan", "kunit", "--pressure", "none", "--ready-timeout", "1200",
                         out=out, timeout=BUILD_AND_RUN_TIMEOUT_S)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    kunit = {t["name"]: t["status"] for t in data["tests"] if t["name"].startswith("kunit:")}
    passed = {name for name, status in kunit.items() if status == "pass"}
    # 6.1 has these suites (drivers/gpu/drm/tests); every case ran and passed
    for suite in ("drm_mm", "drm_buddy", "drm_format", "drm_rect"):
        assert any(name.startswith(f"kunit:{suite}.") for name in passed), (suite, sorted(kunit))
    assert not [name for name, status in kunit.items() if status in ("fail", "timeout", "crash")]
    # a suite 6.1 does not have is listed as absent, not failed
    assert kunit["kunit:drm_gem_shmem"] == "absent"
    assert data["verdict"]["unexpected_failures"] == []
