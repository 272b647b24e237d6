#!/usr/bin/env python3
"""What "what did my series break?" costs: `rig run --repeat 3 --bisect` on a 3-patch
series against one plain run of the same series (the baseline of this benchmark,
measured in the same session), split into builds, base runs, series runs and bisect runs
(report.json's `costs`), then the same command again for a second series on the same
base, whose base runs come from the cache.

Aims (printed with the figures):
  - a cached base costs under 5% of running it (the second run's base_runs against the
    first's);
  - the bisection of a finding probes at most ceil(log2(patches)) prefixes with its
    tests only, never whole plans; a prefix that does not show it is probed again until
    a miss is unlikely for the finding's rate (rig.bisect.runs_for), so its runs are at
    most that many prefixes times runs_for: the runs each first_bad_patch took, the
    prefixes probed, and the tests the bisect attempts ran.

    .venv/bin/python bench/bench_verdict.py [--series tests/data/series/three-patches]
        [--second tests/data/series/lockdep] [--plan tests/data/plans/verdict.toml] [--repeat 3]
"""

from __future__ import annotations

import argparse
import math
import tempfile
from pathlib import Path

from rigrun import run_rig

from rig.bisect import Target, probe_limit, runs_for
from rig.tally import Seen


def rig_run(out: Path, *args: str) -> tuple[float, dict]:
    run = run_rig(list(args), out, timeout=None)
    return run.wall_s, run.report


def _attempts_s(report: dict, side: str) -> float:
    """The guest time of a side's attempts: the sum of their phases."""
    return sum(sum((a.get("durations") or {}).values()) for a in report["attempts"] if a.get("side") == side)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--series", default="tests/data/series/three-patches")
    parser.add_argument("--second", default="tests/data/series/lockdep",
                        help="another series on the same base, to show the cached base runs")
    parser.add_argument("--plan", default="tests/data/plans/verdict.toml")
    parser.add_argument("--pressure", default="none")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--kernel", default="debian:6.1")
    args = parser.parse_args()
    common = ["--kernel", args.kernel, "--plan", args.plan, "--pressure", args.pressure]
    with tempfile.TemporaryDirectory(prefix="bench-verdict-") as tmp:
        work = Path(tmp)
        plain_s, plain = rig_run(work / "plain", *common, "--series", args.series, "--no-base")
        full_s, full = rig_run(work / "full", *common, "--series", args.series, "--repeat", str(args.repeat),
                               "--bisect")
        second_s, second = rig_run(work / "second", *common, "--series", args.second, "--repeat",
                                   str(args.repeat))
    patches = len(full["series"]["patches"]) if full.get("series") else 0
    print(f"plain run (1 run, no base):      {plain_s:7.1f} s  (baseline)")
    print(f"--repeat {args.repeat} --bisect:             {full_s:7.1f} s  = {full_s / plain_s:.1f} x the plain run")
    for part in ("builds", "base_runs", "series_runs", "settle_runs", "bisect_runs"):
        if part in full["costs"]:
            print(f"  {part:<14} {full['costs'][part]:7.1f} s")
    print(f"second series, same base:        {second_s:7.1f} s  ({second['verdict']['base_note']})")
    print(f"  base runs: {full['verdict']['base_note']}")
    # What running the base costs, from its attempts' own phase times (boot, workloads,
    # collect, shutdown): a base another run already cached costs the first run nothing,
    # but its attempts still say what making it took.
    base_first = _attempts_s(full, "base")
    base_cached = second["costs"].get("base_runs", 0.0)
    share = base_cached / base_first if base_first else float("nan")
    print(f"cached base: {base_cached:.2f} s against {base_first:.1f} s to run it = {share:.2%} (aim: under 5%)")
    steps = math.ceil(math.log2(patches)) if patches > 1 else 0
    max_runs = probe_limit(args.repeat)  # this benchmark gives no --max-repeat
    for item in [*full["findings"], *full["tests"]]:
        bad = item.get("first_bad_patch")
        if bad:
            name = item.get("title") or item.get("name")
            k, n = (item.get("seen") or {}).get("series", [1, 1])
            per_prefix = runs_for(Target(name, None, Seen(k, n)).rate, max_runs)
            print(f"bisection of {name!r} (seen {k}/{n}): patch {bad['index']}/{patches} in {bad['runs']} "
                  f"targeted run(s), confidence {bad['confidence']:.3f} (aim: at most {steps} prefixes x "
                  f"{per_prefix} runs = {steps * per_prefix})")
    bisect = [a for a in full["attempts"] if a.get("side") == "bisect"]
    scopes = {a.get("scope") for a in bisect}
    print(f"bisect runs: {len(bisect)} on prefixes {sorted({str(a.get('kernel')) for a in bisect})}, "
          f"tests each ran: {sorted(str(s) for s in scopes)} (never the whole plan: {None not in scopes})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
