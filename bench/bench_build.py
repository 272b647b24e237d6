#!/usr/bin/env python3
"""How rig's kernel builds compare with what a developer does by hand, measured in one run.

1. Cold build: `rig build --kernel debian:6.1` (default profile: allnoconfig + rig's
   fragments, empty cache, empty ccache) against the obvious manual route on the same
   sources: `make defconfig`, merge `kernel/configs/kvm_guest.config` and the same
   debug fragments (locking, memory, the GPU drivers), `make olddefconfig`, `make bzImage`
   (no ccache). Aim: rig under 40% of the manual route.
2. Warm rebuild after a one-patch series touching drivers/gpu/drm/: `rig build` with the
   series (apply, configure, incremental make, cache store) against a bare `make bzImage`
   after `git apply` of the same patch, in the same tree with the same configuration.
   Aim: rig adds under 20%.

Wall time is noisy on a shared machine; CPU time (user+sys of all children) is printed
too. Each measurement holds the machine-wide build lock ($RIG_BUILD_LOCK), so no other
build runs beside it. Takes about 40 minutes on 2 cores (`--warm-only --work DIR` on a
kept earlier run: a few minutes). Run: .venv/bin/python bench/bench_build.py
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rig import cache, kconfig, proc, source  # noqa: E402
from rig.build import BUILDS, BuildRequest, build, build_lock_path, make_argv, make_env, make_variables  # noqa: E402
from rig.target import X86_64  # noqa: E402

ONE_PATCH = REPO / "tests" / "data" / "series" / "build-one-drm-patch"
MAKE_TIMEOUT_S = 4 * 3600.0


@dataclass(frozen=True)
class Timing:
    wall_s: float
    cpu_s: float


def measure(action: Callable[[], object]) -> Timing:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    action()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return Timing(wall, cpu)


def manual_make(tree: Path, build_dir: Path, *targets: str, log: Path) -> None:
    jobs = len(os.sched_getaffinity(0))
    proc.run(["make", "-C", tree, f"O={build_dir}", f"-j{jobs}", "ARCH=x86_64", *targets],
             env={**make_env(), "CCACHE_DISABLE": "1"}, timeout=MAKE_TIMEOUT_S, log=log, what=f"make {' '.join(targets)}")


def manual_cold(tree: Path, build_dir: Path, log: Path) -> None:
    """defconfig + kvm_guest.config + the same debug fragments, the way a developer does it."""
    manual_make(tree, build_dir, "defconfig", log=log)
    fragments = [tree / "kernel" / "configs" / "kvm_guest.config"]
    fragments += [kconfig.CONFIGS_DIR / f"{name}.config" for name in ("locking", "memory")]
    gpu = build_dir / "gpu.config"
    # The GPU and guest drivers rig's base adds, without the rest of rig's lean base.
    gpu.write_text("".join(f"CONFIG_{s}=y\n" for s in (
        "DRM", "DRM_VIRTIO_GPU", "DRM_BOCHS", "DRM_CIRRUS_QEMU", "DRM_VGEM", "DRM_VKMS", "DRM_FBDEV_EMULATION",
        "SW_SYNC", "UDMABUF", "PVPANIC", "PVPANIC_PCI", "PRINTK_CALLER", "VIRTIO_BALLOON", "HW_RANDOM_VIRTIO")))
    fragments.append(gpu)
    proc.run([tree / "scripts" / "kconfig" / "merge_config.sh", "-m", "-O", build_dir, build_dir / ".config",
              *fragments], cwd=tree, timeout=300, log=log, what="merge_config.sh")
    manual_make(tree, build_dir, "olddefconfig", log=log)
    manual_make(tree, build_dir, "bzImage", log=log)


def rig_tree_paths(src: source.KernelSource, profile: str = "default") -> tuple[Path, Path]:
    """rig's worktree and build directory for this source and profile."""
    return (cache.cache_root() / "worktrees" / src.tree_key,
            cache.cache_root() / "build" / f"{src.tree_key}-{profile}")


def bare_make_of_the_patch(src: source.KernelSource, patch: Path, log: Path) -> Timing:
    """The same change by hand in rig's own tree and build directory: back to the base
    (not timed), `git apply`, `make bzImage` (timed)."""
    tree, build_dir = rig_tree_paths(src)
    proc.run(["git", "checkout", "-q", "--detach", "--force", src.base_commit], cwd=tree, timeout=600,
             what="git checkout")
    rig_make(tree, build_dir, log)
    proc.run(["git", "apply", patch], cwd=tree, timeout=60, what="git apply")
    timing = measure(lambda: rig_make(tree, build_dir, log))
    proc.run(["git", "checkout", "-q", "--force", src.base_commit], cwd=tree, timeout=600, what="git checkout")
    return timing


