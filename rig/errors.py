"""The exception tree: the type says whose fault a failure is, and so the exit code.

Kernel problems found while testing (lockdep, kmemleak, WARN, failing tests) are not
exceptions: they are findings in the report. These exceptions stop a run.
"""

from __future__ import annotations

import errno
from pathlib import Path


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


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised where Ctrl-C's KeyboardInterrupt would be (rig's command line
    installs the handler): every `finally` and `except BaseException` that stops a
    program or QEMU on Ctrl-C does the same on SIGTERM, and the exit is 130 either way.
    Python's own default would end rig at once, leaving make and half its work behind."""


def raise_terminated(signum: int, frame: object) -> None:
    """A SIGTERM handler (signal.signal) that raises Terminated."""
    raise Terminated("terminated (SIGTERM)")


class DeadlineExceeded(RigError):
    """The run's overall deadline (--deadline) ended it: most often a kernel that hangs
    without a report, so the kernel's fault unless the deadline was simply too short."""

    exit_code = 1
    label = "deadline"


# The host's disk refusing a write: whoever wrote, it is the host's fault.
DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT)
DISK_FULL_HINT = ("free some space (rig image prune drops old images; old run directories can go), "
                  "or point RIG_CACHE_DIR and --out at a larger disk")


def disk_full(exc: BaseException, under: Path | None = None) -> InfraError | None:
    """The host problem an OSError of a full disk (or quota) is, else None. `under`: the
    directory being written, named when the error names no file (a write() names none)."""
    if not isinstance(exc, OSError) or exc.errno not in DISK_FULL_ERRNOS:
        return None
    where = f" writing {exc.filename}" if exc.filename else f" writing under {under}" if under else ""
    return InfraError(f"the disk is full{where} ({exc.strerror})", hint=DISK_FULL_HINT)


# How a program's output says that it ran out of disk (glibc's strerror of ENOSPC, EDQUOT).
DISK_FULL_WORDS = ("No space left on device", "Disk quota exceeded")


def disk_full_in(output: str) -> str | None:
    """The first line of a program's output that says the disk is full, else None."""
    return next((line.strip() for line in output.splitlines() if any(w in line for w in DISK_FULL_WORDS)), None)
