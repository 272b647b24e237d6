"""rig.binfmt: a temporary directory stands for /proc/sys/fs/binfmt_misc, and a fake does
with rig's writes what the kernel would. The last test registers with the real kernel."""

from __future__ import annotations

import errno
import os
import signal
import stat
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest

from rig import binfmt
from rig.errors import InfraError, Interrupted, UserError

# Debian's /usr/lib/binfmt.d/qemu-aarch64.conf (qemu-user-static 7.2), but for the path.
MAGIC = r"\x7f\x45\x4c\x46\x02\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x02\x00\xb7\x00"
MASK = r"\xff\xff\xff\xff\xff\xff\xff\x00\xff\xff\xff\xff\xff\xff\xff\xff\xfe\xff\xff\xff"


class FakeKernel:
    """binfmt_misc's behaviour on a plain directory: `register` creates an entry file,
    "-1" written to an entry removes it, umount drops every entry."""

    def __init__(self, root: Path, *, refuse: int | None = None) -> None:
        self.root = root
        self.refuse = refuse  # errno for every registration, if set
        self.mounts = 0
        self.umounts = 0
        self.registered: list[str] = []
        self.writes: list[tuple[str, str]] = []

    def write(self, path: Path, text: str) -> None:
        assert path.parent == self.root
        self.writes.append((path.name, text))
        if not (self.root / "register").exists():
            raise FileNotFoundError(errno.ENOENT, "not mounted", str(path))
        if path.name == "register":
            if self.refuse is not None:
                raise OSError(self.refuse, os.strerror(self.refuse))
            entry = binfmt.parse_line(text)
            if (self.root / entry.name).exists():
                raise OSError(errno.EEXIST, "File exists")
            (self.root / entry.name).write_text(f"enabled\ninterpreter {entry.interpreter}\nflags: {entry.flags}\n")
            self.registered.append(text)
        elif text == "-1":
            if not path.exists():
                raise FileNotFoundError(errno.ENOENT, "No such file", str(path))
            path.unlink()
        else:
            raise OSError(errno.EINVAL, "Invalid argument")

    def mount(self, root: Path) -> None:
        root.mkdir(exist_ok=True)
        (root / "register").write_text("")
        (root / "status").write_text("enabled\n")
        self.mounts += 1

    def umount(self, root: Path) -> None:
        for path in root.iterdir():
            path.unlink()
        self.umounts += 1

    def kernel(self) -> binfmt.Kernel:
        return binfmt.Kernel(self.root, self.write, self.mount, self.umount)

    def add(self, name: str) -> None:
        """An entry someone else made."""
        (self.root / name).write_text("enabled\ninterpreter /somewhere\nflags: \n")


@pytest.fixture
def conf_dir(tmp_path: Path) -> Path:
    interpreter = tmp_path / "aarch64-binfmt-P"
    interpreter.write_text("")
    interpreter.chmod(0o755)
    conf = tmp_path / "binfmt.d"
    conf.mkdir()
    (conf / "qemu-aarch64.conf").write_text(f":qemu-aarch64:M::{MAGIC}:{MASK}:{interpreter}:OP\n")
    return conf


@pytest.fixture
def fake(tmp_path: Path) -> FakeKernel:
    root = tmp_path / "binfmt_misc"
    root.mkdir()
    return FakeKernel(root)


def test_registers_debians_line_under_rigs_name_and_removes_it(fake: FakeKernel, conf_dir: Path) -> None:
    with binfmt.registered("aarch64", kernel=fake.kernel(), conf_dir=conf_dir) as name:
        assert name == f"rig-aarch64-{os.getpid()}"
        assert fake.kernel().entries() == [name]
        line = binfmt.parse_line(fake.registered[0])
        assert (line.magic, line.mask, line.kind) == (MAGIC, MASK, "M")
        assert line.interpreter == str(conf_dir.parent / "aarch64-binfmt-P")
        assert "F" in line.flags and "O" in line.flags and "P" in line.flags  # F added, Debian's kept
    assert fake.mounts == 1 and fake.umounts == 1  # rig mounted it, so rig unmounts it
    assert not (fake.root / "register").exists()


def test_a_mount_rig_did_not_make_stays(fake: FakeKernel, conf_dir: Path) -> None:
    fake.mount(fake.root)
    with binfmt.registered("aarch64", kernel=fake.kernel(), conf_dir=conf_dir):
        pass
    assert fake.mounts == 1 and fake.umounts == 0 and fake.kernel().mounted()
    assert fake.kernel().entries() == []


