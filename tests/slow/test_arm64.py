"""arm64 guests end to end on this x86_64 host: the cross-built kernel, and `rig run`
with a series on rig's QEMU and the arm64 image (the failure modes that must hold on
every architecture are in test_boot.py and test_run_faults.py, run once per
architecture through the `any_arch` fixture)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from rig import kconfig
from tests.slow.test_boot import qemu_processes

REPO = Path(__file__).resolve().parent.parent.parent
SERIES = REPO / "tests" / "data" / "series"
PLANS = REPO / "tests" / "data" / "plans"


def test_cross_built_kernel_is_an_arm64_image_with_panfrost(kernel_6_1_arm64) -> None:  # type: ignore[no-untyped-def]
    image = Path(kernel_6_1_arm64.kernel_image)
    assert image.name == "Image"
    with open(image, "rb") as f:
        header = f.read(0x40)
    assert header[0x38:0x3C] == b"ARM\x64"  # the arm64 Image header's magic
    config = kconfig.read_config(kernel_6_1_arm64.config)
    assert [s for s in ("ARM64", "DRM_PANFROST", "SERIAL_AMBA_PL011_CONSOLE", "PROVE_LOCKING", "DEBUG_KMEMLEAK",
                        "DRM_VIRTIO_GPU", "DRM_VKMS", "DRM_VGEM") if config.get(s) != "y"] == []
    assert config.get("SERIAL_8250", "n") == "n" and config.get("UNWINDER_ORC", "n") == "n"  # nothing of x86's


def test_run_with_a_series_on_arm64_passes_with_a_report(kernel_6_1_arm64, arm64_image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    out = tmp_path / "run"
    done = subprocess.run([sys.executable, "-m", "rig", "run", "--quiet", "--arch", "arm64",
                           "--series", str(SERIES / "harmless"), "--plan", str(PLANS / "scripts.toml"),
                           "--pressure", "balloon", "--no-base", "--out", str(out)],
                          capture_output=True, text=True, timeout=3600, cwd=REPO)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads((out / "report.json").read_text())
    assert data["outcome"] == "pass" and data["summary"].startswith("PASS")
    assert data["machine"]["arch"] == "arm64" and data["kernel"]["arch"] == "arm64"
    assert data["series"] and data["findings"] == []
    assert {t["name"]: t["result"] for t in data["tests"]} == {
        "script:dri-devices": "pass", "script:gem-objects": "pass", "script:shrinkers": "pass"}
    # the scripts saw the arm64 guest's DRM devices; the balloon sampled the guest throughout
    devices = (out / "attempt-1" / "scripts" / "dri-devices.log").read_text()
    assert "virtio_gpu" in devices and "vkms" in devices
    assert len(data["timeline"]["samples"]) >= 3
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert qemu_processes(str(out)) == []
