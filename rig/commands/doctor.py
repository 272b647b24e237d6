"""`rig doctor`: check this host for what rig needs, and say how to fix each gap."""

from __future__ import annotations

import argparse
import json

from rig.doctor import Host, State, diagnose
from rig.target import TARGETS

NAME = "doctor"
HELP = "check the host for what rig needs (QEMU, KVM, mmdebstrap, space, mirror, compilers) and how to fix it"
ORDER = 80
EXAMPLES = [
    "rig doctor",
    "rig doctor --arch arm64",
    "rig doctor --json",
]

EXIT_OK, EXIT_HOST = 0, 3
_MARK = {State.OK: "ok", State.WARN: "warn", State.MISSING: "MISSING"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--arch", default="x86_64", choices=sorted(TARGETS),
                        help="also check what guests of this architecture need (default: %(default)s)")
    parser.add_argument("--json", action="store_true", help="the findings as JSON")


def run(args: argparse.Namespace) -> int:
    findings = diagnose(Host.real(), arch=args.arch)
    missing = [f for f in findings if f.state is State.MISSING]
    if args.json:
        print(json.dumps([{"check": f.check, "state": str(f.state), "detail": f.detail, "fix": f.fix}
                          for f in findings], indent=2))
        return EXIT_HOST if missing else EXIT_OK
    width = max(len(f.check) for f in findings)
    for f in findings:
        print(f"{_MARK[f.state]:<8}{f.check:<{width + 2}}{f.detail}")
        if f.fix:
            print(f"{'':<8}{'':<{width + 2}}fix: {f.fix}")
    warned = sum(1 for f in findings if f.state is State.WARN)
    if missing:
        print(f"rig doctor: {len(missing)} missing ({', '.join(f.check for f in missing)}); fix them first")
        return EXIT_HOST
    print("rig doctor: all that rig needs is here" + (f" ({warned} warning{'s' if warned > 1 else ''})"
                                                      if warned else ""))
    return EXIT_OK
