#!/usr/bin/env python3
"""What --gpu virgl costs next to 2D virtio-gpu, both measured in the same run.

Per GPU model, alternating (virtio-gpu, virgl, virtio-gpu, ...) so both see the same host
load:
  - qemu_start_s: QEMU started with only the model's display and devices, paused, told to
    quit over QMP (rig doctor's probe): what the display (SDL with OpenGL on llvmpipe for
    virgl, none for 2D) adds to QEMU's own start;
  - boot: rig's debian:6.1 kernel booted on the default image to SSH ready;
  - idle_cpu_pct: QEMU's CPU use over a quiet stretch of the booted guest (a GL display
    that redraws on its own would show here);
  - drm_virtgpu: every drm_virtgpu subtest, one process each as rig's IGT runner runs
    them; the wall time of all of them, and how many passed;
  - qemu_rss_mib: QEMU's resident memory after them (virglrenderer and llvmpipe live there).
The last lines give virgl's medians as ratios of 2D virtio-gpu's.

    .venv/bin/python bench/bench_virgl.py [--boots 2] [--bzimage path/to/bzImage]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from rig import proc  # noqa: E402
from rig.guest_spec import GuestSpec  # noqa: E402
from rig.image import ensure_image  # noqa: E402
from rig.qemu.argv import DISPLAY_PROBE_INPUT, display_probe_argv  # noqa: E402
from rig.target import X86_64  # noqa: E402
from rig.vm import boot_guest  # noqa: E402

MODELS = ("virtio-gpu", "virgl")
IGT = "/usr/libexec/igt-gpu-tools"
SUBTEST_RE = re.compile(r"^Subtest (\S+): (SUCCESS|FAIL|SKIP|CRASH)", re.M)
IDLE_S = 10.0
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def qemu_start(model: str) -> float:
    gpu = X86_64.gpu(model)
    started = time.monotonic()
    proc.run(display_probe_argv(X86_64.qemu, X86_64, gpu), timeout=60, input=DISPLAY_PROBE_INPUT,
             env=dict(gpu.environment), what=f"QEMU with --gpu {model}'s display")
    return time.monotonic() - started


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime


async def one_boot(kernel: Path, model: str, run_dir: Path) -> tuple[dict[str, float], dict[str, str]]:
    image = ensure_image("default", progress=False)
    async with boot_guest(kernel, image, run_dir, GuestSpec(gpu=model)) as vm:
        boot_s = vm.times.ready_s
        pid = vm.machine.pid
        assert pid is not None
        before = cpu_seconds(pid)
        await asyncio.sleep(IDLE_S)
        idle = 100 * (cpu_seconds(pid) - before) / IDLE_S
        listed = await vm.run([f"{IGT}/drm_virtgpu", "--list-subtests"], timeout=120)
        names = [line.strip() for line in listed.stdout.splitlines() if line.strip()]
        outcome: dict[str, str] = {}
        started = time.monotonic()
        for name in names:
            result = await vm.run([f"{IGT}/drm_virtgpu", "--run-subtest", name], timeout=300)
            found = SUBTEST_RE.search(result.stdout)
            outcome[name] = found.group(2) if found else f"exit {result.exit_status}"
        tests_s = time.monotonic() - started
        rss = rss_mib(pid)
    row = {"qemu_start_s": qemu_start(model), "boot_to_ssh_s": boot_s, "idle_cpu_pct": idle,
           "drm_virtgpu_s": tests_s, "qemu_rss_mib": rss, "passed": float(sum(v == "SUCCESS" for v in outcome.values())),
           "subtests": float(len(outcome))}
    return row, outcome


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bzimage", help="x86_64 kernel image to boot (default: rig build of --kernel)")
    parser.add_argument("--kernel", default="debian:6.1", help="what rig build takes, if no --bzimage")
    parser.add_argument("--boots", type=int, default=2, help="boots per GPU model")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rig-bench-virgl-") as tmp:
        work = Path(tmp)
        if args.bzimage:
            kernel = Path(args.bzimage)
        else:
            from rig.build import BuildRequest, build

            kernel = build(BuildRequest(kernel=args.kernel), work / "build", progress=False).kernel_image
        rows: dict[str, list[dict[str, float]]] = {model: [] for model in MODELS}
        for index in range(args.boots):
            for model in MODELS:
                row, outcome = asyncio.run(one_boot(kernel, model, work / f"boot-{model}-{index}"))
                rows[model].append(row)
                print(f"{model} boot {index + 1}: " + "  ".join(f"{k}={v:.2f}" for k, v in row.items()), flush=True)
                failed = {name: state for name, state in outcome.items() if state != "SUCCESS"}
                print(f"  not passed: {failed or 'none'}", flush=True)
    medians = {model: {key: statistics.median(r[key] for r in found) for key in found[0]}
               for model, found in rows.items()}
    for model, median in medians.items():
        print(f"\n{model}: median over {len(rows[model])} boots:")
        for key, value in median.items():
            print(f"  {key:<16} {value:8.2f}")
    print("\nvirgl / virtio-gpu (medians, same run):")
    for key in ("qemu_start_s", "boot_to_ssh_s", "idle_cpu_pct", "drm_virtgpu_s", "qemu_rss_mib"):
        base = medians["virtio-gpu"][key]
        print(f"  {key:<16} {medians['virgl'][key] / base:8.2f}" if base else f"  {key:<16} (2D: 0)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
