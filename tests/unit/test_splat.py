"""rig splat on golden logs written in the kernel's own format, and on what consoles do to
them: no timestamps, caller ids, CRLF, other CPUs' lines in between, a log cut short."""

from __future__ import annotations

import json
import random
import re
from pathlib import Path

import pytest

from rig import cli
from rig.splat import Finding, parse_log
from rig.splat.text import LogText

DATA = Path(__file__).resolve().parent.parent / "data" / "splat"
LOCKDEP = DATA / "lockdep-dma-resv-fence-6.1.log"
KMEMLEAK = DATA / "kmemleak-drm-gem-shmem-6.1.log"
_PREFIX = re.compile(r"^\[ *\d+\.\d+\]\[ *[TC]\d+\] ?", re.M)


def _golden(log: Path) -> list[dict[str, object]]:
    return json.loads(log.with_suffix(".expected.json").read_text())


def _summary(finding: Finding) -> dict[str, object]:
    data = finding.to_json()
    report = data.pop("report").splitlines()
    data.pop("frames")
    data["report_first_line"], data["report_last_line"], data["report_lines"] = report[0], report[-1], len(report)
    return data


# Every console from a real guest kept with what rig must find in it: the reports of rig's
# test series on each Debian kernel (lockdep, kmemleak and WARNING on 6.1, 6.12 and 7.2).
GOLDEN = sorted(p.with_suffix("").with_suffix(".log") for p in DATA.glob("*.expected.json"))


@pytest.mark.parametrize("log", GOLDEN, ids=[p.stem for p in GOLDEN])
def test_golden_logs(log: Path) -> None:
    assert [_summary(f) for f in parse_log(log.read_bytes())] == _golden(log)


def test_lockdep_names_the_ioctl_and_the_lock_chain() -> None:
    (finding,) = parse_log(LOCKDEP.read_bytes())
    assert finding.title == "possible deadlock in vgem_fence_signal_ioctl"
    assert finding.lock_chain == ("fs_reclaim", "reservation_ww_class_mutex", "dma_fence_map")
    assert finding.report.startswith("=====")
    assert "[IGT]" not in finding.report  # the test runner's markers are not part of the splat
    assert finding.frames[:3] == ("dump_stack_lvl", "check_noncircular", "check_prevs_add")


def test_kmemleak_groups_objects_by_backtrace() -> None:
    leaks = parse_log(KMEMLEAK.read_bytes())
    assert [f.title for f in leaks] == ["memory leak in vgem_gem_create_object", "memory leak in drm_gem_get_pages"]
    groups = leaks[0].leak_groups
    assert [(g.count, g.total_bytes) for g in groups] == [(2, 1024), (1, 512)]
    assert groups[1].frames[4] == "drm_gem_shmem_prime_import_sg_table"


def _same_bug(a: list[Finding], b: list[Finding]) -> None:
    assert [(f.title, f.kind, f.signature, f.lock_chain, f.leak_groups) for f in a] == \
        [(f.title, f.kind, f.signature, f.lock_chain, f.leak_groups) for f in b]


def test_without_timestamps_or_caller_ids() -> None:
    text = LOCKDEP.read_text()
    plain = _PREFIX.sub("", text)
    found = parse_log(plain)
    _same_bug(found, parse_log(text))
    assert found[0].timestamp is None and found[0].caller == ""
    assert found[0].report == parse_log(text)[0].report


def test_kmemleak_printed_on_the_console() -> None:
    text = KMEMLEAK.read_text()
    console = "".join(("" if line.startswith("[") else "[  118.402155][  T412] ") + line + "\n"
                      for line in text.splitlines())
    found = parse_log(console)
    _same_bug(found, parse_log(text))
    assert found[0].timestamp == pytest.approx(118.402155) and found[0].caller == "T412"


def test_timestamps_without_caller_ids() -> None:
    text = re.sub(r"\]\[ *T\d+\]", "]", LOCKDEP.read_text())
    found = parse_log(text)
    _same_bug(found, parse_log(LOCKDEP.read_bytes()))
    assert found[0].timestamp == pytest.approx(41.95274)


