#!/usr/bin/env python3
"""What --sandbox costs on a series build, measured against the same build without it.

Each round writes a fresh one-patch series (a comment added to vgem_drv.c, different
every round, so no build is a cache hit) and builds it on debian:6.1 twice: sandboxed
and not, in alternating order so that drift in the machine's load hits both. Both are
the incremental builds a developer waits for: git am, configure (reused), make of the
changed file and the link, the cache store. Prints each pair, the medians and the ratio
sandboxed / plain (aim: within 1.10), in wall time: the CPU time of a sandboxed build is
not seen from here (its processes are reaped inside bubblewrap's pid namespace, and their
time never reaches rig's RUSAGE_CHILDREN), so only the plain builds' CPU is printed, to
show how loaded the machine was.

    .venv/bin/python bench/bench_sandbox.py [--rounds 3]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rig.build import BuildRequest, build  # noqa: E402

VGEM = "drivers/gpu/drm/vgem/vgem_drv.c"


def children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def one_patch_series(tree: Path, out: Path, label: str) -> Path:
    """A patch adding a comment with `label` at the top of vgem_drv.c, from rig's own tree."""
    work = out / f"tree-{label}"
    subprocess.run(["git", "worktree", "add", "-q", "--detach", str(work), "HEAD"], cwd=tree, check=True)
    try:
        path = work / VGEM
        path.write_text(f"/* rig sandbox benchmark, round {label} */\n" + path.read_text())
        env = {"GIT_AUTHOR_NAME": "rig", "GIT_AUTHOR_EMAIL": "rig@localhost", "GIT_COMMITTER_NAME": "rig",
               "GIT_COMMITTER_EMAIL": "rig@localhost", "PATH": "/usr/bin:/bin"}
        subprocess.run(["git", "commit", "-q", "-a", "-m", f"drm/vgem: benchmark round {label}"], cwd=work,
                       env=env, check=True)
        series = out / f"series-{label}"
        subprocess.run(["git", "format-patch", "-q", "-1", "-o", str(series)], cwd=work, check=True)
        return series
    finally:
        subprocess.run(["git", "worktree", "remove", "--force", str(work)], cwd=tree, check=True)


def timed(request: BuildRequest, out: Path) -> tuple[float, float]:
    wall, cpu = time.monotonic(), children_cpu()
    artifacts = build(request, out, progress=False)
    assert not artifacts.cache_hit, "a benchmark build must not be a cache hit"
    return time.monotonic() - wall, children_cpu() - cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rig-bench-sandbox-") as tmp:
        out = Path(tmp)
        base = build(BuildRequest(kernel="debian:6.1"), out / "base", progress=False)  # warm, and the tree
        tree = base.source_repo
        assert tree is not None
        stamp = str(int(time.time()))
        plain, fenced = [], []
        for round_ in range(args.rounds):
            order = (True, False) if round_ % 2 == 0 else (False, True)
            for sandboxed in order:
                label = f"{stamp}-{round_}-{'s' if sandboxed else 'p'}"
                series = one_patch_series(tree, out, label)
                wall, cpu = timed(BuildRequest(kernel="debian:6.1", series=str(series), sandbox=sandboxed),
                                  out / f"build-{label}")
                (fenced if sandboxed else plain).append((wall, cpu))
                cpu_text = "" if sandboxed else f", {cpu:6.1f} s CPU"
                print(f"round {round_ + 1} {'sandboxed' if sandboxed else 'plain    '}: {wall:6.1f} s wall{cpu_text}",
                      flush=True)
        plain_wall = statistics.median(w for w, _ in plain)
        fenced_wall = statistics.median(w for w, _ in fenced)
        print(f"\nmedian wall: plain {plain_wall:.1f} s, sandboxed {fenced_wall:.1f} s "
              f"(plain builds' CPU: median {statistics.median(c for _, c in plain):.1f} s)")
        print(f"ratio sandboxed / plain: {fenced_wall / plain_wall:.3f} (aim: within 1.10)")


if __name__ == "__main__":
    main()
