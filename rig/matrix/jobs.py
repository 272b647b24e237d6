"""The two kinds of work of a matrix, and how they run for real.

A build job builds one distinct kernel (rig.build, as `rig build` does); a guest job runs
one cell, or one shared base run, through rig.pipeline exactly as `rig run` does. Each
job runs in a process of its own: guests of a matrix run side by side, and Ctrl-C reaches
each job as it reaches `rig run` (a KeyboardInterrupt in its main thread), so every job
cleans up its guest and keeps what it collected.

Jobs are plain values (strings, numbers, dicts) so they cross into a fresh interpreter;
the child builds its RunSpec from them with the same checks `rig run` makes.
"""

from __future__ import annotations

import json
import multiprocessing
import os
import queue as queue_mod
import shlex
import signal
import traceback
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

OUTCOME_FILE = "job-outcome.json"
Say = Callable[[str], None]


@dataclass(frozen=True)
class BuildJob:
    name: str  # the build's id in the matrix: builds/<name>
    directory: str
    kernel: str
    arch: str
    profile: str
    series: str  # "" for the kernel alone

    @property
    def kind(self) -> str:
        return "build"


@dataclass(frozen=True)
class GuestJob:
    name: str  # a cell id, or base/<id> for a shared base run
    directory: str
    axes: Mapping[str, str]  # every axis, paths resolved
    settings: Mapping[str, Any]  # rig.matrix.spec.Settings as a dict
    baseline: str | None = None  # report.json of the base run, when there is one

    @property
    def kind(self) -> str:
        return "guest"


Job = BuildJob | GuestJob


@dataclass(frozen=True)
class JobOutcome:
    """How a job ended: its exit code (rig's), and for a build whose series does not
    apply, git's message."""

    exit_code: int
    message: str = ""
    not_applicable: bool = False
    log: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobOutcome:
        return cls(int(data["exit_code"]), str(data.get("message", "")), bool(data.get("not_applicable")),
                   data.get("log"))


# ------------------------------------------------------------------ in this process


def run_command(axes: Mapping[str, str], settings: Mapping[str, Any]) -> list[str]:
    """The `rig run` command line that runs this cell alone: what metadata.json records."""
    argv = ["rig", "run", "--kernel", axes["kernel"], "--arch", axes["arch"], "--profile", axes["profile"],
            "--gpu", axes["gpu"], "--plan", axes["plan"], "--pressure", axes["pressure"],
            "--memory", str(settings["memory_mib"]), "--cpus", str(settings["cpus"]),
            "--deadline", f"{settings['deadline_s']:g}", "--retries", str(settings["retries"])]
    if axes["series"]:
        argv += ["--series", axes["series"]]
    if settings.get("accel"):
        argv += ["--accel", settings["accel"]]
    if settings.get("image"):
        argv += ["--image", settings["image"]]
    return argv


def build_request(kernel: str, arch: str, profile: str, series: str):  # -> rig.build.BuildRequest
    from rig.build import BuildRequest
    from rig.target import target

    return BuildRequest(kernel=kernel, series=series or None, profile=profile, target=target(arch))


def run_spec(job: GuestJob):  # -> rig.pipeline.RunSpec
    """The RunSpec of a cell, made and checked as `rig run` makes it from its options."""
    from rig.guest_spec import GuestSpec
    from rig.image import default_recipe
    from rig.pipeline import RunSpec
    from rig.plan import load_plan
    from rig.target import target
    from rig.verdict import load_baseline
    from rig.workloads.pressure import parse_pressure

    axes, settings = job.axes, job.settings
    guest = GuestSpec(target=target(axes["arch"]), gpu=axes["gpu"], memory_mib=settings["memory_mib"],
                      cpus=settings["cpus"], accel=settings.get("accel"),
                      image=settings.get("image") or default_recipe(axes["arch"])).validate()
    return RunSpec(
        request=build_request(axes["kernel"], axes["arch"], axes["profile"], axes["series"]),
        plan=load_plan(axes["plan"]),
        pressure=parse_pressure(axes["pressure"], settings["memory_mib"]),
        guest=guest,
        command=shlex.join(run_command(axes, settings)),
        deadline_s=float(settings["deadline_s"]),
        retries=int(settings["retries"]),
        baseline=load_baseline(Path(job.baseline)) if job.baseline else None,
    )


