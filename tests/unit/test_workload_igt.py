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
