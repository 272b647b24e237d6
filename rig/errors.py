"""The exception tree: the type says whose fault a failure is, and so the exit code.

Kernel problems found while testing (lockdep, kmemleak, WARN, failing tests) are not
exceptions: they are findings in the report. These exceptions stop a run.
"""

from __future__ import annotations

import errno
from pathlib import Path

# OSErrors that are the host's doing, whatever the path: a full disk or quota, a failing
# disk. Others (no such file, permission, read-only, is a directory) are the path's, which
# the user chose.
HOST_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EIO})


class RigError(Exception):
    """Base of every error rig expects; anything else escaping is a bug (exit 4)."""

    exit_code = 4
    label = "error"

    def __init__(self, message: str, *, hint: str | None = None, log: Path | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        self.log = log

    def render(self) -> str:
        lines = [f"rig: {self.label}: {self.message}"]
        if self.log is not None:
            lines.append(f"  log: {self.log}")
        if self.hint:
            lines.append(f"  what to do: {self.hint}")
        return "\n".join(lines)


class UserError(RigError):
    """Bad input: a config, a series that does not apply, an unknown symbol (exit 2)."""

    exit_code = 2
    label = "bad input"


class InfraError(RigError):
    """The host failed us: QEMU missing, KVM broken, SSH timeout, disk full (exit 3)."""

    exit_code = 3
    label = "host problem"


class KernelError(RigError):
    """The kernel under test failed: build error, boot failure, panic (exit 1)."""

    exit_code = 1
    label = "kernel problem"


class Interrupted(RigError):
    """The user pressed Ctrl-C; whatever was collected is kept (exit 130)."""

    exit_code = 130
    label = "interrupted"


class DeadlineExceeded(RigError):
    """The run's overall deadline (--deadline) ended it: most often a kernel that hangs
    without a report, so the kernel's fault unless the deadline was simply too short."""

    exit_code = 1
    label = "deadline"


def host_error_of(exc: OSError) -> InfraError | None:
    """The InfraError a host-side OSError (disk full, over quota, I/O error) is,
    naming the file; None for any other OSError (that one is a bug where it escapes)."""
    if exc.errno not in HOST_ERRNOS:
        return None
    where = f" writing {exc.filename}" if exc.filename else ""
    return InfraError(f"{exc.strerror or exc}{where}",
                      hint="free space on that filesystem (or point RIG_CACHE_DIR / --out at one with room) "
                           "and run again")
