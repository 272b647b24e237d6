"""`rig qemu`: build and show rig's own QEMU (aarch64, with rig's device models)."""

from __future__ import annotations

import argparse
import json

from rig import proc
from rig.errors import InfraError, UserError
from rig.qemu import build as qemu_build

NAME = "qemu"
HELP = "build and show rig's own QEMU for arm64 guests (Debian's QEMU 10.0 + rig's device models; cached)"
ORDER = 25
EXAMPLES = [
    "rig qemu build",
    "rig qemu show",
    "rig qemu show --json",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    build = sub.add_parser("build", help="build rig's QEMU (a cache hit if already built)")
    build.add_argument("--quiet", action="store_true", help="no progress lines")
    show = sub.add_parser("show", help="print rig's QEMU: version, rig's patches and device files, binary path")
    show.add_argument("--json", action="store_true", help="the same as JSON")


def _describe(built: qemu_build.QemuBuild, version: str) -> dict[str, object]:
    return {
        "version": version, "package_version": built.package_version, "patches": list(built.patches),
        "device_files": list(built.device_files), "binary": str(built.binary), "cache_key": built.cache_key,
        "built_at": built.built_at, "build_s": built.build_s, "build_log": str(built.build_log),
    }


def run(args: argparse.Namespace) -> int:
    if args.action == "build":
        built = qemu_build.ensure_qemu(progress=not args.quiet)
        state = "cache hit" if built.cache_hit else f"built in {built.build_s:.0f} s"
        print(f"qemu    {built.version} ({state})")
        print(f"binary  {built.binary}")
        return 0
    built = qemu_build.find_qemu()
    if built is None:
        raise UserError("rig's QEMU is not built for the current sources", hint="run: rig qemu build")
    # Asked of the binary itself, so show proves it still runs on this host.
    result = proc.run([built.binary, "--version"], timeout=qemu_build.VERSION_TIMEOUT_S, check=False,
                      what=f"{built.binary.name} --version")
    if not result.ok:
        raise InfraError(f"rig's QEMU in {built.binary} does not run: {(result.stderr or result.stdout).strip()}",
                         hint="a host library it links may have changed; rebuild it after removing "
                              f"{built.entry}, with: rig qemu build")
    version = result.stdout.strip().splitlines()[0]
    facts = _describe(built, version)
    if args.json:
        print(json.dumps(facts, indent=2))
        return 0
    print(f"version   {version}")
    print(f"package   Debian {qemu_build.SUITE} {qemu_build.SOURCE_PACKAGE} {built.package_version}")
    print(f"patches   {built.patches[0] if built.patches else '(none)'}")
    for name in built.patches[1:]:
        print(f"          {name}")
    print(f"devices   {built.device_files[0] if built.device_files else '(none)'}")
    for name in built.device_files[1:]:
        print(f"          {name}")
    print(f"built     {built.built_at} in {built.build_s:.0f} s (key {built.cache_key})")
    print(f"log       {built.build_log}")
    print(f"binary    {built.binary}")
    return 0
