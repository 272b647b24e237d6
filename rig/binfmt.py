"""Run another architecture's programs on this host for the length of a `with` block:
a binfmt_misc entry for Debian's static qemu-user, registered by rig and removed after.

Why: mmdebstrap builds a foreign root (arm64 on an x86_64 host) by running the guest's
maintainer scripts in a chroot, and each of those programs is an arm64 ELF. The kernel
hands such a file to the interpreter of a matching binfmt_misc entry. rig takes the
entry's magic, mask, interpreter and flags from the line Debian's qemu-user-static ships
for systemd-binfmt (/usr/lib/binfmt.d/qemu-<arch>.conf), under a name of its own:

- `rig-<arch>-<pid>`: rig never touches an entry it did not add (a `qemu-aarch64` that
  was there before, or another rig's), and two rigs building at once do not remove each
  other's. When several entries match, the kernel takes the newest: rig's, for as long
  as it lives.
- the F flag (the kernel opens the interpreter at registration), so the static qemu need
  not be copied into the chroot.
- removed in a `finally`, so failures, Ctrl-C and (where rig has no handler of its own)
  SIGTERM also remove it; a SIGKILLed rig cannot, so the next registration removes every
  `rig-*-<pid>` entry whose process is gone.
- binfmt_misc is mounted first when it is not, and unmounted after only if rig mounted it
  and no entry is left in it (unmounting drops every entry, someone else's too).

The seam is `Kernel`: the directory standing for /proc/sys/fs/binfmt_misc and the three
operations that need the real kernel (a write, mount, umount). Unit tests give a
temporary directory and a fake that does what the kernel would.
"""

from __future__ import annotations

import contextlib
import errno
import os
import re
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from types import FrameType
from typing import Any

from rig import proc
from rig.errors import InfraError, Interrupted, UserError

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
# Where Debian's qemu-user-static (and qemu-user-binfmt) put their registration lines.
PACKAGE_CONF_DIR = Path("/usr/lib/binfmt.d")
PACKAGE = "qemu-user-static"
NAME_PREFIX = "rig-"
# The files of binfmt_misc that are not entries.
CONTROL_FILES = frozenset({"register", "status"})
MOUNT_TIMEOUT_S = 30.0

_RIG_NAME = re.compile(r"^rig-(?P<arch>[A-Za-z0-9_]+)-(?P<pid>[0-9]+)$")


@dataclass(frozen=True)
class Registration:
    """One binfmt_misc entry as the register file takes it:
    `:name:type:offset:magic:mask:interpreter:flags` (magic and mask \\x-escaped)."""

    name: str
    kind: str  # M: match magic bytes; E: match the file name's extension
    offset: str
    magic: str
    mask: str
    interpreter: str
    flags: str

    def line(self) -> str:
        return ":".join(("", self.name, self.kind, self.offset, self.magic, self.mask, self.interpreter, self.flags))


def parse_line(text: str, *, source: str = "binfmt line") -> Registration:
    """Parse a register line (the format of systemd's binfmt.d files)."""
    line = text.strip()
    if not line.startswith(":") or line.count(":") != 7:
        raise UserError(f"{source}: not a binfmt_misc registration line: {line!r}",
                        hint="expected :name:type:offset:magic:mask:interpreter:flags")
    _, name, kind, offset, magic, mask, interpreter, flags = line.split(":")
    if kind not in ("M", "E") or not name or not interpreter:
        raise UserError(f"{source}: not a binfmt_misc registration line: {line!r}",
                        hint="expected :name:type:offset:magic:mask:interpreter:flags with type M or E")
    return Registration(name, kind, offset, magic, mask, interpreter, flags)