@pytest.mark.parametrize("log", [LOCKDEP, KMEMLEAK], ids=["lockdep", "kmemleak"])
def test_crlf(log: Path) -> None:
    text = log.read_text()
    crlf = text.replace("\n", "\r\n")
    found = parse_log(crlf.encode())
    _same_bug(found, parse_log(text))
    assert all("\r" not in f.report for f in found)
    first = found[0]
    assert crlf[first.start:].startswith(text[parse_log(text)[0].start:][:20])
    assert first.line == parse_log(text)[0].line


def test_other_callers_lines_are_left_out() -> None:
    lines = LOCKDEP.read_text().splitlines(keepends=True)
    mixed = []
    for i, line in enumerate(lines):
        mixed.append(line)
        if i % 3 == 0:
            mixed.append(f"[   41.95{i:04d}][ T999] audit: type=1400 audit({i}.1:2): avc:  denied  {{ read }}\n")
        if i == 60:
            mixed.append("[   41.970000][   C0] virtio_gpu virtio0: [drm] *ERROR* fence wait timed out\n")
    found = parse_log("".join(mixed))
    _same_bug(found, parse_log(LOCKDEP.read_bytes()))
    assert "audit" not in found[0].report and "virtio_gpu" not in found[0].report


def test_interleaving_without_caller_ids_keeps_the_stack() -> None:
    lines = _PREFIX.sub("", LOCKDEP.read_text()).splitlines(keepends=True)
    at = next(i for i, ln in enumerate(lines) if "kmalloc_trace+0x26/0x90" in ln and ln.startswith(" "))
    lines.insert(at, "INFO: task kworker/0:1:23 blocked for more than 143 seconds.\n")
    found = parse_log("".join(lines))
    assert found[0].title == "possible deadlock in vgem_fence_signal_ioctl"


def test_truncated_tail() -> None:
    text = LOCKDEP.read_text()
    cut = text[:text.index("the existing dependency chain")]
    (finding,) = parse_log(cut)
    assert finding.title == "possible deadlock in vgem_fence_signal_ioctl"
    assert finding.corrupted  # no stack made it out
    assert finding.end <= len(cut)
    half = KMEMLEAK.read_text()
    half = half[:half.index("drm_gem_shmem_vmap")]
    assert [f.title for f in parse_log(half)][-1] == "memory leak in drm_gem_get_pages"


def test_positions_are_offsets_into_the_decoded_log() -> None:
    data = b"noise \xff\xfe line\n" + LOCKDEP.read_bytes()
    (finding,) = parse_log(data)
    text = data.decode("utf-8", "replace")
    assert text[finding.start:].split("\n", 1)[0].endswith("=" * 54)
    assert finding.line == 5
    assert text.count("\n", 0, finding.start) + 1 == finding.line


def test_bytes_and_text_give_the_same_findings_beyond_ascii() -> None:
    # header lines are looked for in the raw bytes and their offsets carried over to the
    # text: multi-byte characters, stray bytes and a sequence cut short by a newline
    # all shift them
    noise = "ünïcode ✓ line\n".encode() + b"stray \xff\xfe bytes\n cut \xe2\x82\n"
    data = noise + KMEMLEAK.read_bytes() + noise * 3 + LOCKDEP.read_bytes() + noise
    text = data.decode("utf-8", "replace")
    from_bytes, from_text = parse_log(data), parse_log(text)
    assert [f.kind for f in from_bytes] == ["kmemleak", "kmemleak", "lockdep"]
    assert from_bytes == from_text
    for finding in from_bytes:
        assert text[finding.start:finding.end].endswith(finding.report.rsplit("\n", 1)[-1])
        assert text.count("\n", 0, finding.start) + 1 == finding.line


def test_line_numbers_asked_in_any_order() -> None:
    text = "a\nbb\n\nccc\r\n\nd"
    log = LogText(text)
    offsets = list(range(len(text) + 1))
    random.Random(4).shuffle(offsets)
    for pos in offsets:
        assert log.line_number(pos) == text.count("\n", 0, pos) + 1


