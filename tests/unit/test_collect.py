from __future__ import annotations

from pathlib import Path

import pytest

from rig.collect import Collected, after_guest, lockdep_debug_locks, read_events, taint_letters
from tests.conftest import fill


def test_taint_letters() -> None:
    assert taint_letters(0) == ""
    assert taint_letters(512) == "W"  # TAINT_WARN: a WARN fired
    assert taint_letters(512 | 1) == "PW"


def test_lockdep_debug_locks() -> None:
    stats = " lock-classes:                         1783 [max: 8192]\n debug_locks:                             0\n"
    assert lockdep_debug_locks(stats) == 0
    assert lockdep_debug_locks("nothing here") is None


def test_after_guest_keeps_what_was_collected_and_copies_the_console(tmp_path: Path) -> None:
    vm_dir = tmp_path / "vm"
    vm_dir.mkdir()
    (vm_dir / "console.log").write_text("[    0.000000] Linux version 6.1\n")
    (vm_dir / "qmp-events.jsonl").write_text('{"host_time": 1.5, "event": "BALLOON_CHANGE"}\nnot json\n')
    out = tmp_path / "collect"
    out.mkdir()
    (out / "dmesg.txt").write_text("dmesg")
    before = Collected(out, dmesg=out / "dmesg.txt", tainted=512, problems=("screendump: no display",))
    after = after_guest(before, out, vm_dir / "console.log", vm_dir / "qmp-events.jsonl", ("guest died",))
    assert after.console is not None and after.console.read_text().startswith("[    0.000000] Linux")
    assert after.dmesg == out / "dmesg.txt" and after.tainted == 512
    assert after.problems == ("screendump: no display", "guest died")
    assert read_events(after.qmp_events) == [{"host_time": 1.5, "event": "BALLOON_CHANGE"}]
    data = after.to_json()
    assert data["console"] == "collect/console.log" and data["taint_flags"] == "W"


def test_after_guest_without_a_guest_notes_the_missing_console(tmp_path: Path) -> None:
    after = after_guest(None, tmp_path / "c", tmp_path / "nope.log", None)
    assert after.console is None
    assert any("console log" in p for p in after.problems)


@pytest.mark.parametrize("gpu, taken", [("virtio-gpu", True), ("virgl", False), ("none", False)])
def test_a_screendump_only_where_qemu_can_read_the_screen(gpu: str, taken: bool, tmp_path: Path) -> None:
    import asyncio

    from rig.collect import screendump
    from rig.guest_spec import GuestSpec
    from tests.unit.guestfake import FakeVM

    vm = FakeVM()
    vm.spec = GuestSpec(gpu=gpu)
    problems: list[str] = []
    shot = asyncio.run(screendump(vm, tmp_path / "screen.png", problems))  # type: ignore[arg-type]
    assert (shot is not None) is taken
    assert problems == []  # virgl's GL scanout (QEMU 7.2: "no surface") is no problem of the run


def test_after_guest_on_a_full_disk_links_the_console_and_loses_nothing(small_disk, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """The run directory's disk full when the guest is gone: the console log is linked into
    collect/ (no second copy of its bytes); one on another disk, which must be copied and
    cannot be, is kept where it is and the problem noted."""
    disk = small_disk(1 << 20)
    vm_dir = disk / "vm"
    vm_dir.mkdir()
    console = vm_dir / "console.log"
    console.write_text("[    0.000000] Linux version 6.1\n" * 1000)
    elsewhere = tmp_path / "qmp-events.jsonl"  # another file system: no hard link possible
    elsewhere.write_text('{"host_time": 1.5, "event": "STOP"}\n' * 500)
    fill(disk)
    after = after_guest(None, disk / "collect", console, elsewhere)
    assert after.console == disk / "collect" / "console.log"
    assert after.console.stat().st_ino == console.stat().st_ino  # the same bytes, twice named
    assert after.qmp_events == elsewhere and read_events(after.qmp_events)[0]["event"] == "STOP"
    assert len(after.problems) == 1 and "QMP events: could not be copied" in after.problems[0]
    assert "No space left on device" in after.problems[0] and str(elsewhere) in after.problems[0]
    assert not (disk / "collect" / "qmp-events.jsonl").exists()  # no half copy


def test_after_guest_without_room_for_collect_keeps_the_files_where_they_are(tmp_path: Path) -> None:
    vm_dir = tmp_path / "vm"
    vm_dir.mkdir()
    (vm_dir / "console.log").write_text("[    0.000000] Linux version 6.1\n")
    (tmp_path / "attempt").write_text("a file where a directory should be")
    after = after_guest(None, tmp_path / "attempt" / "collect", vm_dir / "console.log", vm_dir / "gone.jsonl")
    assert after.console == vm_dir / "console.log" and after.qmp_events is None
    assert len(after.problems) == 1 and "could not be made" in after.problems[0]
