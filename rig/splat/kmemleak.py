"""kmemleak objects: what leaked, how big, from which allocation backtrace, and which
task allocated it (kmemleak's `comm "name", pid N` line: the pid names the test whose
process allocated the object; see rig.splat.attribution)."""

from __future__ import annotations

import re
from dataclasses import dataclass

from rig.splat.frames import parse_frame
from rig.splat.model import LeakGroup

_OBJECT = re.compile(r"unreferenced object(?: \((?:percpu|phys)\))? 0x[0-9a-f]+ \(size (\d+)\)")
# Newer kernels print one object per backtrace on the console and say how many more
# share it (mm/kmemleak.c dedup_flush, 7.x).
_MORE = re.compile(r"^\s*\.\.\. and (\d+) more object\(s\) with the same backtrace")
_COMM = re.compile(r'^\s*comm "(.*)", pid (\d+)(?:, jiffies \d+ \(age (\d+\.\d+)s\))?')


@dataclass(frozen=True)
class LeakObject:
    size: int
    comm: str
    pid: int | None  # the allocating task; None when the report lost that line
    frames: tuple[str, ...]  # allocation backtrace, innermost first
    more: int = 0  # objects kmemleak folded into this one on the console (same backtrace)
    age_s: float | None = None  # its age when the report was read (6.1 prints it, 6.12 and 7.x do not)


def parse_object(msgs: list[str]) -> LeakObject:
    """One "unreferenced object" block (its first line first)."""
    m = _OBJECT.search(msgs[0]) if msgs else None
    size = int(m.group(1)) if m else 0
    comm = ""
    pid: int | None = None
    age: float | None = None
    frames: list[str] = []
    in_backtrace = False
    more = 0
    for msg in msgs[1:]:
        if not comm:
            c = _COMM.match(msg)
            if c is not None:
                comm, pid = c.group(1), int(c.group(2))
                age = float(c.group(3)) if c.group(3) else None
                continue
        if msg.strip().startswith("backtrace"):
            in_backtrace = True
            continue
        if in_backtrace:
            parsed = parse_frame(msg)
            if parsed is None:
                m = _MORE.match(msg)
                more = int(m.group(1)) if m else 0
                break
            frames.append(parsed[0])
    return LeakObject(size, comm, pid, tuple(frames), more, age)


def group_objects(objects: list[LeakObject]) -> tuple[LeakGroup, ...]:
    """Objects grouped by identical backtrace, largest total first, ties in log order."""
    groups: dict[tuple[str, ...], list[LeakObject]] = {}
    for obj in objects:
        groups.setdefault(obj.frames, []).append(obj)
    out = [
        # the objects kmemleak folded into a printed one count at its size: same backtrace,
        # nearly always the same allocation
        LeakGroup(frames=frames, count=sum(1 + o.more for o in objs),
                  total_bytes=sum(o.size * (1 + o.more) for o in objs), comm=objs[0].comm,
                  pids=pids_of(objs), oldest_age_s=max((o.age_s for o in objs if o.age_s is not None),
                                                       default=None))
        for frames, objs in groups.items()
    ]
    order = {g.frames: i for i, g in enumerate(out)}
    out.sort(key=lambda g: (-g.total_bytes, order[g.frames]))
    return tuple(out)


def pids_of(objects: list[LeakObject]) -> tuple[int, ...]:
    """The allocating pids, each once, in the objects' order."""
    return tuple(dict.fromkeys(o.pid for o in objects if o.pid is not None))
