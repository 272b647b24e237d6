#!/usr/bin/env python3
"""Boot-to-SSH-ready of rig's guests, against the kernel's own time to reach init, and
arm64 against x86_64 in the same run.

Boots rig's debian:6.1 kernel a few times per architecture on that architecture's image,
alternating (x86_64, arm64, x86_64, ...) so both see the same host load, and reads per boot:
  - kernel: the console timestamp of "Run /sbin/rig-init as init process" (the kernel's
    own boot, the baseline of this benchmark, measured in the same boots);
  - mounted: rig-init's "guest ready" line (guest uptime), its setup done;
  - gap: host time from rig seeing init start on the console to rig's SSH login working.
The aim is a gap under 2 s under TCG: rig's guest adds little to the kernel's own boot.
The last lines give arm64's medians as ratios of x86_64's (arm64 is emulated on a
foreign host with rig's QEMU; x86_64 runs Debian's QEMU).

    .venv/bin/python bench/bench_boot.py [--arch x86_64,arm64] [--boots 3]
    .venv/bin/python bench/bench_boot.py --arch x86_64 --bzimage path/to/bzImage
"""

from __future__ import annotations

import argparse
import asyncio
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rig.guest_spec import GuestSpec  # noqa: E402
from rig.image import ensure_image  # noqa: E402
from rig.target import Target, target  # noqa: E402
from rig.vm import boot_guest  # noqa: E402

INIT_RE = re.compile(r"^\[\s*(\d+\.\d+)\](?:\[\s*\w+\])? Run /sbin/rig-init as init process", re.M)  # [time][caller]
READY_RE = re.compile(r"^rig-init: \[(\d+\.\d+)\] guest ready", re.M)
AIM_S = 2.0


def kernel_path(args: argparse.Namespace, arch: Target, work: Path) -> Path:
    if args.bzimage:
        return Path(args.bzimage)
    from rig.build import BuildRequest, build

    return build(BuildRequest(kernel=args.kernel, target=arch), work / f"build-{arch.name}",
                 progress=False).kernel_image


async def one_boot(kernel: Path, arch: Target, run_dir: Path, cpus: int) -> dict[str, float]:
    image = ensure_image(arch.image_recipe, progress=False)
    async with boot_guest(kernel, image, run_dir, GuestSpec(target=arch, cpus=cpus)) as vm:
        started = time.monotonic()
        await vm.run(["true"], timeout=60)
        first_command = time.monotonic() - started
        times = vm.times
    console = (run_dir / "console.log").read_text(errors="replace")
    init = INIT_RE.search(console)
    ready = READY_RE.search(console)
    if init is None or times.init_seen is None:
        raise SystemExit(f"no 'Run /sbin/rig-init as init process' in {run_dir / 'console.log'}")
    return {
        "kernel_to_init_s": float(init.group(1)),
        "init_to_mounted_s": float(ready.group(1)) - float(init.group(1)) if ready else float("nan"),
        "qemu_to_init_s": times.init_seen - times.qemu_started,
        "init_to_ssh_ready_s": times.ssh_ready - times.init_seen,
        "qemu_to_ssh_ready_s": times.ready_s,
        "first_command_s": first_command,
    }


def summarise(name: str, rows: list[dict[str, float]], cpus: int) -> dict[str, float]:
    median = {key: statistics.median(r[key] for r in rows) for key in rows[0]}
    print(f"\n{name}: median over {len(rows)} boots ({cpus} vCPUs):")
    for key, value in median.items():
        print(f"  {key:<22} {value:6.2f} s")
    gap = median["init_to_ssh_ready_s"]
    print(f"  SSH-ready gap / kernel's own boot to init = {gap / median['kernel_to_init_s']:.2f}")
    print(f"  aim: SSH ready within {AIM_S:.0f} s of init: {'met' if gap < AIM_S else 'NOT met'} ({gap:.2f} s)")
    return median


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--arch", default="x86_64,arm64", help="comma-separated guest architectures")
    parser.add_argument("--bzimage", help="kernel image to boot (one architecture only)")
    parser.add_argument("--kernel", default="debian:6.1", help="what rig build takes, if no --bzimage")
    parser.add_argument("--boots", type=int, default=3, help="boots per architecture")
    parser.add_argument("--cpus", type=int, default=2)
    args = parser.parse_args()
    arches = [target(name) for name in args.arch.split(",")]
    if args.bzimage and len(arches) != 1:
        parser.error("--bzimage boots one architecture: give --arch too")
    with tempfile.TemporaryDirectory(prefix="rig-bench-boot-") as tmp:
        work = Path(tmp)
        kernels = {arch.name: kernel_path(args, arch, work) for arch in arches}
        rows: dict[str, list[dict[str, float]]] = {arch.name: [] for arch in arches}
        for index in range(args.boots):
            for arch in arches:
                row = asyncio.run(one_boot(kernels[arch.name], arch, work / f"boot-{arch.name}-{index}", args.cpus))
                rows[arch.name].append(row)
                print(f"{arch.name} boot {index + 1}: " + "  ".join(f"{k}={v:.2f}" for k, v in row.items()),
                      flush=True)
    medians = {name: summarise(name, found, args.cpus) for name, found in rows.items()}
    if "x86_64" in medians and "arm64" in medians:
        x86, arm = medians["x86_64"], medians["arm64"]
        print("\narm64 / x86_64 (medians, same run):")
        for key in ("kernel_to_init_s", "qemu_to_ssh_ready_s", "first_command_s"):
            print(f"  {key:<22} {arm[key] / x86[key]:6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
