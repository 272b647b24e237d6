"""KTAP programs: rig's guest test harness (compiled and run here, natively), the results
rig reads from what such a program prints, the workload around it, the kernel-log markers
it writes and the attribution they give, and the [[ktap]] entries of a plan."""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

from rig.errors import UserError
from rig.guest import GuestResult, GuestTimeout
from rig.plan import KtapProgram, load_plan, parse_plan
from rig.results import TestKind, TestName
from rig.splat.attribution import Placement, attribute, log_test_spans
from rig.splat.model import Source
from rig.splat.parser import parse_log
from rig.workloads import CRASH, FAIL, PASS, SKIP, TIMEOUT, WorkloadContext, workloads_for
from rig.workloads.ktap import KtapWorkload, results_from_output
from tests.unit.guestfake import FakeVM

ROOT = Path(__file__).resolve().parents[2]
HARNESS = ROOT / "images" / "programs" / "panfrost"
DATA = ROOT / "tests" / "data" / "ktap"
# What rig-panfrost printed in an arm64 guest without a Mali GPU (debian:6.1 kernel).
NO_DEVICE = (DATA / "rig-panfrost-no-device.ktap").read_text()
PANFROST = KtapProgram("panfrost", ("/usr/local/bin/rig-panfrost",), 1800.0)

# IGT's panfrost subtests (IGT 2.2 source, same as Debian's 2.5 binaries).
IGT_SUBTESTS = {
    "panfrost_gem_new": ["gem-new-4096", "gem-new-0", "gem-new-zeroed"],
    "panfrost_get_param": ["base-params", "get-bad-param", "get-bad-padding"],
    "panfrost_prime": ["gem-prime-import"],
    "panfrost_submit": ["pan-submit", "pan-submit-error-no-jc", "pan-submit-error-bad-in-syncs",
                        "pan-submit-error-bad-bo-handles", "pan-submit-error-bad-requirements",
                        "pan-submit-error-bad-out-sync", "pan-reset", "pan-submit-and-close",
                        "pan-unhandled-pagefault"],
}


# ---------------------------------------------------------------- the harness, for real

@pytest.fixture(scope="module")
def selftest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The harness with a subtest for every way a subtest ends, built with the host's gcc."""
    if shutil.which("gcc") is None:
        pytest.skip("no gcc on this host")
    binary = tmp_path_factory.mktemp("harness") / "selftest"
    build = subprocess.run(["gcc", "-O2", "-Wall", "-Wextra", "-Werror", f"-I{HARNESS}", "-o", str(binary),
                            str(DATA / "harness_selftest.c"), str(HARNESS / "harness.c")],
                           capture_output=True, text=True, timeout=120)
    assert build.returncode == 0, build.stderr
    return binary


@pytest.fixture(scope="module")
def hung_output(selftest: Path, tmp_path_factory: pytest.TempPathFactory) -> str:
    """What the selftest printed before it was killed in its hanging subtest (SIGTERM, as
    a guest command past its time would be): the harness takes the subtest down too."""
    kmsg = tmp_path_factory.mktemp("hung") / "kmsg"
    kmsg.write_text("")
    # its own session: whatever it leaves behind can be found and killed (pkill -s)
    proc = subprocess.Popen([str(selftest), "--timeout", "60", "--kmsg", str(kmsg)], stdout=subprocess.PIPE,
                            text=True, start_new_session=True)
    assert proc.stdout is not None
    out = []
    for line in proc.stdout:
        out.append(line)
        if line.strip() == "# start: hangs":
            break
    while "rig: start ktap:suite_b.hangs" not in kmsg.read_text():
        time.sleep(0.01)  # the subtest's child is running (it wrote its marker)
    proc.terminate()
    try:
        rest, _ = proc.communicate(timeout=30)  # EOF only once the subtest's child is gone too
    except subprocess.TimeoutExpired:
        subprocess.run(["pkill", "-KILL", "-s", str(proc.pid)], check=False)
        pytest.fail("the harness died but its subtest's child lived on, holding its output open")
    out.append(rest)
    assert proc.returncode == -signal.SIGTERM
    return "".join(out)


