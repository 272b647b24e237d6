"""rig splat on the forms a report takes besides a plain console: journal and syslog
prefixes, Rust panics and mangled names, syscall entry points of every architecture,
lockdep's internal checks, and reports cut short by a dying console."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rig.splat import Finding, parse_log
from rig.splat.symbols import canonical_function, demangle

DATA = Path(__file__).resolve().parent.parent / "data" / "splat"
LOCKDEP = DATA / "lockdep-dma-resv-fence-6.1.log"
_PRINTK = re.compile(r"^\[ *(\d+\.\d+)\]\[ *([TC]\d+)\] ?(.*)$")


def _essence(findings: list[Finding]) -> list[tuple[object, ...]]:
    return [(f.title, f.kind, f.corrupted, f.lock_chain, f.frames) for f in findings]


def _relog(text: str, form: str) -> str:
    """The console log `text` as a logger would have stored its kernel lines."""
    out = []
    for i, line in enumerate(text.splitlines()):
        m = _PRINTK.match(line)
        ts, caller, msg = m.groups() if m else ("", "", line)
        clock = f"05:{i // 60 % 60:02d}:{i % 60:02d}"
        if form == "journalctl":  # journalctl -k: no printk time, no caller id
            out.append(f"Nov 29 {clock} guest kernel: {msg}")
        elif form == "short-iso":
            out.append(f"2026-11-29T{clock}+0000 guest kernel: {msg}")
        elif form == "short-monotonic":
            out.append(f"[{float(ts or 0):12.6f}] guest kernel: {msg}")
        elif form == "rsyslog":  # the printk time and caller id stay in the message
            out.append(f"Nov 29 {clock}.123456 guest kernel: " + (f"[{ts}][{caller}] {msg}" if m else msg))
        elif form == "dmesg-T":
            out.append(f"[Sun Nov 29 {clock} 2026] {msg}")
    return "\n".join(out) + "\n"


@pytest.mark.parametrize("form", ["journalctl", "short-iso", "short-monotonic", "rsyslog", "dmesg-T"])
def test_journal_and_syslog_forms_give_the_console_findings(form: str) -> None:
    console = LOCKDEP.read_text()
    bare = "\n".join(_PRINTK.sub(r"\3", line) for line in console.splitlines()) + "\n"
    expected = _essence(parse_log(console if form == "rsyslog" else bare))
    assert expected and expected[0][0] == "possible deadlock in vgem_fence_signal_ioctl"
    assert _essence(parse_log(_relog(console, form))) == expected


def test_syslog_times_are_kept_where_the_line_has_a_printk_time() -> None:
    console = LOCKDEP.read_text()
    plain = parse_log(console)[0]
    assert parse_log(_relog(console, "short-monotonic"))[0].timestamp == pytest.approx(plain.timestamp)
    rsyslog = parse_log(_relog(console, "rsyslog"))[0]
    assert (rsyslog.timestamp, rsyslog.caller) == (plain.timestamp, plain.caller)
    assert parse_log(_relog(console, "journalctl"))[0].timestamp is None


def test_a_reboot_in_the_journal_is_a_report() -> None:
    log = ("Nov 29 05:00:00 guest kernel: Linux version 6.12.57 (gcc) #1 SMP\n"
           "Nov 29 05:00:01 guest kernel: [drm] Initialized vgem 1.0.0 for vgem on minor 0\n"
           "Nov 29 05:03:00 guest kernel: Linux version 6.12.57 (gcc) #1 SMP\n")
    assert [f.title for f in parse_log(log)] == ["unexpected kernel reboot"]


@pytest.mark.parametrize(("name", "title"), [
    ("__x64_sys_ioctl", "sys_ioctl"), ("__arm64_sys_ioctl", "sys_ioctl"), ("__ia32_sys_ioctl", "sys_ioctl"),
    ("__se_sys_ioctl", "ioctl"), ("__do_sys_ioctl", "ioctl"), ("ksys_ioctl", "ioctl"), ("sys_ioctl", "ioctl"),
    ("SyS_ioctl", "ioctl"), ("SYSC_ioctl", "ioctl"), ("__sys_sendmsg", "sendmsg"), ("___sys_sendmsg", "sendmsg"),
    ("____sys_sendmsg", "sendmsg"), ("compat_SyS_ioctl", "ioctl"), ("compat_sys_ioctl", "compat_sys_ioctl"),
    ("sysfs_kf_write", "sysfs_kf_write"), ("vgem_fence_signal_ioctl", "vgem_fence_signal_ioctl"),
])
def test_syscall_entry_points_are_named_as_syzbot_does(name: str, title: str) -> None:
    assert canonical_function(name) == title


@pytest.mark.parametrize(("mangled", "plain"), [
    # inherent impl, with a back reference to the crate's module path
    ("_RNvMs3_NtCshgDM7dBCdno_11rust_binder7processNtB5_7Process10update_ref",
     "<rust_binder::process::Process>::update_ref"),
    # trait impl
    ("_RNvXs1_CscPPBqWtAqum_11ashmem_rustNtB5_6AshmemNtNtCs43vyB533jt3_6kernel10miscdevice10MiscDevice4mmap",
     "<ashmem_rust::Ashmem as kernel::miscdevice::MiscDevice>::mmap"),
    ("_RNvCscSpY9Juk0HT_7___rustc17rust_begin_unwind", "__rustc::rust_begin_unwind"),
    # generic arguments are left out of a title
    ("_RINvNtCs1_4core3ptr13drop_in_placeNtCs2_6kernel5ErrorEB4_", "core::ptr::drop_in_place"),
    # legacy Rust: the hash part goes, escapes are undone
    ("_ZN4core3fmt5write17h0123456789abcdefE", "core::fmt::write"),
    ("_ZN6kernel5print11call_printk17h00112233aabbccddE", "kernel::print::call_printk"),
    # C and anything unknown stays as it is
    ("vgem_fence_signal_ioctl", "vgem_fence_signal_ioctl"), ("_Rbroken", "_Rbroken"),
])
def test_rust_and_cxx_names_are_demangled(mangled: str, plain: str) -> None:
    assert demangle(mangled) == plain


def _console(lines: list[str], caller: str = "T298", start: float = 23.7) -> str:
    return "".join(f"[{start + i / 1000:12.6f}][{caller:>6}] {line}\n" for i, line in enumerate(lines))


_RUST_TRACE = [
    "Call Trace:",
    " <TASK>",
    " _RNvCscSpY9Juk0HT_7___rustc17rust_begin_unwind+0x15b/0x160",
    " _RNvNtCs9jEwPDbx20M_4core9panicking9panic_fmt+0x84/0x90",
    " _RNvNtNtCs9jEwPDbx20M_4core9panicking11panic_const24panic_const_div_by_zero+0xb2/0xc0",
    " _RNvMs3_NtCsabc_9rnull_mod6deviceNtB5_6Device4open+0x17e5/0x1860",
    " misc_open+0x2bc/0x310",
    " chrdev_open+0x23f/0x6a0",
    " do_dentry_open+0x6c7/0x1390",
    " </TASK>",
]


@pytest.mark.parametrize("panic", [
    ["rust_kernel: panicked at drivers/block/rnull/device.rs:42:13:", "attempt to divide by zero"],
    ["rust_kernel: panicked at 'attempt to divide by zero', drivers/block/rnull/device.rs:42:13"],
])
def test_rust_panic_is_named_by_its_message_and_function(panic: list[str]) -> None:
    log = _console(panic + ["------------[ cut here ]------------", "kernel BUG at rust/helpers/bug.c:7!",
                            "Oops: invalid opcode: 0000 [#1] PREEMPT SMP KASAN PTI",
                            "CPU: 0 UID: 0 PID: 298 Comm: modprobe Not tainted 6.12.57 #1",
                            "RIP: 0010:rust_helper_BUG+0x8/0x10", *_RUST_TRACE])
    findings = parse_log(log)
    assert [f.title for f in findings] == ["attempt to divide by zero in <rnull_mod::device::Device>::open"]
    assert not findings[0].corrupted


_LOCKDEP_WARN_TRACE = ["Modules linked in:", "CPU: 1 UID: 0 PID: 412 Comm: vgem_basic Not tainted 6.12.57 #1",
                       "RIP: 0010:__lock_acquire+0x10e9/0x3950", "Call Trace:", " <TASK>",
                       " lock_acquire+0xd4/0x2c0", " _raw_spin_lock+0x2f/0x40", " vgem_fence_signal_ioctl+0x9a/0x1b0",
                       " drm_ioctl_kernel+0xd9/0x130", " drm_ioctl+0x2b4/0x540", " __x64_sys_ioctl+0x92/0xd0",
                       " do_syscall_64+0x58/0x80", " </TASK>"]


@pytest.mark.parametrize("warning", [
    "WARNING: CPU: 1 PID: 412 at kernel/locking/lockdep.c:232 __lock_acquire+0x10e9/0x3950",  # up to 6.x
    "WARNING: kernel/locking/lockdep.c:232 at __lock_acquire+0x10e9/0x3950, CPU#1: vgem_basic/412",  # 7.x
])
def test_lockdep_internal_checks_are_a_locking_bug(warning: str) -> None:
    log = _console(["------------[ cut here ]------------", "DEBUG_LOCKS_WARN_ON(1)", warning, *_LOCKDEP_WARN_TRACE])
    assert [f.title for f in parse_log(log)] == ["WARNING: locking bug in vgem_fence_signal_ioctl"]


def test_a_warning_elsewhere_in_the_locking_code_is_an_ordinary_warning() -> None:
    log = _console(["------------[ cut here ]------------", "DEBUG_LOCKS_WARN_ON(lock->magic != lock)",
                    "WARNING: CPU: 1 PID: 412 at kernel/locking/mutex.c:582 __mutex_lock+0x6d5/0xa10",
                    *[ln.replace("__lock_acquire+0x10e9/0x3950", "__mutex_lock+0x6d5/0xa10")
                      for ln in _LOCKDEP_WARN_TRACE]])
    assert [f.title for f in parse_log(log)] == ["WARNING in vgem_fence_signal_ioctl"]


def test_an_invalid_wait_context_is_a_locking_bug() -> None:
    log = _console(["=============================", "[ BUG: Invalid wait context ]", "6.12.57 #1 Not tainted",
                    "-----------------------------", "vgem_basic/412 is trying to lock:",
                    "ffff888103e1c0a8 (&obj->lock){+.+.}-{3:3}, at: vgem_fence_signal_ioctl+0x9a/0x1b0",
                    "other info that might help us debug this:", "context-{4:4}", "1 lock held by vgem_basic/412:",
                    " #0: ffff888103e1c0c0 (&fence->lock){....}-{2:2}, at: vgem_fence_signal_ioctl+0x5a/0x1b0",
                    "stack backtrace:", "CPU: 1 UID: 0 PID: 412 Comm: vgem_basic Not tainted 6.12.57 #1",
                    "Call Trace:", " <TASK>", " dump_stack_lvl+0x5b/0x80", " __lock_acquire+0x1a2e/0x3950",
                    " lock_acquire+0xd4/0x2c0", " __mutex_lock+0x9e/0xa10", " vgem_fence_signal_ioctl+0x9a/0x1b0",
                    " drm_ioctl_kernel+0xd9/0x130", " </TASK>"])
    assert [f.title for f in parse_log(log)] == ["WARNING: locking bug in vgem_fence_signal_ioctl"]


_WARNING = ["------------[ cut here ]------------",
            "WARNING: CPU: 0 PID: 351 at drivers/gpu/drm/drm_gem_shmem_helper.c:227 drm_gem_shmem_put_pages+0x1/0x2",
            "Modules linked in:", "CPU: 0 UID: 0 PID: 351 Comm: vgem_basic Not tainted 6.12.57 #1",
            "RIP: 0010:drm_gem_shmem_put_pages+0x1/0x2", "Call Trace:", " <TASK>",
            " drm_gem_shmem_vm_close+0x3c/0x60", " remove_vma+0x2f/0x70", " do_vmi_align_munmap+0x3c5/0x5a0",
            " __x64_sys_munmap+0x27/0x40", " do_syscall_64+0x58/0x80", " </TASK>", "---[ end trace 0000000000000000 ]---"]


def test_a_whole_report_is_not_damaged() -> None:
    [finding] = parse_log(_console(_WARNING))
    assert (finding.title, finding.corrupted) == ("WARNING in drm_gem_shmem_put_pages", False)


@pytest.mark.parametrize("cut", [3, 6, 7])  # before the registers, at "Call Trace:", at "<TASK>"
def test_a_report_cut_by_a_dying_console_is_marked_damaged(cut: int) -> None:
    [finding] = parse_log(_console(_WARNING[:cut]))
    assert finding.title == "WARNING in drm_gem_shmem_put_pages" and finding.corrupted


@pytest.mark.parametrize(("header", "title"), [
    ("BUG:", "BUG: corrupted"), ("WARNING:", "WARNING: corrupted"), ("INFO: ", "INFO: corrupted"),
    ("BUG: unable to handle kernel", "BUG: unable to handle kernel"),
    ("Kernel panic - not syncing: Fatal exception", "kernel panic: Fatal exception"),
])
def test_a_header_without_its_report_is_a_corrupted_title(header: str, title: str) -> None:
    log = _console(["[drm] Initialized vgem 1.0.0 for vgem on minor 0", header])
    findings = parse_log(log)
    assert [(f.title, f.corrupted) for f in findings] == [(title, True)]


def test_a_printk_time_inside_a_title_marks_it_damaged() -> None:
    # another line ran into the panic message before its end
    log = _console(["Kernel panic - not syncing: Attempted to kill in[  118.402155][    T1] it!"])
    assert [(f.title, f.corrupted) for f in parse_log(log)] == [
        ("kernel panic: Attempted to kill in[ NUM.NUM][ T1] it!", True)]


def test_fault_injection_frames_in_the_stack_mark_it_damaged() -> None:
    lines = list(_WARNING)
    lines[8:8] = [" should_failslab+0x9/0x20"]
    [finding] = parse_log(_console(lines))
    assert finding.corrupted


def test_a_user_space_general_protection_fault_is_no_kernel_report() -> None:
    log = _console(["traps: Xorg[812] general protection fault ip:7f3a2c1b2e4d sp:7ffd4b2c3a10 error:0 "
                    "in libc.so.6[7f3a2c0a0000+155000]"])
    assert parse_log(log) == []


@pytest.mark.parametrize(("lines", "title"), [
    # x86's misspelt header of 5.9 to 5.10
    (["divide_error: 0000 [#1] PREEMPT SMP KASAN", "CPU: 0 PID: 351 Comm: vgem_basic Not tainted 5.10.0 #1",
      "RIP: 0010:vgem_gem_dumb_create+0x41/0x90", "Call Trace:", " drm_mode_create_dumb+0x12/0x20"],
     "divide error in vgem_gem_dumb_create"),
    (["BUG: Bad page map in process vgem_basic  pte:8000000105e3c067 pmd:10bd6c067",
      "addr:00007f5e1c000000 vm_flags:040400fb anon_vma:0000000000000000 mapping:ffff88810a3c2d28 index:0",
      "Call Trace:", " <TASK>", " dump_stack_lvl+0x5b/0x80", " print_bad_pte+0x2a1/0x2e0", " </TASK>"],
     "BUG: Bad page map"),
    (["BUG: non-zero nr_ptes on freeing mm: 4"], "BUG: non-zero nr_ptes on freeing mm"),
    (["VFS: Busy inodes after unmount of loop0. Self-destruct in 5 seconds.  Have a nice day..."],
     "VFS: Busy inodes after unmount (use-after-free)"),
])
def test_report_forms_named_as_syzbot_does(lines: list[str], title: str) -> None:
    assert [f.title for f in parse_log(_console(lines))] == [title]


@pytest.mark.parametrize("level", ["BUG", "WARNING"])
def test_lockdep_keeps_the_level_it_printed(level: str) -> None:
    log = _console(["====================================", f"{level}: vgem_basic/412 still has locks held!",
                    "6.12.57 #1 Not tainted", "------------------------------------", "1 lock held by vgem_basic/412:",
                    " #0: ffff888103e1c0c0 (&vfile->fence_mutex){+.+.}-{3:3}, at: vgem_fence_attach_ioctl+0x5a/0x1b0",
                    "stack backtrace:", "Call Trace:", " <TASK>", " dump_stack_lvl+0x5b/0x80",
                    " do_exit+0x8a1/0x1a40", " </TASK>"])
    assert [f.title for f in parse_log(log)] == [f"{level}: still has locks held in vgem_fence_attach_ioctl"]


def test_a_line_after_dropped_messages_keeps_its_prefix() -> None:
    lines = _console(_WARNING).splitlines(keepends=True)
    lines[1] = "** 17 printk messages dropped ** " + lines[1]
    [finding] = parse_log("".join(lines))
    assert (finding.title, finding.caller, finding.corrupted) == ("WARNING in drm_gem_shmem_put_pages", "T298", False)


def test_kmemleak_of_newer_kernels_counts_the_objects_it_folded() -> None:
    # 7.x prints one object per backtrace on the console, and percpu objects by their kind
    obj = ["unreferenced object 0xffff888106c3a400 (size 512):", '  comm "vgem_basic", pid 351, jiffies 4294938765',
           "  backtrace (crc 5bd8a4b8):", "    kmemleak_alloc+0x4a/0x80", "    __kmalloc_noprof+0x2a5/0x3c0",
           "    sg_alloc_table+0x59/0xa0", "    drm_prime_pages_to_sg+0x62/0x120",
           "    drm_gem_shmem_get_sg_table+0x2f/0x50", "  ... and 3 more object(s) with the same backtrace",
           "unreferenced object (percpu) 0x00003c1f8a6b2c40 (size 8):", '  comm "vgem_basic", pid 352, jiffies 4294938770',
           "  backtrace (crc 0):", "    pcpu_alloc_noprof+0x6f1/0xb20", "    vgem_fence_create+0x3b/0x90"]
    findings = parse_log(_console(["kmemleak: 5 new suspected memory leaks (see /sys/kernel/debug/kmemleak)"] + obj))
    assert [f.title for f in findings] == ["memory leak in drm_prime_pages_to_sg", "memory leak in vgem_fence_create"]
    [group] = findings[0].leak_groups
    assert (group.count, group.total_bytes, group.pids) == (4, 2048, (351,))
    assert findings[1].leak_groups[0].count == 1


def test_a_hung_task_report_keeps_the_task_it_waits_for() -> None:
    lines = ["INFO: task vgem_basic:412 blocked for more than 122 seconds.", "      Not tainted 7.2.13 #1",
             '"echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.',
             "task:vgem_basic      state:D stack:0     pid:412   tgid:412   ppid:400    flags:0x00004002",
             "Call Trace:", " <TASK>", " __schedule+0x3c1/0xa30", " schedule+0x27/0xa0",
             " schedule_preempt_disabled+0x15/0x30", " __mutex_lock+0x5b6/0xa10", " vgem_fence_attach_ioctl+0x5a/0x1b0",
             " drm_ioctl_kernel+0xd9/0x130", " </TASK>",
             "INFO: task vgem_basic:412 is blocked on a mutex likely owned by task vgem_basic:413.",
             "task:vgem_basic      state:S stack:0     pid:413   tgid:412   ppid:400    flags:0x00000002",
             "Call Trace:", " <TASK>", " __schedule+0x3c1/0xa30", " vgem_fence_signal_ioctl+0x9a/0x1b0", " </TASK>"]
    [finding] = parse_log(_console(lines))
    assert finding.title == "INFO: task hung in vgem_fence_attach_ioctl"
    assert "likely owned by task vgem_basic:413" in finding.report
    assert finding.report.splitlines()[-2].strip().startswith("vgem_fence_signal_ioctl")


@pytest.mark.parametrize(("where", "title"), [
    ("mm/util.c:632 kvmalloc_node_noprof+0x1/0x2", "WARNING: kmalloc bug in vgem_gem_dumb_create"),
    ("mm/slab_common.c:1005 kmalloc_slab+0x1/0x2", "WARNING: kmalloc bug in vgem_gem_dumb_create"),
    ("mm/vmalloc.c:3108 __vmalloc_node_range+0x1/0x2", "WARNING: zero-size vmalloc in vgem_gem_dumb_create"),
    # other WARNs in the same files are ordinary ones, named by the function that warned
    ("mm/vmalloc.c:330 vmap_pages_range+0x1/0x2", "WARNING in vmap_pages_range"),
    ("mm/util.c:1010 __vm_enough_memory+0x1/0x2", "WARNING in __vm_enough_memory"),
])
def test_allocator_warnings_are_named_by_file_and_function(where: str, title: str) -> None:
    func = where.split()[1]
    log = _console(["------------[ cut here ]------------", f"WARNING: CPU: 0 PID: 351 at {where}",
                    "Modules linked in:", f"RIP: 0010:{func}", "Call Trace:", " <TASK>",
                    " __kvmalloc_node_noprof+0x1/0x2", " __vmalloc_node_range+0x1/0x2",
                    " vgem_gem_dumb_create+0x41/0x90", " drm_mode_create_dumb+0x12/0x20", " </TASK>"])
    assert [f.title for f in parse_log(log)] == [title]


def test_an_rcu_stall_is_named_where_the_timer_interrupt_caught_it() -> None:
    lines = ["rcu: INFO: rcu_preempt self-detected stall on CPU", "rcu: \t0-....: (10500 ticks this GP)",
             "Sending NMI from CPU 0 to CPUs 1:", "NMI backtrace for cpu 0",
             "CPU: 0 UID: 0 PID: 412 Comm: vgem_basic Not tainted 6.12.57 #1", "Call Trace:", " <IRQ>",
             " dump_stack_lvl+0x5b/0x80", " rcu_dump_cpu_stacks+0x1a2/0x2a0", " rcu_sched_clock_irq+0x7a1/0xc90",
             " update_process_times+0x6c/0xa0", " tick_nohz_handler+0x8d/0x140", " __hrtimer_run_queues+0x15a/0x2c0",
             " hrtimer_interrupt+0x102/0x240", " __sysvec_apic_timer_interrupt+0x58/0x130",
             " sysvec_apic_timer_interrupt+0x6d/0x80", " </IRQ>", " <TASK>",
             " asm_sysvec_apic_timer_interrupt+0x1a/0x20", "RIP: 0010:vgem_fence_wait_all+0x2c/0x60",
             "RSP: 0018:ffffc900004bfd18 EFLAGS: 00000246", " vgem_fence_attach_ioctl+0x11a/0x1b0",
             " drm_ioctl_kernel+0xd9/0x130", " drm_ioctl+0x2b4/0x540", " __x64_sys_ioctl+0x92/0xd0",
             " do_syscall_64+0x58/0x80", " </TASK>"]
    assert [f.title for f in parse_log(_console(lines))] == ["INFO: rcu detected stall in vgem_fence_attach_ioctl"]
