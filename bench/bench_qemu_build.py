#!/usr/bin/env python3
"""How long rig's own QEMU (qemu-system-aarch64 from Debian trixie's source package) takes.

1. Cold: an empty rig cache (a temporary RIG_CACHE_DIR: no source package, no meson
   venv, empty ccache), `ensure_qemu()` end to end: apt lists, download, venv, extract,
   configure, ninja, publish.
2. Cached: the same call again (aim: seconds, no build).
3. Rebuild after a change in qemu-devices/ (a copy of the folder with one more file): a
   new key, so a new extract, configure and ninja, with ccache warm (aim: a few minutes,
   the Mali model's edit-build loop).

Wall time is noisy on a shared machine; CPU time (user+sys of all children) and the load
average at the start are printed too. Measured on 2 cores shared with other builds
(load 3 to 11): cold 2201 s wall / 1085 s cpu, cached 0.2 s, rebuild after a device change
215 s wall / 147 s cpu (every compile a ccache hit). On 2 idle cores the cold build
should take about its cpu time over two, 9 to 10 minutes.
Run: .venv/bin/python bench/bench_qemu_build.py [--keep DIR]
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rig.qemu import build as qb  # noqa: E402


@dataclass(frozen=True)
class Timing:
    wall_s: float
    cpu_s: float
    load: float


def measure(action: Callable[[], object]) -> Timing:
    load = os.getloadavg()[0]
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.monotonic()
    action()
    wall = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return Timing(wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime), load)


def line(label: str, timing: Timing) -> str:
    return f"  {label:<28} {timing.wall_s:7.1f} s wall {timing.cpu_s:7.0f} s cpu   (load {timing.load:.1f} at start)"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--keep", type=Path, help="use (and keep) this directory as the cold cache")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="rig-bench-qemu-"))
    os.environ["RIG_CACHE_DIR"] = str(root / "cache")
    print(f"cache: {root / 'cache'}  cores: {len(os.sched_getaffinity(0))}", flush=True)
    try:
        cold = measure(lambda: qb.ensure_qemu(progress=False))
        print(line("cold ensure_qemu()", cold), flush=True)
        cached = measure(lambda: qb.ensure_qemu(progress=False))
        print(line("cached ensure_qemu()", cached), flush=True)
        devices = root / "qemu-devices"
        shutil.copytree(qb.DEVICES_DIR, devices, dirs_exist_ok=True)
        (devices / "hw" / "rig-bench-change.txt").write_text(f"{time.time()}\n")
        qb.DEVICES_DIR = devices
        rebuilt = measure(lambda: qb.ensure_qemu(progress=False))
        print(line("rebuild after a device change", rebuilt), flush=True)
    finally:
        if args.keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
