"""analyse() on the real consoles of `rig run` with the test series
(tests/data/series/{lockdep,kmemleak,underflow}), and judge() on what it found."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rig.analysis import RawMaterial, analyse, igt_kmemleak_reports
from rig.plan import load_plan
from rig.results import TestName, TestResult
from rig.splat.attribution import Placement
from rig.splat.model import Source
from rig.verdict import HOST_FAULT, NEW, judge
from tests.unit.test_pipeline import INT3_CONSOLE  # a real MTTCG fault

DATA = Path(__file__).resolve().parent.parent / "data" / "run"
PLAN = load_plan("default")


def _kunit_done() -> tuple[TestResult, ...]:
    """A KUnit result from the workloads, so the analysis reads no KUnit off the console."""
    return (TestResult("kunit:drm_mm.drm_test_mm_init", "kunit", "pass", "ok", None),)


def _analyse(console: Path | None, **more: object):
    return analyse(RawMaterial(console=console, tests=_kunit_done(), **more))  # type: ignore[arg-type]


def test_underflow_warning_belongs_to_the_subtest_whose_task_printed_it() -> None:
    analysis = _analyse(DATA / "console-underflow.log")
    (warning,) = analysis.findings
    assert warning.finding.title == "WARNING in drm_gem_shmem_put_pages_locked"
    assert (warning.source, warning.test, warning.placement) == (Source.CONSOLE, TestName.parse("vgem_basic@mmap"),
                                                                 Placement.PID)
    assert analysis.host_fault is None
    assert analysis.debug_locks == 1  # lockdep is built in and a WARN leaves it on
    assert "igt@vgem_basic@mmap" in [s.name for s in analysis.spans]
    verdict = judge(analysis, PLAN)
    assert [(f.finding.title, f.test, f.attribution, f.status) for f in verdict.findings] == [
        ("WARNING in drm_gem_shmem_put_pages_locked", "vgem_basic@mmap", "pid", NEW)]
    assert verdict.failed and len(verdict.new_findings) == 1


def test_leak_belongs_to_the_tests_whose_tasks_allocated_it() -> None:
    analysis = _analyse(DATA / "console-kmemleak.log", kmemleak=(DATA / "kmemleak.txt",))
    (leak,) = analysis.findings
    assert leak.finding.title == "memory leak in drm_prime_pages_to_sg"
    assert leak.source is Source.KMEMLEAK and leak.placement is Placement.PID
    assert str(leak.test) == "dumb_buffer@create-valid-dumb"
    assert [str(t) for t in leak.also] == ["dumb_buffer@map-valid", "kms_addfb_basic@basic"]
    assert sum(g.count for g in leak.finding.leak_groups) == 13
    # kmemleak's `comm "dumb_buffer", pid 97` lines: the pids are kept, in log order
    text = (DATA / "kmemleak.txt").read_text()
    assert leak.finding.pids == tuple(dict.fromkeys(int(p) for p in re.findall(r'comm "[^"]*", pid (\d+)', text)))
    verdict = judge(analysis, PLAN)
    data = verdict.findings[0].to_json()
    assert (data["test"], data["also"], data["source"], data["status"]) == (
        "dumb_buffer@create-valid-dumb", ["dumb_buffer@map-valid", "kms_addfb_basic@basic"], "kmemleak", "new")


def test_lockdep_keeps_its_chain_and_subtest_and_turns_debug_locks_off() -> None:
    analysis = _analyse(DATA / "console-lockdep.log")
    (finding,) = analysis.findings
    assert finding.finding.title == "possible deadlock in vgem_fence_signal_ioctl"
    assert finding.finding.lock_chain == ("reservation_ww_class_mutex", "fs_reclaim", "dma_fence_map")
    assert str(finding.test) == "vgem_basic@dmabuf-fence"
    assert analysis.debug_locks == 0  # lockdep stops after its first report
    data = judge(analysis, PLAN).to_json()
    assert data["unexpected_failures"] == [] and data["new_findings"] == 1


def test_lockdep_stats_when_collected_win_over_the_console(tmp_path: Path) -> None:
    stats = tmp_path / "lockdep_stats.txt"
    stats.write_text(" debug_locks:                             1\n")
    assert _analyse(DATA / "console-lockdep.log", lockdep_stats=stats).debug_locks == 1
    bare = tmp_path / "console.log"
    bare.write_text("[    1.0] booting\n")
    assert _analyse(bare).debug_locks is None  # no lockdep banner: this kernel has none


def test_without_caller_ids_the_running_test_is_taken(tmp_path: Path) -> None:
    console = tmp_path / "console.log"
    console.write_text(re.sub(r"\[ *T\d+\] ", "", (DATA / "console-underflow.log").read_text()))
    (finding,) = _analyse(console).findings
    assert (str(finding.test), finding.placement) == ("vgem_basic@mmap", Placement.TIME)


def _warning_block() -> str:
    lines = (DATA / "console-underflow.log").read_text().splitlines(keepends=True)
    start = next(i for i, ln in enumerate(lines) if "[ cut here ]" in ln)
    end = next(i for i, ln in enumerate(lines) if "---[ end trace" in ln)
    return "".join(lines[start:end + 1])


def test_the_same_report_twice_counts_once(tmp_path: Path) -> None:
    console = tmp_path / "console.log"
    console.write_text("[    1.0][    T1] Run /sbin/init as init process\n" + _warning_block() * 2)
    (finding,) = _analyse(console).findings
    assert finding.count == 2
    assert (finding.test, finding.placement) == (None, Placement.BOOT)  # no test had started


def test_a_report_between_tests_by_a_task_of_no_test_has_no_test(tmp_path: Path) -> None:
    console = tmp_path / "console.log"
    console.write_text("[   10.0][  T300] [IGT] vgem_basic: executing\n[   10.1][  T300] [IGT] vgem_basic: exiting, ret=0\n"
                       + _warning_block())
    (finding,) = _analyse(console).findings
    assert (finding.test, finding.placement) == (None, Placement.UNKNOWN)


def test_a_report_before_any_test_is_placed_at_boot(tmp_path: Path) -> None:
    console = tmp_path / "console.log"
    console.write_text(re.sub(r"\[ *T\d+\] ", "", _warning_block()) + "[   30.0] [IGT] vgem_basic: executing\n")
    (finding,) = _analyse(console).findings
    assert (finding.test, finding.placement) == (None, Placement.BOOT)


def test_dmesg_counts_only_when_the_console_has_nothing(tmp_path: Path) -> None:
    dmesg = tmp_path / "dmesg.txt"
    dmesg.write_text(_warning_block())
    empty = tmp_path / "console.log"
    empty.write_text("[    1.0] booting\n")
    (finding,) = _analyse(empty, dmesg=dmesg).findings
    assert finding.source is Source.DMESG
    lockdep_console = DATA / "console-lockdep.log"
    assert [f.source for f in _analyse(lockdep_console, dmesg=dmesg).findings] == [Source.CONSOLE]


def test_int3_in_getrandom_is_a_host_fault_of_the_attempt(tmp_path: Path) -> None:
    console = tmp_path / "console.log"
    console.write_text(INT3_CONSOLE)
    analysis = _analyse(console)
    assert analysis.host_fault == "mttcg-int3-getrandom"
    verdict = judge(analysis, PLAN)
    assert verdict.findings[0].status == HOST_FAULT and "TCG" in verdict.findings[0].note
    assert not verdict.failed


def test_per_test_kmemleak_reports_are_found_and_read(tmp_path: Path) -> None:
    igt = tmp_path / "igt"
    for group, test in (("group-2-vgem", "0"), ("group-1-virtio_gpu", "3"), ("group-1-virtio_gpu", "12")):
        (igt / group / "results" / test).mkdir(parents=True)
        (igt / group / "results" / test / "kmemleak.txt").write_bytes(b"")
    (igt / "group-1-virtio_gpu" / "results" / "3" / "kmemleak.txt").write_bytes((DATA / "kmemleak.txt").read_bytes())
    reports = igt_kmemleak_reports(igt)
    assert [p.relative_to(igt).parts[0:3:2] for p in reports] == [
        ("group-1-virtio_gpu", "12"), ("group-1-virtio_gpu", "3"), ("group-2-vgem", "0")]
    (leak,) = _analyse(DATA / "console-kmemleak.log", kmemleak=reports).findings
    assert str(leak.test) == "dumb_buffer@create-valid-dumb"


def test_what_was_not_collected_is_no_error_and_what_cannot_be_read_is_a_problem(tmp_path: Path) -> None:
    nothing = _analyse(None, dmesg=tmp_path / "missing")
    assert (nothing.findings, nothing.spans, nothing.host_fault, nothing.problems) == ((), (), None, ())
    unreadable = _analyse(None, kmemleak=(tmp_path,))  # a directory where the report should be
    assert len(unreadable.problems) == 1 and "kmemleak report" in unreadable.problems[0]
    assert judge(unreadable, PLAN, problems=["the guest died"]).problems == (
        "the guest died", unreadable.problems[0])


def test_the_analysis_adds_no_test_results_of_its_own() -> None:
    # KUnit results come from the KUnit workload, not from a second read of the console
    assert analyse(RawMaterial(console=DATA / "console-lockdep.log")).tests == ()
    assert _analyse(DATA / "console-lockdep.log").tests == _kunit_done()


@pytest.mark.parametrize("name", ["console-lockdep.log", "console-kmemleak.log", "console-underflow.log"])
def test_every_span_names_a_test(name: str) -> None:
    for span in _analyse(DATA / name).spans:
        assert span.test.runner_name == span.name or str(span.test) == span.name


@pytest.mark.parametrize("text, kind, path, runner", [
    ("vgem_basic@dmabuf-fence@wait", "igt", "vgem_basic@dmabuf-fence@wait", "igt@vgem_basic@dmabuf-fence@wait"),
    ("igt@vgem_basic", "igt", "vgem_basic", "igt@vgem_basic"),
    ("kunit:drm_mm.drm_test_mm_init", "kunit", "drm_mm.drm_test_mm_init", "kunit:drm_mm.drm_test_mm_init"),
    ("script:dri-clients", "script", "dri-clients", "script:dri-clients"),
])
def test_test_names_in_their_three_forms(text: str, kind: str, path: str, runner: str) -> None:
    name = TestName.parse(text)
    assert (name.kind, name.path, name.runner_name) == (kind, path, runner)
    assert TestName.parse(str(name)) == name and str(name) == text.removeprefix("igt@")


def test_test_name_parts_and_results() -> None:
    assert TestName.parse("vgem_basic@dmabuf-fence@wait").parts == ("vgem_basic", "dmabuf-fence", "wait")
    assert TestName.parse("vgem_basic@mmap").is_igt_subtest and not TestName.parse("vgem_basic").is_igt_subtest
    with pytest.raises(ValueError):
        TestName.parse("kunit:")
    result = TestResult("kunit:drm_mm.drm_test_mm_init", "kunit", "crash", "error", None)
    assert result.test_name == TestName.parse("kunit:drm_mm.drm_test_mm_init") and result.failing
    with pytest.raises(ValueError):
        TestResult("x", "igt", "broken", "?", None)  # a status outside the enum is a bug in a workload


@pytest.mark.parametrize("line, debug_locks", [
    ("[   20.0][  T70] BUG: kernel NULL pointer dereference, address: 0000000000000008\n"
     "[   20.0][  T70] #PF: supervisor read access in kernel mode\n[   20.0][  T70] Oops: 0000 [#1] PREEMPT SMP\n", 0),
    ("[   20.0][  T70] invalid opcode: 0000 [#1] PREEMPT SMP NOPTI\n", 0),
    ("[   20.0][  T70] Kernel panic - not syncing: hung_task: blocked tasks\n", 0),
    ("[   20.0][  T70] BUG: MAX_LOCKDEP_KEYS too low!\n[   20.0][  T70] turning off the locking correctness validator.\n",
     0),
    ("[   20.0][  T70] rig: start script:dri-clients\n", 1),
])
def test_debug_locks_read_from_the_console(tmp_path: Path, line: str, debug_locks: int) -> None:
    console = tmp_path / "console.log"
    banner = "[    0.0][    T0] Lock dependency validator: Copyright (c) 2006 Red Hat, Inc., Ingo Molnar\n"
    console.write_text(banner + line)
    assert _analyse(console).debug_locks == debug_locks


def test_with_a_scan_after_each_test_a_leak_is_blamed_on_its_first_test() -> None:
    # A real `rig run` of the kmemleak series with kmemleak = "each": igt_runner's reports
    # hold dumb_buffer's objects (cleared after each test), rig's final scan only the last
    # test's (kms_addfb_basic).
    each = DATA / "kmemleak-each"
    analysis = analyse(RawMaterial(console=each / "console.log",
                                   kmemleak=(each / "per-test-kmemleak.txt", each / "final-kmemleak.txt")))
    (leak,) = analysis.findings
    assert leak.finding.title == "memory leak in drm_prime_pages_to_sg" and leak.count == 2
    assert str(leak.test) == "dumb_buffer@create-valid-dumb"
    assert [str(t) for t in leak.also] == ["dumb_buffer@map-valid", "kms_addfb_basic@basic"]


# A leak allocated by panfrost's MMU IRQ thread (a heap BO's fault handler), which started
# no test: its task cannot name the test, its age at rig's read can. 6.1's kmemleak format.
_IRQ_LEAK = """unreferenced object 0xffff000004a1c400 (size 64):
  comm "irq/27-panfrost", pid 97, jiffies 4294905113 (age {age}s)
  hex dump (first 32 bytes):
    00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00  ................
  backtrace:
    [<ffff8000082a3c10>] __kmalloc_node+0x60/0x1a0
    [<ffff80000822f6d8>] kvmalloc_node+0x48/0x140
    [<ffff800008a8b2e4>] panfrost_mmu_map_fault_addr+0xd4/0x4c0
    [<ffff800008a8b9d0>] panfrost_mmu_irq_handler_thread+0x1e0/0x320
    [<ffff8000080f5b4c>] irq_thread_fn+0x2c/0xa0
    [<ffff8000080f5e70>] irq_thread+0x160/0x260
    [<ffff8000080a8f18>] kthread+0x108/0x120
    [<ffff800008015fe0>] ret_from_fork+0x10/0x20