def execute(job: Job, say: Say) -> JobOutcome:
    """Run one job here and now; every ending is an outcome, never an exception (but Ctrl-C)."""
    from rig.errors import RigError
    from rig.series import SeriesDoesNotApply

    directory = Path(job.directory)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        if isinstance(job, BuildJob):
            from rig.build import build

            say("building")
            artifacts = build(build_request(job.kernel, job.arch, job.profile, job.series), directory,
                              progress=False)
            say(f"built {artifacts.kernel_release}" + (" (cache hit)" if artifacts.cache_hit else ""))
            return JobOutcome(0, artifacts.kernel_release)
        from rig import pipeline

        report = pipeline.run(run_spec(job), directory, say=say, progress=False)
        return JobOutcome(report.exit_code, report.decision.summary)
    except SeriesDoesNotApply as exc:
        return JobOutcome(exc.exit_code, exc.message, not_applicable=True)
    except RigError as exc:
        return JobOutcome(exc.exit_code, exc.message, log=str(exc.log) if exc.log else None)


# ------------------------------------------------------------------ in a process of its own


class Handle(Protocol):
    job: Job

    def poll(self) -> JobOutcome | None:
        """The outcome once the job has ended, else None."""

    def interrupt(self) -> None:
        """Ask the job to stop as Ctrl-C stops `rig run`."""

    def kill(self) -> None:
        """Stop it now (after interrupt() had its time)."""


class Launcher(Protocol):
    def start(self, job: Job) -> Handle: ...

    def messages(self) -> list[tuple[str, str]]:
        """(job name, line) said by running jobs since the last call."""


def _child(job: Job, lines: Any) -> None:
    # Its own process group: the terminal's Ctrl-C reaches the matrix only, which passes it
    # on once to each job (so no job sees two and cuts its own clean-up short).
    os.setpgrp()

    def say(line: str) -> None:
        lines.put((job.name, line))

    path = Path(job.directory) / OUTCOME_FILE
    try:
        outcome = execute(job, say)
    except KeyboardInterrupt:
        outcome = JobOutcome(130, "interrupted")
    except Exception:  # a bug in rig: the matrix reports it as the job's error
        outcome = JobOutcome(4, "internal error in rig:\n" + traceback.format_exc())
    Path(job.directory).mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(outcome.to_json(), indent=2) + "\n")


@dataclass
class _ProcessHandle:
    job: Job
    process: Any  # multiprocessing.Process
    outcome: JobOutcome | None = field(default=None)

    def poll(self) -> JobOutcome | None:
        if self.outcome is not None:
            return self.outcome
        if self.process.is_alive():
            return None
        self.process.join()
        path = Path(self.job.directory) / OUTCOME_FILE
        try:
            self.outcome = JobOutcome.from_json(json.loads(path.read_text()))
        except (OSError, ValueError, KeyError):
            code = self.process.exitcode
            self.outcome = JobOutcome(130 if code == -signal.SIGINT else 4,
                                      f"the job's process ended ({code}) without an outcome")
        return self.outcome

    def interrupt(self) -> None:
        if self.process.is_alive() and self.process.pid:
            os.kill(self.process.pid, signal.SIGINT)

    def kill(self) -> None:
        if self.process.is_alive() and self.process.pid:
            os.killpg(self.process.pid, signal.SIGKILL)


class ProcessLauncher:
    """Each job in a fresh interpreter (spawn: the matrix's own threads are not copied)."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._lines = self._context.Queue()

    def start(self, job: Job) -> Handle:
        Path(job.directory).mkdir(parents=True, exist_ok=True)
        (Path(job.directory) / OUTCOME_FILE).unlink(missing_ok=True)
        process = self._context.Process(target=_child, args=(job, self._lines), name=f"rig-{job.name}")
        process.start()
        return _ProcessHandle(job, process)

    def messages(self) -> list[tuple[str, str]]:
        found: list[tuple[str, str]] = []
        while True:
            try:
                found.append(self._lines.get_nowait())
            except queue_mod.Empty:
                return found
