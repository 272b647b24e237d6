#!/usr/bin/env python3
"""A 4-cell matrix over two kernels, `--jobs 1` against `--jobs 2`: is each kernel built
once, and does a build overlap guests that are already testing?

Runs `rig matrix run` (the real CLI) on a matrix of two kernels x two GPU models with the
given plan, once with each --jobs, each in a fresh output directory (builds come from
rig's cache after the first pass: run with --cold-first to count the first builds too).
The time is split into builds (each builds/<id>/metadata.json), boots and tests (each
cell's report.json phases); the baseline is --jobs 1's wall time, measured in the same run.

    .venv/bin/python bench/bench_matrix.py [--kernels debian:6.1,debian:6.12] [--plan smoke]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def matrix_file(directory: Path, kernels: list[str], plan: str, pressure: str) -> Path:
    path = directory / "matrix.toml"
    path.write_text("[axes]\nkernel = [" + ", ".join(json.dumps(k) for k in kernels) + "]\n"
                    'gpu = ["virtio-gpu", "bochs"]\n[settings]\n'
                    f"plan = {json.dumps(plan)}\npressure = {json.dumps(pressure)}\ncompare_base = false\n")
    return path


def one(matrix: Path, jobs: int, out: Path, timeout: float) -> dict[str, float]:
    started = time.monotonic()
    done = subprocess.run([sys.executable, "-m", "rig", "matrix", "run", str(matrix), "--jobs", str(jobs),
                           "--out", str(out), "--quiet"], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    wall = time.monotonic() - started
    if not (out / "matrix.json").is_file():
        sys.exit(f"rig matrix run wrote no matrix.json (exit {done.returncode}):\n{done.stderr[-2000:]}")
    builds = [json.loads(p.read_text()) for p in out.glob("builds/*/metadata.json")]
    figures = {"wall": wall, "builds": float(len(builds)),
               "build_s": sum(float(b.get("duration_s", 0.0)) for b in builds)}
    for report in out.glob("cells/*/report.json"):
        phases = json.loads(report.read_text()).get("phases", {})
        figures["boot_s"] = figures.get("boot_s", 0.0) + float(phases.get("boot", 0.0))
        figures["test_s"] = figures.get("test_s", 0.0) + float(phases.get("workloads", 0.0))
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--kernels", default="debian:6.1,debian:6.12")
    parser.add_argument("--plan", default="smoke")
    parser.add_argument("--pressure", default="none")
    parser.add_argument("--timeout", type=float, default=4 * 3600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rig-bench-matrix-") as tmp:
        directory = Path(tmp)
        matrix = matrix_file(directory, args.kernels.split(","), args.plan, args.pressure)
        results = {jobs: one(matrix, jobs, directory / f"jobs-{jobs}", args.timeout) for jobs in (1, 2)}
    base = results[1]["wall"]
    print(f"{'jobs':>4} {'wall s':>8} {'ratio':>6} {'builds':>6} {'build s':>8} {'boot s':>7} {'test s':>7}")
    for jobs, f in results.items():
        print(f"{jobs:>4} {f['wall']:>8.0f} {f['wall'] / base:>6.2f} {f['builds']:>6.0f} {f['build_s']:>8.0f} "
              f"{f.get('boot_s', 0):>7.0f} {f.get('test_s', 0):>7.0f}")
    kernels = len(args.kernels.split(","))
    print(f"aim: {kernels} builds per pass (each kernel once); --jobs 2 below 1.00 of --jobs 1")


if __name__ == "__main__":
    main()
