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
# Where the held locks end: the first of these plain strings (none holds a newline). Each is
# looked for with str.find: a pattern of the three is tried at every character of a report
# that may run to a hundred kilobytes, and cost ten times as much.
_END_OF_LOCKS = ("other info that might help", "stack backtrace:", "Possible unsafe locking")


def lock_chain(msgs: list[str]) -> tuple[str, ...]:
    """Lock classes of the report in `msgs` (header first), in the order the dependency runs."""
    # A lockdep report runs to hundreds of lines: the plain text of each form is looked for
    # in the whole report first, and lines are read one by one only where it is.
    joined = "\n".join(msgs)
    if "Chain exists of:" in joined:
        for i, msg in enumerate(msgs):
            if "Chain exists of:" in msg and msg.strip() == "Chain exists of:" and i + 1 < len(msgs):
                return tuple(part.strip() for part in msgs[i + 1].split("-->") if part.strip())
    entries: dict[int, str] = {}
    if "-> #" in joined:
        for msg in msgs:
            m = _DEP_ENTRY.match(msg.strip()) if "-> #" in msg else None
            if m is not None:
                entries.setdefault(int(m.group(1)), m.group(2))
    if entries:
        return tuple(entries[k] for k in sorted(entries))
    end = min((pos for pos in (joined.find(word) for word in _END_OF_LOCKS) if pos >= 0), default=-1)
    last = joined.count("\n", 0, end) if end >= 0 else len(msgs)  # the first line that has one
    locks: list[str] = []
    for msg in msgs[:last]:
        m = _AT_LINE.search(msg) if ", at:" in msg else None
        if m is not None and m.group(1) not in locks:
            locks.append(m.group(1))
    return tuple(locks)
