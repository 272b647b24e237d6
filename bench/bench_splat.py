"""How fast rig splat reads console logs, and how that grows with log size.

Builds logs of several sizes from the shared corpus of real kernel reports, spread among
ordinary console chatter (the bulk of a real console log), and times parse_log on each.
Prints MB/s per size, the cost relative to a baseline measured in the same run on the
same log (decoding it and splitting it into lines, the least any line-based reader does),
and the growth ratio: time per MB at the largest size over time per MB at the smallest
(1.0 is linear). That ratio also moves with the mix of reports each size happens to draw,
so the largest log is also parsed cut into pieces of the smallest size: its time whole
over the sum of its pieces' times is the growth that comes from size alone. Times are CPU
seconds of this process (the machine may be shared, and wall time would move with its
load), the best of several runs: at least --repeat, and enough to parse --work MB per size,
since a small log takes milliseconds and one slow run would decide its figure. Ratios, not
absolute times, are what to compare between machines.

With --against REV, rig/splat as it was at git revision REV (and the rest of rig it
imports) is loaded beside the current one and parses the same logs, its runs taking turns
with the current parser's, so that both see the same load on a shared machine: each table
then also gives REV's MB/s and the ratio current/REV (above 1.00: the current parser is
faster). Two runs of this benchmark far apart in time are not comparable on a busy
machine; the ratio within one run is.

    .venv/bin/python bench/bench_splat.py [--sizes 1,4,16,64] [--repeat 3] [--work 64] [--against REV]

Instructions, which a busy machine does not move, of one parse of a 2 MB log (cold, or warm:
after one uncounted parse of it):

    valgrind --tool=callgrind --callgrind-out-file=/dev/null --collect-atstart=no \\
        --toggle-collect=starmap_next .venv/bin/python bench/bench_splat.py --sizes 2 \\
        --shares 0.1 --count cold [--against REV]
"""

from __future__ import annotations

import argparse
import ast
import importlib
import io
import itertools
import math
import os
import random
import subprocess
import sys
import tarfile
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from rig.splat import parse_log  # noqa: E402

CORPUS = Path(os.environ.get("RIG_CORPUS", REPO.parent / "shared" / "corpus")) / "syzkaller-linux-report"
MB = 1024 * 1024

# What fills a console between reports: driver chatter, audit, IGT markers, userspace.
FILLER = [
    "[{t:12.6f}][  T{p}] [drm] Initialized vgem 1.0.0 20120112 for vgem on minor 0",
    "[{t:12.6f}][  T{p}] audit: type=1400 audit({t:.3f}:{p}): apparmor=\"DENIED\" operation=\"open\" profile=\"igt\"",
    "[{t:12.6f}][  T{p}] virtio_gpu virtio0: [drm] fb0: virtio_gpudrmfb frame buffer device",
    "[{t:12.6f}][  T{p}] [IGT] kms_flip: starting subtest flip-vs-expired-vblank",
    "[{t:12.6f}][  T{p}] [IGT] kms_flip: finished subtest flip-vs-expired-vblank, SUCCESS",
    "[{t:12.6f}][  T{p}] systemd-journald[{p}]: Received client request to flush runtime journal.",
    "[{t:12.6f}][    C{c}] hrtimer: interrupt took {p} ns",
    "[{t:12.6f}][  T{p}] EXT4-fs (vda): re-mounted. Opts: (null). Quota mode: none.",
    "[{t:12.6f}][  T{p}] vkms_vblank_simulate: vblank timer overrun",
    "[{t:12.6f}][  T{p}] stress-ng: info:  [{p}] dispatching hogs: 2 vm, 2 memfd",
]


def corpus_logs() -> list[str]:
    if not CORPUS.is_dir():
        sys.exit(f"bench_splat: corpus not found at {CORPUS} (set RIG_CORPUS)")
    logs = []
    for path in sorted(CORPUS.iterdir()):
        if not path.is_file() or path.name.startswith("."):
            continue
        body = path.read_bytes().partition(b"\n\n")[2].split(b"\nREPORT:\n")[0]
        logs.append(body.decode("utf-8", "replace"))
    return logs