def rig_make(tree: Path, build_dir: Path, log: Path) -> None:
    # No ccache: rig's warm build met the patched file as a ccache miss, so this compiles it too.
    proc.run(make_argv(tree, build_dir, make_variables(X86_64), "bzImage"), env={**make_env(), "CCACHE_DISABLE": "1"},
             timeout=MAKE_TIMEOUT_S, log=log, what="make bzImage")


@contextmanager
def machine_lock() -> Iterator[None]:
    """Hold the machine-wide build lock for a whole measurement, so no other build
    runs beside it and no lock wait is timed; rig itself gets a private lock file."""
    shared = build_lock_path()
    os.environ["RIG_BUILD_LOCK"] = str(Path(os.environ["RIG_CACHE_DIR"]) / "bench-private.lock")
    try:
        with cache.locked(shared, timeout_s=MAKE_TIMEOUT_S, what="the build benchmark"):
            yield
    finally:
        os.environ["RIG_BUILD_LOCK"] = str(shared)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work", type=Path, help="scratch directory (default: a new one under /var/tmp)")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory")
    parser.add_argument("--warm-only", action="store_true",
                        help="only the warm rebuild (reuses the cache of an earlier run's --work --keep)")
    args = parser.parse_args()
    work = args.work or Path(tempfile.mkdtemp(prefix="rig-bench-build-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    # A cache of its own, so rig starts cold: no build directory, no ccache. Fetching and
    # extracting the source happens here, before any clock starts.
    os.environ["RIG_CACHE_DIR"] = str(work / "cache")
    os.environ["RIG_BUILD_LOCK"] = str(build_lock_path())
    src = source.resolve("debian:6.1")
    print(f"source: {src.source_id}", flush=True)
    base_request = BuildRequest(kernel="debian:6.1")

    if not args.warm_only:
        manual_tree = work / "manual-tree"
        manual_out = work / "manual-build"
        source.git(["worktree", "add", "--detach", "--force", manual_tree, src.base_commit], src.repo, timeout=1800)
        manual_out.mkdir(exist_ok=True)
        print("cold: rig build --kernel debian:6.1 (default profile) ...", flush=True)
        with machine_lock():
            rig_cold = measure(lambda: build(base_request, work / "rig-cold", progress=False))
        print(f"  rig     {rig_cold.wall_s:7.0f} s wall {rig_cold.cpu_s:7.0f} s cpu", flush=True)
        print("cold: defconfig + kvm_guest.config + debug fragments, make bzImage ...", flush=True)
        with machine_lock():
            manual = measure(lambda: manual_cold(manual_tree, manual_out, work / "manual-cold.log"))
        print(f"  manual  {manual.wall_s:7.0f} s wall {manual.cpu_s:7.0f} s cpu", flush=True)
        source.git(["worktree", "remove", "--force", manual_tree], src.repo, check=False)

    print("warm: one patch in drivers/gpu/drm/, same tree and config ...", flush=True)
    patch = sorted(ONE_PATCH.glob("*.patch"))[0]
    with machine_lock():
        build(base_request, work / "rig-base", progress=False)  # the build directory at the base
        # An earlier run may have built this very patch: forget finished builds and start
        # from an empty ccache, as a developer's first build of a new patch does.
        shutil.rmtree(BUILDS.root(), ignore_errors=True)
        if shutil.which("ccache"):
            proc.run(["ccache", "-C"], env=make_env(), timeout=600, what="ccache -C")
        rig_warm = measure(lambda: build(BuildRequest(kernel="debian:6.1", series=str(ONE_PATCH)),
                                         work / "rig-warm", progress=False))
        bare = bare_make_of_the_patch(src, patch, work / "bare-warm.log")
    print(f"  rig     {rig_warm.wall_s:7.0f} s wall {rig_warm.cpu_s:7.0f} s cpu", flush=True)
    print(f"  make    {bare.wall_s:7.0f} s wall {bare.cpu_s:7.0f} s cpu", flush=True)

    print()
    if not args.warm_only:
        print(f"cold build, rig default / manual defconfig route: {rig_cold.wall_s / manual.wall_s:.2f} (wall), "
              f"{rig_cold.cpu_s / manual.cpu_s:.2f} (cpu)   aim < 0.40")
    print(f"warm rebuild, rig / bare make:                    {rig_warm.wall_s / bare.wall_s:.2f} (wall), "
          f"{rig_warm.cpu_s / bare.cpu_s:.2f} (cpu)   aim < 1.20")
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
