"""rig's own QEMU, really built (or taken from rig's cache): `rig qemu build` and
`rig qemu show`, and the binary creating the machine rig's arm64 guests use.

Cold, this builds QEMU: 820 to 1085 s of cpu (about 9 minutes on 2 idle cores; 17 to 37
minutes were measured on 2 cores shared with other builds, see bench/bench_qemu_build.py).
With rig's cache kept between CI runs (~/.cache/rig/qemu/builds, 100 MB) it takes seconds.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from rig import cli, proc
from rig.qemu.build import QemuBuild, ensure_qemu


@pytest.fixture(scope="module")
def qemu() -> QemuBuild:
    return ensure_qemu(progress=False)


def test_build_then_a_cache_hit(qemu: QemuBuild, capsys: pytest.CaptureFixture[str]) -> None:
    assert qemu.binary.is_file() and qemu.binary.name == "qemu-system-aarch64"
    assert qemu.version.startswith("QEMU emulator version 10.0.")
    assert f"Debian {qemu.package_version}" in qemu.version  # the pkgversion rig configures
    again = ensure_qemu(progress=False)
    assert again.cache_hit and again.binary == qemu.binary
    assert cli.main(["qemu", "build", "--quiet"]) == 0
    assert "(cache hit)" in capsys.readouterr().out


def test_show_asks_the_binary_and_lists_rigs_patches(qemu: QemuBuild, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["qemu", "show"]) == 0
    out = capsys.readouterr().out
    assert f"version   {qemu.version}" in out
    expected = qemu.patches[0] if qemu.patches else "(none)"
    assert f"patches   {expected}" in out
    assert f"binary    {qemu.binary}" in out


def test_the_virt_machine_starts_with_the_devices_rig_uses(qemu: QemuBuild, tmp_path: Path) -> None:
    # -S: the machine and its devices are created, no guest code runs; the monitor on
    # stdin answers and quits. virtio-net-pci needs slirp and an option ROM from the
    # host (--firmwarepath), virtio-gpu-pci needs pixman.
    argv = [qemu.binary, "-M", "virt,gic-version=3", "-cpu", "max,pauth-impdef=on", "-m", "256",
            "-nodefaults", "-display", "none", "-S", "-monitor", "stdio",
            "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0", "-device", "virtio-gpu-pci",
            "-device", "virtio-balloon-pci", "-device", "virtio-rng-pci"]
    result = proc.run(argv, input=b"info version\ninfo pci\nquit\n", timeout=60, what="qemu-system-aarch64 -S")
    assert "10.0." in result.stdout
    assert "Virtio GPU" in result.stdout or "1af4:1050" in result.stdout  # virtio-gpu's PCI id
    devices = proc.run([qemu.binary, "-device", "help"], timeout=60).stdout
    assert '"virtio-gpu-pci"' in devices
