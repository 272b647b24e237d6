"""Hang forensics for real, on debian:6.1 with the hung-ioctl series (one incremental
build, shared by both runs):

- a task stuck in D state in a vgem ioctl: the hung-task detector's report is a finding
  of the script that ran it, the script times out, and rig's sysrq w through the guest's
  keyboard puts the blocked task's stack in report.md;
- every CPU stuck with interrupts off (one vCPU): no sysrq key is answered, QEMU shows the
  vCPU spinning, and rig's NMI turns the hang into a panic whose backtrace shows it too;
  the memory dump is written before.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.slow.test_run import rig_run

REPO = Path(__file__).resolve().parent.parent.parent
SERIES = REPO / "tests" / "data" / "series" / "hung-ioctl"
PLANS = REPO / "tests" / "data" / "plans"
# The deadlocked runs end on their own: the script's timeout, then forensics and collection.
RUN_TIMEOUT_S = 1800


def test_a_task_stuck_in_an_ioctl_is_found_and_its_stack_shown(guest_image, tmp_path: Path) -> None:
    out = tmp_path / "hung-ioctl"
    expected = tomllib.loads((SERIES / "expected.toml").read_text())
    done, data = rig_run("--series", str(SERIES), "--plan", str(PLANS / "hung-ioctl.toml"), "--pressure", "none",
                         "--no-base", out=out, timeout=RUN_TIMEOUT_S)
    assert done.returncode == expected["exit_code"], done.stdout[-3000:] + done.stderr[-3000:]
    want = expected["finding"][0]
    found = [f for f in data["findings"] if f["title"] == want["title"]]
    assert found, [f["title"] for f in data["findings"]]
    assert (found[0]["kind"], found[0]["status"], found[0]["test"]) == (want["kind"], "new", want["test"])
    assert found[0]["attribution"] == "pid"  # the blocked task named in the report ran the subtest
    assert {t["name"]: t["result"] for t in data["tests"]}["script:hung-ioctl"] == "timeout"
    hang = data["attempts"][-1]["hang"]
    assert hang is not None and hang["nmi"] is None  # the keyboard answered: no NMI needed
    assert [(a["key"], a["route"], a["answered"]) for a in hang["asks"]] == [("w", "keyboard", True),
                                                                              ("l", "keyboard", True)]
    stuck = [t for t in hang["blocked_tasks"] if t["comm"] == "vgem_basic"]
    assert stuck and stuck[0]["state"] == "D" and "vgem_fence_signal_ioctl" in stuck[0]["frames"]
    report = (out / "report.md").read_text()
    section = report[report.index("## When the guest hung"):]
    assert f"- vgem_basic (pid {stuck[0]['pid']}), state D, in vgem_fence_signal_ioctl" in section
    assert "vgem_fence_signal_ioctl+0x" in section  # the stack itself, from sysrq w


def test_every_cpu_stuck_gets_an_nmi_and_the_cpus_backtraces(guest_image, tmp_path: Path) -> None:
    out = tmp_path / "hard-hang"
    # one vCPU, so the one stuck CPU is every CPU; a small guest: --dump-on-hang writes all
    # of its memory
    done, data = rig_run("--series", str(SERIES), "--plan", str(PLANS / "hard-hang.toml"), "--pressure", "none",
                         "--no-base", "--cpus", "1", "--memory", "1024", "--dump-on-hang", out=out,
                         timeout=RUN_TIMEOUT_S)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    hang = data["attempts"][-1]["hang"]
    assert hang is not None
    assert [(a["key"], a["answered"]) for a in hang["asks"]] == [("w", False)]  # no interrupt is taken
    assert hang["skipped"] == ["l"]
    # QEMU's view of every vCPU, before the NMI: spinning on the fence lock in the ioctl
    assert [v["cpu"] for v in hang["vcpus"]] == [0]
    assert "vgem_fence_attach_ioctl" in hang["vcpus"][0]["frames"], hang["vcpus"]
    # the NMI became a panic whose all-CPU backtrace shows the stuck CPU
    assert hang["nmi"] == "sent" and hang["nmi_answered"]
    titles = [f["title"] for f in data["findings"]]
    assert "kernel panic: NMI: Not continuing" in titles, titles
    assert "possible deadlock in dma_fence_signal" in titles  # lockdep saw the lock taken twice first
    assert [c["cpu"] for c in hang["cpu_backtraces"]] == [0]
    assert "vgem_fence_attach_ioctl" in hang["cpu_backtraces"][0]["frames"]
    report = (out / "report.md").read_text()
    assert "- CPU 0, in queued_spin_lock_slowpath" in report and "- vCPU 0 at queued_spin_lock_slowpath+0x" in report
    # the memory dump, written before the NMI: an ELF core of the whole guest
    dump = out / hang["dump"]
    assert dump.read_bytes()[:4] == b"\x7fELF" and hang["dump_bytes"] == dump.stat().st_size > 1000 << 20
    dump.unlink()
