from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from rig.cli import build_parser
from rig.commands.run import spec_from_args
from rig import collect
from rig.attempt import AttemptResult
from rig.errors import InfraError, KernelError, Terminated, UserError
from rig.pipeline import Run
from rig.report.model import AttemptError, ErrorKind, Outcome, Phase, RunReport, decide
from tests.unit.rundata import finished_run, run_with


def test_a_finished_run_is_judged_and_every_report_written(tmp_path: Path, monkeypatch) -> None:
    run, attempt = finished_run(tmp_path)
    report = run_with(run, monkeypatch, attempt)
    assert report.exit_code == 1
    for name in ("report.json", "junit.xml", "report.md", "report.html"):
        assert (run.run_dir / name).is_file(), name
    data = json.loads((run.run_dir / "report.json").read_text())
    (leak,) = data["findings"]
    assert leak["title"] == "memory leak in drm_prime_pages_to_sg"
    assert leak["test"] == "dumb_buffer@create-valid-dumb" and "kms_addfb_basic@basic" in leak["also"]
    assert data["verdict"]["unexpected_failures"] == []  # too-high is an expected failure
    assert data["verdict"]["expected_failures"][0]["test"] == "kms_addfb_basic@too-high"
    assert data["artifacts"]["screendump"] == "attempt-1/collect/screendump.png"
    assert data["lockdep_debug_locks"] == 1
    assert data["summary"].startswith("FAIL: 1 new finding") and data["error"] is None
    assert (run.run_dir / "metadata.json").is_file()


def _died(attempt: AttemptResult, error: AttemptError) -> AttemptResult:
    """The attempt as if its guest had died mid-plan: no kernel report, fewer tests."""
    (attempt.directory / "collect" / "kmemleak.txt").write_text("")
    (attempt.directory / "collect" / "console.log").write_text("[    1.0] booting\n")
    return dataclasses.replace(attempt, tests=attempt.tests[:1], error=error)


def test_a_guest_that_died_mid_plan_fails_the_run_and_the_summary_says_so(tmp_path: Path, monkeypatch) -> None:
    run, attempt = finished_run(tmp_path)
    error = AttemptError(ErrorKind.KERNEL, Phase.WORKLOADS, "the guest stopped answering SSH")
    report = run_with(run, monkeypatch, _died(attempt, error))
    assert report.exit_code == 1 and report.decision.outcome is Outcome.KERNEL_PROBLEM
    summary = report.decision.summary
    assert summary.startswith("KERNEL PROBLEM: the guest stopped answering SSH (during workloads, attempt 1)")
    data = json.loads((run.run_dir / "report.json").read_text())
    assert data["exit_code"] == 1 and data["verdict"]["summary"] == summary and "PASS" not in summary
    assert data["error"]["phase"] == "workloads" and len(data["tests"]) >= 1
    assert "ended early during workloads" in (run.run_dir / "report.md").read_text()


@pytest.mark.parametrize("kind,code,outcome", [(ErrorKind.HOST, 3, Outcome.HOST_PROBLEM),
                                               (ErrorKind.INTERRUPT, 130, Outcome.INTERRUPTED),
                                               (ErrorKind.DEADLINE, 1, Outcome.KERNEL_PROBLEM),
                                               (ErrorKind.USER, 2, Outcome.BAD_INPUT),
                                               (ErrorKind.BUG, 4, Outcome.RIG_BUG)])
def test_how_an_attempt_ended_decides_the_exit_code(kind: ErrorKind, code: int, outcome: Outcome,
                                                    tmp_path: Path, monkeypatch) -> None:
    run, attempt = finished_run(tmp_path)
    report = run_with(run, monkeypatch, _died(attempt, AttemptError(kind, Phase.COLLECT, "it ended")))
    assert (report.exit_code, report.decision.outcome) == (code, outcome)
    assert json.loads((run.run_dir / "report.json").read_text())["exit_code"] == code


def test_new_findings_outrank_a_host_problem_but_not_an_interrupt(tmp_path: Path, monkeypatch) -> None:
    run, attempt = finished_run(tmp_path)  # its console has a new kmemleak finding
    report = run_with(run, monkeypatch, dataclasses.replace(
        attempt, error=AttemptError(ErrorKind.HOST, Phase.COLLECT, "QEMU was killed by signal 9 (not by rig)")))
    assert report.exit_code == 1 and "QEMU was killed" in report.decision.summary
    interrupted = decide(report.verdict, [dataclasses.replace(report.attempts[0], error=AttemptError(
        ErrorKind.INTERRUPT, Phase.WORKLOADS, "interrupted (Ctrl-C)"))])
    assert interrupted.exit_code == 130