def _run(binary: Path, *args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(binary), *args], capture_output=True, text=True, timeout=60,
                          env={**os.environ, **(env or {})})


def test_each_way_a_subtest_ends_becomes_its_result(selftest: Path, tmp_path: Path) -> None:
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("")
    run = _run(selftest, "--timeout", "1", "--kmsg", str(kmsg))
    assert run.returncode == 1  # a subtest failed
    program = KtapProgram("selftest", (str(selftest),), 60.0)
    results = {r.name: r for r in results_from_output(program, run.stdout, run.stderr, run.returncode,
                                                      started_s=5.0)}
    assert {name: str(r.status) for name, r in results.items()} == {
        "ktap:suite_a.passes": "pass", "ktap:suite_a.fails": "fail", "ktap:suite_a.skips": "skip",
        "ktap:suite_b.crashes": "fail", "ktap:suite_b.hangs": "fail", "ktap:suite_b.returns-error": "fail",
    }
    assert all(r.kind is TestKind.KTAP for r in results.values())
    assert "value is 3" in results["ktap:suite_a.fails"].detail
    assert "about to check" in results["ktap:suite_a.fails"].detail
    assert "duration" not in results["ktap:suite_a.fails"].detail
    assert results["ktap:suite_a.skips"].detail == "needs a second KMS device"
    assert "signal 11" in results["ktap:suite_b.crashes"].detail
    assert "timed out after 1 s" in results["ktap:suite_b.hangs"].detail
    assert "expected -14 (Bad address)" in results["ktap:suite_b.returns-error"].detail
    # the hung one took its whole second; cases start one after the other
    assert results["ktap:suite_b.hangs"].duration_s >= 1.0
    assert results["ktap:suite_a.passes"].started_s == 5.0
    assert results["ktap:suite_b.returns-error"].started_s > 6.0
    # a marker before and after every subtest, in the form rig's attribution reads
    markers = kmsg.read_text().splitlines()
    assert markers[:2] == ["rig: start ktap:suite_a.passes", "rig: end ktap:suite_a.passes"]
    assert len(markers) == 12 and markers[-1] == "rig: end ktap:suite_b.returns-error"


def test_the_harness_in_a_real_arm64_guest_reads_the_same() -> None:
    # the selftest, cross-built static, run in rig's arm64 guest (debian:6.1) with --timeout 2
    text = (DATA / "harness-selftest-arm64.ktap").read_text()
    results = results_from_output(KtapProgram("selftest", ("x",), 60.0), text, "", 1)
    assert [(r.name.split(".")[-1], str(r.status)) for r in results] == [
        ("passes", "pass"), ("fails", "fail"), ("skips", "skip"), ("crashes", "fail"), ("hangs", "fail"),
        ("returns-error", "fail")]
    assert results[4].duration_s is not None and results[4].duration_s >= 2.0


def test_run_a_glob_list_and_bad_usage(selftest: Path, tmp_path: Path) -> None:
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("")
    run = _run(selftest, "--run", "pass*", "--run", "suite_b.returns-*", "--kmsg", str(kmsg))
    program = KtapProgram("selftest", (str(selftest),), 60.0)
    results = results_from_output(program, run.stdout, run.stderr, run.returncode)
    assert [(r.name, str(r.status)) for r in results] == [("ktap:suite_a.passes", "pass"),
                                                          ("ktap:suite_b.returns-error", "fail")]
    listing = _run(selftest, "--list", "--run", "suite_a.*")
    assert listing.returncode == 0
    assert [line.split("\t")[0] for line in listing.stdout.splitlines()] == [
        "suite_a.passes", "suite_a.fails", "suite_a.skips"]
    assert _run(selftest, "--run", "nothing").returncode == 2
    assert _run(selftest, "--timeout", "soon").returncode == 2


