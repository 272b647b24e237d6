"""Hang forensics: the sysrq and NMI backtrace parsers, the record's JSON, and the report's
"When the guest hung" section (the key and NMI sequence over QMP is in test_qemu_machine,
the guard that starts it in test_vm, real guests in tests/slow/test_hang.py)."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from rig.forensics import HangRecord, SysrqAsk
from rig.report import markdown
from rig.report.model import RunReport
from rig.splat.sysrq import blocked_tasks, cpu_backtraces
from tests.unit.rundata import report_data

# A 6.1 console as sysrq w and l print it (caller ids on, as rig's kernels have them).
SYSRQ_CONSOLE = """\
[   97.512034][    C0] sysrq: Show Blocked State
[   97.513456][    C0] task:vgem_basic      state:D stack:0     pid:287   ppid:286    flags:0x00004000
[   97.514001][    C0] Call Trace:
[   97.514101][    C0]  <TASK>
[   97.514201][    C0]  __schedule+0x3b7/0xbd0
[   97.514301][    C0]  ? lock_release+0x1c2/0x2c0
[   97.514401][    C0]  schedule+0x5d/0xd0
[   97.514501][    C0]  schedule_timeout+0x1ee/0x260
[   97.514601][    C0]  __wait_for_common+0x96/0x1b0
[   97.514701][    C0]  vgem_fence_signal_ioctl+0x9d/0x140
[   97.514801][    C0]  drm_ioctl_kernel+0xb9/0x160
[   97.514901][    C0]  drm_ioctl+0x2a8/0x4f0
[   97.515001][    C0]  __x64_sys_ioctl+0x8d/0xd0
[   97.515101][    C0]  do_syscall_64+0x3a/0x90
[   97.515201][    C0]  entry_SYSCALL_64_after_hwframe+0x64/0xce
[   97.515301][    C0] RIP: 0033:0x7f3d5a8b1c5b
[   97.515401][    C0] RSP: 002b:00007ffd1f0d4b88 EFLAGS: 00000246 ORIG_RAX: 0000000000000010
[   97.515501][    C0]  </TASK>
[   97.515601][    C0] task:kworker/u4:2    state:D stack:0     pid:41    ppid:2      flags:0x00004000
[   97.515701][    C0] Workqueue: events_unbound async_run_entry_fn
[   97.515801][    C0] Call Trace:
[   97.515901][    C0]  <TASK>
[   97.516001][    C0]  __schedule+0x3b7/0xbd0
[   97.516101][    C0]  schedule+0x5d/0xd0
[   97.516201][    C0]  </TASK>
[   97.516301][    C0] Showing all locks held in the system:
[   97.516401][    C0] 1 lock held by khungtaskd/23:
[   99.000000][    C0] sysrq: Show backtrace of all active CPUs
[   99.000100][    C0] NMI backtrace for cpu 0
[   99.000200][    C0] CPU: 0 PID: 0 Comm: swapper/0 Not tainted 6.1.0-rig #1
[   99.000300][    C0] Hardware name: QEMU Standard PC (Q35 + ICH9, 2009), BIOS 1.16.2-debian-1.16.2-1 04/01/2014
[   99.000400][    C0] Call Trace:
[   99.000500][    C0]  <IRQ>
[   99.000600][    C0]  dump_stack_lvl+0x5b/0x77
[   99.000700][    C0]  nmi_cpu_backtrace.cold+0x32/0x69
[   99.000800][    C0]  </IRQ>
[   99.000900][    C0]  <TASK>
[   99.001000][    C0]  default_idle+0xb/0x10
[   99.001100][    C0]  </TASK>
[   99.001200][    C0] Sending NMI from CPU 0 to CPUs 1:
[   99.001300][    C1] NMI backtrace for cpu 1 skipped: idling at default_idle+0xb/0x10
[   99.500000][  T288] rig: end script:hung-ioctl
"""


def test_blocked_tasks_come_with_their_stacks() -> None:
    tasks = blocked_tasks(SYSRQ_CONSOLE)
    assert [(t.comm, t.pid, t.state) for t in tasks] == [("vgem_basic", 287, "D"), ("kworker/u4:2", 41, "D")]
    first = tasks[0]
    # "? lock_release" is a stale word on the stack, not a frame
    assert first.frames[:5] == ("__schedule", "schedule", "schedule_timeout", "__wait_for_common",
                                "vgem_fence_signal_ioctl")
    assert first.text.splitlines()[0].startswith("task:vgem_basic      state:D")
    assert "RSP: 002b:00007ffd1f0d4b88" in first.text and "[    C0]" not in first.text
    assert "Showing all locks" not in tasks[1].text  # the lock dump is not the task's stack


def test_cpu_backtraces_busy_and_idle() -> None:
    cpus = cpu_backtraces(SYSRQ_CONSOLE)
    assert [(c.cpu, c.idle) for c in cpus] == [(0, False), (1, True)]
    assert cpus[0].frames[-1] == "default_idle" and cpus[1].frames == ("default_idle",)
    assert cpus[0].text.startswith("NMI backtrace for cpu 0\nCPU: 0 PID: 0 Comm: swapper/0")


def test_nothing_is_made_up_from_a_console_without_answers() -> None:
    quiet = "[    1.0] Linux version 6.1.0\n[    2.0] rig: start script:x\n"
    assert blocked_tasks(quiet) == () and cpu_backtraces(quiet) == ()


def _record(tmp_path: Path) -> HangRecord:
    console = tmp_path / "console.log"
    console.write_text("[    1.0] before the hang\n" + SYSRQ_CONSOLE)
    record = HangRecord("guest command /usr/libexec/igt-gpu-tools/vgem_basic did not finish within 90 s",
                        1_800_000_000.0, (SysrqAsk("w", "keyboard", True), SysrqAsk("l", "keyboard", True)),
                        console_start=len("[    1.0] before the hang\n"), seconds=4.2,
                        dump="attempt-1/vm/guest-memory.elf", dump_bytes=2 << 30)
    return record.with_console(console)


def test_the_record_reads_the_answers_from_where_rig_began_asking(tmp_path: Path) -> None:
    record = _record(tmp_path)
    assert [t.comm for t in record.blocked] == ["vgem_basic", "kworker/u4:2"] and len(record.cpus) == 2
    again = HangRecord.from_json(json.loads(json.dumps(record.to_json())))
    assert again == record
    assert record.to_json()["asks"][0] == {"key": "w", "asks": "blocked tasks", "route": "keyboard",
                                           "answered": True, "error": None}


def _hung_report(tmp_path: Path, monkeypatch) -> RunReport:
    report, _ = report_data(tmp_path, monkeypatch)
    attempts = (dataclasses.replace(report.attempts[0], hang=_record(tmp_path)), *report.attempts[1:])
    return dataclasses.replace(report, attempts=attempts)


def test_report_md_shows_each_blocked_task_with_its_stack(tmp_path: Path, monkeypatch) -> None:
    text = markdown.render(_hung_report(tmp_path, monkeypatch))
    section = text[text.index("## When the guest hung"):]
    assert "did not finish within 90 s; rig asked the guest's kernel before stopping it (4 s)." in section
    assert "- sysrq w (blocked tasks) through the keyboard: answered" in section
    assert "- memory dump: attempt-1/vm/guest-memory.elf (2048.0 MiB); open it with" in section
    assert "- vgem_basic (pid 287), state D, in vgem_fence_signal_ioctl" in section
    assert "\n     vgem_fence_signal_ioctl+0x9d/0x140\n" in section  # the stack, as a code block
    assert "- CPU 1: idle (in default_idle)" in section
    assert section.index("When the guest hung") < section.index("Reproduce with:")


def test_report_json_keeps_the_hang_and_loads_it_back(tmp_path: Path, monkeypatch) -> None:
    report = _hung_report(tmp_path, monkeypatch)
    data = json.loads(json.dumps(report.to_json(), default=str))
    hang = data["attempts"][0]["hang"]
    assert hang["blocked_tasks"][0]["comm"] == "vgem_basic" and hang["dump_bytes"] == 2 << 30
    again = RunReport.from_json(data)
    assert again.attempts[0].hang == report.attempts[0].hang
    assert markdown.render(again) == markdown.render(report)


def test_a_run_without_a_hang_has_no_hang_section(tmp_path: Path, monkeypatch) -> None:
    report, _ = report_data(tmp_path, monkeypatch)
    assert "When the guest hung" not in markdown.render(report)
    assert report.to_json()["attempts"][0]["hang"] is None


# ---------------------------------------------------------------- QEMU's view of the vCPUs

# `info registers -a` as QEMU 10.0 prints it (target/i386/cpu-dump.c, target/arm/cpu.c).
X86_REGISTERS = """
CPU#0
RAX=0000000000000001 RBX=ffff888004a31c40 RCX=0000000000000000 RDX=0000000000000001
RSI=0000000000000000 RDI=ffff888004a31c58 RBP=ffffc900004bfd10 RSP=ffffc900004bfce8
R8 =0000000000000000 R9 =0000000000000000 R10=0000000000000000 R11=0000000000000000
RIP=ffffffff81b2d1c4 RFL=00000046 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0