def test_a_clean_run_exits_zero(tmp_path: Path, monkeypatch) -> None:
    run, attempt = finished_run(tmp_path)
    (attempt.directory / "collect" / "kmemleak.txt").write_text("")
    (attempt.directory / "collect" / "console.log").write_text("[    1.0] booting\n")
    report = run_with(run, monkeypatch, attempt)
    assert report.exit_code == 0 and report.verdict.findings == ()
    assert report.decision.summary.startswith("PASS: 0 new findings")


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


INT3_CONSOLE = """\
[    9.101000][    T1] random: crng init done
[    9.102000][  T150] int3: 0000 [#1] PREEMPT SMP NOPTI
[    9.102100][  T150] CPU: 1 PID: 150 Comm: sshd Not tainted 6.1.176 #1
[    9.102200][  T150] Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
[    9.102300][  T150] RIP: 0010:__x64_sys_getrandom+0x1/0x90
[    9.102400][  T150] Code: 00 00 00 cc 0f 1f 44 00 00
[    9.102500][  T150] RSP: 0018:ffffc90000777f30 EFLAGS: 00000246
[    9.102600][  T150] Call Trace:
[    9.102700][  T150]  <TASK>
[    9.102800][  T150]  do_syscall_64+0x38/0x90
[    9.102900][  T150]  entry_SYSCALL_64_after_hwframe+0x63/0xcd
[    9.103000][  T150]  </TASK>
[    9.103100][  T150] ---[ end trace 0000000000000000 ]---
[    9.103200][  T150] Kernel panic - not syncing: Fatal exception in interrupt
"""


def _booted_with(console: str, run: Run, number: int) -> AttemptResult:
    """What an attempt whose guest printed `console` leaves behind."""
    directory = run.run_dir / f"attempt-{number}"
    (directory / "vm").mkdir(parents=True, exist_ok=True)
    (directory / "vm" / "console.log").write_text(console)
    collected = collect.after_guest(None, directory / "collect", directory / "vm" / "console.log", None)
    return AttemptResult(number, directory, (), None, collected, "tcg", {"boot": 1.0}, None)


def test_a_host_fault_is_retried_in_a_fresh_guest(tmp_path: Path, monkeypatch) -> None:
    run, _ = finished_run(tmp_path)
    clean = "[    1.0][    T1] Run /sbin/rig-init as init process\n"
    report = run_with(run, monkeypatch, _booted_with(INT3_CONSOLE, run, 1), _booted_with(clean, run, 2))
    assert report.exit_code == 0 and report.verdict.findings == ()
    assert [a.host_fault for a in report.attempts] == ["mttcg-int3-getrandom", None]


def test_a_host_fault_every_time_is_a_host_problem(tmp_path: Path, monkeypatch) -> None:
    run, _ = finished_run(tmp_path)
    report = run_with(run, monkeypatch, _booted_with(INT3_CONSOLE, run, 1), _booted_with(INT3_CONSOLE, run, 2))
    assert report.exit_code == 3 and report.decision.outcome is Outcome.HOST_PROBLEM
    assert str(report.verdict.findings[0].status) == "host-fault"
    assert "known emulator fault" in report.decision.summary


def test_no_retry_without_time_left_and_the_first_attempt_is_still_reported(tmp_path: Path, monkeypatch) -> None:
    run, _ = finished_run(tmp_path)
    run.deadline = 0.0  # the deadline passed during the first attempt
    report = run_with(run, monkeypatch, _booted_with(INT3_CONSOLE, run, 1))
    assert len(report.attempts) == 1 and report.exit_code == 3
    assert any("no time left" in problem for problem in report.verdict.problems)
    assert (run.run_dir / "report.json").is_file()


@pytest.mark.parametrize("name,patches", [("lockdep", 2), ("kmemleak", 1), ("underflow", 1), ("harmless", 2),
                                          ("three-patches", 3), ("intermittent", 1)])