def package_registration(qemu_arch: str, conf_dir: Path = PACKAGE_CONF_DIR) -> Registration:
    """The registration Debian's qemu-user-static ships for `qemu_arch` (e.g. aarch64),
    with the F flag added if missing (rig's chroot has no qemu inside)."""
    conf = conf_dir / f"qemu-{qemu_arch}.conf"
    if not conf.is_file():
        raise InfraError(f"no qemu-user registration for {qemu_arch} on this host ({conf} is missing)",
                         hint=f"install it with: sudo apt-get install {PACKAGE}   (./setup installs everything rig needs)")
    lines = [line for line in conf.read_text().splitlines() if line.strip() and not line.lstrip().startswith(("#", ";"))]
    if len(lines) != 1:
        raise InfraError(f"{conf}: expected one registration line, found {len(lines)}",
                         hint=f"reinstall {PACKAGE}: sudo apt-get install --reinstall {PACKAGE}")
    entry = parse_line(lines[0], source=str(conf))
    interpreter = Path(entry.interpreter)
    if not os.access(interpreter, os.X_OK):
        raise InfraError(f"{conf} names the interpreter {interpreter}, which is not an executable file",
                         hint=f"reinstall {PACKAGE}: sudo apt-get install --reinstall {PACKAGE}")
    flags = entry.flags if "F" in entry.flags else entry.flags + "F"
    return replace(entry, flags=flags)


# ---------------------------------------------------------------- the seam


def _write(path: Path, text: str) -> None:
    # One write(2) without O_CREAT or O_TRUNC: the kernel parses each write whole, and
    # an entry that is gone must fail (ENOENT), not be created.
    fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    try:
        os.write(fd, text.encode())
    finally:
        os.close(fd)


def _mount(root: Path) -> None:
    proc.run(["mount", "-t", "binfmt_misc", "binfmt_misc", root], timeout=MOUNT_TIMEOUT_S,
             what=f"mount of binfmt_misc on {root}",
             hint="rig must run as root to build a foreign-architecture image (mmdebstrap's root mode)")


def _umount(root: Path) -> None:
    proc.run(["umount", root], timeout=MOUNT_TIMEOUT_S, what=f"umount of binfmt_misc on {root}")


@dataclass(frozen=True)
class Kernel:
    """Where binfmt_misc is and how rig acts on it (the real kernel by default)."""

    root: Path = BINFMT_DIR
    write: Callable[[Path, str], None] = _write
    mount: Callable[[Path], None] = _mount
    umount: Callable[[Path], None] = _umount

    def mounted(self) -> bool:
        return (self.root / "register").exists()

    def entries(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir() if p.name not in CONTROL_FILES)

    def enabled(self) -> bool:
        try:
            return (self.root / "status").read_text().strip() == "enabled"
        except OSError:
            return False

    def register(self, entry: Registration) -> None:
        try:
            self.write(self.root / "register", entry.line())
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise InfraError(f"a binfmt_misc entry named {entry.name} already exists",
                                 hint=f"remove it with: echo -1 > {self.root / entry.name}") from exc
            if exc.errno in (errno.EPERM, errno.EACCES):
                raise UserError(f"cannot register {entry.name} with binfmt_misc: {exc.strerror}",
                                hint="build foreign-architecture images as root") from exc
            raise InfraError(f"the kernel refused the binfmt_misc entry {entry.line()!r}: {exc.strerror}",
                             hint="check that the kernel has CONFIG_BINFMT_MISC") from exc

    def remove(self, name: str) -> None:
        try:
            self.write(self.root / name, "-1")
        except FileNotFoundError:
            pass  # gone already (someone removed it, or binfmt_misc was unmounted)


# ---------------------------------------------------------------- registering


def rig_entries(kernel: Kernel) -> list[tuple[str, int]]:
    """rig's entries in binfmt_misc, with the process id that registered each."""
    found = []
    for name in kernel.entries():
        match = _RIG_NAME.match(name)
        if match:
            found.append((name, int(match["pid"])))
    return found


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process, but alive
    return True


