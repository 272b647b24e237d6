"""`rig splat`: find, name and fingerprint every kernel report in a console log or dmesg."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rig.errors import UserError
from rig.splat import Finding, parse_log

NAME = "splat"
HELP = "list the kernel reports (lockdep, kmemleak, KASAN, WARN, hangs...) in a console log"
ORDER = 60
EXAMPLES = [
    "rig splat console.log",
    "rig splat --json console.log > findings.json",
    "dmesg | rig splat -",
    "ssh guest dmesg | rig splat --json -",
]

# Reading a log is the only blocking call; a console log of a long run is a few hundred MB at most.
MAX_LOG_BYTES = 2 * 1024 * 1024 * 1024


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("log", nargs="?", default="-", metavar="FILE|-",
                        help="console log or dmesg output; '-' or nothing reads standard input")
    parser.add_argument("--json", action="store_true",
                        help="print a JSON list of findings (title, kind, corrupted, signature, report, ...)")


def _read(source: str) -> bytes:
    if source == "-":
        return sys.stdin.buffer.read(MAX_LOG_BYTES)
    path = Path(source)
    try:
        with path.open("rb") as f:
            return f.read(MAX_LOG_BYTES)
    except FileNotFoundError:
        raise UserError(f"no such log file: {path}", hint="give the path of a console log, or '-' for stdin") from None
    except IsADirectoryError:
        raise UserError(f"{path} is a directory, not a log file",
                        hint="give the console log inside it (a run directory keeps it as console.log)") from None
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}", hint="check the path and its permissions") from None


def _human(findings: list[Finding]) -> str:
    if not findings:
        return "no kernel reports found"
    lines: list[str] = []
    for f in findings:
        when = f" at {f.timestamp:.6f}s" if f.timestamp is not None else ""
        damaged = "  (report damaged: truncated or interleaved)" if f.corrupted else ""
        lines.append(f"{f.title}")
        lines.append(f"  kind: {f.kind}  line: {f.line}{when}  signature: {f.signature}{damaged}")
        if f.lock_chain:
            lines.append("  locks: " + " -> ".join(f.lock_chain))
        for group in f.leak_groups:
            frames = " < ".join(group.frames[:6]) + (" < ..." if len(group.frames) > 6 else "")
            lines.append(f"  leaked: {group.count} object(s), {group.total_bytes} bytes from {frames}")
        lines.append("")
    count = len(findings)
    lines.append(f"{count} kernel report{'s' if count != 1 else ''} found")
    return "\n".join(lines)


def run(args: argparse.Namespace) -> int:
    findings = parse_log(_read(args.log))
    if args.json:
        json.dump([f.to_json() for f in findings], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(_human(findings))
    return 1 if findings else 0
