"""One `rig run` of the real CLI for a benchmark: its wall time, exit code and report.

Benchmarks time rig as a user runs it, so they start it as a command, not as a function;
the report.json it writes holds the phases and figures they compare.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class RigRun:
    wall_s: float
    returncode: int
    report: dict[str, Any]


def run_rig(args: list[str], out: Path, timeout: float | None) -> RigRun:
    """`rig run --quiet --out OUT ARGS...`; exits the benchmark when no report was written
    (a run without a report has no figures to give, and its stderr says why)."""
    argv = [sys.executable, "-m", "rig", "run", "--quiet", "--out", str(out), *args]
    started = time.monotonic()
    done = subprocess.run(argv, cwd=REPO, capture_output=True, text=True, timeout=timeout)
    wall = time.monotonic() - started
    report = out / "report.json"
    if not report.is_file():
        sys.exit(f"rig run wrote no report (exit {done.returncode}):\n{done.stderr[-2000:]}")
    return RigRun(wall, done.returncode, json.loads(report.read_text()))
