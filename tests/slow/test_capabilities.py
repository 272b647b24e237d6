"""`rig run` capabilities that no other slow test exercises, each for real: the stress,
memcg and shrink pressure kinds (one run, with an in-guest check of each), a retry
after a known host fault (`--retries`), and drm-ci's known-issue lists (`--known`).

The checks that must look inside the guest are plan scripts (tests/data/plans/): each is
a test of the run, so report.json's `tests[]` says whether the guest saw what the option
promises. The host fault is the console report of rig's known emulator fault, written to
/dev/kmsg by a script: the kernel prints it the same way whoever wrote it, so rig's
parser, host-fault rule and retry loop are the real ones."""

from __future__ import annotations

import json
from pathlib import Path

from tests.slow.test_run import rig_run

REPO = Path(__file__).resolve().parent.parent.parent
PLANS = REPO / "tests" / "data" / "plans"


def _kernel(kernel) -> str:
    # BuildArtifacts.bzimage is being renamed kernel_image.
    return str(getattr(kernel, "kernel_image", None) or kernel.bzimage)


def _tests(data: dict) -> dict[str, str]:
    return {t["name"]: t["result"] for t in data["tests"]}


def test_stress_memcg_and_shrink_pressure_are_in_force_in_the_guest(kernel_6_1, guest_image,
                                                                     tmp_path: Path) -> None:
    out = tmp_path / "pressure"
    done, data = rig_run("--bzimage", _kernel(kernel_6_1), "--plan", str(PLANS / "pressure-evidence.toml"),
                         "--pressure", "stress,memcg=512,shrink=1", out=out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tests = _tests(data)
    # each script checks one kind from inside the guest (see the plan for what it looks at)
    assert tests["script:in-memcg"] == "pass"  # started in a cgroup with memory.max = 512 MiB
    assert tests["script:stress-ng-holds-memory"] == "pass"  # stress-ng resident > 100 MiB
    assert tests["script:shrinkers-scanned"] == "pass"  # the shrink loop dropped caches
    assert any(name.startswith("vgem_basic@") and status == "pass" for name, status in tests.items())
    assert data["findings"] == [] and data["verdict"]["unexpected_failures"] == []
    # the sampler saw the shrinkers the shrink loop scans
    assert any(s["shrinker_objects"] for s in data["timeline"]["samples"])


def test_a_known_host_fault_is_retried_in_a_fresh_guest(kernel_6_1, guest_image, tmp_path: Path) -> None:
    out = tmp_path / "retries"
    done, data = rig_run("--bzimage", _kernel(kernel_6_1), "--plan", str(PLANS / "host-fault.toml"),
                         "--pressure", "none", "--retries", "1", out=out)
    # the fault is in every guest: two attempts, then the host (not the kernel) is blamed
    assert done.returncode == 3, done.stdout[-3000:] + done.stderr[-3000:]
    assert len(data["attempts"]) == 2
    assert all(attempt["host_fault"] for attempt in data["attempts"])
    assert [f["status"] for f in data["findings"]] == ["host-fault"]
    assert data["findings"][0]["title"] == "int3 in sys_getrandom"
    assert _tests(data)["script:host-fault-report"] == "pass"


def test_drm_ci_lists_excuse_known_failures_and_keep_skipped_tests_from_running(kernel_6_1, guest_image,
                                                                               tmp_path: Path) -> None:
    """`--known` with drm-ci's three lists (tests/data/known/): the failures the fails and
    flakes lists name end the run green, each still a real failure in report.json, and
    the tests the skips list names never run."""
    out = tmp_path / "known"
    lists = sorted((REPO / "tests" / "data" / "known").glob("virtio_gpu-none-*.txt"))
    assert [p.name.rsplit("-", 1)[1] for p in lists] == ["fails.txt", "flakes.txt", "skips.txt"]
    done, data = rig_run("--bzimage", _kernel(kernel_6_1), "--plan", str(PLANS / "known-lists.toml"),
                         "--pressure", "none", *(arg for path in lists for arg in ("--known", str(path))), out=out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    tests = {t["name"]: t for t in data["tests"]}
    for name in ("kms_addfb_basic@too-high", "drm_virtgpu@drm-virtgpu-get-caps"):
        assert (tests[name]["result"], tests[name]["status"]) == ("fail", "known"), tests[name]
    for name in ("vgem_basic@unload", "vgem_basic@sysfs"):
        assert tests[name]["result"] == "skip" and tests[name]["raw_status"] == "known-skip", tests[name]
        assert "skips.txt" in tests[name]["detail"]
    # the tests no list names ran as usual ("warn": IGT saw a kernel warning, such as vkms'
    # vblank timer overrun on a loaded host, during a subtest that passed)
    for name in ("dumb_buffer@create-valid-dumb", "vgem_basic@mmap"):
        assert tests[name]["result"] in ("pass", "warn") and tests[name]["status"] == "ok", tests[name]
    # igt_runner was given vgem_basic's mmap subtest only: the skipped ones never started
    ran = json.loads(next(out.glob("attempt-1/igt/*-vgem/results/results.json")).read_text())["tests"]
    assert list(ran) == ["igt@vgem_basic@mmap"]
