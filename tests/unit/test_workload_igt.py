from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from rig.errors import UserError
from rig.plan import IgtGroup, parse_plan
from rig.workloads import CRASH, FAIL, PASS, SKIP, WARN, WorkloadContext
from rig.workloads.igt import (RUNNER, PreparedGroup, igt_testlist, igt_workloads, parse_subtest_list,
                               results_from_dir, runner_argv)
from tests.unit.guestfake import FakeVM

GROUP = PreparedGroup(2, IgtGroup("virtio_gpu", ("dumb_buffer@*",), 45.0),
                      ("dumb_buffer@create-valid-dumb", "dumb_buffer@map-valid", "dumb_buffer@map-uaf",
                       "drm_virtgpu@*"))

# The shape igt_runner 2.x writes (results_version 10), trimmed to what rig reads.
RESULTS = {
    "__type__": "TestrunResult",
    "results_version": 10,
    "name": "rig",
    "tests": {
        "igt@dumb_buffer@create-valid-dumb": {"result": "pass", "out": "Subtest create-valid-dumb: SUCCESS",
                                              "time": {"__type__": "TimeAttribute", "start": 0.0, "end": 0.21}},
        "igt@dumb_buffer@map-valid": {"result": "dmesg-warn", "out": "",
                                      "time": {"__type__": "TimeAttribute", "start": 0.0, "end": 0.5}},
        "igt@drm_virtgpu@drm-virtgpu-get-caps": {"result": "fail", "out": "Test assertion failure\nline 2",
                                                 "err": "Subtest drm-virtgpu-get-caps failed.",
                                                 "time": {"__type__": "TimeAttribute", "start": 1.0, "end": 1.5}},
        "igt@drm_virtgpu@drm-virtgpu-map": {"result": "skip", "out": "",
                                            "time": {"__type__": "TimeAttribute", "start": 0, "end": 0}},
    },
}


def test_testlist_and_runner_argv() -> None:
    assert igt_testlist(GROUP.tests).splitlines() == [
        "igt@dumb_buffer@create-valid-dumb", "igt@dumb_buffer@map-valid", "igt@dumb_buffer@map-uaf",
        "igt@drm_virtgpu"]
    argv = runner_argv(GROUP, "/tmp/rig/l", "/tmp/rig/r", inactivity_s=60, kmemleak_each=True)
    assert argv[0] == "igt_runner" and argv[-2:] == ["/usr/libexec/igt-gpu-tools", "/tmp/rig/r"]
    assert argv[argv.index("--per-test-timeout") + 1] == "45"
    assert argv[argv.index("--inactivity-timeout") + 1] == "60"
    assert "IGT_FORCE_DRIVER=virtio_gpu" in argv and "--kmemleak=each" in argv
    assert "--abort-on-monitored-error=" in argv  # one splat must not stop the rest


def test_results_json_maps_statuses_and_notes_missing_tests(tmp_path: Path) -> None:
    (tmp_path / "results.json").write_text(json.dumps(RESULTS))
    results = {r.name: r for r in results_from_dir(tmp_path, GROUP, started_s=3.0)}
    assert results["dumb_buffer@create-valid-dumb"].status == PASS
    assert abs(results["dumb_buffer@create-valid-dumb"].duration_s - 0.21) < 1e-9
    assert results["dumb_buffer@map-valid"].status == WARN  # a passing test that made the kernel warn
    failed = results["drm_virtgpu@drm-virtgpu-get-caps"]
    assert failed.status == FAIL and "assertion failure" in failed.detail and failed.driver == "virtio_gpu"
    assert results["drm_virtgpu@drm-virtgpu-map"].status == SKIP
    # listed but absent from results.json: the runner died before it
    assert results["dumb_buffer@map-uaf"].status == CRASH
    assert results["dumb_buffer@map-uaf"].raw_status == "notrun"


def test_no_results_json_means_nothing_ran(tmp_path: Path) -> None:
    results = results_from_dir(tmp_path, GROUP)
    assert len(results) == 4 and all(r.status == CRASH for r in results)


def test_parse_subtest_list_ignores_noise() -> None:
    assert parse_subtest_list("create\nmmap\n\nIGT-Version: 2.5 (x86_64)\n") == ["create", "mmap"]


