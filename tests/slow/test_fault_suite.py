"""The fault suite: every fault of rig's fault list, in every phase of a run where it can
happen, and the test that shows rig's answer (exit code by fault, console and everything
collected kept, report.json and report.md naming the phase, no QEMU, ssh or make left, no
stale lock). The tests below fill what the other modules did not cover; `tools/soak.py`
draws the same faults at random moments.

Phases: build (kernel), image (guest image), boot (QEMU up to SSH), workloads (the plan),
collect (dmesg, kmemleak, screendump after the plan), report (writing report.*).
"slow:" names a test of tests/slow, "unit:" one of tests/unit.

| fault | phase | test |
|---|---|---|
| guest panic | build, image | n/a: no guest runs yet |
| guest panic | boot | slow: test_boot::test_boot_failure_is_a_kernel_error_with_the_console (no root fs: VFS panic) |
| guest panic | workloads | slow: test_run_faults::test_a_guest_that_dies_mid_plan_fails_the_run_and_says_so; test_boot::test_guest_panic_exits_1_within_10_s_with_the_console |
| guest panic | collect | unit: test_pipeline::test_how_an_attempt_ended_decides_the_exit_code (a kernel error in collect); test_vm::test_every_guest_call_is_guarded (a dead guest is not asked) |
| guest panic | report | n/a: the guest is stopped before the report |
| kernel hang, every CPU | boot | unit: test_vm::test_deadline_without_ssh_is_a_kernel_error_with_the_console |
| kernel hang, every CPU | workloads | slow: test_hang::test_every_cpu_stuck_gets_an_nmi_and_the_cpus_backtraces |
| kernel hang, every CPU | collect | unit: test_vm::test_a_guest_that_takes_no_interrupt_gets_the_nmi_and_its_panic_is_the_error (every guest call goes through the same guard) |
| guest frozen by QMP stop | boot, workloads | slow: test_boot::test_hanging_command_and_frozen_guest_hit_their_deadlines; unit: test_vm::test_a_running_guest_that_stops_answering_is_the_kernels_fault |
| task in D state (hung-task detector) | workloads | slow: test_hang::test_a_task_stuck_in_an_ioctl_is_found_and_its_stack_shown |
| task in D state | boot, collect | n/a: rig runs no test code there; the detector's report is parsed wherever it lands (unit: test_forensics) |
| guest OOM | workloads | slow: test_guest_oom_mid_workload_is_in_the_report (here); unit: test_guest::test_a_command_killed_by_a_signal_has_its_status_not_a_lost_connection (the OOM-killed command's exit-signal) |
| guest OOM killing sshd | workloads | unit: test_vm::test_ssh_lost_because_the_oom_killer_took_sshd_is_the_kernels |
| guest OOM | build, image, boot | n/a: no guest, or rig's own fixed-size guest before any test |
| QEMU killed (SIGKILL) | boot | slow: test_boot::test_qemu_killed_mid_run_is_reported_and_nothing_is_left; unit: test_qemu_machine::test_qemu_killed_from_outside_is_seen; soak: kills within 20 s of QEMU's start |
| QEMU killed (SIGKILL) | workloads | slow: test_run_faults::test_qemu_killed_from_outside_after_boot_is_a_host_problem_with_a_report |
| QEMU killed, frozen | collect | unit: test_pipeline::test_how_an_attempt_ended_decides_the_exit_code (a host error in collect) |
| QEMU frozen (SIGSTOP) | workloads | slow: test_run_faults::test_qemu_frozen_from_outside_is_a_host_problem_not_a_hang; unit: test_vm::test_a_call_to_a_guest_whose_qemu_stays_stopped_ends_without_waiting_for_its_timeout |
| SSH connection dropped | boot | unit: test_vm::test_a_slow_greeting_gets_a_longer_wait_each_time (readiness retries until its deadline) |
| SSH connection dropped (guest sshd killed) | workloads | slow: test_ssh_dropped_mid_workload_is_a_host_problem_with_a_report (here); unit: test_vm::test_ssh_lost_while_the_kernel_still_answers_is_the_hosts_side |
| SSH connection dropped | collect | unit: test_vm::test_every_guest_call_is_guarded (collection's calls take the same guard) |
| host disk full | build | unit: test_build::test_a_disk_that_fills_up_during_the_build_is_the_hosts_fault; test_bad_inputs::test_a_full_disk_is_the_host_s_problem (out, metadata, cache) |
| host disk full | build, image (as rig run sees it) | unit: test_pipeline::test_a_run_that_ends_before_its_first_attempt_still_reports_how_and_where[disk-full-in-build] |
| host disk full | workloads | slow: test_a_disk_that_fills_up_mid_workload_is_a_host_problem_with_a_report (here: QEMU's overlay write refused, the guest paused); unit: test_pipeline::test_a_disk_that_fills_up_mid_run_still_gets_its_report_and_no_more_guests; test_guest::test_a_copy_the_hosts_full_disk_refused_is_the_hosts_fault_not_a_lost_guest |
| host disk full | collect | unit: test_collect::test_after_guest_on_a_full_disk_links_the_console_and_loses_nothing; test_qemu_machine::test_a_guest_paused_by_a_full_host_disk_is_the_hosts_problem |
| host disk full | report | n/a as a report: a full disk cannot take report.json; unit: test_build::test_the_command_line_turns_a_full_disk_into_exit_3 (the message) |
| SIGINT (Ctrl-C) to rig | build | slow: test_rig_signalled_mid_build_leaves_no_make_lock_or_entry (here) |
| SIGINT, SIGTERM to rig | image | slow: test_image_arm64::test_interrupted_build_leaves_no_registration[Ctrl-C, SIGTERM] |
| SIGINT, SIGTERM to rig | boot, workloads | slow: test_boot::test_rig_interrupted_mid_run_stops_qemu; unit: test_vm::test_sigterm_cancels_and_becomes_interrupted; soak |
| SIGINT, SIGTERM to rig | collect | unit: test_pipeline::test_how_an_attempt_ended_decides_the_exit_code (an interrupt in collect) |
| SIGINT to rig | report | unit: test_report::test_a_report_interrupted_while_written_leaves_no_half_file |
| SIGTERM to rig | build | slow: test_rig_signalled_mid_build_leaves_no_make_lock_or_entry (here); unit: test_cli::test_exit_130_when_interrupted_or_terminated[SIGTERM] |
| SIGKILL to rig | build | slow: test_rig_signalled_mid_build_leaves_no_make_lock_or_entry (here: no make left, locks free, the next build runs); unit: test_proc_reaper |
| SIGKILL to rig | image | unit: test_binfmt::test_stale_entries_of_killed_rigs_are_removed; slow: test_image_arm64 (mmdebstrap killed) |
| SIGKILL to rig | boot, workloads | slow: test_boot::test_even_a_sigkilled_rig_leaves_no_qemu; soak ("rig killed", then the next run is timed) |
| SIGKILL to rig | report | n/a beyond atomic writes: nothing runs after SIGKILL; report files are whole or absent (unit above) |
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from rig import cache
from rig.build import BUILDS, BuildRequest, resolve
from tests.conftest import fill
from tests.slow.test_boot import processes, qemu_processes

REPO = Path(__file__).resolve().parent.parent.parent
PLANS = REPO / "tests" / "data" / "plans"

# The kernel whose build is interrupted: the session's (kernel_6_1), so make starts warm.
KERNEL = "debian:6.1"
# A fragment of its own gives the build a key no cache holds, so make really runs; a
# string that no code tests keeps the rebuild it causes small (utsrelease, the link).
FRAGMENT = 'CONFIG_LOCALVERSION="-rig-fault-suite"\n'
# How long a build may take to reach make: git checkout and clean of the worktree,
# allnoconfig, on 2 busy cores.
MAKE_START_S = 600.0
# What rig and its make may take to end after a signal (TERM, then KILL after 5 s).
END_S = 60.0


class Rig:
    """`rig run` started in the background, its stderr read as it comes."""

    def __init__(self, out: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.out = out
        self.proc = subprocess.Popen([sys.executable, "-m", "rig", "run", "--out", str(out), *args], cwd=REPO,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
        self.lines: list[str] = []
        self.out_lines: list[str] = []
        self.readers = [threading.Thread(target=self._read, args=(stream, into), daemon=True)
                        for stream, into in ((self.proc.stderr, self.lines), (self.proc.stdout, self.out_lines))]
        for reader in self.readers:
            reader.start()

    @staticmethod
    def _read(stream, into: list[str]) -> None:  # type: ignore[no-untyped-def]
        for line in stream:
            into.append(line)

    @property
    def stderr(self) -> str:
        return "".join(self.lines)

    def wait_for(self, predicate, timeout: float, what: str):  # type: ignore[no-untyped-def]
        give_up = time.monotonic() + timeout
        while time.monotonic() < give_up:
            if (found := predicate()):
                return found
            assert self.proc.poll() is None, f"rig ended before {what}: {self.stderr[-3000:]}"
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}: {self.stderr[-3000:]}")

    def end(self, timeout: float = 600) -> int:
        """rig's exit status, once it and its output have ended."""
        try:
            self.proc.wait(timeout=timeout)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()
            for reader in self.readers:
                reader.join(timeout=10)
        return self.proc.returncode