def test_a_manual_subtest_runs_only_when_a_glob_names_it(selftest: Path, tmp_path: Path) -> None:
    # rig-panfrost's benchmarks are such subtests: a plain run (the panfrost plan's) skips them
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("")
    program = KtapProgram("selftest", (str(selftest),), 60.0)
    everything = _run(selftest, "--timeout", "1", "--kmsg", str(kmsg))
    assert "suite_c" not in everything.stdout
    named = _run(selftest, "--run", "suite_c.*", "--kmsg", str(kmsg))
    assert [(r.name, str(r.status)) for r in results_from_output(program, named.stdout, named.stderr,
                                                                 named.returncode)] == [
        ("ktap:suite_c.manual", "pass")]
    listing = _run(selftest, "--list").stdout.splitlines()
    assert listing[-1] == "suite_c.manual\truns only when named (runs only when named by --run)"


def test_without_the_device_every_subtest_skips_without_markers(selftest: Path, tmp_path: Path) -> None:
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("")
    run = _run(selftest, "--kmsg", str(kmsg), env={"SELFTEST_SKIP_ALL": "no such device"})
    assert run.returncode == 0
    results = results_from_output(KtapProgram("selftest", ("x",), 60.0), run.stdout, run.stderr, 0)
    assert len(results) == 6 and {(str(r.status), r.detail) for r in results} == {("skip", "no such device")}
    assert kmsg.read_text() == ""


def test_markers_attribute_a_report_to_the_subtest_whose_task_printed_it(selftest: Path, tmp_path: Path) -> None:
    kmsg = tmp_path / "kmsg"
    kmsg.write_text("")
    _run(selftest, "--run", "passes", "--run", "fails", "--kmsg", str(kmsg))
    start_pass, end_pass, start_fail, end_fail = kmsg.read_text().splitlines()
    warning = (ROOT / "tests" / "data" / "run" / "console-underflow.log").read_text().splitlines()[314:354]
    # the subtest's child (T301) hits the WARNING after its end marker (teardown on exit);
    # by time it would be the next subtest's, by task it is its own
    console = "\n".join([
        "[   20.000000][  T250] rig: start ktap:panfrost",
        f"[   20.100000][  T301] {start_pass}",
        f"[   20.300000][  T250] {end_pass}",
        f"[   20.400000][  T302] {start_fail}",
        *(line.replace("T70]", "T301]").replace("PID: 70", "PID: 301") for line in warning),
        f"[   20.600000][  T250] {end_fail}",
        "[   20.700000][  T250] rig: end ktap:panfrost",
    ]) + "\n"
    spans = log_test_spans(console)
    assert [(s.framework, s.name, s.task) for s in spans] == [
        ("ktap", "ktap:panfrost", "T250"), ("ktap", "ktap:suite_a.passes", "T301"),
        ("ktap", "ktap:suite_a.fails", "T302")]
    findings = parse_log(console)
    assert findings and findings[0].kind == "warning"
    verdict = attribute(findings[0], spans, Source.CONSOLE)
    assert verdict.placement is Placement.PID and verdict.test == TestName(TestKind.KTAP, "suite_a.passes")
    assert str(verdict.test) == "ktap:suite_a.passes" and verdict.test.parts == ("suite_a", "passes")
    assert TestName.parse("ktap:suite_a.passes") == verdict.test


# ---------------------------------------------------------------- rig-panfrost's own output

def test_rig_panfrost_without_a_mali_gpu_skips_all_under_igt_names() -> None:
    results = results_from_output(PANFROST, NO_DEVICE, "", 0)
    assert {str(r.status) for r in results} == {"skip"}
    assert all(r.detail == "no panfrost device: no /dev/dri node is driven by panfrost" for r in results)
    names = [r.name for r in results]
    igt = [f"ktap:{suite}.{case}" for suite, cases in IGT_SUBTESTS.items() for case in cases]
    assert len(igt) == 16 and names[:16] == igt
    assert all(name.startswith("ktap:panfrost_rig.") for name in names[16:]) and len(names) == 24


