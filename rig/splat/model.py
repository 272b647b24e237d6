"""The data a log parse hands to the rest of rig: frozen, hashable, JSON-friendly."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


@dataclass(frozen=True)
class LeakGroup:
    """kmemleak objects that share one allocation backtrace."""

    frames: tuple[str, ...]  # allocation backtrace, innermost first, as kmemleak prints it
    count: int  # how many unreferenced objects came from this backtrace
    total_bytes: int  # sum of their sizes
    comm: str = ""  # task that allocated the first object of the group
    pids: tuple[int, ...] = ()  # the tasks that allocated its objects, each once, in log order
    # how old its oldest object was when the report was read, in seconds (6.1's kmemleak
    # prints each object's age; 6.12 and 7.x only the allocation's jiffies): with the
    # time of the read, when a task that started no test (an IRQ thread, a worker)
    # allocated it
    oldest_age_s: float | None = None


@dataclass(frozen=True)
class Finding:
    """One kernel report found in a console log or dmesg."""

    title: str  # syzbot-style, e.g. "possible deadlock in vgem_fence_signal_ioctl"
    # short lowercase kind: lockdep, kmemleak, warning, refcount, debugobjects, kmalloc,
    # vmalloc, usercopy, list, kasan, kfence, kmsan, kcsan, ubsan, slab, bad-page, bug,
    # atomic-sleep, preempt, soft-lockup, stack-overflow, gpf, oops, panic, hung-task,
    # rcu-stall, reboot
    kind: str
    corrupted: bool  # the report is damaged (interleaved, truncated) or its title is a guess
    signature: str  # stable fingerprint: the same bug in another log or build gives the same one
    report: str  # the report text, console prefixes stripped
    start: int  # offset of the report's first line in the decoded log text
    end: int  # offset just past the report's last line
    line: int  # 1-based line number of the report's first line
    timestamp: float | None  # printk time in seconds of the first line, when the log has it
    frames: tuple[str, ...]  # call-trace function names, innermost first, outermost last
    lock_chain: tuple[str, ...] = ()  # lockdep lock classes in dependency order
    leak_groups: tuple[LeakGroup, ...] = ()  # kmemleak objects grouped by allocation backtrace
    caller: str = ""  # printk caller id of the first line ("T123", "C0"), when the log has it
    alt_titles: tuple[str, ...] = field(default=())  # other names the same report is known by
    # kmemleak: the pids that allocated the leaked objects, each once, in log order (the
    # tests those tasks ran are where the leak comes from); a hung-task report: the
    # blocked task's pid (its test is the one that hangs)
    pids: tuple[int, ...] = ()

    @property
    def oldest_age_s(self) -> float | None:
        """kmemleak: the age of the oldest leaked object when the report was read."""
        ages = [g.oldest_age_s for g in self.leak_groups if g.oldest_age_s is not None]
        return max(ages) if ages else None

    def to_json(self) -> dict[str, Any]:
        """A plain dict for JSON output, same field names as the dataclass."""
        data = asdict(self)
        data["frames"] = list(self.frames)
        data["lock_chain"] = list(self.lock_chain)
        data["alt_titles"] = list(self.alt_titles)
        data["pids"] = list(self.pids)
        data["leak_groups"] = [
            {"frames": list(g.frames), "count": g.count, "total_bytes": g.total_bytes, "comm": g.comm,
             "pids": list(g.pids), "oldest_age_s": g.oldest_age_s}
            for g in self.leak_groups
        ]
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Finding:
        """The inverse of to_json (report.json back into findings)."""
        groups = tuple(LeakGroup(tuple(g.get("frames", ())), int(g.get("count", 0)), int(g.get("total_bytes", 0)),
                                 str(g.get("comm", "")), tuple(g.get("pids", ())), g.get("oldest_age_s"))
                       for g in data.get("leak_groups", ()))
        return cls(title=str(data["title"]), kind=str(data.get("kind", "")), corrupted=bool(data.get("corrupted")),
                   signature=str(data.get("signature", "")), report=str(data.get("report", "")),
                   start=int(data.get("start", 0)), end=int(data.get("end", 0)), line=int(data.get("line", 0)),
                   timestamp=data.get("timestamp"), frames=tuple(data.get("frames", ())),
                   lock_chain=tuple(data.get("lock_chain", ())), leak_groups=groups,
                   caller=str(data.get("caller", "")), alt_titles=tuple(data.get("alt_titles", ())),
                   pids=tuple(data.get("pids", ())))


class Source(StrEnum):
    """Where a finding was read: the serial console (the whole boot, survives a panic),
    dmesg read over SSH (the same boot, when the console was lost), or a kmemleak report
    (/sys/kernel/debug/kmemleak, or igt_runner's copy after each test)."""

    CONSOLE = "console"
    DMESG = "dmesg"
    KMEMLEAK = "kmemleak"