def _processes_in(*places: Path) -> list[str]:
    """Processes whose command line names one of `places` or whose working directory is
    inside one: make and what it runs (compilers, linkers, its shells)."""
    needles = [str(p).encode() for p in places]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes()
            cwd = os.readlink(entry / "cwd")
        except OSError:
            continue
        if any(n in argv for n in needles) or any(cwd == str(p) or cwd.startswith(f"{p}/") for p in places):
            program = argv.split(b"\0")[0].decode(errors="replace")
            found.append(f"{entry.name} {program}")
    return found


def _stat(pid: int | str) -> tuple[int, int] | None:
    """(parent pid, process group) of a process, None if it is gone."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rindex(")") + 2:].split()
    return int(fields[1]), int(fields[2])


def _make_group(rig_pid: int, build_dir: Path) -> int | None:
    """The process group of the make that compiles the kernel this rig builds in
    `build_dir` (its group's leader is rig's child, so another rig's make in the same
    directory is not taken for it; the make of the configuration step before it, which
    ends on its own, is not either: the compiling one has vmlinux among its goals)."""
    for pid, argv in processes():
        if os.path.basename(argv[0]) == b"make" and b"vmlinux" in argv \
                and any(str(build_dir).encode() in a for a in argv):
            stat = _stat(pid)
            leader = _stat(stat[1]) if stat else None
            if stat and leader and leader[0] == rig_pid:
                return stat[1]
    return None


def _group_members(group: int) -> list[str]:
    members = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (stat := _stat(entry.name)) is not None and stat[1] == group:
            try:
                members.append(f"{entry.name} {(entry / 'comm').read_text().strip()}")
            except OSError:
                continue
    return members


def _locks_held_by(pid: int, *paths: Path) -> list[str]:
    """Which of the lock files `paths` /proc/locks shows held by `pid` (a flock stays
    listed under the process that took it for as long as any inheritor keeps it open)."""
    inodes = {os.stat(p).st_ino: p for p in paths if p.exists()}
    held = []
    for line in Path("/proc/locks").read_text().splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK":
            owner, where = int(fields[4]), fields[5]
            inode = int(where.split(":")[-1])
            if owner == pid and inode in inodes:
                held.append(str(inodes[inode]))
    return held


def test_rig_signalled_mid_build_leaves_no_make_lock_or_entry(kernel_6_1, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """SIGINT, SIGTERM and SIGKILL to `rig run` a few seconds into make, one after the
    other on the same request: each ends at once (130, 130, killed), the interrupted ones
    with a report of the build phase; no make or compiler is left, no lock is held for
    the dead rig, no cache entry was half written, and the next rig's build of the same
    request gets to make without waiting (the fourth run, interrupted in turn)."""
    fragment = tmp_path / "fault-suite.config"
    fragment.write_text(FRAGMENT)
    request = BuildRequest(kernel=KERNEL, extra_configs=(str(fragment),))
    resolved = resolve(request, tmp_path / "resolve")
    build_dir = resolved.build_dir
    quick_key = resolved.quick_key(0)
    # The machine's build lock of these runs alone: another rig building another kernel
    # on this machine must not be taken for a stale lock (the tree's lock stays shared).
    env = {**os.environ, "RIG_BUILD_LOCK": str(tmp_path / "build.lock")}
    locks = (cache.cache_dir("locks") / f"tree-{resolved.source.tree_key}.lock", tmp_path / "build.lock")
    args = ("--kernel", KERNEL, "--config", str(fragment), "--plan", str(PLANS / "wait.toml"),
            "--pressure", "none", "--no-base")
    figures = []
    for index, signum in enumerate((signal.SIGINT, signal.SIGTERM, signal.SIGKILL, signal.SIGINT)):
        out = tmp_path / f"run-{index}-{signal.Signals(signum).name}"
        started = time.monotonic()
        rig = Rig(out, *args, env=env)
        group = rig.wait_for(lambda: _make_group(rig.proc.pid, build_dir), MAKE_START_S, "make to start")
        to_make = time.monotonic() - started
        assert "waiting for the build lock" not in rig.stderr  # no earlier rig's lock held it up
        time.sleep(3)  # make is at work: syncconfig, the tree walk, the first objects
        assert _make_group(rig.proc.pid, build_dir) == group, "make ended on its own before the signal"
        rig.proc.send_signal(signum)
        signalled = time.monotonic()
        code = rig.end(timeout=END_S)
        figures.append(f"{signal.Signals(signum).name}: make after {to_make:.0f} s, rig ended "
                       f"{time.monotonic() - signalled:.1f} s after the signal")
        if signum == signal.SIGKILL:
            assert code == -signal.SIGKILL
            assert not (out / "report.json").exists()  # nothing runs after SIGKILL
        else:
            assert code == 130, rig.stderr[-3000:]
            word = "terminated (SIGTERM)" if signum == signal.SIGTERM else "interrupted"
            assert word in rig.stderr and "Traceback" not in rig.stderr, rig.stderr[-3000:]
            data = json.loads((out / "report.json").read_text())
            assert data["exit_code"] == 130 and data["outcome"] == "interrupted" and data["attempts"] == []
            assert data["error"]["kind"] == "interrupt" and data["error"]["phase"] == "build"
            assert data["summary"].startswith("INTERRUPTED:") and "(during build)" in data["summary"]
            assert "ended early during build" in (out / "report.md").read_text()
            assert (out / "build" / "build.log").is_file()  # make's output so far is kept
        # make, its compilers and linkers (its whole process group) are gone: TERM, then
        # KILL after 5 s
        give_up = time.monotonic() + END_S
        while (left := _group_members(group)) and time.monotonic() < give_up:
            time.sleep(0.5)
        assert left == [], f"left running after {signal.Signals(signum).name}: {left}"
        assert _locks_held_by(rig.proc.pid, *locks) == []
        # nothing half-written in the cache: no staging directory, the key points nowhere
        assert not list(BUILDS.root().glob(f".*.staging-{rig.proc.pid}")), "a staging directory was left"
        assert BUILDS.resolve(quick_key) is None
    print("\n".join(figures))
    # no QEMU was ever started: the runs ended in their build
    assert all(qemu_processes(str(tmp_path / name)) == [] for name in os.listdir(tmp_path))


def _run_to_its_end(out: Path, *args: str, timeout: float = 1200) -> tuple[int, dict, str]:
    done = subprocess.run([sys.executable, "-m", "rig", "run", "--quiet", "--out", str(out), *args], cwd=REPO,
                          capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    report = out / "report.json"
    assert report.is_file(), done.stdout[-2000:] + done.stderr[-3000:]
    return done.returncode, json.loads(report.read_text()), done.stdout[-2000:] + done.stderr[-3000:]


def _nothing_left(out: Path) -> None:
    time.sleep(1)  # QEMU's end after rig's (its parent-death signal) takes a moment
    assert qemu_processes(str(out)) == []
    ssh = [p for p in _processes_in(out) if os.path.basename(p.split(" ", 1)[1]) in ("ssh", "make")]
    assert ssh == []


def test_ssh_dropped_mid_workload_is_a_host_problem_with_a_report(kernel_6_1, guest_image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The guest's sshd killed while a script runs: the connection drops with the kernel
    fine (it answers sysrq, no task blocked), so the run is the host's problem (exit 3)
    during workloads; the first script's result, the console and the report are kept."""
    out = tmp_path / "sshd-killed"
    code, data, output = _run_to_its_end(out, "--bzimage", str(kernel_6_1.kernel_image),
                                         "--plan", str(PLANS / "sshd-killed.toml"), "--pressure", "none")
    assert code == 3, output
    assert data["exit_code"] == 3 and data["outcome"] == "host problem"
    assert data["error"]["kind"] == "host" and data["error"]["phase"] == "workloads"
    assert "SSH connection to the guest was lost while its kernel still answered" in data["error"]["message"]
    assert data["summary"].startswith("HOST PROBLEM:") and "(during workloads, attempt 1)" in data["summary"]
    assert {t["name"]: t["result"] for t in data["tests"]}.get("script:first") == "pass"
    hang = data["attempts"][-1]["hang"]
    assert hang is not None and [a["answered"] for a in hang["asks"]] == [True, True] and hang["nmi"] is None
    assert "ended early during workloads" in (out / "report.md").read_text()
    assert (out / "attempt-1" / "collect" / "console.log").is_file()
    _nothing_left(out)