def test_the_test_series_read_as_rig_reads_them(name: str, patches: int, tmp_path: Path) -> None:
    import tomllib

    from rig.series import load

    directory = Path(__file__).resolve().parent.parent / "data" / "series" / name
    series = load(str(directory), tmp_path / "work")
    assert len(series.patches) == patches
    assert all(p.subject.startswith("drm/") for p in series.patches)
    expected = tomllib.loads((directory / "expected.toml").read_text())
    assert expected["exit_code"] == (0 if name == "harmless" else 1)
    for finding in expected.get("finding", []):
        assert finding["title"] and finding["test"] and finding["kind"]
        assert finding.get("first_bad_patch", 1) in range(1, patches + 1)


@pytest.mark.parametrize("bad", [["--cpus", "0"], ["--append", "a b"], ["--gpu", "bochs", "--arch", "arm64"]])
def test_bad_machine_options_stop_rig_run_before_anything_is_built(bad: list[str], monkeypatch, capsys,
                                                                    tmp_path: Path) -> None:
    import rig.pipeline
    from rig.cli import main

    def must_not_run(*args, **kwargs):
        raise AssertionError("rig run started work before checking its options")

    monkeypatch.setattr(rig.pipeline, "resolve", must_not_run)
    monkeypatch.setattr(rig.pipeline, "ensure_image", must_not_run)
    assert main(["run", "--out", str(tmp_path / "out"), *bad]) == 2
    err = capsys.readouterr().err
    assert bad[0] in err and "what to do" in err
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("gpu, expected", [("virtio-gpu", True), ("virgl", False)])
def test_virtio_gpus_3d_failures_are_expected_on_the_2d_model_only(gpu: str, expected: bool, tmp_path: Path,
                                                                    monkeypatch) -> None:
    from rig.guest_spec import GuestSpec
    from rig.results import TestResult

    run, attempt = finished_run(tmp_path)
    run = Run(dataclasses.replace(run.spec, guest=GuestSpec(gpu=gpu)), run.run_dir)
    failed = TestResult("drm_virtgpu@drm-virtgpu-execbuffer", "igt", "fail", "fail", 0.1, "virtio_gpu",
                        "EXECBUFFER ioctl failed: Function not implemented")
    report = run_with(run, monkeypatch, dataclasses.replace(attempt, tests=(*attempt.tests, failed)))
    data = json.loads((run.run_dir / "report.json").read_text())
    assert ("drm_virtgpu@drm-virtgpu-execbuffer" in data["verdict"]["unexpected_failures"]) is not expected
    listed = {e["test"] for e in data["verdict"]["expected_failures"]}
    assert ("drm_virtgpu@drm-virtgpu-execbuffer" in listed) is expected
    assert report.exit_code == 1  # the kmemleak series' leak either way


