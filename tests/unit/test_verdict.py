from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

import pytest

from rig.errors import UserError
from rig.plan import load_plan
from rig.splat import parse_log
from rig.splat.model import Finding
from rig.splat.attribution import log_test_spans
from rig.verdict import HOST_FAULT, NEW, PRE_EXISTING, judge, load_baseline
from rig.workloads import FAIL, PASS, TestResult

DATA = Path(__file__).resolve().parent.parent / "data" / "run"


def _console(name: str) -> str:
    return (DATA / name).read_text()


def test_markers_follow_igt_and_rig_lines() -> None:
    text = _console("console-underflow.log") + "[   70.1][  T500] rig: start script:dri-clients\n"
    started = [(s.name, s.task) for s in log_test_spans(text)]
    assert ("igt@vgem_basic@mmap", "T70") in started
    assert ("igt@dumb_buffer@create-valid-dumb", "T96") in started
    assert started[-1] == ("script:dri-clients", "T500")


def test_warning_is_attributed_to_the_subtest_of_its_task() -> None:
    """A real console of the underflow series (tests/data/series/underflow) under rig run."""
    console = _console("console-underflow.log")
    verdict = judge({"console": parse_log(console)}, console, [], load_plan("default"))
    (warning,) = verdict.findings
    assert warning.finding.title == "WARNING in drm_gem_shmem_put_pages_locked"
    assert (warning.test, warning.attribution, warning.status) == ("vgem_basic@mmap", "pid", NEW)
    assert verdict.exit_code == 1
    assert verdict.summary().startswith("FAIL: 1 new finding,")


def test_leak_is_attributed_to_the_tests_that_allocated_it() -> None:
    """A real run of the kmemleak series: kmemleak names each object's allocating pid and the
    console says which subtest each pid ran."""
    console = _console("console-kmemleak.log")
    verdict = judge({"console": parse_log(console), "kmemleak": parse_log((DATA / "kmemleak.txt").read_bytes())},
                    console, [], load_plan("default"))
    (leak,) = verdict.findings
    assert leak.finding.title == "memory leak in drm_prime_pages_to_sg"
    assert (leak.test, leak.attribution, leak.source) == ("dumb_buffer@create-valid-dumb", "pid", "kmemleak")
    assert leak.also == ("dumb_buffer@map-valid", "kms_addfb_basic@basic")
    assert sum(g.count for g in leak.finding.leak_groups) == 13


def test_lockdep_keeps_its_chain_and_subtest() -> None:
    """A real console of the lockdep series (tests/data/series/lockdep) under rig run."""
    console = _console("console-lockdep.log")
    verdict = judge({"console": parse_log(console)}, console, [], load_plan("default"))
    (finding,) = verdict.findings
    assert finding.finding.title == "possible deadlock in vgem_fence_signal_ioctl"
    assert finding.finding.lock_chain == ("reservation_ww_class_mutex", "fs_reclaim", "dma_fence_map")
    assert finding.test == "vgem_basic@dmabuf-fence"


def test_without_caller_ids_the_last_started_test_is_taken() -> None:
    console = re.sub(r"\[ *T\d+\] ", "", _console("console-underflow.log"))
    assert "[   T70]" not in console
    verdict = judge({"console": parse_log(console)}, console, [], load_plan("default"))
    (finding,) = [f for f in verdict.findings if f.finding.kind == "warning"]
    assert (finding.test, finding.attribution) == ("vgem_basic@mmap", "time")


def _finding(title: str, report: str, signature: str = "sig", start: int = 0) -> Finding:
    return Finding(title=title, kind="oops", corrupted=False, signature=signature, report=report, start=start,
                   end=start + 10, line=1, timestamp=None, frames=())


def test_int3_in_getrandom_is_a_host_fault_not_a_finding_of_the_series() -> None:
    fault = _finding("general protection fault in __x64_sys_getrandom",
                     "int3: 0000 [#1] PREEMPT SMP\nRIP: 0010:__x64_sys_getrandom+0x1/0x90", "int3sig")
    verdict = judge({"console": [fault]}, "", [], load_plan("default"))
    assert verdict.findings[0].status == HOST_FAULT and verdict.exit_code == 0
    assert "TCG" in verdict.findings[0].note


def test_expected_and_unexpected_failures() -> None:
    tests = [TestResult("kms_addfb_basic@too-high", "igt", FAIL, "fail", 0.1, "virtio_gpu"),
             TestResult("dumb_buffer@map-valid", "igt", FAIL, "fail", 0.1, "virtio_gpu"),
             TestResult("vgem_basic@create", "igt", PASS, "pass", 0.1, "vgem")]
    verdict = judge({}, "", tests, load_plan("default"))
    assert [t for t, _ in verdict.expected_failures] == ["kms_addfb_basic@too-high"]
    assert verdict.unexpected_failures == ("dumb_buffer@map-valid",)
    assert verdict.exit_code == 1
    passing = judge({}, "", [tests[0], tests[2]], load_plan("default"))
    assert passing.exit_code == 0 and passing.totals() == {"fail": 1, "pass": 1}


def test_findings_of_the_base_kernel_are_pre_existing(tmp_path: Path) -> None:
    base_report = {"kernel": {"release": "6.1.176"}, "findings": [
        {"title": "memory leak in drm_prime_pages_to_sg", "signature": "leak", "status": "new"}]}
    (tmp_path / "report.json").write_text(json.dumps(base_report))
    baseline = load_baseline(tmp_path)
    old = _finding("memory leak in drm_prime_pages_to_sg", "unreferenced object", "leak")
    new = _finding("WARNING in drm_gem_shmem_put_pages", "WARNING: CPU: 0", "warn", start=20)
    verdict = judge({"console": [old, new]}, "", [], load_plan("default"), baseline=baseline)
    assert [f.status for f in verdict.findings] == [PRE_EXISTING, NEW]
    assert "6.1.176" in verdict.findings[0].note
    only_old = judge({"console": [old]}, "", [], load_plan("default"), baseline=baseline)
    assert only_old.exit_code == 0


def test_a_baseline_that_is_not_a_report_is_a_user_error(tmp_path: Path) -> None:
    (tmp_path / "report.json").write_text("[]")
    with pytest.raises(UserError):
        load_baseline(tmp_path)
    with pytest.raises(UserError):
        load_baseline(tmp_path / "missing")


def test_the_same_report_twice_counts_once() -> None:
    one = _finding("WARNING in f", "WARNING: x", "same")
    two = dataclasses.replace(one, start=100)
    verdict = judge({"console": [one, two]}, "", [], load_plan("default"))
    assert len(verdict.findings) == 1 and verdict.findings[0].count == 2


def test_dmesg_counts_only_without_a_console() -> None:
    warning = _finding("WARNING in f", "WARNING: x", "w")
    assert len(judge({"console": [], "dmesg": [warning]}, "", [], load_plan("default")).findings) == 1
    other = _finding("WARNING in g", "WARNING: y", "g")
    assert [f.finding.title for f in judge({"console": [other], "dmesg": [warning]}, "", [],
                                           load_plan("default")).findings] == ["WARNING in g"]