def build_log(size: int, logs: list[str], seed: int = 1, share: float = 0.1) -> str:
    """About `size` bytes: corpus logs (about `share` of the bytes) among filler lines."""
    rng = random.Random(seed)
    parts: list[str] = []
    total, t, i = 0, 10.0, 0
    mean_log = sum(map(len, logs)) / len(logs)
    filler_lines = int(mean_log * (1 - share) / share / 95)  # filler lines average ~95 bytes
    while total < size:
        chunk = []
        for _ in range(rng.randint(filler_lines // 2, filler_lines * 3 // 2)):
            t += rng.random() / 100
            chunk.append(FILLER[rng.randrange(len(FILLER))].format(t=t, p=rng.randint(1, 9999), c=rng.randint(0, 3)))
        # every size draws from the same mix of reports, so sizes compare like with like
        text = "\n".join(chunk) + "\n" + logs[rng.randrange(len(logs))] + "\n"
        i += 1
        parts.append(text)
        total += len(text)
    return "".join(parts)[:size]


def baseline(text: str, repeat: int) -> float:
    data = text.encode()
    best = float("inf")
    for _ in range(repeat):
        start = time.process_time()
        data.decode("utf-8", "replace").splitlines()
        best = min(best, time.process_time() - start)
    return best


Parser = Callable[[bytes], Sequence[Any]]


def measure(text: str, repeat: int, parsers: Sequence[Parser] = (parse_log,)) -> tuple[float, int]:
    """Best CPU time of `repeat` runs of the first parser, and how many findings it gave."""
    best, found = measure_each(text, repeat, parsers)
    return best[0], found[0]


def measure_each(text: str, repeat: int, parsers: Sequence[Parser]) -> tuple[list[float], list[int]]:
    """Best CPU time and findings of each parser on `text`: the parsers take turns run by
    run (each round in the other order than the last: none always runs right after
    another), so a change of the machine's load during the measurement falls on all."""
    data = text.encode()
    best = [float("inf")] * len(parsers)
    found = [0] * len(parsers)
    for run in range(repeat):
        order = list(enumerate(parsers))
        for i, parse in order[::-1] if run % 2 else order:
            start = time.process_time()
            found[i] = len(parse(data))
            best[i] = min(best[i], time.process_time() - start)
    return best, found


def load_revision(rev: str, repo: Path = REPO) -> Parser:
    """parse_log of rig/splat as it was at git revision `rev` of `repo`.

    rig/splat and every module of rig it imports (followed import by import) are taken
    from git into a temporary directory and imported from there as `rig`, then the
    current rig's modules are put back: the revision's functions keep their own modules,
    so both parsers live side by side in this process.
    """
    try:
        commit = _git(repo, "rev-parse", "--verify", "--quiet", f"{rev}^{{commit}}").decode().strip()
    except subprocess.CalledProcessError:
        sys.exit(f"bench_splat: --against {rev}: no such git revision in {repo}")
    with tempfile.TemporaryDirectory(prefix="bench_splat-") as tmp:
        _extract_imported(repo, commit, Path(tmp))
        saved = {name: mod for name, mod in sys.modules.items() if name == "rig" or name.startswith("rig.")}
        for name in saved:
            del sys.modules[name]
        sys.path.insert(0, tmp)
        dont_write = sys.dont_write_bytecode
        sys.dont_write_bytecode = True
        try:
            importlib.invalidate_caches()
            loaded = importlib.import_module("rig.splat")
            parser: Parser = loaded.parse_log
        finally:
            sys.dont_write_bytecode = dont_write
            sys.path.remove(tmp)
            for name in [n for n in sys.modules if n == "rig" or n.startswith("rig.")]:
                del sys.modules[name]
            sys.modules.update(saved)
    return parser


def _git(repo: Path, *args: str) -> bytes:
    return subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True, timeout=60).stdout


def _extract_imported(repo: Path, commit: str, dest: Path) -> None:
    """rig/__init__.py, rig/splat and what they import from rig, as of `commit`, under `dest`."""
    tree = set(_git(repo, "ls-tree", "-r", "--name-only", commit, "rig").decode().splitlines())
    wanted = {p for p in tree if p.startswith("rig/splat/")}
    if not wanted:
        sys.exit(f"bench_splat: --against: revision {commit[:12]} has no rig/splat")
    wanted.add("rig/__init__.py")
    done: set[str] = set()
    while wanted - done:
        batch = sorted(wanted - done)
        with tarfile.open(fileobj=io.BytesIO(_git(repo, "archive", "--format=tar", commit, *batch))) as tar:
            tar.extractall(dest, filter="data")
        done.update(batch)
        for path in batch:
            if path.endswith(".py"):
                wanted.update(_rig_imports((dest / path).read_text(), tree))


def _rig_imports(source: str, tree: set[str]) -> set[str]:
    """The files of rig (paths in `tree`) that a module's imports load, packages' __init__ too."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)  # submodules
    out: set[str] = set()
    for name in names:
        parts = name.split(".")
        if parts[0] != "rig":
            continue
        for i in range(1, len(parts) + 1):
            base = "/".join(parts[:i])
            out.update(p for p in (base + ".py", base + "/__init__.py") if p in tree)
    return out


def count(parse: Parser, text: str, *, warm: bool) -> int:
    """One parse of `text` inside itertools.starmap, the only call of it here (see --count):
    instruction counts do not move with the machine's load as times do."""
    data = text.encode()
    if warm:
        parse(data)
    found = list(itertools.starmap(parse, [(data,)]))[0]
    print(f"{len(data) / MB:.0f} MB parsed once{' (warm)' if warm else ''}: {len(found)} findings")
    return 0


def pieces(text: str, size: int) -> list[str]:
    """`text` cut at line ends into pieces of about `size` characters."""
    out = []
    start = 0
    while start < len(text):
        end = text.find("\n", start + size)
        end = len(text) if end < 0 else end + 1
        out.append(text[start:end])
        start = end
    return out


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1,4,16,64", help="log sizes in MB (default: %(default)s)")
    parser.add_argument("--repeat", type=int, default=3,
                        help="least runs per size up to 16 MB (2 above), best kept (default: %(default)s)")
    parser.add_argument("--work", type=float, default=64,
                        help="MB parsed per size at least, in as many runs as that takes (default: %(default)s)")
    parser.add_argument("--shares", default="0.1,0.01",
                        help="share of the log's bytes that are kernel reports; one table each "
                             "(default: %(default)s: report-dense, and a more typical console)")
    parser.add_argument("--against", metavar="REV",
                        help="also time rig/splat as of this git revision on the same logs, in turns with "
                             "the current parser, and give the ratio current/REV")
    parser.add_argument("--count", choices=("cold", "warm"),
                        help="time nothing: parse the log of the first size and share once, with REV's parser "
                             "when --against is given, inside itertools.starmap, so that valgrind --tool=callgrind "
                             "--collect-atstart=no --toggle-collect=starmap_next counts parse_log's instructions "
                             "alone (warm: after one uncounted parse of the same log, as the timed runs are)")
    args = parser.parse_args()
    sizes = [float(s) for s in args.sizes.split(",")]
    logs = corpus_logs()
    parsers: list[Parser] = [parse_log]
    if args.against:
        parsers.append(load_revision(args.against))
    rev = args.against or ""
    for parse in parsers:  # compile every pattern once, outside the timings
        measure(build_log(MB // 4, logs, seed=7), 1, (parse,))
    if args.count:
        return count(parsers[-1], build_log(int(sizes[0] * MB), logs, share=float(args.shares.split(",")[0])),
                     warm=args.count == "warm")
    for share in (float(x) for x in args.shares.split(",")):
        print(f"\nreports make up {share:.0%} of the log's bytes")
        against_head = f" {rev[:12] + ' MB/s':>17} {'now/' + rev[:12]:>16}" if rev else ""
        print(f"{'size MB':>8} {'seconds':>9} {'MB/s':>8} {'findings':>9} {'s per MB':>9} {'vs smallest':>12} "
              f"{'x baseline':>11}{against_head}")
        base = per_mb = seconds = 0.0
        text = ""
        for mb in sizes:
            text = build_log(int(mb * MB), logs, share=share)
            repeat = max(args.repeat if mb <= 16 else 2, math.ceil(args.work / mb))
            best, found = measure_each(text, repeat, parsers)
            seconds = best[0]
            floor = baseline(text, repeat)
            per_mb = seconds / mb
            base = base or per_mb
            against = f" {mb / best[1]:17.1f} {best[1] / seconds:16.2f}" if rev else ""
            print(f"{mb:8.0f} {seconds:9.3f} {mb / seconds:8.1f} {found[0]:9d} {per_mb:9.4f} {per_mb / base:12.2f} "
                  f"{seconds / floor:11.1f}{against}")
        print(f"growth ratio (time per MB, largest / smallest): {per_mb / base:.2f}  (1.00 = linear)")
        if len(sizes) > 1:
            parts = pieces(text, int(sizes[0] * MB))
            repeat = max(2, math.ceil(args.work / sizes[-1]))
            in_pieces = sum(measure(part, repeat)[0] for part in parts)
            print(f"largest log whole / in {len(parts)} pieces of {sizes[0]:.0f} MB: {seconds / in_pieces:.2f}  "
                  f"(1.00 = linear; same reports, size alone)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
