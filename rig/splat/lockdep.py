"""Lock classes named by a lockdep report, in dependency order.

DRM developers triage lockdep splats by the chain of lock classes
(`reservation_ww_class_mutex -> fs_reclaim -> &shmem->pages_lock`), so rig reads it off
the report: the "Chain exists of:" line when lockdep prints one, else the numbered
dependency entries (`-> #0 (...)`), else the locks on the "at:" lines.
"""

from __future__ import annotations

import re

_DEP_ENTRY = re.compile(r"^-> #(\d+) \((.*)\)\{[^{}]*\}")
_AT_LINE = re.compile(r"\((.*)\)\{[^{}]*\}(?:-\{\d+:\d+\})?, at:")
_END_OF_LOCKS = re.compile(r"other info that might help|stack backtrace:|Possible unsafe locking")


def lock_chain(msgs: list[str]) -> tuple[str, ...]:
    """Lock classes of the report in `msgs` (header first), in the order the dependency runs."""
    for i, msg in enumerate(msgs):
        if msg.strip() == "Chain exists of:" and i + 1 < len(msgs):
            return tuple(part.strip() for part in msgs[i + 1].split("-->") if part.strip())
    entries: dict[int, str] = {}
    for msg in msgs:
        m = _DEP_ENTRY.match(msg.strip())
        if m is not None:
            entries.setdefault(int(m.group(1)), m.group(2))
    if entries:
        return tuple(entries[k] for k in sorted(entries))
    locks: list[str] = []
    for msg in msgs:
        if _END_OF_LOCKS.search(msg):
            break
        m = _AT_LINE.search(msg)
        if m is not None and m.group(1) not in locks:
            locks.append(m.group(1))
    return tuple(locks)
