"""Run directories: where every stage of one rig invocation writes what it made.

Each stage writes under `<run>/<stage>/`; `metadata.json` says what was asked, what ran
and how to reproduce it. Run directories are private (0700): they hold keys and sockets.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import shlex
import sys
from pathlib import Path
from typing import Any

from rig.errors import DISK_FULL_HINT, InfraError, UserError, disk_full

DEFAULT_RUNS_DIR = Path("rig-runs")
# Disk space a run holds back for its report files (a few hundred KiB; a long --repeat's
# report.json a few MiB), so that a run whose disk fills up still says so in report.json.
REPORT_RESERVE_BYTES = 16 << 20
RESERVE_NAME = ".rig-report-reserve"


def new_run_dir(command: str, out: Path | None = None) -> Path:
    """`out` if given (created if missing), else a fresh rig-runs/<time>-<command>/."""
    if out is None:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        base = Path(os.environ.get("RIG_RUNS_DIR", DEFAULT_RUNS_DIR))
        out = base / f"{stamp}-{command}"
        suffix = 1
        while out.exists():
            suffix += 1
            out = base / f"{stamp}-{command}-{suffix}"
    try:
        out.mkdir(parents=True, exist_ok=True)
        out.chmod(0o700)
    except OSError as exc:
        if (full := disk_full(exc)) is not None:  # a full disk is the host's, not the path's
            raise full from exc
        raise UserError(f"cannot use output directory {out}: {exc.strerror}",
                        hint="pass --out with a directory you can write to") from exc
    return out.resolve()


def reproduce_command(argv: list[str] | None = None) -> str:
    args = sys.argv[1:] if argv is None else argv
    return shlex.join(["rig", *args])


def write_metadata(run_dir: Path, data: dict[str, Any]) -> Path:
    """Merge `data` into <run>/metadata.json (stages add their own keys)."""
    path = run_dir / "metadata.json"
    current: dict[str, Any] = {}
    if path.exists():
        current = json.loads(path.read_text())
    current.update(data)
    tmp = path.with_suffix(".tmp")
    try:
        tmp.write_text(json.dumps(current, indent=2, sort_keys=True, default=str) + "\n")
    except OSError as exc:  # write() of a full disk names no file: name it here
        if disk_full(exc) is not None:
            raise InfraError(f"the disk is full writing {path} ({exc.strerror})", hint=DISK_FULL_HINT) from exc
        raise
    os.replace(tmp, path)
    return path


class SpaceReserve:
    """Room held in a run directory for its report: a file of `size` bytes made when the
    run starts and deleted just before the report is written. A disk that fills up during
    the run then still takes report.json and report.md, which say that it did."""

    def __init__(self, run_dir: Path, size: int = REPORT_RESERVE_BYTES) -> None:
        self.path = run_dir / RESERVE_NAME
        self.size = size

    def hold(self) -> None:
        """Make the reserve; a disk without room for it is full already (the host's fault)."""
        try:
            with open(self.path, "wb") as reserve:
                try:
                    os.posix_fallocate(reserve.fileno(), 0, self.size)
                except OSError as exc:
                    if disk_full(exc) is not None:
                        raise
                    # A file system without fallocate: real blocks, written.
                    chunk = bytes(1 << 20)
                    for _ in range(0, self.size, len(chunk)):
                        reserve.write(chunk)
                    reserve.flush()
                    os.fsync(reserve.fileno())
        except OSError as exc:
            self.release()
            if disk_full(exc) is not None:
                raise InfraError(f"the disk is full: {self.path.parent} has no room for a run "
                                 f"({self.size >> 20} MiB held for its report could not be written)",
                                 hint=DISK_FULL_HINT) from exc
            raise

    def release(self) -> None:
        self.path.unlink(missing_ok=True)