def test_one_listing_for_all_binaries() -> None:
    from rig.workloads.igt import parse_listing

    stdout = ("create\nmmap\n@@rig-listed vgem_basic 0\n@@rig-listed core_hotunplug 79\n"
              "@@rig-listed not_there 127\nIGT-Version: 2.5\nbasic\n@@rig-listed kms_prop_blob 0\n")
    available, missing = parse_listing(stdout)
    assert available == {"vgem_basic": ["create", "mmap"], "core_hotunplug": [], "kms_prop_blob": ["basic"]}
    assert missing == ["not_there"]


PLAN_TOML = """
description = "two groups"
[igt]
inactivity_timeout_s = 90
[[igt.group]]
driver = "vgem"
tests = ["vgem_basic@*"]
[[igt.group]]
driver = "virtio_gpu"
tests = ["dumb_buffer@create-valid-dumb", "dumb_buffer@map-valid"]
[kmemleak]
scan = "each"
"""

LISTING = "create\nmmap\n@@rig-listed vgem_basic 0\ncreate-valid-dumb\nmap-valid\n@@rig-listed dumb_buffer 0\n"


def _guest(tmp_path: Path, listing: str = LISTING) -> FakeVM:
    def answer(argv: list[str]) -> str | None:
        if "--list-subtests" in " ".join(argv):
            return listing
        return None

    vm = FakeVM(answer)
    results = tmp_path / "guest-results"
    results.mkdir(parents=True)
    (results / "results.json").write_text(json.dumps(RESULTS))
    vm.guest.dirs["/tmp/rig/igt-results-2-virtio_gpu"] = results
    return vm


def test_one_listing_prepares_every_group(tmp_path: Path) -> None:
    plan = parse_plan(PLAN_TOML, name="t", source="t.toml")
    workloads = igt_workloads(plan)
    assert [w.label for w in workloads] == ["IGT group 1-vgem", "IGT group 2-virtio_gpu"]
    vm = _guest(tmp_path)

    async def prepare_all(vm: FakeVM) -> None:
        for workload in workloads:
            await workload.prepare(vm)  # type: ignore[arg-type]

    asyncio.run(prepare_all(vm))
    assert len(vm.commands) == 1  # one guest command lists both groups' binaries
    assert vm.commands[0][-2:] == ["vgem_basic", "dumb_buffer"]
    again = _guest(tmp_path / "again")  # a new guest (the next attempt) is listed anew
    asyncio.run(prepare_all(again))
    assert len(again.commands) == 1


def test_every_group_problem_in_one_error(tmp_path: Path) -> None:
    plan = parse_plan(PLAN_TOML.replace("vgem_basic@*", "vgem_basic@nope").replace("map-valid", "map-gone"),
                      name="t", source="t.toml")
    vm = _guest(tmp_path)
    with pytest.raises(UserError) as info:
        asyncio.run(igt_workloads(plan)[1].prepare(vm))  # type: ignore[arg-type]
    assert "igt.group #1" in info.value.message and "igt.group #2" in info.value.message


def test_a_group_runs_under_the_wrap_and_returns_its_results(tmp_path: Path) -> None:
    plan = parse_plan(PLAN_TOML, name="t", source="t.toml")
    workload = igt_workloads(plan)[1]
    vm = _guest(tmp_path)
    said: list[str] = []
    ctx = WorkloadContext(vm, tmp_path / "attempt", t0=0.0, budget_s=900.0,  # type: ignore[arg-type]
                          wrap=["sh", "-c", "enter", "/cg"], say=said.append)
    results = asyncio.run(workload.run(ctx))  # prepares itself when the attempt did not
    runner = next(c for c in vm.commands if RUNNER in c)
    assert runner[:4] == ["sh", "-c", "enter", "/cg"] and runner[4] == RUNNER
    assert "--kmemleak=each" in runner and runner[runner.index("--inactivity-timeout") + 1] == "90"
    statuses = {r.name: r.status for r in results}
    assert statuses["dumb_buffer@create-valid-dumb"] == PASS and statuses["dumb_buffer@map-valid"] == WARN
    assert said == ["IGT on virtio_gpu: 2 tests"]
    group_dir = tmp_path / "attempt" / "igt" / "group-2-virtio_gpu"
    assert (group_dir / "results" / "results.json").is_file() and (group_dir / "runner.log").is_file()


