"""The matrix scheduler against a fake launcher: each kernel built once and one build at
a time, guests up to --jobs, base runs shared and first, not-applicable cells, resume."""

from __future__ import annotations

from pathlib import Path

import pytest

from rig.matrix import cells as cells_mod
from rig.matrix import spec as spec_mod
from rig.matrix.jobs import BuildJob, GuestJob, Job, JobOutcome
from rig.matrix.runner import CELL_FILE, MatrixRun, Status, default_jobs, load_cell_result
from tests.unit.matrixfake import FakeLauncher, ok

REPO = Path(__file__).resolve().parent.parent.parent

FOUR = """
[axes]
kernel = ["debian:6.1", "debian:6.12"]
series = ["tests/data/series/lockdep", "tests/data/series/harmless"]
[settings]
plan = "smoke"
compare_base = false
"""


def matrix(text: str) -> tuple[spec_mod.MatrixSpec, tuple[cells_mod.Cell, ...]]:
    parsed = spec_mod.parse(text, REPO / "matrix.toml")
    return parsed, cells_mod.expand(parsed)


def run(text: str, out: Path, launcher: FakeLauncher, **options) -> dict[str, Status]:
    parsed, cells = matrix(text)
    states = MatrixRun(parsed, cells, out, launcher, poll_s=0, **options).run()
    return {s.cell.id: s.status for s in states}


def cells_started(launcher: FakeLauncher) -> list[str]:
    return [j.name for j in launcher.jobs if isinstance(j, GuestJob) and not j.name.startswith("base/")]


def lockdep_fails(job: Job) -> tuple[int, JobOutcome]:
    if isinstance(job, GuestJob) and "lockdep" in job.axes["series"]:
        return 5, JobOutcome(1, "FAIL: 1 new finding")
    # a guest takes longer than a build (a cache hit, mostly)
    return (5 if isinstance(job, GuestJob) else 2), JobOutcome(0, "fine")


def test_each_kernel_is_built_once_one_at_a_time_while_guests_run(tmp_path: Path) -> None:
    launcher = FakeLauncher(lockdep_fails)
    statuses = run(FOUR, tmp_path, launcher, jobs=2)
    assert statuses == {"6.1_lockdep": Status.FAIL, "6.1_harmless": Status.PASS,
                        "6.12_lockdep": Status.FAIL, "6.12_harmless": Status.PASS}
    builds = [j for j in launcher.jobs if isinstance(j, BuildJob)]
    assert len(builds) == 4 and len({(b.kernel, b.series) for b in builds}) == 4
    assert launcher.most_builds == 1 and launcher.most_guests == 2
    assert launcher.overlap  # the second kernel built while the first's guests ran
    result = load_cell_result(tmp_path / "cells" / "6.1_lockdep")
    assert result is not None and result.exit_code == 1 and result.axes["kernel"] == "debian:6.1"
    guest = next(j for j in launcher.jobs if isinstance(j, GuestJob))
    assert guest.axes["series"] == str(REPO / "tests/data/series/lockdep") and guest.baseline is None


def test_one_job_runs_one_guest_at_a_time(tmp_path: Path) -> None:
    launcher = FakeLauncher(lockdep_fails)
    run(FOUR, tmp_path, launcher, jobs=1)
    assert launcher.most_guests == 1


def test_a_series_that_does_not_apply_makes_its_cells_not_applicable(tmp_path: Path) -> None:
    message = 'patch 1 "drm/vgem: ..." does not apply; git am said:\n    error: patch failed'

    def script(job: Job) -> tuple[int, JobOutcome]:
        if isinstance(job, BuildJob) and job.kernel == "debian:6.12" and "lockdep" in job.series:
            return 1, JobOutcome(2, message, not_applicable=True)
        return lockdep_fails(job)

    launcher = FakeLauncher(script)
    statuses = run(FOUR, tmp_path, launcher, jobs=2)
    assert statuses["6.12_lockdep"] == Status.NOT_APPLICABLE and statuses["6.12_harmless"] == Status.PASS
    result = load_cell_result(tmp_path / "cells" / "6.12_lockdep")
    assert result is not None and "does not apply" in result.summary
    assert "6.12_lockdep" not in launcher.started  # no guest for it