def test_guest_oom_mid_workload_is_in_the_report(kernel_6_1, guest_image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A script that allocates past the guest's memory: the guest's OOM killer ends it,
    the run goes on to the next script and to its end, and the report shows the OOM kill
    on the timeline next to the script that caused it."""
    out = tmp_path / "oom"
    code, data, output = _run_to_its_end(out, "--bzimage", str(kernel_6_1.kernel_image), "--memory", "512",
                                         "--plan", str(PLANS / "oom.toml"), "--pressure", "none")
    results = {t["name"]: t["result"] for t in data["tests"]}
    assert results.get("script:oom") == "fail" and results.get("script:after") == "pass", output
    assert data["error"] is None  # the attempt ran to its end
    events = [what for _, what in data["timeline"]["kernel_events"]]
    assert any(what.startswith("OOM kill") for what in events), events
    assert "OOM kill: 1 between" in (out / "report.md").read_text()
    # the OOM killer did its job: no kernel report of its own, the hog's death was expected
    assert code == data["exit_code"] == 0, output
    console = (out / "attempt-1" / "collect" / "console.log").read_text(errors="replace")
    assert "Killed process" in console and "(python3)" in console
    _nothing_left(out)


def test_a_disk_that_fills_up_mid_workload_is_a_host_problem_with_a_report(  # type: ignore[no-untyped-def]
        kernel_6_1, guest_image, small_disk) -> None:
    """The run directory on a small disk of its own, filled while a script waits: the
    guest's next disk write cannot grow QEMU's overlay, QEMU pauses the guest, and rig
    ends the run at once as the host's problem (exit 3) during workloads, not as a hung
    kernel; the report still fits (rig held room for it), the console and the first
    script's result are kept, and nothing is left running."""
    disk = small_disk(256 << 20)
    out = disk / "run"
    rig = Rig(out, "--bzimage", str(kernel_6_1.kernel_image), "--plan", str(PLANS / "disk-full.toml"),
              "--pressure", "none")
    console = out / "attempt-1" / "vm" / "console.log"

    def writer_started() -> bool:  # the first script's result is written by then
        return console.is_file() and "rig: start script:write" in console.read_text(errors="replace")

    rig.wait_for(writer_started, 600, "the writing script to start")
    fill(disk)
    filled = time.monotonic()
    code = rig.end(timeout=300)
    ended_s = time.monotonic() - filled
    assert "Traceback" not in rig.stderr, rig.stderr[-3000:]
    assert code == 3, rig.stderr[-3000:]
    said = rig.stderr + "".join(rig.out_lines)
    assert "HOST PROBLEM: the disk is full" in said, said[-3000:]
    data = json.loads((out / "report.json").read_text())
    assert data["exit_code"] == 3 and data["outcome"] == "host problem"
    assert data["error"]["kind"] == "host" and data["error"]["phase"] == "workloads"
    message = data["error"]["message"]
    assert message.startswith("the disk is full: write of the guest's disk") and "QEMU paused the guest" in message
    assert data["error"]["hint"].startswith("free some space")
    assert {t["name"]: t["result"] for t in data["tests"]}.get("script:first") == "pass"
    assert "the disk is full" in (out / "report.md").read_text()
    kept = data["artifacts"]["console"]
    assert kept and "Linux version" in (out / kept).read_text(errors="replace")
    print(said[-2000:])
    print(f"rig ended {ended_s:.0f} s after the disk filled")
    _nothing_left(out)