CPU#1
RAX=0000000000000001 RBX=ffff888004a32c40 RCX=0000000000000000 RDX=0000000000000001
RSI=0000000000000000 RDI=ffff888004a32c58 RBP=ffffc900004cfd10 RSP=ffffc900004cfce8
RIP=ffffffff81b2d1c0 RFL=00000046 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0
"""
ARM64_REGISTERS = """
CPU#0
 PC=ffff800008d3a0c4 X00=0000000000000000 X01=0000000000000001
X28=0000000000000000 X29=ffff80000a3f3d60 X30=ffff800008d3a0b8  SP=ffff80000a3f3d60
PSTATE=600003c5 -ZC- EL1h     FPCR=00000000 FPSR=00000000
"""
SYSTEM_MAP = """\
ffffffff81000000 T _stext
ffffffff81b2d100 T native_queued_spin_lock_slowpath
ffffffff81b2d400 t do_raw_spin_lock
ffffffff81c00000 T _etext
ffffffff82000000 D jiffies
"""


def test_registers_of_every_vcpu_on_both_architectures() -> None:
    from rig.qemu.vcpus import parse_registers

    assert [(r.cpu, hex(r.pc), hex(r.sp)) for r in parse_registers(X86_REGISTERS)] == [
        (0, "0xffffffff81b2d1c4", "0xffffc900004bfce8"), (1, "0xffffffff81b2d1c0", "0xffffc900004cfce8")]
    assert [(r.cpu, hex(r.pc), hex(r.sp)) for r in parse_registers(ARM64_REGISTERS)] == [
        (0, "0xffff800008d3a0c4", "0xffff80000a3f3d60")]


def test_stack_words_are_named_only_inside_kernel_text(tmp_path: Path) -> None:
    from rig.qemu.vcpus import Symbols, parse_words, system_map_near

    (tmp_path / "arch" / "x86" / "boot").mkdir(parents=True)
    (tmp_path / "System.map").write_text(SYSTEM_MAP)
    assert system_map_near(tmp_path / "arch" / "x86" / "boot" / "bzImage") == tmp_path / "System.map"
    symbols = Symbols.from_system_map(tmp_path / "System.map")
    dump = ("ffffc900004bfce8: 0xffffffff81b2d41a 0x0000000000000001\n"
            "ffffc900004bfcf8: 0xffffffff82000010 0xffffffff81b2d1c4\n")
    assert [symbols.name(w) for w in parse_words(dump)] == [
        "do_raw_spin_lock+0x1a", None, None, "native_queued_spin_lock_slowpath+0xc4"]  # jiffies is data
    assert symbols.name(0xffffffff81c00010) is None  # past _etext
    assert Symbols.from_system_map(None).name(0xffffffff81b2d1c4) is None


def test_report_md_shows_every_vcpu_when_the_kernel_answered_nothing(tmp_path: Path, monkeypatch) -> None:
    from rig.qemu.vcpus import VcpuStack

    report, _ = report_data(tmp_path, monkeypatch)
    hang = HangRecord("the guest stopped answering SSH", 0.0, (SysrqAsk("w", "keyboard", False),), nmi="sent",
                      skipped=("l",), vcpus=(VcpuStack(0, "native_queued_spin_lock_slowpath+0xc4", 0xffffc900004bfce8,
                                                       ("do_raw_spin_lock+0x1a", "vgem_fence_attach_ioctl+0x9e")),))
    attempts = (dataclasses.replace(report.attempts[0], hang=hang),)
    text = markdown.render(dataclasses.replace(report, attempts=attempts))
    assert "- sysrq w (blocked tasks) through the keyboard: no answer" in text
    assert "- not sent: sysrq l (the kernel took no keyboard interrupt)" in text
    assert "- NMI (QMP inject-nmi): sent, no answer on the console" in text
    assert "- vCPU 0 at native_queued_spin_lock_slowpath+0xc4\n\n    do_raw_spin_lock+0x1a\n" in text
    again = HangRecord.from_json(json.loads(json.dumps(hang.to_json())))
    assert again == hang and again.vcpus[0].frames == ("native_queued_spin_lock_slowpath", "do_raw_spin_lock",
                                                       "vgem_fence_attach_ioctl")


def test_the_terminal_says_the_guest_hung_and_where_to_read_more(tmp_path: Path, monkeypatch) -> None:
    from rich.console import Console

    from rig.report import terminal

    console = Console(record=True, width=300, color_system=None)
    terminal.render(_hung_report(tmp_path, monkeypatch), console)
    text = console.export_text()
    assert ("the guest hung (attempt 1: guest command /usr/libexec/igt-gpu-tools/vgem_basic did not finish within "
            "90 s); its kernel was asked: 2 blocked task(s), 2 CPU backtrace(s), memory dump "
            "attempt-1/vm/guest-memory.elf (report.md: When the guest hung)") in text


# ---------------------------------------------------------------- real consoles

HANG_DATA = Path(__file__).resolve().parent.parent / "data" / "hang"


def test_a_real_hung_ioctl_console_gives_the_blocked_task_and_both_cpus() -> None:
    """debian:6.1 with the hung-ioctl series and its plan: khungtaskd reported the task six
    times, rig pressed sysrq w and l once; only sysrq's answer lists the blocked tasks."""
    console = (HANG_DATA / "console-hung-ioctl-6.1.log").read_bytes()
    tasks = blocked_tasks(console)
    assert [(t.comm, t.pid, t.state, t.waits_in) for t in tasks] == [("vgem_basic", 57, "D",
                                                                      "vgem_fence_signal_ioctl")]
    assert tasks[0].frames[:5] == ("__schedule", "schedule", "schedule_timeout", "__wait_for_common",
                                   "vgem_fence_signal_ioctl")
    cpus = cpu_backtraces(console)
    assert [(c.cpu, c.idle, c.running) for c in cpus] == [(1, False, "amd_e400_idle"), (0, False, "amd_e400_idle")]