def test_base_runs_are_shared_and_come_first(tmp_path: Path) -> None:
    text = FOUR.replace("compare_base = false", "compare_base = true")
    launcher = FakeLauncher(lockdep_fails)
    statuses = run(text, tmp_path, launcher, jobs=1)
    assert statuses["6.1_lockdep"] == Status.FAIL
    guests = [j for j in launcher.jobs if isinstance(j, GuestJob)]
    bases = [j for j in guests if j.name.startswith("base/")]
    assert len(bases) == 2  # one per kernel, shared by both series
    assert all(j.axes["series"] == "" for j in bases)
    first_cell = next(i for i, j in enumerate(guests) if not j.name.startswith("base/"))
    assert guests[first_cell - 1].name.startswith("base/")
    assert all(j.baseline and j.baseline.endswith("report.json") for j in guests if not j.name.startswith("base/"))
    # a base build per kernel too, each once
    builds = [j for j in launcher.jobs if isinstance(j, BuildJob)]
    assert len(builds) == 6 and len({j.name for j in builds}) == 6


def test_a_rerun_keeps_finished_cells_and_redoes_interrupted_ones(tmp_path: Path) -> None:
    interrupts_after = {"n": 0}

    def interrupt_on_third_guest(job: Job) -> None:
        if isinstance(job, GuestJob):
            interrupts_after["n"] += 1
            if interrupts_after["n"] == 3:
                raise KeyboardInterrupt

    launcher = FakeLauncher(lockdep_fails, on_start=interrupt_on_third_guest)
    with pytest.raises(KeyboardInterrupt):
        run(FOUR, tmp_path, launcher, jobs=1)
    done = {p.parent.name for p in (tmp_path / "cells").glob(f"*/{CELL_FILE}")}
    assert done == {"6.1_lockdep", "6.1_harmless"}
    again = FakeLauncher(lockdep_fails)
    statuses = run(FOUR, tmp_path, again, jobs=1)
    assert all(s.final for s in statuses.values())
    assert cells_started(again) == ["6.12_lockdep", "6.12_harmless"]
    # --rerun runs every cell anew
    fresh = FakeLauncher(lockdep_fails)
    run(FOUR, tmp_path, fresh, jobs=1, rerun=True)
    assert len(cells_started(fresh)) == 4


def test_ctrl_c_asks_running_jobs_to_stop_and_they_stay_unfinished(tmp_path: Path) -> None:
    launcher = FakeLauncher(lambda job: (10**6, JobOutcome(0)) if isinstance(job, GuestJob) else (1, JobOutcome(0)))
    parsed, cells = matrix(FOUR)
    polls = {"n": 0}
    original = launcher.messages

    def messages() -> list[tuple[str, str]]:
        polls["n"] += 1
        if polls["n"] == 20:
            raise KeyboardInterrupt
        return original()

    launcher.messages = messages  # type: ignore[method-assign]
    scheduler = MatrixRun(parsed, cells, tmp_path, launcher, jobs=2, poll_s=0)
    with pytest.raises(KeyboardInterrupt):
        scheduler.run()
    assert not list((tmp_path / "cells").glob(f"*/{CELL_FILE}"))
    assert {s.status for s in scheduler.states.values()} == {Status.INTERRUPTED}
    assert launcher.killed == []  # they stopped in time


def test_a_changed_cell_is_not_taken_from_an_earlier_run(tmp_path: Path) -> None:
    run(FOUR, tmp_path, FakeLauncher(lockdep_fails), jobs=1)
    changed = FOUR.replace('plan = "smoke"', 'plan = "default"')
    again = FakeLauncher(lockdep_fails)
    run(changed, tmp_path, again, jobs=1)
    assert len(cells_started(again)) == 4


def test_builds_only_builds_and_boots_nothing(tmp_path: Path) -> None:
    launcher = FakeLauncher(ok())
    run(FOUR, tmp_path, launcher, builds_only=True)
    assert launcher.jobs and all(isinstance(j, BuildJob) for j in launcher.jobs)


def test_default_jobs_is_at_least_one() -> None:
    assert default_jobs(2048, 2) >= 1
    assert default_jobs(60000, 64) == 1


def test_a_build_stopped_by_ctrl_c_leaves_its_cells_to_the_next_run(tmp_path: Path) -> None:
    def script(job: Job) -> tuple[int, JobOutcome]:
        if isinstance(job, BuildJob) and job.kernel == "debian:6.12":
            return 1, JobOutcome(130, "interrupted")
        return lockdep_fails(job)

    statuses = run(FOUR, tmp_path, FakeLauncher(script), jobs=1)
    assert statuses["6.12_lockdep"] == Status.INTERRUPTED and statuses["6.1_lockdep"] == Status.FAIL
    assert not (tmp_path / "cells" / "6.12_lockdep" / CELL_FILE).exists()
