"""IGT results: a binary's output and exit code, igt_runner's results.json, and which
subtest was running when the kernel reported a problem."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from rig.errors import UserError
from rig.splat import parse_log
from rig.results import TestName
from rig.splat.attribution import Placement, attribute, log_test_spans, running_test
from rig.splat.igt import RESULT_STATUS, parse_igt_output, parse_results_json, result_of_exit_code
from rig.splat.model import Source

DATA = Path(__file__).resolve().parent.parent / "data" / "splat"

VGEM_OUTPUT = """\
IGT-Version: 2.5-g1a2b3c4 (x86_64) (Linux: 6.1.0-rig x86_64)
Using IGT_SRANDOM=1732190000 for randomisation
Opened device: /dev/dri/card0
Starting subtest: setversion
Subtest setversion: SUCCESS (0.000s)
Starting subtest: mmap
Subtest mmap: SUCCESS (0.012s)
Starting subtest: dmabuf-fence
Starting dynamic subtest: wait
Dynamic subtest wait: FAIL (0.103s)
Starting dynamic subtest: signal
Dynamic subtest signal: SUCCESS (0.001s)
Subtest dmabuf-fence: FAIL (0.105s)
Starting subtest: sysfs
Test requirement not met in function igt_sysfs_open, file ../lib/igt_sysfs.c:151:
Subtest sysfs: SKIP (0.000s)
Starting subtest: unload
"""


def test_binary_output_with_dynamic_subtests_and_a_crash() -> None:
    run = parse_igt_output(VGEM_OUTPUT, binary="/usr/libexec/igt-gpu-tools/vgem_basic", exit_code=-11)
    assert run.version == "2.5-g1a2b3c4"
    assert [(r.name, r.result) for r in run.results] == [
        ("igt@vgem_basic@setversion", "pass"),
        ("igt@vgem_basic@mmap", "pass"),
        ("igt@vgem_basic@dmabuf-fence@wait", "fail"),
        ("igt@vgem_basic@dmabuf-fence@signal", "pass"),
        ("igt@vgem_basic@dmabuf-fence", "fail"),
        ("igt@vgem_basic@sysfs", "skip"),
        ("igt@vgem_basic@unload", "crash"),  # started, never reported, died on SIGSEGV
    ]
    assert run.results[1].duration == pytest.approx(0.012)
    assert run.results[2].dynamic == "wait" and run.results[2].subtest == "dmabuf-fence"
    assert run.counts() == {"pass": 3, "fail": 2, "skip": 1, "crash": 1}
    assert [r.name for r in run.failed] == ["igt@vgem_basic@dmabuf-fence@wait", "igt@vgem_basic@dmabuf-fence",
                                            "igt@vgem_basic@unload"]


@pytest.mark.parametrize("code, result", [(0, "pass"), (77, "skip"), (78, "timeout"), (79, "notrun"),
                                          (98, "fail"), (112, "abort"), (-9, "crash"), (139, "crash"),
                                          (1, "fail"), (None, "incomplete")])
def test_exit_codes(code: int | None, result: str) -> None:
    assert result_of_exit_code(code) == result


def test_binary_without_subtests_takes_its_exit_code() -> None:
    run = parse_igt_output("IGT-Version: 2.5\n", binary="core_getversion", exit_code=77)
    assert [(r.name, r.result) for r in run.results] == [("igt@core_getversion", "skip")]


def test_results_json() -> None:
    doc = {
        "__type__": "TestrunResult", "results_version": 10, "name": "rig",
        "tests": {
            "igt@vgem_basic@mmap": {"result": "pass", "out": "", "err": "", "dmesg": "",
                                    "time": {"__type__": "TimeAttribute", "start": 10.0, "end": 10.25},
                                    "igt-version": "IGT-Version: 2.5-g1a2b3c4 (x86_64)"},
            "igt@vgem_basic@dmabuf-fence@wait": {"result": "dmesg-warn", "dmesg": "<4> WARNING: ..."},
            "igt@kms_flip@basic": {"result": "incomplete"},
        },
    }
    run = parse_results_json(json.dumps(doc))
    assert [(r.name, r.result) for r in run.results] == [
        ("igt@kms_flip@basic", "incomplete"),
        ("igt@vgem_basic@dmabuf-fence@wait", "dmesg-warn"),
        ("igt@vgem_basic@mmap", "pass"),
    ]
    assert run.results[2].duration == pytest.approx(0.25)
    assert run.version == "2.5-g1a2b3c4"
    assert {r.name for r in run.failed} == {"igt@kms_flip@basic", "igt@vgem_basic@dmabuf-fence@wait"}


@pytest.mark.parametrize("bad", ["{not json", "[]", '{"tests": 3}'])
def test_results_json_rejects_other_files(bad: str) -> None:
    with pytest.raises(UserError, match="results.json"):
        parse_results_json(bad)


def test_finding_is_attributed_to_the_running_subtest() -> None:
    log = (DATA / "lockdep-dma-resv-fence-6.1.log").read_text()
    spans = log_test_spans(log)
    assert [(s.name, s.result) for s in spans] == [("igt@vgem_basic", "pass"),
                                                   ("igt@vgem_basic@dmabuf-fence-before", "pass")]
    (finding,) = parse_log(log)
    where = attribute(finding, spans, Source.CONSOLE)
    # the task that printed the report started that subtest
    assert (where.test, where.placement) == (TestName.parse("vgem_basic@dmabuf-fence-before"), Placement.PID)
    # without caller ids, the subtest running at the report's place in the log
    anonymous = re.sub(r"\[ *T\d+\]", "", log)
    (finding,) = parse_log(anonymous)
    where = attribute(finding, log_test_spans(anonymous), Source.CONSOLE)
    assert (str(where.test), where.placement) == ("vgem_basic@dmabuf-fence-before", Placement.TIME)
    # the same report read from dmesg: placed by its printk time
    assert attribute(finding, log_test_spans(anonymous), Source.DMESG).placement is Placement.TIME
    by_time = running_test(spans, timestamp=finding.timestamp)
    assert by_time is not None and by_time.name == "igt@vgem_basic@dmabuf-fence-before"
    assert running_test(spans, timestamp=10.0) is None


def test_dynamic_subtests_and_a_test_that_never_finished() -> None:
    log = "\n".join([
        "[   20.000000] [IGT] vgem_basic: executing",
        "[   20.100000] [IGT] vgem_basic: starting subtest dmabuf-fence",
        "[   20.150000] [IGT] vgem_basic: starting dynamic subtest wait",
        "[   20.400000] WARNING: CPU: 1 PID: 345 at drivers/gpu/drm/vgem/vgem_fence.c:123 vgem_fence_signal_ioctl+0x1a/0x90",
        "[   20.500000] [IGT] vgem_basic: finished subtest wait, FAIL",
        "[   20.600000] [IGT] vgem_basic: finished subtest dmabuf-fence, FAIL",
        "[   20.700000] [IGT] vgem_basic: starting subtest unload",
        "[   20.800000] BUG: kernel NULL pointer dereference, address: 0000000000000008",
    ])
    spans = log_test_spans(log)
    names = {s.name: s.result for s in spans}
    assert names == {"igt@vgem_basic": "", "igt@vgem_basic@dmabuf-fence": "fail",
                     "igt@vgem_basic@dmabuf-fence@wait": "fail", "igt@vgem_basic@unload": ""}
    warn = log.index("WARNING")
    crash = log.index("BUG: kernel NULL")
    assert running_test(spans, offset=warn).name == "igt@vgem_basic@dmabuf-fence@wait"
    assert running_test(spans, offset=crash).name == "igt@vgem_basic@unload"


def test_kunit_case_attribution() -> None:
    log = (DATA / "kunit-drm-6.1.log").read_text()
    spans = log_test_spans(log)
    expectation = log.index("Expected allocated == size")
    assert running_test(spans, offset=expectation).name == "drm_buddy.drm_test_buddy_alloc_contiguous"
    crash = log.index("BUG: kernel NULL")
    assert running_test(spans, offset=crash).name == "drm_exec"


def test_markers_follow_igt_and_rig_lines() -> None:
    run = Path(__file__).resolve().parent.parent / "data" / "run"
    text = (run / "console-underflow.log").read_text() + "[   70.1][  T500] rig: start script:dri-clients\n"
    spans = log_test_spans(text)
    started = [(s.name, s.task) for s in spans]
    assert ("igt@vgem_basic@mmap", "T70") in started
    assert ("igt@dumb_buffer@create-valid-dumb", "T96") in started
    assert started[-1] == ("script:dri-clients", "T500")
    assert str(spans[-1].test) == "script:dri-clients" and spans[-1].result == ""
    # "[IGT] x: exiting, ret=77" ends the binary's span as skipped (IGT's exit codes, one map)
    assert {s.result for s in spans if s.name == "igt@vgem_basic"} >= {"pass", "skip"}


@pytest.mark.parametrize("result, status", [("pass", "pass"), ("dmesg-warn", "warn"), ("notrun", "skip"),
                                            ("dmesg-fail", "fail"), ("incomplete", "crash"), ("abort", "crash")])
def test_igt_results_map_to_rig_statuses(result: str, status: str) -> None:
    assert RESULT_STATUS[result] == status


def test_a_hung_task_is_attributed_to_the_test_its_blocked_task_ran() -> None:
    # khungtaskd (T23) prints the report long after the blocked task (T287) started its
    # subtest, inside a script that runs several IGT binaries
    log = "\n".join([
        "[   30.000000][  T280] rig: start script:hangs",
        "[   30.100000][  T283] [IGT] vgem_basic: executing",
        "[   30.200000][  T283] [IGT] vgem_basic: starting subtest create",
        "[   30.300000][  T283] [IGT] vgem_basic: finished subtest create, SUCCESS",
        "[   30.400000][  T283] [IGT] vgem_basic: exiting, ret=0",
        "[   31.100000][  T287] [IGT] vgem_basic: executing",
        "[   31.200000][  T287] [IGT] vgem_basic: starting subtest dmabuf-fence",
        "[   45.000000][   T23] INFO: task vgem_basic:287 blocked for more than 10 seconds.",
        "[   45.000001][   T23]       Not tainted 6.1.176 #1",
        '[   45.000002][   T23] "echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.',
        "[   45.000003][   T23] task:vgem_basic      state:D stack:0     pid:287   ppid:286    flags:0x00004000",
        "[   45.000004][   T23] Call Trace:",
        "[   45.000005][   T23]  <TASK>",
        "[   45.000006][   T23]  __schedule+0x3b7/0xbd0",
        "[   45.000007][   T23]  schedule+0x5d/0xd0",
        "[   45.000008][   T23]  schedule_timeout+0x1ee/0x260",
        "[   45.000009][   T23]  __wait_for_common+0x96/0x1b0",
        "[   45.000010][   T23]  vgem_fence_signal_ioctl+0x9d/0x140",
        "[   45.000011][   T23]  drm_ioctl_kernel+0xb9/0x160",
        "[   45.000012][   T23]  </TASK>",
        "[  100.000000][  T299] rig: end script:hangs",
    ])
    (finding,) = parse_log(log)
    assert (finding.title, finding.pids) == ("INFO: task hung in vgem_fence_signal_ioctl", (287,))
    where = attribute(finding, log_test_spans(log), Source.CONSOLE)
    # the plan's test: the script that ran the subtest (the plan has no IGT group for it)
    assert (str(where.test), where.placement) == ("script:hangs", Placement.PID)
    # outside any script, the subtest itself
    bare = "\n".join(line for line in log.splitlines() if "rig: " not in line)
    (finding,) = parse_log(bare)
    where = attribute(finding, log_test_spans(bare), Source.CONSOLE)
    assert (str(where.test), where.placement) == ("vgem_basic@dmabuf-fence", Placement.PID)