"""
_KTAP_CONSOLE = """[   40.100000][  T301] rig: start ktap:panfrost_rig.endless-chain-timeout-reset
[   41.200000][  T301] rig: end ktap:panfrost_rig.endless-chain-timeout-reset
[   41.210000][  T302] rig: start ktap:panfrost_rig.heap-free
[   41.650000][  T302] rig: end ktap:panfrost_rig.heap-free
[   41.660000][  T303] rig: start ktap:panfrost_rig.purge-in-reclaim
[   49.000000][  T303] rig: end ktap:panfrost_rig.purge-in-reclaim
[   55.500000][  T310] rig: kmemleak read
"""


@pytest.mark.parametrize(("age", "test"), [("14.000", "ktap:panfrost_rig.heap-free"),
                                           ("9.000", "ktap:panfrost_rig.purge-in-reclaim")])
def test_a_leak_no_test_task_allocated_is_placed_by_its_age_at_rigs_read(tmp_path: Path, age: str, test: str) -> None:
    console = tmp_path / "console.log"
    console.write_text(_KTAP_CONSOLE)
    report = tmp_path / "kmemleak.txt"
    report.write_text(_IRQ_LEAK.format(age=age))
    (leak,) = _analyse(console, kmemleak=(report,), final_kmemleak_marked=True).findings
    assert leak.finding.title == "memory leak in panfrost_mmu_map_fault_addr"
    # read at 55.5 s: allocated at 41.5 s (heap-free) or 46.5 s (purge-in-reclaim)
    assert (str(leak.test), leak.placement) == (test, Placement.TIME)
    assert leak.finding.timestamp == pytest.approx(55.5 - float(age))
    # a report rig did not mark (igt_runner's, between tests) dates nothing
    (unmarked,) = _analyse(console, kmemleak=(report,)).findings
    assert (unmarked.test, unmarked.placement) == (None, Placement.UNKNOWN)