# What igt_runner keeps of dmesg for a test: "<level> [time] message", IGT's own lines at 6.
VKMS_OVERRUN_DMESG = (
    "<6> [54.118207] [IGT] kms_flip: executing\n"
    "<6> [54.190417] [IGT] kms_flip: starting subtest basic-flip-vs-wf_vblank\n"
    "<4> [55.002211] vkms_vblank_simulate: vblank timer overrun\n"
    "<4> [55.019345] vkms_vblank_simulate: vblank timer overrun\n"
    "<6> [55.401200] [IGT] kms_flip: finished subtest basic-flip-vs-wf_vblank, SUCCESS\n"
)


def test_a_warn_result_says_which_dmesg_warning_igt_saw(tmp_path: Path) -> None:
    group = PreparedGroup(1, IgtGroup(driver="vkms", tests=("kms_flip@*",), per_test_timeout_s=60), ("kms_flip@*",))
    tests = {
        "igt@kms_flip@basic-flip-vs-wf_vblank": {"result": "dmesg-warn", "out": "", "err": "",
                                                 "dmesg": VKMS_OVERRUN_DMESG},
        "igt@kms_flip@plain-flip": {"result": "warn", "out": "",
                                    "err": "(kms_flip:412) WARNING: flip took 41 ms, more than a frame\n"},
        "igt@kms_flip@basic-plain-flip": {"result": "pass", "out": "", "dmesg": VKMS_OVERRUN_DMESG},
    }
    (tmp_path / "results.json").write_text(json.dumps({**RESULTS, "tests": tests}))
    results = {r.name: r for r in results_from_dir(tmp_path, group)}
    dmesg_warn = results["kms_flip@basic-flip-vs-wf_vblank"]
    assert dmesg_warn.status == WARN
    # the kernel's warning (once), not IGT's own [IGT] lines
    assert dmesg_warn.detail == "vkms_vblank_simulate: vblank timer overrun"
    own_warn = results["kms_flip@plain-flip"]
    assert own_warn.status == WARN and own_warn.detail == "(kms_flip:412) WARNING: flip took 41 ms, more than a frame"
    assert results["kms_flip@basic-plain-flip"].detail == ""  # a pass needs no reason


def test_the_reports_show_a_warn_tests_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses
    import io

    from rich.console import Console

    from rig.report import html, junit, terminal
    from rig.results import TestResult, TestStatus

    from .rundata import report_data

    report, run_dir = report_data(tmp_path, monkeypatch)
    warned = TestResult("kms_flip@basic-flip-vs-wf_vblank", "igt", TestStatus.WARN, "dmesg-warn", 1.0, "vkms",
                        "vkms_vblank_simulate: vblank timer overrun")
    from rig.verdict import JudgedTest, TestVerdict

    judged = JudgedTest(warned, TestVerdict.OK)  # a warn is not a failure: the reason is a note
    report = dataclasses.replace(report, verdict=dataclasses.replace(
        report.verdict, tests=(*report.verdict.tests, warned), judged_tests=(*report.verdict.judged_tests, judged)))
    out = io.StringIO()
    terminal.render(report, Console(file=out, width=200, highlight=False))
    assert "kms_flip@basic-flip-vs-wf_vblank" in out.getvalue()
    assert "vkms_vblank_simulate: vblank timer overrun" in out.getvalue()
    assert "dmesg-warn: vkms_vblank_simulate: vblank timer overrun" in junit.render(report)
    assert "warning: vkms_vblank_simulate: vblank timer overrun" in html.render(report, run_dir)


def test_a_warn_whose_dmesg_opens_with_a_splats_rule_is_shown_by_its_warning_line() -> None:
    """A lockdep or KASAN report opens with a line of '='; the reports show the line
    under it, which says what the kernel warned about."""
    from rig.report.model import headline
    from rig.report.terminal import first_line

    splat = ("\n======================================================\n"
             "WARNING: possible circular locking dependency detected\n"
             "6.1.176 #6 Not tainted\n"
             "------------------------------------------------------\n")
    assert headline(splat) == "WARNING: possible circular locking dependency detected"
    assert first_line(splat) == "WARNING: possible circular locking dependency detected (+3 more lines)"
    assert headline("---\n") == ""