def test_entries_that_were_there_before_are_never_touched(fake: FakeKernel, conf_dir: Path) -> None:
    fake.mount(fake.root)
    fake.add("qemu-aarch64")  # e.g. qemu-user-binfmt's own, registered at boot
    fake.add("rig-aarch64-1")  # another rig's, alive: pid 1 always is
    with binfmt.registered("aarch64", kernel=fake.kernel(), conf_dir=conf_dir) as name:
        assert fake.kernel().entries() == sorted(["qemu-aarch64", "rig-aarch64-1", name])
    assert fake.kernel().entries() == ["qemu-aarch64", "rig-aarch64-1"]
    assert (fake.root / "qemu-aarch64").read_text().startswith("enabled")


def test_not_unmounted_while_someone_elses_entry_is_in_it(fake: FakeKernel, conf_dir: Path) -> None:
    with binfmt.registered("aarch64", kernel=fake.kernel(), conf_dir=conf_dir):
        fake.add("rig-aarch64-1")  # a second rig registered while this one built
    assert fake.umounts == 0 and fake.kernel().entries() == ["rig-aarch64-1"]


@pytest.mark.parametrize("exc", [RuntimeError("mmdebstrap failed"), KeyboardInterrupt()])
def test_removed_on_failure_and_ctrl_c(fake: FakeKernel, conf_dir: Path, exc: BaseException) -> None:
    with pytest.raises(type(exc)):
        with binfmt.registered("aarch64", kernel=fake.kernel(), conf_dir=conf_dir):
            raise exc
    assert fake.umounts == 1 and fake.kernel().entries() == []


def test_sigterm_raises_and_removes(fake: FakeKernel, conf_dir: Path) -> None:
    if signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        pytest.skip("SIGTERM already has a handler in this process")
    with pytest.raises(Interrupted, match="SIGTERM"):
        with binfmt.registered("aarch64", kernel=fake.kernel(), conf_dir=conf_dir):
            os.kill(os.getpid(), signal.SIGTERM)
            signal.sigtimedwait([], 0.0)  # a point for Python to run the handler
            for _ in range(1000):  # the handler runs between bytecodes, soon after delivery
                pass
    assert fake.kernel().entries() == []
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL


def test_stale_entries_of_killed_rigs_are_removed(fake: FakeKernel, conf_dir: Path) -> None:
    fake.mount(fake.root)
    for name in ("rig-aarch64-999999999", "rig-riscv64-999999998", "rig-aarch64-1", "qemu-aarch64"):
        fake.add(name)
    removed = binfmt.remove_stale(fake.kernel(), alive=lambda pid: pid == 1)
    assert sorted(removed) == ["rig-aarch64-999999999", "rig-riscv64-999999998"]
    assert fake.kernel().entries() == ["qemu-aarch64", "rig-aarch64-1"]


def test_refused_registration_removes_nothing_and_unmounts(tmp_path: Path, conf_dir: Path) -> None:
    fake = FakeKernel(tmp_path / "binfmt_misc", refuse=errno.EPERM)
    (tmp_path / "binfmt_misc").mkdir()
    with pytest.raises(UserError, match="Operation not permitted") as info:
        with binfmt.registered("aarch64", kernel=fake.kernel(), conf_dir=conf_dir):
            pytest.fail("the block must not run")
    assert "root" in (info.value.hint or "")
    assert [name for name, _ in fake.writes] == ["register"]  # no "-1" to an entry rig never made
    assert fake.umounts == 1


def test_disabled_binfmt_misc_is_a_host_problem(fake: FakeKernel, conf_dir: Path) -> None:
    fake.mount(fake.root)
    (fake.root / "status").write_text("disabled\n")
    with pytest.raises(InfraError, match="disabled") as info:
        with binfmt.registered("aarch64", kernel=fake.kernel(), conf_dir=conf_dir):
            pytest.fail("the block must not run")
    assert "echo 1" in (info.value.hint or "")
    assert fake.registered == []


def test_missing_package_says_which_to_install(fake: FakeKernel, tmp_path: Path) -> None:
    with pytest.raises(InfraError) as info:
        with binfmt.registered("aarch64", kernel=fake.kernel(), conf_dir=tmp_path / "nothing"):
            pytest.fail("the block must not run")
    assert "qemu-user-static" in (info.value.hint or "")
    assert fake.mounts == 0  # nothing was touched


def test_parse_line_round_trip_and_refusals() -> None:
    line = f":qemu-aarch64:M::{MAGIC}:{MASK}:/usr/bin/qemu-aarch64-static:OCF"
    entry = binfmt.parse_line(line + "\n")
    assert entry.line() == line and entry.offset == "" and entry.flags == "OCF"
    for bad in ("qemu-aarch64:M::a:b:/i:F", ":x:Q::a:b:/i:F", ":x:M::a:b:/i", ":x:M::a:b::F"):
        with pytest.raises(UserError):
            binfmt.parse_line(bad)


