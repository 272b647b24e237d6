"""The one way rig runs a program: an argv list, a mandatory timeout, the whole process
group killed on timeout or Ctrl-C, output kept in a log file when asked.

Never a shell string: every argument reaches the program as it is.
"""

from __future__ import annotations

import collections
import os
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from rig.errors import InfraError, RigError

# Grace between SIGTERM and SIGKILL of a timed-out process group: enough for make or
# QEMU to flush their logs, short enough that Ctrl-C feels immediate.
TERM_GRACE_S = 5.0

# Lines of output kept in memory for error messages; the full text goes to the log.
TAIL_LINES = 40

Argv = Sequence[str | os.PathLike[str]]


@dataclass(frozen=True)
class Result:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.returncode == 0


class Timeout(InfraError):
    """A program ran past its deadline and was killed."""


def require_tool(name: str, package: str) -> str:
    """Path of a host program, or an InfraError saying which Debian package has it."""
    path = shutil.which(name)
    if path is None:
        raise InfraError(
            f"'{name}' is not installed on this host",
            hint=f"install it with: sudo apt-get install {package}   (./setup installs everything rig needs)",
        )
    return path


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM the process group, then SIGKILL what is left after a grace period."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    try:
        proc.wait(TERM_GRACE_S)
    except subprocess.TimeoutExpired:
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait()


def _strs(argv: Argv) -> tuple[str, ...]:
    return tuple(os.fspath(a) for a in argv)


