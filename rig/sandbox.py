"""A series' build, fenced in: bubblewrap around `git am` and every make.

kbuild runs code that comes with a series (Makefiles, Kconfig, scripts, host programs).
A bot that builds series mailed by strangers must not hand that code the network, the
user's keys, the home directory or the host. Under `--sandbox` rig runs those commands in
bubblewrap (Debian's `bubblewrap`): new namespaces with no network, the whole host
read-only, the home directory, rig's cache (keys, images, other builds), /run (agent
and bus sockets) and /tmp replaced by empty private ones, and only what the step must
write mounted writable: the build directory and ccache for make; the worktree and the
repository's git directory for `git am`. The environment is rebuilt from nothing, so no
agent socket or token leaks in by a variable. Limits: the command's own timeout
(rig.proc), a cap on the size of any file it writes, and on the number of processes
(RLIMIT_NPROC, which the kernel does not apply to root: there the pid namespace and the
timeout are what holds).

After a sandboxed step rig reads its log for what the sandbox refused, so a series that
reached for the network or outside its directories is reported, not just failed.
"""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rig import proc

BWRAP = "bwrap"
BWRAP_PACKAGE = "bubblewrap"
# The largest file a sandboxed build may write (vmlinux with debug info is ~0.5 GiB).
MAX_FILE_BYTES = 4 << 30
MAX_PROCESSES = 4096
# Host directories a build reads through (toolchain, headers, the host's own config).
_HIDDEN_ALWAYS = ("/tmp", "/run", "/var/tmp", "/dev/shm")


@dataclass(frozen=True)
class Sandbox:
    """What one sandboxed step may write (`writable`), with everything else read-only and
    `hidden` directories replaced by empty ones; `readable` and `writable` paths inside a
    hidden one show again (the worktree and build directory live in rig's cache)."""

    writable: tuple[Path, ...]
    hidden: tuple[Path, ...]
    readable: tuple[Path, ...] = ()

    def wrap(self, argv: Sequence[str | Path], *, cwd: Path, env: Mapping[str, str]) -> list[str]:
        """argv run inside the sandbox, in `cwd`, with exactly `env` (plus PATH)."""
        bwrap = proc.require_tool(BWRAP, BWRAP_PACKAGE)
        args = [bwrap, "--die-with-parent", "--new-session", "--unshare-all", "--cap-drop", "ALL",
                "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc"]
        for hidden in (*_HIDDEN_ALWAYS, *map(str, self.hidden)):
            args += ["--tmpfs", hidden]
        for path in self.readable:
            args += ["--ro-bind", str(path), str(path)]
        for path in self.writable:
            args += ["--bind", str(path), str(path)]
        args += ["--clearenv", "--setenv", "PATH", os.environ.get("PATH", "/usr/bin:/bin"),
                 "--setenv", "HOME", "/tmp", "--setenv", "TMPDIR", "/tmp"]
        for key, value in env.items():
            args += ["--setenv", key, value]
        args += ["--chdir", str(cwd), "--"]
        if shutil.which("prlimit"):
            args += ["prlimit", f"--fsize={MAX_FILE_BYTES}", f"--nproc={MAX_PROCESSES}", "--"]
        return [*args, *map(str, argv)]


def hidden_dirs(*also: Path) -> tuple[Path, ...]:
    """The user's home directory and rig's own directories (cache, run directories), which
    hold keys, QMP sockets and other builds."""
    home = Path.home()
    return tuple(dict.fromkeys(p.resolve() for p in (home, *also) if p.exists()))


# ------------------------------------------------------------------ what it refused

@dataclass(frozen=True)
class Denial:
    kind: str  # "network", "write", "read"
    line: str  # the log line that shows it

    def describe(self) -> str:
        what = {"network": "reach the network", "write": "write outside its build directory",
                "read": "read a hidden directory (home, rig's cache)"}[self.kind]
        return f"tried to {what}: {self.line.strip()}"


# What programs print when there is no network: the resolver's errors (glibc's gai_strerror,
# curl's), and connect()'s ENETUNREACH (only the loopback exists in the sandbox).
_NETWORK = re.compile(r"Network is unreachable|Temporary failure in name resolution|Could not resolve host"
                      r"|Name or service not known|No address associated with hostname")
_WRITE = re.compile(r"Read-only file system")


def denials(log: str, hidden: Sequence[Path]) -> list[Denial]:
    """What the sandbox refused, as the step's log shows it, one per line and kind."""
    hidden_names = [str(p) for p in hidden]
    found: list[Denial] = []
    seen: set[tuple[str, str]] = set()
    for line in log.splitlines():
        kind = None
        if _NETWORK.search(line):
            kind = "network"
        elif _WRITE.search(line):
            kind = "write"
        elif "No such file or directory" in line and any(h in line for h in hidden_names):
            kind = "read"  # hidden behind an empty directory: the path is simply not there
        if kind is not None and (kind, line) not in seen:
            seen.add((kind, line))
            found.append(Denial(kind, line))
    return found