# ---------------------------------------------------------------- the real kernel


def _aarch64_exit_42(path: Path) -> Path:
    """The smallest static aarch64 program: exit(42) (mov x0,#42; mov x8,#93; svc #0)."""
    code = struct.pack("<3I", 0xD2800540, 0xD2800BA8, 0xD4000001)
    base, headers = 0x400000, 64 + 56
    elf = b"\x7fELF\x02\x01\x01" + bytes(9) + struct.pack(
        "<HHIQQQIHHHHHH", 2, 0xB7, 1, base + headers, 64, 0, 0, 64, 56, 1, 0, 0, 0)
    program = struct.pack("<IIQQQQQQ", 1, 5, 0, base, base, headers + len(code), headers + len(code), 0x1000)
    path.write_bytes(elf + program + code)
    path.chmod(0o755)
    return path


def _other_rigs() -> list[str]:
    """Entries of other rig processes (this test's own is gone when it checks)."""
    return [name for name, pid in binfmt.rig_entries(binfmt.Kernel()) if pid != os.getpid()]


def _other_aarch64_entries() -> list[str]:
    root = binfmt.BINFMT_DIR
    if not (root / "register").exists():
        return []
    return [p.name for p in root.iterdir() if p.name not in binfmt.CONTROL_FILES
            and "b700" in p.read_text() and p.read_text().startswith("enabled")]


@pytest.mark.skipif(os.geteuid() != 0 or not (binfmt.PACKAGE_CONF_DIR / "qemu-aarch64.conf").is_file(),
                    reason="needs root and Debian's qemu-user-static")
def test_real_kernel_runs_aarch64_inside_only(tmp_path: Path) -> None:
    program = _aarch64_exit_42(tmp_path / "exit42")
    # binfmt_misc is the whole host's: a rig building an arm64 image beside this test (the
    # slow tier on the other pytest worker) may mount it, or keep it mounted, meanwhile.
    others_before = _other_rigs()
    mounted_before = binfmt.Kernel().mounted()
    with binfmt.registered("aarch64") as name:
        listing = (binfmt.BINFMT_DIR / name).read_text()
        assert listing.startswith("enabled") and "flags: " in listing and "F" in listing.split("flags: ")[1]
        assert subprocess.run([program], timeout=60).returncode == 42
    if not others_before and not _other_rigs():
        assert binfmt.Kernel().mounted() == mounted_before
    assert name not in binfmt.Kernel().entries()
    if not _other_aarch64_entries():
        with pytest.raises(OSError) as info:
            subprocess.run([program], timeout=60)
        assert info.value.errno == errno.ENOEXEC
    assert stat.S_IMODE(program.stat().st_mode) == 0o755


def test_a_second_ctrl_c_waits_for_the_clean_up(tmp_path: Path, conf_dir: Path) -> None:
    fake = FakeKernel(tmp_path / "binfmt_misc")
    (tmp_path / "binfmt_misc").mkdir()
    write = fake.write

    def impatient(path: Path, text: str) -> None:
        if text == "-1":
            os.kill(os.getpid(), signal.SIGINT)  # held until the entry is gone
        write(path, text)

    kernel = binfmt.Kernel(fake.root, impatient, fake.mount, fake.umount)
    with pytest.raises(KeyboardInterrupt):
        with binfmt.registered("aarch64", kernel=kernel, conf_dir=conf_dir):
            pass
    assert fake.umounts == 1 and fake.kernel().entries() == []


def test_a_ctrl_c_waits_for_the_clean_up_with_another_thread_running(tmp_path: Path, conf_dir: Path) -> None:
    """The kernel gives a signal sent to the process to a thread that does not block it (a
    progress bar's refresh thread): the clean-up must still finish before Ctrl-C acts."""
    fake = FakeKernel(tmp_path / "binfmt_misc")
    (tmp_path / "binfmt_misc").mkdir()
    write = fake.write

    def impatient(path: Path, text: str) -> None:
        if text == "-1":
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)  # time enough for the other thread to take it
        write(path, text)

    stop = threading.Event()
    other = threading.Thread(target=stop.wait, daemon=True)
    other.start()
    try:
        kernel = binfmt.Kernel(fake.root, impatient, fake.mount, fake.umount)
        with pytest.raises(KeyboardInterrupt):
            with binfmt.registered("aarch64", kernel=kernel, conf_dir=conf_dir):
                pass
    finally:
        stop.set()
        other.join()
    assert fake.umounts == 1 and fake.kernel().entries() == []
