"""Run a matrix on this machine: each distinct kernel built once, one build at a time,
up to `jobs` guests at once, finished cells kept for the next run.

Layout of the output directory:
    builds/<build>/        one per distinct kernel (rig build's files, links into the cache)
    base/<base>/           a shared base run: the plan on the kernel without the series
    cells/<cell>/          the cell's run directory (report.json, report.html, ...) and
                           matrix-cell.json: its axes, status and exit code
    matrix.json, matrix.html, matrix.md, junit.xml, kcidb.json   (rig.matrix.report)

A cell whose matrix-cell.json holds a final status (pass, fail, error, not-applicable)
and the same axes is not run again; `rerun` runs every cell anew.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from rig.matrix.cells import Cell, _short
from rig.matrix.jobs import BuildJob, GuestJob, Handle, JobOutcome, Launcher
from rig.matrix.spec import AXES, MatrixSpec

CELL_FILE = "matrix-cell.json"
# How long jobs may take to clean up after Ctrl-C before they are killed: a guest's soft
# stop and the collection of what it left.
INTERRUPT_GRACE_S = 60.0


class Status(StrEnum):
    WAITING = "waiting"
    BUILDING = "building"
    BOOTING = "booting"
    TESTING = "testing"
    PASS = "pass"
    FAIL = "fail"
    ERROR = "error"
    NOT_APPLICABLE = "not-applicable"
    INTERRUPTED = "interrupted"  # stopped by Ctrl-C: run again on the next run

    @property
    def final(self) -> bool:
        return self in FINAL


FINAL = frozenset({Status.PASS, Status.FAIL, Status.ERROR, Status.NOT_APPLICABLE})


def status_of_run(exit_code: int) -> Status:
    """A cell's status from its run's exit code (rig.report.model.decide owns the code)."""
    if exit_code == 0:
        return Status.PASS
    if exit_code == 1:  # new findings, unexpected failures, or a kernel that died: the kernel's fault
        return Status.FAIL
    if exit_code == 130:
        return Status.INTERRUPTED
    return Status.ERROR


@dataclass(frozen=True)
class CellResult:
    """What matrix-cell.json holds: enough to report a cell without its run directory."""

    id: str
    axes: Mapping[str, str]
    status: Status
    exit_code: int | None
    summary: str = ""
    duration_s: float = 0.0
    baseline: str | None = None  # the base run's directory, relative to the matrix output

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "axes": dict(self.axes), "status": self.status.value, "exit_code": self.exit_code,
                "summary": self.summary, "duration_s": round(self.duration_s, 1), "baseline": self.baseline}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> CellResult:
        return cls(str(data["id"]), dict(data["axes"]), Status(data["status"]), data.get("exit_code"),
                   str(data.get("summary", "")), float(data.get("duration_s", 0.0)), data.get("baseline"))


def _digest(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:8]


def build_id(key: tuple[str, str, str, str]) -> str:
    kernel, arch, profile, series = key
    return f"{_short('kernel', kernel)}-{arch}-{profile}-{_short('series', series)}-{_digest(*key)}"


def base_id(key: tuple[str, ...]) -> str:
    kernel, arch, gpu, profile, plan, pressure = key
    return f"{_short('kernel', kernel)}-{arch}-{gpu}-{_short('plan', plan)}-{_digest(*key)}"


def base_build_key(cell: Cell) -> tuple[str, str, str, str]:
    return (cell.kernel, cell.arch, cell.profile, "")


def load_cell_result(directory: Path) -> CellResult | None:
    try:
        return CellResult.from_json(json.loads((directory / CELL_FILE).read_text()))
    except (OSError, ValueError, KeyError):
        return None


def write_cell_result(directory: Path, result: CellResult) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    tmp = directory / (CELL_FILE + ".tmp")
    tmp.write_text(json.dumps(result.to_json(), indent=2) + "\n")
    os.replace(tmp, directory / CELL_FILE)


@dataclass
class CellState:
    cell: Cell
    status: Status = Status.WAITING
    since: float = field(default_factory=time.monotonic)
    started: float | None = None
    note: str = ""
    result: CellResult | None = None


@dataclass
class _Build:
    job: BuildJob
    outcome: JobOutcome | None = None
    running: bool = False


@dataclass
class _Base:
    job: GuestJob
    build: tuple[str, str, str, str]
    outcome: JobOutcome | None = None
    running: bool = False


Observer = Callable[[list[CellState]], None]


class MatrixRun:
    """The scheduler: builds in order one at a time, guests as slots free up, base runs
    before the cells that compare against them."""

    def __init__(self, spec: MatrixSpec, cells: Iterable[Cell], out: Path, launcher: Launcher, *,
                 jobs: int = 1, rerun: bool = False, builds_only: bool = False,
                 only_builds: frozenset[str] = frozenset(),
                 observe: Observer | None = None, poll_s: float = 0.5) -> None:
        self.spec = spec
        self.out = out
        self.launcher = launcher
        self.jobs = max(1, jobs)
        self.builds_only = builds_only or bool(only_builds)
        self.only_builds = only_builds
        self.observe = observe or (lambda states: None)
        self.poll_s = poll_s
        self.settings = dataclasses.asdict(spec.settings)
        self.states = {cell.id: CellState(cell) for cell in cells}
        self.builds: dict[tuple[str, str, str, str], _Build] = {}
        self.bases: dict[tuple[str, ...], _Base] = {}
        self.running: dict[str, Handle] = {}  # job name -> handle
        for state in self.states.values():
            kept = None if rerun else load_cell_result(self.cell_dir(state.cell))
            if kept is not None and kept.status.final and dict(kept.axes) == state.cell.axes:
                state.status, state.result, state.note = kept.status, kept, "kept from an earlier run"
                continue
            self._plan(state.cell)

    # ------------------------------------------------------------------ layout

    def cell_dir(self, cell: Cell) -> Path:
        return self.out / "cells" / cell.id

    def _resolved(self, cell: Cell) -> dict[str, str]:
        return {axis: self.spec.resolve(axis, getattr(cell, axis)) for axis in AXES}

    def _uses_base(self, cell: Cell) -> bool:
        return bool(cell.series) and self.spec.settings.compare_base

    def _plan(self, cell: Cell) -> None:
        """The builds and the base run this cell needs, each made once."""
        keys = [cell.build_key] + ([base_build_key(cell)] if self._uses_base(cell) else [])
        for key in keys:
            if key not in self.builds:
                resolved = {"kernel": self.spec.resolve("kernel", key[0]),
                            "series": self.spec.resolve("series", key[3])}
                name = build_id(key)
                self.builds[key] = _Build(BuildJob(name, str(self.out / "builds" / name), resolved["kernel"],
                                                   key[1], key[2], resolved["series"]))
                # a series that did not apply in an earlier run (a CI build job's artifact) still does not
                earlier = _earlier_outcome(self.out / "builds" / name)
                if earlier is not None and earlier.not_applicable:
                    self.builds[key].outcome = earlier
        if self._uses_base(cell) and cell.base_key not in self.bases:
            name = base_id(cell.base_key)
            axes = dict(self._resolved(cell), series="")
            self.bases[cell.base_key] = _Base(GuestJob(f"base/{name}", str(self.out / "base" / name), axes,
                                                       self.settings), base_build_key(cell))
            # a base run finished by an earlier run of the matrix serves again
            report = self.out / "base" / name / "report.json"
            if report.is_file():
                exit_code = json.loads(report.read_text()).get("exit_code")
                if exit_code in (0, 1):
                    self.bases[cell.base_key].outcome = JobOutcome(exit_code, "kept from an earlier run")

    # ------------------------------------------------------------------ the loop

    def run(self) -> list[CellState]:
        try:
            while self._pending():
                self._start_work()
                self._collect()
                self.observe(list(self.states.values()))
                if self.running:
                    time.sleep(self.poll_s)
        except KeyboardInterrupt:
            self._interrupt()
            raise
        finally:
            self.observe(list(self.states.values()))
        return list(self.states.values())

    def _pending(self) -> bool:
        if self.running:
            return True
        if self.builds_only:
            return self._next_build() is not None
        return any(not s.status.final and s.status != Status.INTERRUPTED for s in self.states.values())

    def _open_cells(self) -> list[CellState]:
        return [s for s in self.states.values() if not s.status.final and s.status != Status.INTERRUPTED]

    def _start_work(self) -> None:
        if not any(b.running for b in self.builds.values()):
            build = self._next_build()
            if build is not None:
                build.running = True
                self.running[build.job.name] = self.launcher.start(build.job)
                for state in self._open_cells():
                    if state.cell.build_key == _key_of(self.builds, build):
                        self._set(state, Status.BUILDING)
        if self.builds_only:
            return
        while self._guest_slots() > 0:
            job = self._next_guest()
            if job is None:
                return
            self.running[job.name] = self.launcher.start(job)

    def _guest_slots(self) -> int:
        guests = sum(1 for handle in self.running.values() if isinstance(handle.job, GuestJob))
        return self.jobs - guests

    def _next_build(self) -> _Build | None:
        """The first build some open cell still needs; its own kernel before its base's, so a
        series that does not apply is known before the base kernel is built for it."""
        needed: list[tuple[str, str, str, str]] = []
        for state in self._open_cells():
            needed.append(state.cell.build_key)
            if self._uses_base(state.cell) and self._built(state.cell.build_key):
                needed.append(base_build_key(state.cell))
        if self.builds_only:
            needed = [k for k, b in self.builds.items() if not self.only_builds or b.job.name in self.only_builds]
        for key in needed:
            build = self.builds[key]
            if build.outcome is None and not build.running:
                return build
        return None

    def _built(self, key: tuple[str, str, str, str]) -> bool:
        outcome = self.builds[key].outcome
        return outcome is not None and outcome.exit_code == 0

    def _next_guest(self) -> GuestJob | None:
        # base runs first: each unblocks every cell that compares against it
        for state in self._open_cells():
            cell = state.cell
            if self._uses_base(cell) and self._built(cell.build_key):
                base = self.bases[cell.base_key]
                if base.outcome is None and not base.running and self._built(base.build):
                    base.running = True
                    self._set(state, Status.BOOTING, "base run")
                    return base.job
        for state in self._open_cells():
            cell = state.cell
            if state.started is not None or cell.id in self.running:
                continue
            if not self._built(cell.build_key):
                continue
            baseline = None
            if self._uses_base(cell):
                base = self.bases[cell.base_key]
                if base.outcome is None:
                    continue
                report = Path(base.job.directory) / "report.json"
                if base.outcome.exit_code in (0, 1) and report.is_file():
                    baseline = str(report)
                else:
                    state.note = f"base run did not finish ({base.outcome.message.splitlines()[0] if base.outcome.message else base.outcome.exit_code}); judged without it"
            state.started = time.monotonic()
            self._set(state, Status.BOOTING, state.note if baseline is None else "")
            return GuestJob(cell.id, str(self.cell_dir(cell)), self._resolved(cell), self.settings, baseline)
        return None

    def _collect(self) -> None:
        for name, line in self.launcher.messages():
            state = self.states.get(name)
            if state is not None and not state.status.final:
                status = _status_of_line(line)
                if status is not None:
                    self._set(state, status)
            else:  # a base run: the cells waiting on it show where it is
                status = _status_of_line(line)
                for waiting in self._open_cells():
                    base = self.bases.get(waiting.cell.base_key)
                    if status is not None and base is not None and base.job.name == name \
                            and waiting.started is None:
                        self._set(waiting, status, "base run")
        for name, handle in list(self.running.items()):
            outcome = handle.poll()
            if outcome is None:
                continue
            del self.running[name]
            if isinstance(handle.job, BuildJob):
                self._build_done(handle.job, outcome)
            elif name in self.states:
                self._cell_done(self.states[name], outcome)
            else:
                base = next(b for b in self.bases.values() if b.job.name == name)
                base.running, base.outcome = False, outcome
                for waiting in self._open_cells():
                    if waiting.started is None and waiting.cell.base_key in self.bases \
                            and self.bases[waiting.cell.base_key] is base:
                        self._set(waiting, Status.WAITING, "")

    def _build_done(self, job: BuildJob, outcome: JobOutcome) -> None:
        key = next(k for k, b in self.builds.items() if b.job is job)
        self.builds[key].running, self.builds[key].outcome = False, outcome
        if outcome.exit_code == 0 or self.builds_only:
            return
        for state in self._open_cells():
            cell = state.cell
            if cell.build_key == key:
                if outcome.exit_code == 130:
                    self._set(state, Status.INTERRUPTED, "interrupted while building")
                elif outcome.not_applicable:
                    self._finish(state, Status.NOT_APPLICABLE, outcome.exit_code, outcome.message)
                else:
                    status = Status.FAIL if outcome.exit_code == 1 else status_of_run(outcome.exit_code)
                    self._finish(state, status, outcome.exit_code, f"the build failed: {outcome.message}")
            elif self._uses_base(cell) and base_build_key(cell) == key:
                # no base kernel: the cell is judged without a base, as `rig run` does
                self.bases[cell.base_key].outcome = JobOutcome(outcome.exit_code, f"base build: {outcome.message}")

    def _cell_done(self, state: CellState, outcome: JobOutcome) -> None:
        report = self.cell_dir(state.cell) / "report.json"
        summary = outcome.message
        if report.is_file():
            data = json.loads(report.read_text())
            summary = str(data.get("summary", summary))
        self._finish(state, status_of_run(outcome.exit_code), outcome.exit_code, summary)

    def _finish(self, state: CellState, status: Status, exit_code: int, summary: str) -> None:
        duration = time.monotonic() - state.started if state.started is not None else 0.0
        baseline = None
        if self._uses_base(state.cell) and state.cell.base_key in self.bases:
            baseline = os.path.relpath(self.bases[state.cell.base_key].job.directory, self.out)
        state.result = CellResult(state.cell.id, state.cell.axes, status, exit_code, summary, duration, baseline)
        self._set(state, status, summary.splitlines()[0] if summary else "")
        if status != Status.INTERRUPTED:
            write_cell_result(self.cell_dir(state.cell), state.result)

    def _set(self, state: CellState, status: Status, note: str | None = None) -> None:
        if status != state.status:
            state.status, state.since = status, time.monotonic()
        if note is not None:
            state.note = note

    def _interrupt(self) -> None:
        """Ctrl-C: each job is asked to stop once, as `rig run` stops, and given time to
        keep what it collected; finished cells stay finished."""
        for handle in self.running.values():
            handle.interrupt()
        give_up = time.monotonic() + INTERRUPT_GRACE_S
        while self.running and time.monotonic() < give_up:
            try:
                self._collect()
            except KeyboardInterrupt:
                break
            time.sleep(self.poll_s)
        for handle in self.running.values():
            handle.kill()
        for state in self._open_cells():
            self._set(state, Status.INTERRUPTED)


def _earlier_outcome(directory: Path) -> JobOutcome | None:
    from rig.matrix.jobs import OUTCOME_FILE

    try:
        return JobOutcome.from_json(json.loads((directory / OUTCOME_FILE).read_text()))
    except (OSError, ValueError, KeyError):
        return None


def _key_of(builds: Mapping[tuple[str, str, str, str], _Build], build: _Build) -> tuple[str, str, str, str]:
    return next(k for k, b in builds.items() if b is build)


def _status_of_line(line: str) -> Status | None:
    """Where a run is, from the lines rig.pipeline says."""
    if line.startswith("building"):
        return Status.BUILDING
    if line.startswith("booting"):
        return Status.BOOTING
    if line.startswith(("guest ready", "collecting")):
        return Status.TESTING
    return None


def default_jobs(memory_mib: int, cpus: int) -> int:
    """Guests at once that this host carries: one per `cpus` cores and per guest memory
    plus QEMU's own (about 512 MiB), at least one."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    available = _mem_available_mib()
    by_memory = available // (memory_mib + 512) if available else 1
    return max(1, min(cores // max(1, cpus), by_memory))


def _mem_available_mib() -> int:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) // 1024
    except OSError:
        pass
    return 0
