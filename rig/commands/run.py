"""`rig run`: rig's main job. Build the kernel with the series, boot it, run IGT and
KUnit under memory pressure, collect every kernel report, and judge the series."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from rich.console import Console

from rig.build import build_lock_path, request_problems
from rig.cache import cache_root, is_locked
from rig.commands._machine_options import add_machine_arguments, guest_spec_from_args
from rig.commands.build import add_build_arguments, request_from_args
from rig.errors import UserError
from rig.forensics import HangPolicy
from rig.guest_spec import MAX_WAIT_S
from rig.kernel_image import check_kernel_image
from rig.pipeline import DEFAULT_DEADLINE_S, RunSpec
from rig.plan import load_plan, shipped_plans
from rig.rundir import new_run_dir, reproduce_command
from rig.known import load_known
from rig.verdict import load_baseline
from rig.workloads.pressure import KINDS, parse_pressure

NAME = "run"
HELP = "test a series: build, boot, run IGT and KUnit under memory pressure, report what the series broke"
ORDER = 1
EXAMPLES = [
    "rig run",
    "rig run --kernel debian:6.1 --series fix-shmem.mbox",
    "rig run --series patches/ --pressure balloon,shrink --plan smoke",
    "rig run --kernel ~/linux --base v6.12 --series v6.12..my-branch --plan my-plan.toml",
    "rig run --series patches/ --repeat 3 --bisect",
    "rig run --series patches/ --known virtio_gpu-none-fails.txt --known virtio_gpu-none-skips.txt",
    "rig run --series patches/ --baseline rig-runs/20250101-120000-run",
    "rig run --series patches/ --no-base",
    "rig run --arch arm64 --gpu mali --plan panfrost --pressure balloon,shrink",
    "rig run --series patches/ --plan my-plan.toml --dump-on-hang",
]

MAX_REPEAT = 20

T = TypeVar("T")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_build_arguments(parser)
    tests = parser.add_argument_group("tests")
    tests.add_argument("--plan", default="default", metavar="PLAN",
                       help=f"test plan: one of {', '.join(sorted(shipped_plans()))} or a .toml file "
                            "(default: %(default)s)")
    tests.add_argument("--pressure", default="balloon", metavar="KINDS",
                       help=f"memory pressure while the tests run, comma-separated: {', '.join(KINDS)}; "
                            "e.g. balloon=768,shrink=5,memcg=512,stress=25%% (default: %(default)s)")
    tests.add_argument("--baseline", type=Path, metavar="RUN",
                       help="run directory (or report.json) of the same plan on the base kernel, used instead of "
                            "running the base: findings it has too are reported as pre-existing, not new")
    tests.add_argument("--no-base", action="store_true",
                       help="with --series, do not run the base kernel (the tree without the series) beside it; "
                            "by default rig does, with the same plan, pressure, machine and image, and keeps "
                            "its runs in the cache for the next series on the same base")
    tests.add_argument("--compare-base", action="store_true", help=argparse.SUPPRESS)  # the default since schema 3
    tests.add_argument("--repeat", type=int, default=1, metavar="N",
                       help="run each side N times, each in a fresh guest, base and series interleaved; every "
                            "finding and failure gets its count per side (default: %(default)s)")
    tests.add_argument("--max-repeat", type=int, default=0, metavar="N",
                       help="settle new findings seen in some runs but not all with targeted runs of their tests "
                            "only, up to N runs a side (default: no extra runs)")
    tests.add_argument("--bisect", action="store_true",
                       help="name the first patch of the series that shows each new finding and new failure: "
                            "builds prefixes of the series and runs only the tests concerned")
    tests.add_argument("--known", type=Path, action="append", default=[], metavar="FILE",
                       help="known issues, repeatable: drm-ci's <driver>-<gpu>-fails.txt (test,Fail|Crash|Timeout), "
                            "-flakes.txt and -skips.txt (a regular expression a line), or a .toml of known kernel "
                            "reports ([[finding]] title or signature, reason, link)")
    tests.add_argument("--retries", type=int, default=1, metavar="N",
                       help="fresh guests to try after a known emulator fault (default: %(default)s)")
    tests.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_S, metavar="S",
                       help="the whole run's time limit in seconds, build included (default: %(default)s)")
    hang = parser.add_argument_group("when the guest hangs",
                                     "rig asks the hung guest's kernel for its blocked tasks (sysrq w) and every "
                                     "CPU's backtrace (sysrq l, else an NMI) before it stops the guest")
    hang.add_argument("--dump-on-hang", action="store_true",
                      help="also write the guest's memory (an ELF core that `crash vmlinux FILE` opens) into the "
                           "attempt's vm/ directory; as large as the guest's memory")
    hang.add_argument("--task-list-on-hang", action="store_true",
                      help="also ask for every task's stack (sysrq t), not only the blocked ones (long)")
    add_machine_arguments(parser)
    parser.add_argument("--out", type=Path, metavar="DIR", help="run directory (default: a new one under rig-runs/)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    """Every option checked, every problem named, before anything starts."""
    problems: list[str] = []
    if args.compare_base and (args.baseline is not None or not args.series):
        problems.append("--compare-base needs --series and no --baseline (it makes the baseline itself)")
    if args.compare_base and args.no_base:
        problems.append("--compare-base and --no-base contradict each other")
    if not 1 <= args.repeat <= MAX_REPEAT:
        problems.append(f"--repeat {args.repeat}: give 1 to {MAX_REPEAT}")
    if args.max_repeat and not args.repeat < args.max_repeat <= MAX_REPEAT:
        problems.append(f"--max-repeat {args.max_repeat}: give more than --repeat ({args.repeat}), "
                        f"at most {MAX_REPEAT}")
    if args.max_repeat and (args.no_base or not args.series):
        problems.append("--max-repeat settles findings against the base runs: it needs --series without --no-base")
    if args.bisect and not args.series:
        problems.append("--bisect needs --series (it searches the series for the first bad patch)")
    if args.bisect and (args.no_base or args.bzimage is not None):
        problems.append("--bisect needs the base kernel's runs (drop --no-base and --bzimage): a finding the "
                        "base shows too has no first bad patch")
    if args.each_patch:
        problems.append("--each-patch belongs to `rig build` (a run tests the whole series)")
    if args.retries < 0 or args.retries > 5:
        problems.append(f"--retries {args.retries}: give 0 to 5")
    # nan passes every comparison false, so it fails this one; inf would never end a hung run
    if not 300 <= args.deadline <= MAX_WAIT_S:
        problems.append(f"--deadline {args.deadline:g}: give at least 300 seconds, at most {MAX_WAIT_S:g}")
    if args.bzimage is not None:
        try:
            check_kernel_image(args.bzimage, args.arch)
        except UserError as exc:
            problems.append(exc.message)
    problems += _guest_problems(args)
    if args.bzimage is None:
        problems += request_problems(request_from_args(args))
    plan = _checked(problems, lambda: load_plan(args.plan))
    pressure = _checked(problems, lambda: parse_pressure(args.pressure, args.memory))
    baseline = _checked(problems, lambda: load_baseline(args.baseline)) if args.baseline is not None else None
    known = _checked(problems, lambda: load_known(args.known))
    if problems or plan is None or pressure is None or known is None:
        raise UserError("cannot start this run:\n    " + "\n    ".join(problems),
                        hint="see `rig run --help`")
    cache_root()  # a cache rig cannot create is the host's problem, said before a run directory is made
    if args.bzimage is None:
        is_locked(build_lock_path())  # so is a build lock it cannot open
    return RunSpec(
        request=request_from_args(args),
        plan=plan,
        pressure=pressure,
        guest=guest_spec_from_args(args),
        command=reproduce_command(),
        deadline_s=args.deadline,
        retries=args.retries,
        baseline=baseline,
        kernel_image=args.bzimage.resolve() if args.bzimage else None,
        repeat=args.repeat,
        base=not args.no_base,
        bisect=args.bisect,
        max_repeat=args.max_repeat,
        known=known,
        hang=HangPolicy(task_list=args.task_list_on_hang, dump=args.dump_on_hang),
    )


def _checked(problems: list[str], read: Callable[[], T]) -> T | None:
    """What `read` returns, or None with its UserError noted among `problems` (its own
    list of problems indented under it, its hint after it), so one message says them all."""
    try:
        return read()
    except UserError as exc:
        problems.append(exc.message.replace("\n", "\n    ") + (f"\n      ({exc.hint})" if exc.hint else ""))
        return None


def _guest_problems(args: argparse.Namespace) -> list[str]:
    try:
        guest_spec_from_args(args)
    except UserError as exc:
        return [line.strip() for line in exc.message.splitlines()[1:]] or [exc.message]
    return []


def run(args: argparse.Namespace) -> int:
    from rig import pipeline
    from rig.report import terminal

    spec = spec_from_args(args)
    out = new_run_dir("run", args.out)

    def say(line: str) -> None:
        if not args.quiet:
            print(f"rig: {line}", file=sys.stderr, flush=True)

    report = pipeline.run(spec, out, say=say, progress=not args.quiet)
    terminal.render(report, Console(highlight=False))
    print(f"reports: {out / 'report.html'}  {out / 'report.md'}  {out / 'report.json'}  {out / 'junit.xml'}")
    print(out)
    return report.exit_code
