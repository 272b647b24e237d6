"""`rig run` when the guest or QEMU dies mid-plan, for real: the report is written, the
exit code says whose fault it was, and the summary says what happened in which phase."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

from tests.slow.test_boot import qemu_processes

REPO = Path(__file__).resolve().parent.parent.parent
PLANS = REPO / "tests" / "data" / "plans"


def _start(out: Path, *args: str) -> tuple[subprocess.Popen[str], list[str]]:
    proc = subprocess.Popen([sys.executable, "-m", "rig", "run", "--out", str(out), *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    lines: list[str] = []

    def read() -> None:
        assert proc.stderr is not None
        for line in proc.stderr:
            lines.append(line)

    threading.Thread(target=read, daemon=True).start()
    return proc, lines


def test_qemu_killed_from_outside_after_boot_is_a_host_problem_with_a_report(any_arch, tmp_path: Path) -> None:
    out = tmp_path / "killed"
    proc, lines = _start(out, *any_arch.args,
                         "--plan", str(PLANS / "wait.toml"), "--pressure", "none")
    deadline = time.monotonic() + 900
    while not any("running plan" in line for line in lines):  # the guest is up, the workloads begin
        assert proc.poll() is None, "".join(lines)[-3000:]
        assert time.monotonic() < deadline, "".join(lines)[-3000:]
        time.sleep(0.5)
    time.sleep(5)  # well inside the script's two minutes
    pids = qemu_processes(str(out))
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGKILL)
    stdout, _ = proc.communicate(timeout=600)
    assert proc.returncode == 3, stdout[-2000:] + "".join(lines)[-3000:]
    data = json.loads((out / "report.json").read_text())
    assert data["exit_code"] == 3 and data["outcome"] == "host problem"
    assert data["error"]["kind"] == "host" and data["error"]["phase"] == "workloads"
    assert "killed by signal 9" in data["error"]["message"]
    assert data["summary"].startswith("HOST PROBLEM:") and "during workloads" in data["summary"]
    markdown = (out / "report.md").read_text()
    assert "ended early during workloads" in markdown and "killed by signal 9" in markdown
    assert (out / "attempt-1" / "collect" / "console.log").is_file()
    assert not qemu_processes(str(out))


def test_a_guest_that_dies_mid_plan_fails_the_run_and_says_so(any_arch, tmp_path: Path) -> None:
    out = tmp_path / "panic"
    done = subprocess.run([sys.executable, "-m", "rig", "run", "--quiet", "--out", str(out),
                           *any_arch.args, "--plan", str(PLANS / "panic.toml"),
                           "--pressure", "none"], capture_output=True, text=True, timeout=1200, cwd=REPO)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    data = json.loads((out / "report.json").read_text())
    # exit 1 either way: the panic is a finding of its own (FAIL) or, unparsed, a kernel problem
    assert data["outcome"] in ("fail", "kernel problem") and not data["summary"].startswith("PASS")
    assert "panicked" in data["summary"] and "during workloads" in data["summary"]
    assert data["error"]["kind"] == "kernel" and data["error"]["phase"] == "workloads"
    # the workload that ran before the crash is kept, and the panic is a finding from the console
    assert {t["name"]: t["result"] for t in data["tests"]}.get("script:first") == "pass"
    assert any("sysrq" in f["title"].lower() or f["kind"] in ("panic", "bug", "oops") for f in data["findings"])
    assert not qemu_processes(str(out))


def test_qemu_frozen_from_outside_is_a_host_problem_not_a_hang(kernel_6_1, guest_image, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """SIGSTOP to QEMU mid-plan: the guest's silence is the host's doing (exit 3), the run
    ends within the script's timeout, and the stopped QEMU is not left behind."""
    out = tmp_path / "frozen"
    proc, lines = _start(out, "--kernel", "debian:6.1", "--plan", str(PLANS / "short-wait.toml"),
                         "--pressure", "none", "--no-base")
    deadline = time.monotonic() + 900
    while not any("running plan" in line for line in lines):
        assert proc.poll() is None, "".join(lines)[-3000:]
        assert time.monotonic() < deadline, "".join(lines)[-3000:]
        time.sleep(0.5)
    time.sleep(3)
    pids = qemu_processes(str(out))
    assert len(pids) == 1, pids
    os.kill(pids[0], signal.SIGSTOP)
    try:
        stdout, _ = proc.communicate(timeout=600)
    finally:
        for pid in qemu_processes(str(out)):
            os.kill(pid, signal.SIGKILL)
    assert proc.returncode == 3, stdout[-2000:] + "".join(lines)[-3000:]
    data = json.loads((out / "report.json").read_text())
    assert data["error"]["kind"] == "host" and "stopped by a signal from outside rig" in data["error"]["message"]
    assert (out / "attempt-1" / "collect" / "console.log").is_file()
    assert not qemu_processes(str(out))