def test_rig_panfrost_on_rigs_mali_model() -> None:
    # rig-panfrost in an arm64 guest (debian:6.1) on rig's emulated Mali-G52, the run where
    # the heap test hung right after pan-unhandled-pagefault (see the panfrost plan)
    text = (DATA / "rig-panfrost-mali-g52-6.1.ktap").read_text()
    results = {r.name: r for r in results_from_output(PANFROST, text, "", 1, started_s=0.0)}
    assert len(results) == 24
    failing = [name for name, r in results.items() if r.status is not PASS]
    assert failing == ["ktap:panfrost_rig.heap-fault-growth"]
    heap = results["ktap:panfrost_rig.heap-fault-growth"]
    assert "heap write at +0x7ffffc: exception_status 0x0" in heap.detail
    assert "heap BO of 8 MiB" in heap.detail and "start:" not in heap.detail
    assert all(r.duration_s is not None for r in results.values())
    # eight idle gaps of 200 ms, so the GPU autosuspends before each job
    assert results["ktap:panfrost_rig.runtime-pm-churn"].duration_s >= 1.6
    assert "suspended before 8 of 8 jobs" in results["ktap:panfrost_rig.runtime-pm-churn"].detail
    assert load_plan("panfrost").expected_failure(heap.name) is not None


def test_a_program_cut_short_by_the_timeout_keeps_its_finished_cases(hung_output: str) -> None:
    results = results_from_output(PANFROST, hung_output, "", None)
    assert [(r.name, str(r.status)) for r in results] == [
        ("ktap:suite_a.passes", "pass"), ("ktap:suite_a.fails", "fail"), ("ktap:suite_a.skips", "skip"),
        ("ktap:suite_b.crashes", "fail"), ("ktap:suite_b.hangs", "timeout")]
    assert "1800 s" in results[-1].detail
    # killed by a signal instead: the case it ran crashed
    killed = results_from_output(PANFROST, hung_output, "", -15)
    assert (killed[-1].name, killed[-1].status) == ("ktap:suite_b.hangs", CRASH)
    # output without the harness's "start:" lines blames the suite that was cut short
    cut = NO_DEVICE[:NO_DEVICE.index("    ok 2 pan-submit-error-no-jc")]
    results = results_from_output(PANFROST, cut, "", None)
    assert [str(r.status) for r in results[:-1]] == ["skip"] * 8
    assert (results[-1].name, results[-1].status) == ("ktap:panfrost_submit", TIMEOUT)


def test_a_program_that_printed_nothing_or_ended_badly_has_a_result_of_its_own() -> None:
    nothing = results_from_output(PANFROST, "", "sh: rig-panfrost: not found\n", 127)
    assert [(r.name, r.status, r.raw_status) for r in nothing] == [("ktap:panfrost", CRASH, "exit 127")]
    assert "not found" in nothing[0].detail
    # every case passed or skipped, yet it exited 1: the program failed
    odd = results_from_output(PANFROST, NO_DEVICE, "", 1)
    assert odd[-1].name == "ktap:panfrost" and odd[-1].status == FAIL
    # a case that failed explains exit 1: no extra result
    failed = NO_DEVICE.replace("    ok 1 gem-new-4096 # SKIP no panfrost device: no /dev/dri node is driven by "
                               "panfrost", "    # FAIL: CREATE_BO: ENOMEM\n    not ok 1 gem-new-4096")
    results = results_from_output(PANFROST, failed, "", 1)
    assert len(results) == 24 and results[0].status == FAIL and results[0].detail == "FAIL: CREATE_BO: ENOMEM"
    # killed in the middle of a suite: the suite crashed
    killed = results_from_output(PANFROST, NO_DEVICE[:NO_DEVICE.index("    ok 2 get-bad-param")], "", -9)
    assert killed[-1].name == "ktap:panfrost_get_param" and killed[-1].status == CRASH


# ---------------------------------------------------------------- the workload

def _ctx(vm: FakeVM, tmp_path: Path, budget_s: float = 5000.0) -> WorkloadContext:
    return WorkloadContext(vm, tmp_path, t0=0.0, budget_s=budget_s, wrap=["enter-cg"])  # type: ignore[arg-type]