def test_signature_ignores_addresses_offsets_pids_and_times() -> None:
    text = LOCKDEP.read_text()
    shifted = re.sub(r"\+0x[0-9a-f]+/0x[0-9a-f]+", "+0x1/0x2", text)
    shifted = re.sub(r"ffff[0-9a-f]{12}", "ffffffff81000000", shifted).replace("345", "4242")
    shifted = shifted.replace("41.9", "99.9").replace("dma_fence_map", "dma_fence_map#2")
    assert parse_log(shifted)[0].signature == parse_log(text)[0].signature
    other = text.replace("vgem_fence_signal_ioctl", "vkms_fence_signal_ioctl")
    assert parse_log(other)[0].signature != parse_log(text)[0].signature


def test_two_reports_in_log_order() -> None:
    text = KMEMLEAK.read_text() + "\n" + LOCKDEP.read_text()
    found = parse_log(text)
    assert [f.kind for f in found] == ["kmemleak", "kmemleak", "lockdep"]
    assert [f.start for f in found] == sorted(f.start for f in found)


def test_clean_log_has_no_findings() -> None:
    clean = "\n".join([
        "[    0.000000] Linux version 6.1.0-rig (gcc) #1 SMP PREEMPT_DYNAMIC",
        "[    1.204411] WARNING: The mand mount option has been deprecated",  # not a kernel WARN report
        "[    2.000000] INFO: lockdep is turned off.",
        "[    3.000000] kmemleak: Kernel memory leak detector initialized (mem pool available: 15784)",
        "[    4.000000] [IGT] vgem_basic: executing",
    ])
    assert parse_log(clean) == []
    assert parse_log(b"") == []


# Short reports of other kinds, in the formats a 6.1 kernel prints.
WARN_REFCOUNT = """\
[   77.101000][  T512] ------------[ cut here ]------------
[   77.101500][  T512] refcount_t: underflow; use-after-free.
[   77.102000][  T512] WARNING: CPU: 0 PID: 512 at lib/refcount.c:28 refcount_warn_saturate+0xba/0x110
[   77.103000][  T512] Modules linked in:
[   77.104000][  T512] CPU: 0 PID: 512 Comm: kms_flip Not tainted 6.1.0-rig #1
[   77.105000][  T512] RIP: 0010:refcount_warn_saturate+0xba/0x110
[   77.106000][  T512] Call Trace:
[   77.106100][  T512]  <TASK>
[   77.106200][  T512]  drm_gem_object_release_handle+0x5a/0x90
[   77.106300][  T512]  idr_for_each+0x4b/0xc0
[   77.106400][  T512]  drm_gem_release+0x1c/0x30
[   77.106500][  T512]  drm_file_free+0x1fd/0x280
[   77.106600][  T512]  drm_release+0x70/0xd0
[   77.106700][  T512]  __fput+0x8e/0x250
[   77.106800][  T512]  task_work_run+0x55/0x90
[   77.106900][  T512]  </TASK>
[   77.107000][  T512] ---[ end trace 0000000000000000 ]---
"""

KASAN_UAF = """\
[  120.000001] ==================================================================
[  120.000002] BUG: KASAN: use-after-free in dma_fence_signal_timestamp_locked+0x2f5/0x330
[  120.000003] Read of size 8 at addr ffff88810a6b4e18 by task vgem_slow/733
[  120.000004]
[  120.000005] CPU: 1 PID: 733 Comm: vgem_slow Not tainted 6.1.0-rig #1
[  120.000006] Call Trace:
[  120.000007]  <TASK>
[  120.000008]  dump_stack_lvl+0x5b/0x77
[  120.000009]  print_report+0x17f/0x47b
[  120.000010]  kasan_report+0xad/0x130
[  120.000011]  dma_fence_signal_timestamp_locked+0x2f5/0x330
[  120.000012]  dma_fence_signal+0x4c/0x80
[  120.000013]  vgem_fence_timeout+0x12/0x20
[  120.000014]  call_timer_fn+0x1a/0x130
[  120.000015]  </TASK>
[  120.000016]
[  120.000017] Allocated by task 730:
[  120.000018]  kasan_save_stack+0x22/0x40
[  120.000019]  kmalloc_trace+0x26/0x90
[  120.000020]  vgem_fence_attach_ioctl+0x9f/0x2f0
[  120.000021]
[  120.000022] The buggy address belongs to the object at ffff88810a6b4e00
[  120.000023] ==================================================================
"""

