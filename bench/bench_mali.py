#!/usr/bin/env python3
"""What panfrost gets out of rig's emulated Mali: NULL jobs per second through the submit
ioctl and heap GPU faults per second, each as a ratio to a baseline measured in the same
guest in the same run: GET_PARAM ioctls per second (a DRM ioctl that neither allocates nor
reaches the GPU), so the ratios say what a job or a fault costs beyond entering the driver,
whatever the host's speed.

One `rig run --arch arm64 --gpu mali` (the real CLI, a real guest under TCG) of
bench/mali-bench.toml, which runs rig-panfrost's benchmarks: each loops for 3 s and prints
"# bench: NAME RATE UNIT". The model's own counters (jobs-run, mmu-faults), read over
QMP at the end of the run, must account for what the guest counted.

    .venv/bin/python bench/bench_mali.py [--kernel debian:6.1] [--out DIR]
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from rigrun import REPO, run_rig

PLAN = REPO / "bench" / "mali-bench.toml"
_BENCH = re.compile(r"# bench: (?P<name>\S+) (?P<rate>[\d.]+) (?P<unit>\S+) \((?P<count>\d+) in (?P<secs>[\d.]+) s\)")


def figures(ktap: str) -> dict[str, tuple[float, str, int]]:
    """name -> (rate, unit, count) from rig-panfrost's "# bench:" lines."""
    return {m["name"]: (float(m["rate"]), m["unit"], int(m["count"])) for m in _BENCH.finditer(ktap)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernel", default="debian:6.1")
    parser.add_argument("--out", type=Path, help="keep the run here (default: a temporary directory)")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rig-bench-mali-") as tmp:
        out = args.out or Path(tmp) / "run"
        run = run_rig(["--arch", "arm64", "--gpu", "mali", "--kernel", args.kernel, "--plan", str(PLAN),
                       "--pressure", "none"], out, args.timeout)
        data = run.report
        ktap = "\n".join(p.read_text() for p in sorted(out.glob("attempt-*/ktap/*.ktap")))
    got = figures(ktap)
    missing = {"get-param-ioctls", "null-jobs", "heap-faults"} - set(got)
    if missing:
        sys.exit(f"no figure for {', '.join(sorted(missing))} (rig run exit {run.returncode}); "
                 f"tests: {[(t['name'], t['result']) for t in data.get('tests', [])]}")
    counters = (data.get("gpu") or {}).get("counters", {})
    base, base_unit, _ = got["get-param-ioctls"]
    print(f"rig run: {run.wall_s:.0f} s wall, exit {run.returncode}, kernel {data['kernel'].get('release')}, "
          f"accel {data['machine'].get('accel')}")
    print(f"baseline  GET_PARAM      {base:10.0f} {base_unit}")
    for name, label in (("null-jobs", "NULL jobs"), ("heap-faults", "heap faults")):
        rate, unit, _ = got[name]
        print(f"          {label:<14} {rate:10.1f} {unit:<10} = {rate / base:.4f} x the baseline "
              f"(1 per {base / rate:.0f} ioctls)")
    if counters:
        # the model counted every job and fault the guest did (and a few more: the chains'
        # jobs besides the faulting writes, any job of the boot)
        jobs, faults = got["null-jobs"][2], got["heap-faults"][2]
        print(f"model counters: jobs-run {counters.get('jobs-run')} (guest: {jobs} NULL jobs + heap chains), "
              f"mmu-faults {counters.get('mmu-faults')} (guest: {faults} heap faults)")
        if counters.get("jobs-run", 0) < jobs or counters.get("mmu-faults", 0) < faults:
            print("the model's counters account for less than the guest counted", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
