from __future__ import annotations

import json
from pathlib import Path

import pytest

from rig.cli import build_parser
from rig.commands.run import spec_from_args
from rig.errors import KernelError, UserError
from rundata import finished_run


def test_a_finished_run_is_judged_and_every_report_written(tmp_path: Path) -> None:
    pipeline, attempt = finished_run(tmp_path)
    outcome = pipeline._report(attempt)
    assert outcome.exit_code == 1
    for name in ("report.json", "junit.xml", "report.md", "report.html"):
        assert (outcome.run_dir / name).is_file(), name
    data = json.loads((outcome.run_dir / "report.json").read_text())
    titles = {f["title"]: f for f in data["findings"]}
    assert titles["WARNING in drm_gem_shmem_put_pages"]["test"] == "vgem_basic@mmap"
    assert titles["memory leak in drm_prime_pages_to_sg"]["test"] == "dumb_buffer@create-valid-dumb"
    assert data["verdict"]["unexpected_failures"] == []  # too-high is an expected failure
    assert data["verdict"]["expected_failures"][0]["test"] == "kms_addfb_basic@too-high"
    assert data["artifacts"]["screendump"] == "attempt-1/collect/screendump.png"
    assert data["lockdep_debug_locks"] == 1
    # KUnit suites of the plan that this kernel's console never showed are absent, not failed
    assert {t["status"] for t in data["tests"] if t["kind"] == "kunit"} == {"absent"}
    assert (outcome.run_dir / "metadata.json").is_file()


def test_a_guest_that_died_without_a_parsable_report_still_fails_the_run(tmp_path: Path) -> None:
    pipeline, attempt = finished_run(tmp_path)
    (attempt.directory / "collect" / "kmemleak.txt").write_text("")
    (attempt.directory / "collect" / "console.log").write_text("[    1.0] booting\n")
    attempt.tests = []
    attempt.error = KernelError("the guest stopped answering SSH")
    outcome = pipeline._report(attempt)
    assert outcome.exit_code == 1
    assert "the guest stopped answering SSH" in outcome.data["verdict"]["problems"][0]


def test_a_clean_run_exits_zero(tmp_path: Path) -> None:
    pipeline, attempt = finished_run(tmp_path)
    (attempt.directory / "collect" / "kmemleak.txt").write_text("")
    (attempt.directory / "collect" / "console.log").write_text("[    1.0] booting\n")
    outcome = pipeline._report(attempt)
    assert outcome.exit_code == 0 and outcome.data["findings"] == []


def _args(*argv: str):
    return build_parser().parse_args(["run", *argv])


def test_run_options_are_checked_together() -> None:
    with pytest.raises(UserError) as info:
        spec_from_args(_args("--retries", "9", "--deadline", "10", "--memory", "100", "--each-patch"))
    for needle in ("--retries 9", "--deadline 10", "--memory 100", "--each-patch"):
        assert needle in info.value.message


def test_defaults_need_no_arguments() -> None:
    spec = spec_from_args(_args())
    assert spec.request.kernel == "debian:6.1" and spec.request.series is None
    assert spec.plan.name == "default" and spec.request.profile == "default"
    assert spec.pressure.kinds == ("balloon",)


def test_bad_pressure_and_plan_are_user_errors() -> None:
    with pytest.raises(UserError):
        spec_from_args(_args("--pressure", "squeeze"))
    with pytest.raises(UserError):
        spec_from_args(_args("--plan", "nope"))


def test_compare_base_needs_a_series_and_no_baseline(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--compare-base"):
        spec_from_args(_args("--compare-base"))
    assert spec_from_args(_args("--compare-base", "--series", "tests/data/series/harmless")).baseline is None
