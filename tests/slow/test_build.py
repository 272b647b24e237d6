"""Real kernel builds: Debian's 6.1 sources, the default profile, rig's cache."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from rig import cache, kconfig
from rig.build import BuildRequest, build
from rig.errors import KernelError

SERIES = Path(__file__).resolve().parent.parent / "data" / "series"

# What the rest of rig relies on the default kernel to have.
MUST_HAVE = ("PROVE_LOCKING", "DEBUG_KMEMLEAK", "DRM_VIRTIO_GPU", "DRM_VGEM", "DRM_VKMS", "DRM_BOCHS",
             "SHRINKER_DEBUG", "PVPANIC", "PVPANIC_PCI", "PRINTK_CALLER", "VIRTIO_BALLOON", "SW_SYNC",
             "DEBUG_WW_MUTEX_SLOWPATH", "EXT4_FS", "DEVTMPFS_MOUNT", "SERIAL_8250_CONSOLE")


def test_default_profile_builds_a_bootable_image_with_the_debug_options(kernel_6_1) -> None:  # type: ignore[no-untyped-def]
    with open(kernel_6_1.kernel_image, "rb") as f:
        header = f.read(0x210)
    assert header[0x202:0x206] == b"HdrS"  # the x86 boot protocol's signature
    assert kernel_6_1.vmlinux.read_bytes()[:4] == b"\x7fELF"
    assert " T start_kernel" in kernel_6_1.system_map.read_text()
    assert kernel_6_1.kernel_release.startswith("6.1.")
    config = kconfig.read_config(kernel_6_1.config)
    assert [s for s in MUST_HAVE if config.get(s) != "y"] == []
    assert config.get("DEBUG_KMEMLEAK_AUTO_SCAN", "n") == "n"
    assert config.get("MODULES", "n") == "n"  # everything built in


def test_the_same_request_again_is_a_cache_hit(kernel_6_1, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    again = build(BuildRequest(kernel="debian:6.1"), tmp_path / "again", progress=False)
    took = time.monotonic() - started
    assert again.cache_hit, f"rebuilt instead of reusing {kernel_6_1.cache_entry}"
    assert again.kernel_image.read_bytes() == kernel_6_1.kernel_image.read_bytes()
    print(f"cache hit in {took:.1f} s")


def test_each_patch_names_the_patch_that_breaks_the_build(kernel_6_1, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    # Incremental after the fixture's build: patch 1 recompiles one file, patch 2 fails.
    request = BuildRequest(kernel="debian:6.1", series=str(SERIES / "build-second-breaks"), each_patch=True)
    with pytest.raises(KernelError) as info:
        build(request, tmp_path / "each", progress=False)
    message = info.value.message
    assert 'patch 2 "drm/vgem: count the opens of the device" breaks the build' in message
    assert "\n    drivers/gpu/drm/vgem/vgem_drv.c:" in message and "vgem_count_open" in message


def test_a_sandboxed_series_build_is_fenced_in_and_says_what_it_tried(kernel_6_1, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The sandbox-probe series reaches for the network, writes into the source tree and
    /etc and reads the builder's home directory from its Makefile; the kernel still builds."""
    request = BuildRequest(kernel="debian:6.1", series=str(SERIES / "sandbox-probe"), sandbox=True)
    artifacts = build(request, tmp_path / "probe", progress=False)
    kinds = {denial.split(":")[0] for denial in artifacts.sandbox_denials}
    assert kinds == {"tried to reach the network", "tried to write outside its build directory",
                     "tried to read a hidden directory (home, rig's cache)"}, artifacts.sandbox_denials
    assert not Path("/etc/rig-build-probe-was-here").exists()
    assert not list(cache.cache_dir("worktrees").glob("*/drivers/gpu/drm/vgem/probe-was-here"))
    assert artifacts.kernel_image.read_bytes()[0x202:0x206] == b"HdrS"