def _ended_in(phase: str, raised: BaseException, tmp_path: Path, monkeypatch) -> tuple[BaseException, dict, str]:
    """A run whose build (or image) phase raised `raised`: what propagated, report.json, report.md."""
    import rig.pipeline

    run, _ = finished_run(tmp_path)
    run = Run(dataclasses.replace(run.spec, kernel_image=None), run.run_dir)

    def fail(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise raised

    if phase == "build":
        monkeypatch.setattr(Run, "_kernel", lambda self: fail())
    else:
        monkeypatch.setattr(Run, "_kernel", lambda self: tmp_path / "bzImage")
        monkeypatch.setattr(Run, "_base_kernel", lambda self: tmp_path / "bzImage")
        monkeypatch.setattr(Run, "_image", lambda self: fail())
    monkeypatch.setattr(rig.pipeline, "run_attempt", lambda *a, **k: pytest.fail("no attempt may run"))
    with pytest.raises(BaseException) as info:
        run.run()
    return info.value, json.loads((run.run_dir / "report.json").read_text()), (run.run_dir / "report.md").read_text()


@pytest.mark.parametrize("phase, raised, kind, code, words", [
    ("build", KeyboardInterrupt(), "interrupt", 130, "interrupted (Ctrl-C)"),
    ("build", Terminated("terminated (SIGTERM)"), "interrupt", 130, "terminated (SIGTERM)"),
    ("build", KernelError("the kernel does not build (the base tree):\n    x.c:1: error"), "kernel", 1,
     "the kernel does not build"),
    ("build", OSError(28, "No space left on device", "/cache/build/vmlinux"), "host", 3, "the disk is full"),
    ("image", InfraError("mmdebstrap failed"), "host", 3, "mmdebstrap failed"),
], ids=["ctrl-c-in-build", "sigterm-in-build", "build-error", "disk-full-in-build", "image-failed"])
def test_a_run_that_ends_before_its_first_attempt_still_reports_how_and_where(
        phase: str, raised: BaseException, kind: str, code: int, words: str, tmp_path: Path, monkeypatch) -> None:
    propagated, data, markdown = _ended_in(phase, raised, tmp_path, monkeypatch)
    assert propagated is raised  # the command line still says it, with its exit code
    assert data["attempts"] == [] and data["exit_code"] == code
    assert data["error"]["kind"] == kind and data["error"]["phase"] == phase
    assert words in data["error"]["message"] and f"(during {phase})" in data["summary"]
    assert f"ended early during {phase}" in markdown and "did not get to boot the kernel" in markdown
    assert data["kernel"]["spec"] == "debian:6.1"
    assert RunReport.from_json(data).decision.exit_code == code  # it loads back the same


def test_what_is_no_end_of_a_run_writes_no_report(tmp_path: Path, monkeypatch) -> None:
    run, _ = finished_run(tmp_path)
    monkeypatch.setattr(Run, "_kernel", lambda self: (_ for _ in ()).throw(SystemExit(0)))
    run = Run(dataclasses.replace(run.spec, kernel_image=None), run.run_dir)
    with pytest.raises(SystemExit):
        run.run()
    assert not (run.run_dir / "report.json").exists()


def test_a_disk_that_fills_up_mid_run_still_gets_its_report_and_no_more_guests(
        small_disk, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """The run directory's disk fills up during the first of two runs (the attempt ends as
    rig.attempt makes it: the host's error, the disk-full hint): rig starts no second
    guest, and the report the space held back since the start still takes says so."""
    import rig.pipeline
    from rig.errors import DISK_FULL_HINT
    from rig.rundir import RESERVE_NAME
    from tests.conftest import fill

    disk = small_disk(48 << 20)
    first, attempt = finished_run(disk)
    (attempt.directory / "collect" / "kmemleak.txt").write_text("")  # no finding to outrank the disk
    (attempt.directory / "collect" / "console.log").write_text("[    1.0] booting\n")
    run = Run(dataclasses.replace(first.spec, repeat=2), first.run_dir)
    error = AttemptError(ErrorKind.HOST, Phase.WORKLOADS,
                         f"the disk is full copying the guest's /tmp/rig/igt to {attempt.directory / 'igt'} "
                         "(No space left on device)", hint=DISK_FULL_HINT)
    started: list[int] = []

    def attempt_that_fills_the_disk(number: int, *args, **kwargs) -> AttemptResult:  # type: ignore[no-untyped-def]
        started.append(number)
        assert (run.run_dir / RESERVE_NAME).stat().st_size == 16 << 20  # held from the start
        fill(disk)
        return dataclasses.replace(attempt, error=error)

    monkeypatch.setattr(type(run), "_image", lambda self: None)
    monkeypatch.setattr(rig.pipeline, "run_attempt", attempt_that_fills_the_disk)
    report = run.run()
    assert started == [1]  # no second guest on a full disk
    assert report.exit_code == 3 and report.decision.outcome is Outcome.HOST_PROBLEM
    data = json.loads((run.run_dir / "report.json").read_text())
    assert data["exit_code"] == 3 and data["error"]["phase"] == "workloads"
    assert data["summary"].startswith("HOST PROBLEM: the disk is full copying the guest's")
    assert any("the disk filled up during series run 1: rig started no more guests" in p
               for p in data["verdict"]["problems"])
    assert "the disk is full" in (run.run_dir / "report.md").read_text()
    assert not (run.run_dir / RESERVE_NAME).exists()


def test_a_run_directory_without_room_for_the_report_reserve_is_the_hosts_problem(small_disk) -> None:  # type: ignore[no-untyped-def]
    from rig.rundir import RESERVE_NAME, SpaceReserve
    from tests.conftest import fill

    disk = small_disk(8 << 20)
    fill(disk)
    (disk / "filler").unlink()
    (disk / "filler").write_bytes(bytes(4 << 20))  # half the disk taken: no room for 16 MiB
    with pytest.raises(InfraError) as info:
        SpaceReserve(disk).hold()
    assert info.value.exit_code == 3 and f"the disk is full: {disk} has no room for a run" in info.value.message
    assert not (disk / RESERVE_NAME).exists()