def run(
    argv: Argv,
    *,
    timeout: float,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    input: bytes | None = None,
    log: Path | None = None,
    on_line: Callable[[str], None] | None = None,
    check: bool = True,
    error: type[RigError] = InfraError,
    what: str | None = None,
    hint: str | None = None,
    dies_with_rig: bool = False,
    pass_fds: Sequence[int] = (),
) -> Result:
    """Run argv to completion within `timeout` seconds.

    With `log` or `on_line`, stdout and stderr are merged and streamed line by line
    (into the log file and to the callback) and `Result.stdout` holds the last lines
    only; otherwise both are captured whole. A non-zero exit raises `error` when
    `check` is set, naming `what` failed and where its log is.

    `dies_with_rig`: the whole process group is stopped if rig dies, even by SIGKILL
    (see `_group_reaper`); for programs that must not outlive rig (make). `pass_fds`:
    descriptors the program inherits, such as the locks it works under, which then stay
    held until every process of the group has ended.
    """
    args = _strs(argv)
    if dies_with_rig:
        args = _group_reaper(args)
    full_env = {**os.environ, **env} if env is not None else None
    streaming = log is not None or on_line is not None
    started = time.monotonic()
    try:
        proc = subprocess.Popen(
            args,
            cwd=cwd,
            env=full_env,
            stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT if streaming else subprocess.PIPE,
            start_new_session=True,  # own process group, so a timeout kills its children too
            pass_fds=tuple(pass_fds),
        )
    except FileNotFoundError as exc:
        raise InfraError(f"cannot run '{args[0]}': not installed", hint="run ./setup to install rig's host packages") from exc
    label = what or " ".join(_strs(argv)[:3])
    try:
        if streaming:
            stdout, stderr = _stream(proc, input, log, on_line, started + timeout), ""
        else:
            out_b, err_b = proc.communicate(input, timeout=timeout)
            stdout = out_b.decode(errors="replace")
            stderr = err_b.decode(errors="replace")
    except subprocess.TimeoutExpired:
        _kill_group(proc)
        raise Timeout(f"{label} did not finish within {timeout:.0f} s and was killed", log=log, hint=hint)
    except BaseException:
        _kill_group(proc)
        raise
    result = Result(args, proc.returncode, stdout, stderr, time.monotonic() - started)
    if check and not result.ok:
        detail = (stderr or stdout).strip().splitlines()[-TAIL_LINES // 2 :]
        message = f"{label} failed with exit code {result.returncode}"
        if detail:
            message += ":\n    " + "\n    ".join(detail)
        raise error(message, log=log, hint=hint)
    return result


def _stream(
    proc: subprocess.Popen[bytes],
    input: bytes | None,
    log: Path | None,
    on_line: Callable[[str], None] | None,
    deadline: float,
) -> str:
    """Copy the merged output line by line until the process ends or the deadline passes."""
    assert proc.stdout is not None
    tail: collections.deque[str] = collections.deque(maxlen=TAIL_LINES)
    if input is not None and proc.stdin is not None:
        proc.stdin.write(input)
        proc.stdin.close()

    # A reader thread, so the deadline holds even while the program prints nothing.
    def pump() -> None:
        assert proc.stdout is not None
        log_file = open(log, "ab") if log is not None else None
        try:
            for raw in proc.stdout:
                if log_file is not None:
                    log_file.write(raw)
                    log_file.flush()
                line = raw.decode(errors="replace").rstrip("\n")
                tail.append(line)
                if on_line is not None:
                    on_line(line)
        finally:
            if log_file is not None:
                log_file.close()

    reader = threading.Thread(target=pump, daemon=True)
    reader.start()
    remaining = deadline - time.monotonic()
    proc.wait(max(remaining, 0.0))  # raises TimeoutExpired past the deadline
    reader.join(TERM_GRACE_S)
    return "\n".join(tail)


# ---------------------------------------------------------------- long-running programs


class Spawned:
    """A long-running program (QEMU) in its own process group, output in a log file.

    Stopping it is the caller's job (`stop()`), normally from a `finally` or an exit stack;
    on Linux it is also tied to the thread that spawned it (parent-death signal), so even
    a SIGKILLed rig leaves no such process behind.
    """

    def __init__(self, popen: subprocess.Popen[bytes], argv: tuple[str, ...], log: Path) -> None:
        self.popen = popen
        self.argv = argv
        self.log = log

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    def wait(self, timeout: float) -> int | None:
        """The exit status, or None if it still runs after `timeout` seconds."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def signal_group(self, signum: int) -> None:
        if self.popen.poll() is not None:
            return
        try:
            os.killpg(self.popen.pid, signum)
        except ProcessLookupError:
            pass

    def stop(self, grace_s: float = TERM_GRACE_S) -> int:
        """SIGTERM the group, SIGKILL it after `grace_s`; returns the exit status."""
        if self.popen.poll() is None:
            self.signal_group(signal.SIGTERM)
            if self.wait(grace_s) is None:
                self.signal_group(signal.SIGKILL)
                self.popen.wait()
        return self.popen.returncode


def _pdeathsig_prefix() -> list[str]:
    # setpriv (util-linux) sets PR_SET_PDEATHSIG and execs: the kernel then kills the
    # program if rig dies, which no finally block can promise after a SIGKILL.
    setpriv = shutil.which("setpriv")
    return [setpriv, "--pdeathsig", "KILL", "--"] if setpriv else []


# A shell between rig and the program: the parent-death signal (TERM) reaches it when rig
# dies, and it stops the program's whole process group the way rig's own Ctrl-C does
# (_kill_group): TERM first, so make deletes the targets it was writing (a half-written
# object file with a fresh date would pass for built next time), then KILL whatever is
# left. A parent-death signal on the program alone would leave its children (make's
# compilers and linkers) running on in a build directory the next rig may be using.
_REAPER_SCRIPT = (
    'trap \'trap "" TERM; kill -TERM 0; i=0; '
    f'while kill -0 "$child" 2>/dev/null && [ "$i" -lt {int(TERM_GRACE_S * 10)} ]; '
    'do sleep 0.1; i=$((i + 1)); done; kill -KILL 0\' TERM; '
    '"$@" & child=$!; wait "$child"'
)


def _group_reaper(args: tuple[str, ...]) -> tuple[str, ...]:
    prefix = _pdeathsig_prefix()
    if not prefix:
        return args  # no setpriv: rig's own finally blocks are all there is
    prefix[prefix.index("KILL")] = "TERM"  # the shell's trap does the killing
    return (*prefix, "sh", "-c", _REAPER_SCRIPT, "rig-reaper", *args)


def spawn(argv: Argv, *, log: Path, cwd: Path | None = None, env: Mapping[str, str] | None = None) -> Spawned:
    """Start argv in its own process group with stdout and stderr appended to `log`."""
    args = _strs(argv)
    full_env = {**os.environ, **env} if env is not None else None
    with open(log, "ab") as out:
        try:
            popen = subprocess.Popen(
                [*_pdeathsig_prefix(), *args],
                cwd=cwd,
                env=full_env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except FileNotFoundError as exc:
            raise InfraError(f"cannot run '{args[0]}': not installed", hint="run ./setup to install rig's host packages") from exc
    return Spawned(popen, args, log)
