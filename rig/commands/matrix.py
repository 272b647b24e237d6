"""`rig matrix`: one series across kernels, GPU models, pressure, plans and profiles, on
this machine (`run`), merged from any cells (`report`), or as a GitLab CI pipeline (`export`)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from rig.errors import DISK_FULL_HINT, InfraError, UserError, disk_full

NAME = "matrix"
HELP = "run a matrix of kernels, GPU models, pressure and plans; report it; export it as a GitLab CI pipeline"
ORDER = 2
EXAMPLES = [
    "rig matrix run matrix.toml",
    "rig matrix run matrix.toml --jobs 2 --out rig-runs/matrix   # again: finished cells are kept",
    "rig matrix report rig-runs/matrix",
    "rig matrix export matrix.toml --to gitlab-ci --tag kvm > .gitlab-ci.yml",
]

FILE_HELP = """\
matrix file (TOML):
  [axes]                      each a list; cells are their cross product
  kernel = ["debian:6.1", "debian:6.12", "~/linux"]
  gpu = ["virtio-gpu", "bochs"]
  series = ["patches/v2/"]    also: arch, profile, plan, pressure
  [settings]                  shared by every cell: any axis as one value, and
  plan = "smoke"              deadline, retries, memory, cpus, accel, image,
  compare_base = true         compare_base (a shared base run per kernel/gpu/plan)
  [[exclude]]                 drop the cells matching every pair
  kernel = "debian:7.2"
  gpu = "bochs"
  [[include]]                 extend matching cells, or add a cell of its own
Relative paths are relative to the matrix file."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.epilog = (parser.epilog or "") + "\n\n" + FILE_HELP
    sub = parser.add_subparsers(dest="matrix_command", metavar="ACTION", required=True)
    run = sub.add_parser("run", help="run every cell on this machine (again: resume)",
                         description="run every cell on this machine; run again to resume",
                         epilog=FILE_HELP, formatter_class=argparse.RawDescriptionHelpFormatter)
    run.add_argument("file", type=Path, metavar="FILE")
    run.add_argument("--jobs", type=int, metavar="N",
                     help="guests at once (default: what the host's cores and memory carry)")
    run.add_argument("--out", type=Path, metavar="DIR", help="output directory (default: rig-runs/matrix-<file>)")
    run.add_argument("--rerun", action="store_true", help="run finished cells again")
    run.add_argument("--cell", action="append", default=[], metavar="ID", help="run only this cell; repeatable")
    run.add_argument("--builds-only", action="store_true",
                     help="build the kernels the cells need and stop")
    run.add_argument("--build", action="append", default=[], metavar="ID",
                     help="build only this kernel (an id from --list) and stop (a CI build job); repeatable")
    run.add_argument("--list", action="store_true", help="list the cells and their builds, run nothing")
    run.add_argument("--quiet", action="store_true", help="no live table")
    report = sub.add_parser("report", help="merge finished cells into the matrix reports",
                            description="merge matrix outputs, cell or `rig run` directories into matrix.json, "
                                        "matrix.html, matrix.md, junit.xml and kcidb.json")
    report.add_argument("dirs", type=Path, nargs="+", metavar="DIR")
    report.add_argument("--out", type=Path, metavar="DIR", help="where the reports go (default: the first DIR)")
    export = sub.add_parser("export", help="write the matrix as a CI pipeline",
                            description="write the matrix as a GitLab CI pipeline (.gitlab-ci.yml) on stdout")
    export.add_argument("file", type=Path, metavar="FILE")
    export.add_argument("--to", choices=["gitlab-ci"], default="gitlab-ci")
    export.add_argument("--output", type=Path, metavar="PATH", help="write here instead of stdout")
    export.add_argument("--tag", action="append", default=[], metavar="TAG", help="runner tag; repeatable")
    export.add_argument("--image", metavar="IMAGE", help="job image (default: none, the runner's shell)")
    export.add_argument("--before-script", action="append", default=[], metavar="CMD",
                        help="command before each job's script; repeatable")
    export.add_argument("--rig", default="rig", metavar="CMD", help="how jobs call rig (default: %(default)s)")
    export.add_argument("--out", default="matrix", metavar="DIR",
                        help="the matrix output directory in the jobs (default: %(default)s)")
    export.add_argument("--cache", default=".rig-cache", metavar="DIR",
                        help="rig's cache as the GitLab job cache, a directory in the project; `none` keeps "
                             "the runner's own ~/.cache/rig (default: %(default)s)")


def run(args: argparse.Namespace) -> int:
    return {"run": _run, "report": _report, "export": _export}[args.matrix_command](args)


def _load(path: Path):  # -> (MatrixSpec, cells)
    from rig.matrix import cells, spec

    matrix = spec.load(path)
    return matrix, cells.expand(matrix)