HUNG = """\
[  245.000001] INFO: task kworker/u4:2:61 blocked for more than 122 seconds.
[  245.000002]       Not tainted 6.1.0-rig #1
[  245.000003] "echo 0 > /proc/sys/kernel/hung_task_timeout_secs" disables this message.
[  245.000004] task:kworker/u4:2    state:D stack:0     pid:61    ppid:2      flags:0x00004000
[  245.000005] Workqueue: events_unbound drm_sched_job_timedout
[  245.000006] Call Trace:
[  245.000007]  <TASK>
[  245.000008]  __schedule+0x38a/0xb80
[  245.000009]  schedule+0x5d/0xe0
[  245.000010]  schedule_preempt_disabled+0x14/0x30
[  245.000011]  __mutex_lock+0x5c1/0x9c0
[  245.000012]  drm_gem_shmem_purge+0x1f/0x80
[  245.000013]  virtio_gpu_shrinker_scan+0x8e/0x120
[  245.000014]  process_one_work+0x26b/0x570
[  245.000015]  </TASK>
[  245.000016]
[  245.000017] Showing all locks held in the system:
"""

SLEEP_IN_ATOMIC = """\
[   88.000001] BUG: sleeping function called from invalid context at kernel/locking/mutex.c:580
[   88.000002] in_atomic(): 1, irqs_disabled(): 0, non_block: 0, pid: 401, name: kms_cursor
[   88.000003] preempt_count: 1, expected: 0
[   88.000004] Preemption disabled at:
[   88.000005] [<ffffffff81b2c3d4>] vkms_vblank_simulate+0x44/0x130
[   88.000006] CPU: 0 PID: 401 Comm: kms_cursor Not tainted 6.1.0-rig #1
[   88.000007] Call Trace:
[   88.000008]  <TASK>
[   88.000009]  dump_stack_lvl+0x5b/0x77
[   88.000010]  __might_resched.cold+0xff/0x13a
[   88.000011]  __mutex_lock+0x4e/0x9c0
[   88.000012]  vkms_crtc_atomic_flush+0x3a/0xa0
[   88.000013]  drm_atomic_helper_commit_planes+0x1b0/0x280
[   88.000014]  </TASK>
"""

GPF = """\
[  300.000001] general protection fault, probably for non-canonical address 0xdffffc0000000003: 0000 [#1] PREEMPT SMP KASAN
[  300.000002] KASAN: null-ptr-deref in range [0x0000000000000018-0x000000000000001f]
[  300.000003] CPU: 1 PID: 812 Comm: kms_addfb Not tainted 6.1.0-rig #1
[  300.000004] RIP: 0010:drm_framebuffer_cleanup+0x2c/0x130
[  300.000005] Call Trace:
[  300.000006]  <TASK>
[  300.000007]  drm_framebuffer_free+0x1c/0x30
[  300.000008]  drm_mode_addfb2+0x1aa/0x250
[  300.000009]  </TASK>
[  300.000010] ---[ end trace 0000000000000000 ]---
[  300.000011] Kernel panic - not syncing: Fatal exception
[  300.000012] Kernel Offset: disabled
"""

RCU_STALL = """\
[  400.000001] rcu: INFO: rcu_preempt self-detected stall on CPU
[  400.000002] rcu: 	0-....: (20999 ticks this GP) idle=f0c4/1/0x4000000000000000 softirq=1230/1230 fqs=5064
[  400.000003] 	(t=21000 jiffies g=9721 q=318 ncpus=2)
[  400.000004] CPU: 0 PID: 933 Comm: syncobj_wait Not tainted 6.1.0-rig #1
[  400.000005] RIP: 0010:drm_syncobj_array_wait_timeout+0x1e4/0x460
[  400.000006] Call Trace:
[  400.000007]  <TASK>
[  400.000008]  drm_syncobj_array_wait_timeout+0x1e4/0x460
[  400.000009]  drm_syncobj_wait_ioctl+0x12c/0x230
[  400.000010]  drm_ioctl_kernel+0xa6/0x150
[  400.000011]  drm_ioctl+0x1f6/0x3f0
[  400.000012]  __x64_sys_ioctl+0x8d/0xd0
[  400.000013]  do_syscall_64+0x38/0x90
[  400.000014]  entry_SYSCALL_64_after_hwframe+0x63/0xcd
[  400.000015]  </TASK>
"""

