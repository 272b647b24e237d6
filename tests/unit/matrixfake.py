"""A stand-in for the matrix's job launcher (the seam where real builds and guests start):
jobs end after a few polls with scripted outcomes, and a guest job leaves a report.json
as rig.pipeline would, taken from a real finished run."""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rig.matrix.jobs import BuildJob, GuestJob, Job, JobOutcome


@dataclass
class FakeHandle:
    job: Job
    launcher: "FakeLauncher"
    polls_left: int
    outcome: JobOutcome
    interrupted: bool = False

    def poll(self) -> JobOutcome | None:
        if self.interrupted:
            return self._end(JobOutcome(130, "interrupted"))
        self.polls_left -= 1
        if self.polls_left > 0:
            return None
        if isinstance(self.job, GuestJob) and self.outcome.exit_code in (0, 1):
            self.launcher.write_report(self.job, self.outcome.exit_code)
        return self._end(self.outcome)

    def _end(self, outcome: JobOutcome) -> JobOutcome:
        if self in self.launcher.live:
            self.launcher.live.remove(self)
        return outcome

    def interrupt(self) -> None:
        self.interrupted = True

    def kill(self) -> None:
        self.launcher.killed.append(self.job.name)


@dataclass
class FakeLauncher:
    """`script(job) -> (polls, outcome)`; records starts and the most jobs alive at once."""

    script: Callable[[Job], tuple[int, JobOutcome]]
    fail_report: dict[str, Any] | None = None  # report.json of a run with a finding
    started: list[str] = field(default_factory=list)
    jobs: list[Job] = field(default_factory=list)
    live: list[FakeHandle] = field(default_factory=list)
    killed: list[str] = field(default_factory=list)
    most_guests: int = 0
    most_builds: int = 0
    overlap: bool = False  # a build ran while a guest did
    on_start: Callable[[Job], None] | None = None
    said: list[tuple[str, str]] = field(default_factory=list)

    def start(self, job: Job) -> FakeHandle:
        if self.on_start is not None:
            self.on_start(job)
        polls, outcome = self.script(job)
        handle = FakeHandle(job, self, polls, outcome)
        self.started.append(job.name)
        self.jobs.append(job)
        self.live.append(handle)
        guests = sum(isinstance(h.job, GuestJob) for h in self.live)
        builds = sum(isinstance(h.job, BuildJob) for h in self.live)
        self.most_guests = max(self.most_guests, guests)
        self.most_builds = max(self.most_builds, builds)
        self.overlap = self.overlap or (guests > 0 and builds > 0)
        if isinstance(job, GuestJob):
            self.said.append((job.name, "booting the guest (x86_64, virtio-gpu)"))
        return handle

    def messages(self) -> list[tuple[str, str]]:
        said, self.said = self.said, []
        return said

    def write_report(self, job: GuestJob, exit_code: int) -> None:
        directory = Path(job.directory)
        directory.mkdir(parents=True, exist_ok=True)
        if exit_code == 1 and self.fail_report is not None:
            data = json.loads(json.dumps(self.fail_report))
        else:
            data = {"schema": 2, "exit_code": 0, "outcome": "pass", "summary": "PASS: 0 new findings",
                    "findings": [], "tests": [{"name": "vgem_basic@create", "status": "pass"}]}
        data["kernel"] = {**data.get("kernel", {}), "spec": job.axes["kernel"], "arch": job.axes["arch"],
                          "profile": job.axes["profile"], "release": "6.1.0-rig"}
        data["machine"] = {**data.get("machine", {}), "gpu": job.axes["gpu"], "arch": job.axes["arch"]}
        data["run_dir"] = str(directory)
        (directory / "report.json").write_text(json.dumps(data))
        (directory / "report.html").write_text("<html></html>")


def ok(polls: int = 2) -> Callable[[Job], tuple[int, JobOutcome]]:
    return lambda job: (polls, JobOutcome(0, "fine"))
