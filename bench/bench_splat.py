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

    .venv/bin/python bench/bench_splat.py [--sizes 1,4,16,64] [--repeat 3] [--work 64]
"""

from __future__ import annotations

import argparse
import math
import os
import random
import sys
import time
from pathlib import Path

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


def measure(text: str, repeat: int) -> tuple[float, int]:
    data = text.encode()
    best = float("inf")
    found = 0
    for _ in range(repeat):
        start = time.process_time()
        found = len(parse_log(data))
        best = min(best, time.process_time() - start)
    return best, found


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
    args = parser.parse_args()
    sizes = [float(s) for s in args.sizes.split(",")]
    logs = corpus_logs()
    measure(build_log(MB // 4, logs, seed=7), 1)  # compile every pattern once, outside the timings
    for share in (float(x) for x in args.shares.split(",")):
        print(f"\nreports make up {share:.0%} of the log's bytes")
        print(f"{'size MB':>8} {'seconds':>9} {'MB/s':>8} {'findings':>9} {'s per MB':>9} {'vs smallest':>12} "
              f"{'x baseline':>11}")
        base = per_mb = seconds = 0.0
        text = ""
        for mb in sizes:
            text = build_log(int(mb * MB), logs, share=share)
            repeat = max(args.repeat if mb <= 16 else 2, math.ceil(args.work / mb))
            seconds, found = measure(text, repeat)
            floor = baseline(text, repeat)
            per_mb = seconds / mb
            base = base or per_mb
            print(f"{mb:8.0f} {seconds:9.3f} {mb / seconds:8.1f} {found:9d} {per_mb:9.4f} {per_mb / base:12.2f} "
                  f"{seconds / floor:11.1f}")
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
