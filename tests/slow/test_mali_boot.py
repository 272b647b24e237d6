"""panfrost on rig's Mali model: a real arm64 kernel (6.1, cross-built by rig) probes the
G52 the `virt` board carries with --gpu mali, under TCG on rig's own QEMU."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

# A cold cross-build of the kernel and of rig's QEMU comes first on a fresh machine.
COLD_TIMEOUT_S = 3000


def test_panfrost_probes_the_g52(tmp_path: Path) -> None:
    probe = "dmesg | grep -i -e mali -e panfrost; cat /sys/kernel/debug/dri/*/name"
    done = subprocess.run(
        [sys.executable, "-m", "rig", "boot", "--arch", "arm64", "--gpu", "mali", "--kernel", "debian:6.1",
         "--out", str(tmp_path / "boot"), "--quiet", "--", "sh", "-c", probe],
        capture_output=True, text=True, timeout=COLD_TIMEOUT_S)
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    assert "mali-g52 id 0x7212" in out, out
    assert "Features: L2:0x07110206" in out and "MMU:0x00002830 AS:0xff JS:0x7" in out, out
    assert "Initialized panfrost" in out, out
    drivers = {line.split()[0] for line in out.splitlines() if "unique=" in line}
    assert "panfrost" in drivers, out
