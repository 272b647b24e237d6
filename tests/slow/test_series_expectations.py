"""The test series' expected findings (tests/data/series/*/expected.toml) against what
`rig run` really reports on debian:6.1 (the lockdep series is in test_run.py). Each run
also carries one more capability where that is honest and checked on its own:

- kmemleak: on `--gpu virtio-vga` (a plan script checks the guest's GPU is the VGA-class
  virtio-gpu) with `kmemleak = "each"` (a scan after every IGT test);
- harmless: against its base kernel (rig's default with a series), and a plan script
  that writes the same WARNING on both kernels, so the base run's finding must make it
  pre-existing, not new;
- underflow: the smoke plan, as its expectation was seen;
- gemvram-move-unmap: on `--gpu bochs`, with the default plan's bochs part only (its bochs-drm
  IGT group and its gem-vram scripts, taken from the default plan itself so the two
  cannot drift apart); the VRAM eviction script must pass as well.
"""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest
from typing import Any

from rig.plan import load_plan
from tests.slow.test_run import rig_run

REPO = Path(__file__).resolve().parent.parent.parent
SERIES = REPO / "tests" / "data" / "series"
PLANS = REPO / "tests" / "data" / "plans"

INJECTED_WARNING = "WARNING in rig_selftest_warn"  # written by warn-on-every-kernel.toml's script


def _expected(series: str) -> dict[str, Any]:
    return tomllib.loads((SERIES / series / "expected.toml").read_text())


def _assert_expected_findings(expected: dict[str, Any], data: dict[str, Any]) -> None:
    for want in expected.get("finding", []):
        found = [f for f in data["findings"] if f["title"] == want["title"]]
        assert found, (want["title"], [f["title"] for f in data["findings"]])
        finding = found[0]
        assert finding["kind"] == want["kind"]
        assert finding["status"] == "new"
        if "lock_chain" in want:
            assert finding["lock_chain"] == want["lock_chain"]
        if "also" in want:
            # A leak comes from several tests, and kmemleak misses a leaked object now and
            # then (a stale pointer to it left in memory): each run names some of them,
            # never a test outside them.
            seen = [finding["test"], *finding["also"]]
            assert set(seen) <= {want["test"], *want["also"]}, (seen, want)
        else:
            assert finding["test"] == want["test"]


@pytest.mark.long
def test_kmemleak_series_on_virtio_vga_with_a_scan_after_each_test(guest_image, tmp_path: Path) -> None:
    """The kmemleak series on the VGA-class virtio-gpu, `kmemleak = "each"`: virtio_gpu's
    IGT tests run on that device, and the leak is still the first leaking test's,
    whichever scan saw its objects."""
    out = tmp_path / "kmemleak-each"
    expected = _expected("kmemleak")
    done, data = rig_run("--series", str(SERIES / "kmemleak"), "--plan", str(PLANS / "kmemleak-each.toml"),
                         "--gpu", "virtio-vga", "--pressure", "none", "--no-base", out=out)
    assert done.returncode == expected["exit_code"], done.stdout[-3000:] + done.stderr[-3000:]
    tests = {t["name"]: t["result"] for t in data["tests"]}
    assert tests["script:gpu-is-virtio-vga"] == "pass"
    assert tests["dumb_buffer@create-valid-dumb"] == "pass"  # virtio_gpu's IGT ran on the VGA device
    # igt_runner saved a kmemleak report between tests (not only rig's scan at the end)
    between = [p for p in out.rglob("kmemleak.txt") if "igt" in p.relative_to(out).parts]
    assert between and "kmemleaks found after running" in between[0].read_text()
    _assert_expected_findings(expected, data)


def test_underflow_series_warns_in_its_subtest(guest_image, tmp_path: Path) -> None:
    out = tmp_path / "underflow"
    expected = _expected("underflow")
    done, data = rig_run("--series", str(SERIES / "underflow"), "--pressure", "none", "--no-base", out=out)
    assert done.returncode == expected["exit_code"], done.stdout[-3000:] + done.stderr[-3000:]
    _assert_expected_findings(expected, data)


@pytest.mark.long
def test_harmless_series_against_its_base_kernel(guest_image, tmp_path: Path) -> None:
    out = tmp_path / "harmless"
    expected = _expected("harmless")
    done, data = rig_run("--series", str(SERIES / "harmless"), "--plan", str(PLANS / "warn-on-every-kernel.toml"),
                         "--pressure", "none", out=out)
    assert done.returncode == expected["exit_code"] == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # the base kernel ran first, in <out>/base, or its runs came from rig's cache
    assert [a["side"] for a in data["attempts"]] == ["base", "series"]
    assert (out / "base" / "attempt-1").is_dir() or "cache" in data["verdict"]["base_note"]
    injected_by = "script:warn-on-every-kernel"
    # the same WARNING on both kernels: pre-existing, blamed on neither; nothing else
    assert [(f["title"], f["status"], f["test"], f["seen"]) for f in data["findings"]] == [
        (INJECTED_WARNING, "pre-existing", injected_by, {"series": [1, 1], "base": [1, 1]})]
    assert data["verdict"]["unexpected_failures"] == []
    tests = {t["name"]: t["result"] for t in data["tests"]}
    # "warn": a kernel warning during a subtest that passed (vkms' vblank timer overrun on a loaded host)
    assert tests["vgem_basic@mmap"] in ("pass", "warn") and tests["script:warn-on-every-kernel"] == "pass"


def _bochs_part_of_the_default_plan(path: Path) -> Path:
    """The default plan's IGT groups and scripts for bochs-drm, as a plan file of its own
    (JSON strings are TOML basic strings)."""
    default = load_plan("default")
    lines = ['description = "the default plan\'s bochs part"', "[igt]",
             f"per_test_timeout_s = {default.igt[0].per_test_timeout_s}",
             f"inactivity_timeout_s = {default.inactivity_timeout_s}"]
    for group in (g for g in default.igt if g.driver == "bochs-drm"):
        lines += ["[[igt.group]]", 'driver = "bochs-drm"', f"tests = {json.dumps(list(group.tests))}"]
    for script in (s for s in default.scripts if s.driver == "bochs-drm"):
        lines += ["[[script]]", f"name = {json.dumps(script.name)}", 'driver = "bochs-drm"',
                  f"timeout_s = {script.timeout_s}", f"argv = {json.dumps(list(script.argv))}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_gemvram_series_on_bochs(guest_image, tmp_path: Path) -> None:
    out = tmp_path / "gemvram"
    expected = _expected("gemvram-move-unmap")
    plan = _bochs_part_of_the_default_plan(tmp_path / "bochs.toml")
    done, data = rig_run("--series", str(SERIES / "gemvram-move-unmap"), "--plan", str(plan), "--gpu", "bochs",
                         "--pressure", "none", "--no-base", out=out)
    assert done.returncode == expected["exit_code"], done.stdout[-3000:] + done.stderr[-3000:]
    _assert_expected_findings(expected, data)
    tests = {t["name"]: t["result"] for t in data["tests"]}
    # TTM still moves every framebuffer out of VRAM and back with its contents intact
    assert tests["script:gem-vram-eviction"] == "pass"
    log = next(out.rglob("gem-vram-eviction.log")).read_text()
    assert "buffers evicted by TTM" in log and "contents intact after eviction: 9/9" in log