UBSAN = """\
[  500.000001] ================================================================================
[  500.000002] UBSAN: shift-out-of-bounds in drivers/gpu/drm/drm_edid.c:4321:12
[  500.000003] shift exponent 32 is too large for 32-bit type 'unsigned int'
[  500.000004] CPU: 0 PID: 77 Comm: kms_hdmi_inject Not tainted 6.1.0-rig #1
[  500.000005] Call Trace:
[  500.000006]  <TASK>
[  500.000007]  dump_stack_lvl+0x5b/0x77
[  500.000008]  __ubsan_handle_shift_out_of_bounds.cold+0x61/0xef
[  500.000009]  drm_parse_hdmi_vsdb_video+0x2a1/0x300
[  500.000010]  drm_add_edid_modes+0x53/0x80
[  500.000011]  </TASK>
[  500.000012] ================================================================================
"""


INT3 = """\
[    9.901234][  T215] int3: 0000 [#1] PREEMPT SMP NOPTI
[    9.901240][  T215] CPU: 1 PID: 215 Comm: sshd Not tainted 6.1.0-rig #1
[    9.901250][  T215] RIP: 0010:__x64_sys_getrandom+0x1/0x110
[    9.901270][  T215] Call Trace:
[    9.901271][  T215]  <TASK>
[    9.901272][  T215]  do_syscall_64+0x38/0x90
[    9.901273][  T215]  entry_SYSCALL_64_after_hwframe+0x63/0xcd
[    9.901274][  T215]  </TASK>
"""


@pytest.mark.parametrize("log, title, kind", [
    (WARN_REFCOUNT, "WARNING: refcount bug in drm_gem_object_release_handle", "refcount"),
    (KASAN_UAF, "KASAN: use-after-free Read in dma_fence_signal_timestamp_locked", "kasan"),
    (HUNG, "INFO: task hung in drm_gem_shmem_purge", "hung-task"),
    (SLEEP_IN_ATOMIC, "BUG: sleeping function called from invalid context in vkms_crtc_atomic_flush",
     "atomic-sleep"),
    (GPF, "general protection fault in drm_framebuffer_cleanup", "gpf"),
    (RCU_STALL, "INFO: rcu detected stall in drm_syncobj_wait_ioctl", "rcu-stall"),
    (UBSAN, "UBSAN: shift-out-of-bounds in drm_parse_hdmi_vsdb_video", "ubsan"),
    (INT3, "int3 in sys_getrandom", "oops"),
], ids=["refcount", "kasan", "hung", "atomic-sleep", "gpf", "rcu-stall", "ubsan", "int3"])
def test_report_kinds(log: str, title: str, kind: str) -> None:
    found = parse_log(log)
    assert [(f.title, f.kind) for f in found] == [(title, kind)]
    assert not found[0].corrupted


def test_panic_after_a_report_is_part_of_it() -> None:
    (finding,) = parse_log(GPF)
    assert "Kernel panic - not syncing: Fatal exception" in finding.report
    assert "KASAN: null-ptr-deref in range" in finding.report


def test_kasan_report_stops_at_its_closing_line() -> None:
    (finding,) = parse_log(KASAN_UAF + "[  121.000000] usb 1-1: new high-speed USB device\n")
    assert finding.report.splitlines()[-1].startswith("=====")
    assert "usb 1-1" not in finding.report


BOOT = """\
SeaBIOS (version 1.16.2-debian-1.16.2-1)
iPXE (https://ipxe.org) 00:03.0 CA00 PCI2.10 PnP PMM+7EFD0BA0+7EF30BA0 CA00
Booting from ROM..
[    0.000000] Linux version 6.1.0-rig (root@rig) (gcc (Debian 12.2.0-14) 12.2.0) #1 SMP PREEMPT_DYNAMIC
[    0.000000] Command line: console=ttyS0 root=/dev/vda rw panic=-1
[    1.234567] Run /init as init process
"""