def remove_stale(kernel: Kernel, alive: Callable[[int], bool] = _alive) -> list[str]:
    """Remove the entries left by rigs that were killed (SIGKILL runs no `finally`)."""
    removed = []
    for name, pid in rig_entries(kernel):
        if pid != os.getpid() and not alive(pid):
            kernel.remove(name)
            removed.append(name)
    return removed


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """SIGTERM raises Interrupted while the entry exists, so the `finally` runs: Python's
    default for SIGTERM is to die at once. A handler someone else installed (asyncio's,
    in `rig run`) is left alone."""
    try:
        installable = signal.getsignal(signal.SIGTERM) == signal.SIG_DFL
    except ValueError:
        installable = False
    if not installable:
        yield
        return

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise Interrupted("terminated (SIGTERM) while rig had a binfmt_misc entry; it was removed")

    try:
        signal.signal(signal.SIGTERM, on_term)
    except ValueError:  # not the main thread
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextlib.contextmanager
def _signals_held() -> Iterator[None]:
    """Ctrl-C and SIGTERM wait until the block is done, then act as they would have.

    Blocking them in this thread alone is not enough: the kernel hands a signal sent to
    the process to any thread that does not block it (a progress bar's refresh thread),
    and Python then runs the handler in the main thread anyway. So, in the main thread,
    the handlers are swapped too, for one that notes the signal and sends it again after.
    """
    held = (signal.SIGINT, signal.SIGTERM)
    noted: list[int] = []
    swapped: dict[int, Any] = {}
    if threading.current_thread() is threading.main_thread():
        for signum in held:
            handler = signal.getsignal(signum)
            if handler is not None:  # None: set outside Python, and it could not be put back
                swapped[signum] = handler
                signal.signal(signum, lambda signum, frame: noted.append(signum))
    previous = signal.pthread_sigmask(signal.SIG_BLOCK, held)
    try:
        yield
    finally:
        for signum, handler in swapped.items():
            signal.signal(signum, handler)
        signal.pthread_sigmask(signal.SIG_SETMASK, previous)  # one held in this thread comes now
        for signum in noted:
            signal.raise_signal(signum)


@contextlib.contextmanager
def registered(qemu_arch: str, *, kernel: Kernel | None = None, conf_dir: Path = PACKAGE_CONF_DIR,
               say: Callable[[str], None] = lambda line: None) -> Iterator[str]:
    """Programs of `qemu_arch` (QEMU's name: aarch64) run on this host inside the block,
    through qemu-user. Yields the entry's name; removes it on the way out, whatever the way."""
    kernel = kernel or Kernel()
    entry = package_registration(qemu_arch, conf_dir)
    mounted_here = False
    name: str | None = None
    with _sigterm_raises():
        try:
            if not kernel.mounted():
                with _signals_held():  # no Ctrl-C between the mount and knowing it is rig's
                    kernel.mount(kernel.root)
                    mounted_here = True
                say(f"mounted binfmt_misc on {kernel.root} (unmounted again after)")
            if not kernel.enabled():
                raise InfraError(f"binfmt_misc is disabled on this host ({kernel.root / 'status'})",
                                 hint=f"enable it with: echo 1 > {kernel.root / 'status'}")
            for stale in remove_stale(kernel):
                say(f"removed {stale}, left behind by a rig that was killed")
            wanted = f"{NAME_PREFIX}{qemu_arch}-{os.getpid()}"
            with _signals_held():  # likewise between the registration and knowing it is rig's
                kernel.register(replace(entry, name=wanted))
                name = wanted
            say(f"registered {name}: {qemu_arch} programs run through {entry.interpreter}")
            yield name
        finally:
            # A second Ctrl-C or SIGTERM must not cut the clean-up short: they wait until it is done.
            with _signals_held():
                if name is not None:
                    kernel.remove(name)
                    say(f"removed {name}")
                if mounted_here and not kernel.entries():
                    kernel.umount(kernel.root)
