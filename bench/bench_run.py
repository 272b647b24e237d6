#!/usr/bin/env python3
"""Where the time of a `rig run` goes, with the kernel build and the guest image cached.

Runs `rig run` (the real CLI, a real guest) a few times and reads each run's phases
from its report.json: build (cache lookup), image (cache lookup), boot, workloads,
collection and report. The baseline is the run's own wall time, measured in the same
run: the figure is the share of it spent in the guest workloads (aim: at least 80%).
A first run warms the build and image caches and is not counted.

    .venv/bin/python bench/bench_run.py [--plan default] [--pressure balloon] [--runs 2]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

from rigrun import run_rig

AIM = 0.80
PHASES = ("build", "image", "boot", "workloads", "collect", "shutdown", "report")


def one_run(args: argparse.Namespace, out: Path) -> tuple[float, dict[str, float], int]:
    argv = ["--plan", args.plan, "--pressure", args.pressure]
    if args.series:
        argv += ["--series", args.series]
    run = run_rig(argv, out, args.timeout)
    phases = run.report.get("phases", {})
    return run.wall_s, {name: float(phases.get(name, 0.0)) for name in PHASES}, run.returncode


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--plan", default="default")
    parser.add_argument("--pressure", default="balloon")
    parser.add_argument("--series")
    parser.add_argument("--runs", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rig-bench-run-") as tmp:
        print("warming the build and image caches (not counted) ...", flush=True)
        one_run(args, Path(tmp) / "warm")
        shares = []
        for number in range(1, args.runs + 1):
            wall, phases, code = one_run(args, Path(tmp) / f"run-{number}")
            share = phases["workloads"] / wall
            shares.append(share)
            detail = "  ".join(f"{name} {phases[name]:6.1f}s" for name in PHASES)
            print(f"run {number}: wall {wall:6.1f}s  {detail}  exit {code}  workloads {share:.0%} of wall")
    median = statistics.median(shares)
    print(f"median share of wall time in the guest workloads: {median:.0%} (aim {AIM:.0%})")
    return 0 if median >= AIM else 1


if __name__ == "__main__":
    sys.exit(main())