def test_first_boot_is_no_report_a_second_one_is() -> None:
    assert parse_log(BOOT) == []
    twice = BOOT + "[   42.000000] vgem_basic[345]: segfault at 0 ip 0 sp 0 error 4\n" + BOOT
    (reboot,) = parse_log(twice)
    assert reboot.title == "unexpected kernel reboot" and reboot.kind == "reboot"
    assert reboot.line > 6


# ---------------------------------------------------------------------------- the command


def test_command_exit_codes_and_text(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["splat", str(LOCKDEP)]) == 1
    out = capsys.readouterr().out
    assert "possible deadlock in vgem_fence_signal_ioctl" in out
    assert "fs_reclaim -> reservation_ww_class_mutex -> dma_fence_map" in out
    assert cli.main(["splat", str(KMEMLEAK)]) == 1
    out = capsys.readouterr().out
    assert "2 object(s), 1024 bytes" in out
    clean = tmp_path / "clean.log"
    clean.write_text("[    1.000000] Linux version 6.1.0\n")
    assert cli.main(["splat", str(clean)]) == 0
    assert "no kernel reports" in capsys.readouterr().out


def test_command_json(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    both = tmp_path / "both.log"
    both.write_text(LOCKDEP.read_text() + KMEMLEAK.read_text())
    assert cli.main(["splat", "--json", str(both)]) == 1
    data = json.loads(capsys.readouterr().out)
    assert [d["title"] for d in data] == ["possible deadlock in vgem_fence_signal_ioctl",
                                          "memory leak in vgem_gem_create_object",
                                          "memory leak in drm_gem_get_pages"]
    for d in data:
        assert {"title", "kind", "corrupted", "signature", "report"} <= d.keys()


def test_command_reads_stdin(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import io
    import sys

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(KMEMLEAK.read_bytes())))
    assert cli.main(["splat", "--json", "-"]) == 1
    assert json.loads(capsys.readouterr().out)[0]["kind"] == "kmemleak"


def test_command_unreadable_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["splat", str(tmp_path / "missing.log")]) == 2
    err = capsys.readouterr().err
    assert "missing.log" in err and "what to do" in err
    assert cli.main(["splat", str(tmp_path)]) == 2
    assert "directory" in capsys.readouterr().err


def test_an_arm64_boot_banner_is_not_a_reboot() -> None:
    # arm64 prints the CPU it boots on before "Linux version" (a real rig arm64 console)
    log = ("[    0.000000][    T0] Booting Linux on physical CPU 0x0000000000 [0x000f0510]\n"
           "[    0.000000][    T0] Linux version 6.1.176 (rig@rig) (aarch64-linux-gnu-gcc (Debian 12.2.0-14) 12.2.0) "
           "#2 SMP Sat Jan  1 00:00:00 UTC 2000\n"
           "[    0.000000][    T0] Machine model: linux,dummy-virt\n")
    assert parse_log(log) == []
    rebooted = log + "[   61.176761][    T6] reboot: Restarting system\n" + log
    assert [f.title for f in parse_log(rebooted)] == ["unexpected kernel reboot"]


def test_util_linux_dmesg_caller_field_is_taken_off_and_an_arm64_boot_is_no_reboot() -> None:
    # `dmesg` prints the caller id as a field of its own ("[ 0.000000] [    T0] "); an arm64
    # kernel says "Booting Linux on physical CPU" before its "Linux version" banner.
    log = ("[    0.000000] [    T0] Booting Linux on physical CPU 0x0000000000 [0x000f0510]\n"
           "[    0.000000] [    T0] Linux version 6.1.176 (rig@rig) (aarch64-linux-gnu-gcc 12.2.0) #1 SMP\n"
           "[    0.000000] [    T0] Machine model: linux,dummy-virt\n"
           "[   53.859606] [   T13] reboot: Power down\n")
    assert parse_log(log) == []
    from rig.splat.text import split_prefix

    assert split_prefix("[    1.250000] [  C1] rcu: INFO: rcu_sched self-detected stall") == (
        "rcu: INFO: rcu_sched self-detected stall", 1.25, "C1")
