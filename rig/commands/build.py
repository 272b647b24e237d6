"""`rig build`: the kernel under test, with the series applied, cached."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from rig.build import BuildArtifacts, BuildRequest, build, build_lock_path, check_request, reproduce_argv
from rig.cache import cache_root, is_locked
from rig.rundir import new_run_dir, write_metadata
from rig.target import DEFAULT_TARGET, TARGETS, target

NAME = "build"
HELP = "build the kernel with your series applied and the debug options of a profile (cached)"
ORDER = 10
EXAMPLES = [
    "rig build --kernel debian:6.1 --series fix-leak.mbox",
    "rig build --kernel ~/linux --series v6.12..my-branch --profile kasan",
    "rig build --kernel debian:6.12 --series patches/ --each-patch",
    "rig build --kernel debian:7.2 --config my-options.config --out /tmp/k",
    "rig build --arch arm64 --kernel debian:6.12",
]


def add_build_arguments(parser: argparse.ArgumentParser) -> None:
    """The options that choose a kernel; `rig boot` and `rig run` take them too."""
    group = parser.add_argument_group("kernel")
    group.add_argument("--kernel", default="debian:6.1", metavar="SPEC",
                       help="debian:6.1, debian:6.12, debian:7.2 (Debian's sources) or the path of a "
                            "kernel git checkout (default: %(default)s)")
    group.add_argument("--arch", default=DEFAULT_TARGET.name, choices=sorted(TARGETS),
                       help="guest architecture the kernel is built for (cross-compiled when it is not the "
                            "host's) (default: %(default)s)")
    group.add_argument("--base", metavar="REV",
                       help="commit of a local --kernel checkout to apply the series on (default: A of a "
                            "--series A..B range, else HEAD)")
    group.add_argument("--series", metavar="SERIES",
                       help="mbox file, directory of *.patch files, git range A..B, or lore message-id")
    group.add_argument("--profile", default="default", metavar="NAME",
                       help="config profile from kernel-configs/profiles.toml: default, kasan, kunit "
                            "(default: %(default)s)")
    group.add_argument("--config", dest="extra_configs", action="append", default=[], type=Path, metavar="FILE",
                       help="extra config fragment (CONFIG_FOO=y lines) on top of the profile; repeatable")
    group.add_argument("--each-patch", action="store_true",
                       help="build after every patch in turn and name the first one that breaks the build")
    group.add_argument("--sandbox", action=argparse.BooleanOptionalAction, default=None,
                       help="apply and build the series in bubblewrap: no network, the host read-only, no "
                            "home directory, keys or sockets; what the build tried is reported "
                            "(default: on for a series fetched by message-id, off otherwise)")


def request_from_args(args: argparse.Namespace) -> BuildRequest:
    return BuildRequest(
        kernel=args.kernel,
        series=args.series,
        base=args.base,
        profile=args.profile,
        extra_configs=tuple(args.extra_configs),
        each_patch=args.each_patch,
        target=target(args.arch),
        sandbox=args.sandbox,
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_build_arguments(parser)
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="where to put the kernel image (bzImage, Image), vmlinux, System.map, .config, build.log and metadata.json "
                             "(default: a new run directory)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")


def summary(artifacts: BuildArtifacts) -> list[str]:
    lines = [
        f"kernel  {artifacts.kernel_release} ({'cache hit' if artifacts.cache_hit else 'built'}"
        f" in {artifacts.duration_s:.1f} s)",
        f"source  {artifacts.source}",
    ]
    for patch in artifacts.patches:
        lines.append(f"patch   {patch.number}: {patch.subject} ({patch.author})")
    for warning in artifacts.config_warnings:
        lines.append(f"note    optional option missing: {warning}")
    for denial in artifacts.sandbox_denials:
        lines.append(f"sandbox blocked: the series' build {denial}")
    lines.append(f"{artifacts.kernel_image.name:<7} {artifacts.kernel_image}")
    return lines


def run(args: argparse.Namespace) -> int:
    request = request_from_args(args)
    check_request(request)  # bad input fails before the run directory or the cache is touched
    cache_root()
    is_locked(build_lock_path())  # a lock rig cannot open is the host's problem, said now
    out = new_run_dir("build", args.out)
    write_metadata(out, {"command": shlex.join(reproduce_argv(request))})
    artifacts = build(request, out, progress=not args.quiet)
    for line in summary(artifacts):
        print(line)
    print(artifacts.out_dir)
    return 0