def test_the_workload_runs_the_program_under_pressure_between_markers(tmp_path: Path) -> None:
    def answer(argv: list[str]) -> GuestResult | None:
        if argv[-1] == "/usr/local/bin/rig-panfrost":
            return GuestResult(tuple(argv), 0, NO_DEVICE, "", 12.0)
        return None

    vm = FakeVM(answer)
    results = asyncio.run(KtapWorkload(PANFROST).run(_ctx(vm, tmp_path, budget_s=600.0)))
    assert len(results) == 24 and results[0].status == SKIP
    assert vm.commands[0][-1] == "rig: start ktap:panfrost"
    assert vm.commands[1] == ["enter-cg", "/usr/local/bin/rig-panfrost"] and vm.timeouts[1] == 600.0
    assert vm.commands[2][-1] == "rig: end ktap:panfrost"
    assert (tmp_path / "ktap" / "panfrost.ktap").read_text() == NO_DEVICE
    assert "exit status 0" in (tmp_path / "ktap" / "panfrost.log").read_text()


def test_a_hung_program_keeps_what_it_printed(tmp_path: Path, hung_output: str) -> None:
    def answer(argv: list[str]) -> None:
        if argv[-1] == "/usr/local/bin/rig-panfrost":
            raise GuestTimeout("rig-panfrost did not finish")

    vm = FakeVM(answer, partial=hung_output)
    results = asyncio.run(KtapWorkload(PANFROST).run(_ctx(vm, tmp_path, budget_s=600.0)))
    assert [(r.name, r.status) for r in results][-2:] == [("ktap:suite_b.crashes", FAIL),
                                                          ("ktap:suite_b.hangs", TIMEOUT)]
    assert "600 s ran out" in results[-1].detail  # the run's budget, shorter than the plan's 1800 s
    assert vm.commands[-1][-1] == "rig: end ktap:panfrost"
    assert "timed out" in (tmp_path / "ktap" / "panfrost.log").read_text()


def test_prepare_names_a_program_the_guest_lacks(tmp_path: Path) -> None:
    vm = FakeVM(lambda argv: GuestResult(tuple(argv), 1, "", "", 0.01))
    with pytest.raises(UserError, match="rig-panfrost, which this guest does not have") as caught:
        asyncio.run(KtapWorkload(PANFROST).prepare(vm))  # type: ignore[arg-type]
    assert "--arch arm64" in (caught.value.hint or "")
    assert vm.commands[0][-1] == "/usr/local/bin/rig-panfrost"
    asyncio.run(KtapWorkload(PANFROST).prepare(FakeVM()))  # type: ignore[arg-type]


# ---------------------------------------------------------------- plans

def test_plan_ktap_entries_and_their_problems() -> None:
    plan = parse_plan('[[ktap]]\nname = "pan"\nargv = ["/bin/p", "--run", "x*"]\ntimeout_s = 60\n',
                      name="t", source="t.toml")
    assert plan.ktap == (KtapProgram("pan", ("/bin/p", "--run", "x*"), 60.0),)
    assert [w.label for w in workloads_for(plan)] == ["KTAP program pan"]
    bad = '[[ktap]]\nname = "a.b"\nargv = "p"\n[[ktap]]\nname = "c"\nargv = ["p"]\ntimeout_s = 0\n' \
          '[[ktap]]\nname = "c"\nargv = ["p"]\nflavour = 1\n'
    with pytest.raises(UserError) as caught:
        parse_plan(bad, name="t", source="t.toml")
    message = str(caught.value)
    for problem in ("ktap #1: name must be a word", "ktap #1 (ktap1): argv must be a non-empty list",
                    "ktap #2.timeout_s: must be a positive number", "ktap #3: name 'c' is used twice",
                    "ktap #3: unknown key 'flavour'"):
        assert problem in message


def test_the_panfrost_plan_runs_rig_panfrost_with_reasons_for_what_it_expects() -> None:
    plan = load_plan("panfrost")
    assert [p.argv[0] for p in plan.ktap] == ["/usr/local/bin/rig-panfrost"]
    assert all(e.reason for e in plan.expected_failures)
    assert plan.kmemleak_scan == "end"