def _run(args: argparse.Namespace) -> int:
    from rig.matrix import report
    from rig.matrix.jobs import ProcessLauncher
    from rig.matrix.cells import varying_axes
    from rig.matrix.runner import MatrixRun, base_build_key, build_id, default_jobs
    from rig.rundir import new_run_dir

    matrix, cells = _load(args.file)
    if args.cell:
        unknown = [c for c in args.cell if c not in {cell.id for cell in cells}]
        if unknown:
            raise UserError(f"--cell {', '.join(unknown)}: not a cell of {args.file}",
                            hint=f"give one of {', '.join(c.id for c in cells)} (see --list)")
        cells = tuple(c for c in cells if c.id in args.cell)
    if args.list:
        for cell in cells:
            print(f"{cell.id}\tbuild {build_id(cell.build_key)}\t{cell.label(varying_axes(cells))}")
        return 0
    if args.jobs is not None and not 1 <= args.jobs <= 64:
        raise UserError(f"--jobs {args.jobs}: give 1 to 64", hint="or leave it out for the host's default")
    # the kernels the cells build: each cell's, and its base's where the cells compare with one
    kernels = {build_id(c.build_key) for c in cells} | {build_id(base_build_key(c)) for c in cells
                                                        if c.series and matrix.settings.compare_base}
    unknown = set(args.build) - kernels
    if unknown:
        raise UserError(f"--build {', '.join(sorted(unknown))}: not a kernel of {args.file}",
                        hint="see the build ids with --list")
    jobs = args.jobs or default_jobs(matrix.settings.memory_mib, matrix.settings.cpus)
    out = new_run_dir("matrix", args.out or Path("rig-runs") / f"matrix-{args.file.stem}")
    live = _Live(enabled=not args.quiet)
    scheduler = MatrixRun(matrix, cells, out, ProcessLauncher(), jobs=jobs, rerun=args.rerun,
                          builds_only=args.builds_only, only_builds=frozenset(args.build), observe=live.update)
    if not args.quiet:
        print(f"rig: {len(cells)} cells, {len(scheduler.builds)} kernels to build, up to {jobs} guest(s) at once; "
              f"output in {out}", file=sys.stderr)
    interrupted = False
    try:
        with live:
            scheduler.run()
    except KeyboardInterrupt:
        interrupted = True
    if scheduler.builds_only:
        failed = [b for b in scheduler.builds.values() if b.outcome and b.outcome.exit_code
                  and not b.outcome.not_applicable]
        for build in failed:
            print(f"rig: build {build.job.name}: {build.outcome.message}", file=sys.stderr)  # type: ignore[union-attr]
        print(out)
        return 130 if interrupted else (max(b.outcome.exit_code for b in failed) if failed else 0)  # type: ignore[union-attr]
    # only this matrix's cells: a directory reused with an edited file keeps cells it no longer has
    records = [r for r in (report.gather([out], order=[c.id for c in cells]) if (out / "cells").is_dir()
                           and any((out / "cells").iterdir()) else [])
               if r.result.id in {c.id for c in cells} and r.result.status.final]
    data = report.write_all(records, out) if records else {"exit_code": 0}
    print(f"reports: {out / 'matrix.html'}  {out / 'matrix.md'}  {out / 'matrix.json'}  {out / 'junit.xml'}  "
          f"{out / 'kcidb.json'}")
    print(out)
    if interrupted:
        print("rig: interrupted; finished cells are kept: run the same command again to resume", file=sys.stderr)
        return 130
    return int(data["exit_code"])


def _report(args: argparse.Namespace) -> int:
    from rig.matrix import report

    records = report.gather(args.dirs)
    out = args.out or args.dirs[0]
    data = report.write_all(records, out)
    print(report.markdown(records), end="")
    print(out)
    return int(data["exit_code"])


def _export(args: argparse.Namespace) -> int:
    from rig.matrix import gitlab

    matrix, cells = _load(args.file)
    text = gitlab.export(matrix, cells, gitlab.ExportOptions(
        matrix_file=str(args.file), rig=args.rig, out=args.out, tags=tuple(args.tag), image=args.image,
        before_script=tuple(args.before_script), cache=None if args.cache == "none" else args.cache))
    if args.output:
        try:
            args.output.write_text(text)
        except OSError as exc:
            if disk_full(exc) is not None:
                raise InfraError(f"cannot write the pipeline to --output {args.output}: the disk is full "
                                 f"({exc.strerror})", hint=DISK_FULL_HINT) from exc
            raise UserError(f"cannot write the pipeline to --output {args.output}: {exc.strerror or exc}",
                            hint="give --output a file in a writable directory") from exc
    else:
        print(text, end="")
    return 0


class _Live:
    """The live table on a terminal; elsewhere one line per change of a cell's state."""

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled
        self.tty = sys.stderr.isatty()
        self._live = None
        self._last: dict[str, str] = {}

    def __enter__(self) -> _Live:
        if self.enabled and self.tty:
            from rich.console import Console
            from rich.live import Live

            self._live = Live(console=Console(stderr=True), refresh_per_second=2, transient=False)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)

    def update(self, states: list) -> None:  # list[CellState]
        if not self.enabled:
            return
        from rig.matrix.cells import varying_axes

        varying = varying_axes([s.cell for s in states]) if len(states) > 1 else ()
        now = time.monotonic()
        if self._live is not None:
            from rich.table import Table

            table = Table(title="rig matrix", expand=False)
            for column in ("cell", "state", "time", "note"):
                table.add_column(column)
            for state in states:
                elapsed = (state.result.duration_s if state.result and state.status.final
                           else now - (state.started or state.since))
                table.add_row(state.cell.label(varying), state.status.value, f"{elapsed:.0f} s",
                              (state.note or "")[:80])
            self._live.update(table)
            return
        for state in states:
            line = f"{state.status.value} {state.note}".strip()
            if self._last.get(state.cell.id) != line:
                self._last[state.cell.id] = line
                print(f"rig: {state.cell.label(varying)}: {line}", file=sys.stderr, flush=True)