def test_a_real_hung_ioctl_console_names_and_places_the_hang() -> None:
    from rig.splat.attribution import Placement, attribute, log_test_spans
    from rig.splat.model import Source
    from rig.splat.parser import parse_log

    console = (HANG_DATA / "console-hung-ioctl-6.1.log").read_bytes()
    hung = [f for f in parse_log(console) if f.kind == "hung-task"]
    assert {f.title for f in hung} == {"INFO: task hung in vgem_fence_signal_ioctl"} and hung[0].pids == (57,)
    where = attribute(hung[0], log_test_spans(console), Source.CONSOLE)
    assert (str(where.test), where.placement) == ("script:hung-ioctl", Placement.PID)


def test_a_real_hard_hang_console_gives_the_stuck_cpu_from_the_nmi_panic() -> None:
    """debian:6.1, one vCPU stuck with interrupts off on the fence lock (hard-hang.toml);
    rig's NMI made it panic (unknown_nmi_panic) with its backtrace (panic_print=64)."""
    from rig.splat.parser import parse_log

    console = (HANG_DATA / "console-hard-hang-6.1.log").read_bytes()
    titles = [f.title for f in parse_log(console)]
    assert titles == ["possible deadlock in dma_fence_signal", "kernel panic: NMI: Not continuing"]
    (cpu,) = cpu_backtraces(console)
    assert (cpu.cpu, cpu.idle, cpu.running) == (0, False, "queued_spin_lock_slowpath")
    assert cpu.frames[-8:-5] == ("_raw_spin_lock_irqsave", "dma_fence_signal", "vgem_fence_attach_ioctl")
    assert blocked_tasks(console) == ()  # no sysrq answer: the keyboard interrupt was never taken


def test_real_qemu_monitor_output_of_the_stuck_vcpu() -> None:
    """vm/vcpus.txt of the same run: `info registers -a` and the stack through the vCPU's
    page tables, named with (the needed lines of) that kernel's System.map."""
    from rig.qemu.vcpus import Symbols, VcpuStack, parse_registers, parse_words

    shown = (HANG_DATA / "vcpus-hard-hang-6.1.txt").read_text()
    registers, stack = shown.split("(qemu) x ", 1)
    (regs,) = parse_registers(registers)
    symbols = Symbols.from_system_map(HANG_DATA / "System.map-hard-hang-6.1")
    names = tuple(n for n in map(symbols.name, parse_words(stack)) if n)
    vcpu = VcpuStack(regs.cpu, symbols.name(regs.pc) or "", regs.sp, names)
    assert vcpu.pc.startswith("queued_spin_lock_slowpath+0x") and regs.sp == 0xffff8880068b3cc8
    assert vcpu.frames[:5] == ("queued_spin_lock_slowpath", "do_raw_spin_lock", "_raw_spin_lock_irqsave",
                               "dma_fence_signal", "vgem_fence_attach_ioctl")
