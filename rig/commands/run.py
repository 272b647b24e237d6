"""`rig run`: rig's main job. Build the kernel with the series, boot it, run IGT and
KUnit under memory pressure, collect every kernel report, and judge the series."""

from __future__ import annotations

import argparse
import dataclasses
import sys
from pathlib import Path

from rich.console import Console

from rig.commands._machine_options import add_machine_arguments, guest_spec_from_args
from rig.commands.build import add_build_arguments, request_from_args
from rig.errors import UserError
from rig.kernel_image import check_kernel_image
from rig.pipeline import DEFAULT_DEADLINE_S, RunSpec
from rig.plan import load_plan, shipped_plans
from rig.rundir import new_run_dir, reproduce_command
from rig.verdict import baseline_from_report, load_baseline
from rig.workloads.pressure import KINDS, parse_pressure

NAME = "run"
HELP = "test a series: build, boot, run IGT and KUnit under memory pressure, report new kernel bugs"
ORDER = 1
EXAMPLES = [
    "rig run",
    "rig run --kernel debian:6.1 --series fix-shmem.mbox",
    "rig run --series patches/ --pressure balloon,shrink --plan smoke",
    "rig run --kernel ~/linux --base v6.12 --series v6.12..my-branch --plan my-plan.toml",
    "rig run --series patches/ --baseline rig-runs/20250101-120000-run",
    "rig run --series patches/ --compare-base",
    "rig run --arch arm64 --gpu mali --plan panfrost --pressure balloon,shrink",
]


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
                       help="run directory (or report.json) of the same plan on the base kernel: findings it "
                            "has too are reported as pre-existing, not new")
    tests.add_argument("--compare-base", action="store_true",
                       help="first run the same plan on the kernel without the series (in <out>/base) and use it "
                            "as --baseline")
    tests.add_argument("--retries", type=int, default=1, metavar="N",
                       help="fresh guests to try after a known emulator fault (default: %(default)s)")
    tests.add_argument("--deadline", type=float, default=DEFAULT_DEADLINE_S, metavar="S",
                       help="the whole run's time limit in seconds, build included (default: %(default)s)")
    add_machine_arguments(parser)
    parser.add_argument("--out", type=Path, metavar="DIR", help="run directory (default: a new one under rig-runs/)")
    parser.add_argument("--quiet", action="store_true", help="no progress lines")


def spec_from_args(args: argparse.Namespace) -> RunSpec:
    """Every option checked, every problem named, before anything starts."""
    problems: list[str] = []
    if args.compare_base and (args.baseline is not None or not args.series):
        problems.append("--compare-base needs --series and no --baseline (it makes the baseline itself)")
    if args.each_patch:
        problems.append("--each-patch belongs to `rig build` (a run tests the whole series)")
    if args.retries < 0 or args.retries > 5:
        problems.append(f"--retries {args.retries}: give 0 to 5")
    if args.deadline < 300:
        problems.append(f"--deadline {args.deadline:g}: give at least 300 seconds")
    if args.bzimage is not None:
        try:
            check_kernel_image(args.bzimage, args.arch)
        except UserError as exc:
            problems.append(exc.message)
    problems += _guest_problems(args)
    if problems:
        raise UserError("cannot start this run:\n    " + "\n    ".join(problems),
                        hint="see `rig run --help`")
    plan = load_plan(args.plan)
    pressure = parse_pressure(args.pressure, args.memory)
    baseline = load_baseline(args.baseline) if args.baseline is not None else None
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
    )


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

    if args.compare_base:
        say("running the plan on the base kernel first (without the series)")
        base_spec = dataclasses.replace(spec, request=dataclasses.replace(spec.request, series=None))
        base = pipeline.run(base_spec, new_run_dir("run", out / "base"), say=say, progress=not args.quiet)
        if base.error is not None and base.decision.exit_code not in (0, 1):
            say(f"the base run did not finish ({base.decision.summary}); judging the series without it")
        else:
            spec = dataclasses.replace(spec, baseline=baseline_from_report(base.to_json(),
                                                                           str(base.run_dir / "report.json")))
        say(f"base kernel: {base.decision.summary}")
    report = pipeline.run(spec, out, say=say, progress=not args.quiet)
    terminal.render(report, Console(highlight=False))
    print(f"reports: {out / 'report.html'}  {out / 'report.md'}  {out / 'report.json'}  {out / 'junit.xml'}")
    print(out)
    return report.exit_code
