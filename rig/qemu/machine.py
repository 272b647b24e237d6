"""A running QEMU: launched in its own process group, driven over QMP (qemu.qmp), its
serial console watched for panics, every QMP event recorded with a timestamp, and a
shutdown that always ends the process: the guest first, then QMP quit, SIGTERM, SIGKILL.

Use it as an async context manager; its exit stops QEMU whatever happened inside. A
synchronous `kill()` also exists for signal handlers and interpreter exit.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import enum
import json
import logging
import os
import re
import signal
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from qemu.qmp import ConnectError, ExecuteError, QMPClient, QMPError

from rig import proc
from rig.errors import InfraError
from rig.qemu.argv import MachineSpec, build_argv, qemu_environment

log = logging.getLogger(__name__)

# QEMU connects to rig's QMP socket within a second or two; a loaded host may take longer.
QMP_CONNECT_TIMEOUT_S = 30.0
# One QMP command; screendump of a big framebuffer under TCG is the slowest seen.
QMP_COMMAND_TIMEOUT_S = 20.0
# How often the console log and the process are looked at.
WATCH_INTERVAL_S = 0.1
# Shutdown steps: how long each gentler way gets before the next, harder one.
GUEST_POWEROFF_WAIT_S = 10.0
QMP_QUIT_WAIT_S = 5.0
SIGTERM_WAIT_S = 3.0

# Console lines that mean the kernel died; with panic=-1 QEMU exits right after.
PANIC_RE = re.compile(r"Kernel panic - not syncing|---\[ end Kernel panic")
TAIL_LINES = 60
PANIC_CONTEXT_LINES = 12

EventRecord = tuple[float, dict[str, Any]]  # (wall-clock time.time(), the QMP event)


class MachineError(InfraError):
    """QEMU failed to start, or QMP failed to answer."""


class Life(enum.Enum):
    """Where a machine is in its life; every state after RUNNING is final."""

    NOT_STARTED = "not started"
    RUNNING = "running"
    PANICKED = "panicked"  # the guest kernel panicked (QEMU may still be on its way out)
    POWERED_OFF = "powered off"  # QEMU exited 0 by itself: the guest powered off or rebooted
    FAILED = "failed"  # QEMU exited with an error status
    KILLED = "killed"  # QEMU died of a signal rig did not send
    STOPPED = "stopped"  # rig's shutdown ended it


def process_stopped(pid: int) -> bool:
    """Whether process `pid` is stopped by a signal (state T) or a tracer (t)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    # "pid (comm) S ...": comm may hold spaces and parentheses, the state follows the last ")".
    return stat[stat.rindex(")") + 2:][:1] in ("T", "t")


@dataclass(frozen=True)
class MachineState:
    """One look at a machine: what rig decides a failure's fault from (rig.vm.blame)."""

    life: Life
    returncode: int | None = None  # QEMU's exit status; negative: the signal that killed it
    panic_line: str | None = None  # the console's panic line, or pvpanic's event
    frozen: bool = False  # running, but the process is stopped (SIGSTOP from outside rig)
    disk_error: str | None = None  # QEMU could not write the guest's disk on the host (BLOCK_IO_ERROR)
    disk_full: bool = False  # ... because the host's disk is full (QEMU then pauses the guest)

    @property
    def over(self) -> bool:
        """The guest can answer no more calls."""
        return self.life not in (Life.NOT_STARTED, Life.RUNNING)

    @property
    def signal(self) -> int | None:
        return -self.returncode if self.returncode is not None and self.returncode < 0 else None


class Machine:
    """One QEMU process and its QMP connection (see the module docstring)."""

    def __init__(self, spec: MachineSpec, argv: list[str] | None = None) -> None:
        self.spec = spec
        self.argv = argv if argv is not None else build_argv(spec)
        self.env = qemu_environment(spec)
        self.events: list[EventRecord] = []
        self.events_log = spec.run_dir / "qmp-events.jsonl"
        self.console_log = spec.console_log
        self.panicked = False
        self.panic_line: str | None = None
        self.panic_seen_at: float | None = None  # time.monotonic() when rig noticed
        # What QEMU said when the host refused a write to the guest's disk (a full disk
        # makes it pause the guest: the guest's silence after that is not the kernel's).
        self.disk_error: str | None = None
        self.disk_full = False
        self.init_seen_at: float | None = None  # time.monotonic() the console showed init starting
        # Console lines containing one of these keys -> time.monotonic() first seen.
        self.console_marks: dict[str, float | None] = {"rig-init: ": None, "network up": None, "guest ready": None}
        self.started_at: float | None = None
        self._stopping = False  # rig's own shutdown began: an exit from now on is rig's doing
        self._frozen_since: float | None = None  # when QEMU's process was first seen stopped
        self._process: proc.Spawned | None = None
        self._qmp: QMPClient | None = None
        self._tasks: list[asyncio.Task[None]] = []
        self._console_pos = 0
        self._console_partial = b""
        self._changed = asyncio.Event()

    # ------------------------------------------------------------ lifecycle

    async def __aenter__(self) -> Machine:
        await self.start()
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                        tb: TracebackType | None) -> None:
        await self.shutdown()

    async def start(self, *, connect_timeout_s: float = QMP_CONNECT_TIMEOUT_S) -> None:
        run_dir = self.spec.run_dir
        run_dir.mkdir(parents=True, exist_ok=True)
        run_dir.chmod(0o700)  # QMP is full control of the guest: the socket stays private
        sock = self.spec.qmp_socket
        sock.unlink(missing_ok=True)
        self._qmp = QMPClient("rig-guest")
        self._qmp.await_greeting = True
        # rig listens and QEMU connects: no window in which QEMU's socket could be raced.
        await self._qmp.start_server(str(sock))
        os.chmod(sock, 0o600)
        self.console_log.touch()
        self._process = proc.spawn(self.argv, log=self.spec.qemu_log, env=self.env or None)
        self.started_at = time.monotonic()
        atexit.register(self.kill)
        try:
            await self._accept(connect_timeout_s)
        except BaseException:
            await self._stop_everything()
            raise
        self._tasks = [
            asyncio.create_task(self._record_events(), name="rig-qmp-events"),
            asyncio.create_task(self._watch(), name="rig-console-watch"),
        ]

    async def _accept(self, timeout_s: float) -> None:
        assert self._qmp is not None and self._process is not None
        accept = asyncio.ensure_future(self._qmp.accept())
        deadline = time.monotonic() + timeout_s
        try:
            while not accept.done():
                if self._process.returncode is not None:
                    raise MachineError(
                        f"QEMU exited with status {self._process.returncode} before it connected to QMP:\n"
                        + indent(tail_text(self.spec.qemu_log, 15)),
                        log=self.spec.qemu_log, hint=start_hint(self.spec))
                if time.monotonic() > deadline:
                    raise MachineError(f"QEMU did not connect to QMP within {timeout_s:.0f} s",
                                       log=self.spec.qemu_log, hint="the host may be overloaded; try again")
                await asyncio.wait({accept}, timeout=WATCH_INTERVAL_S)
            accept.result()
        except ConnectError as exc:
            raise MachineError(f"QMP connection to QEMU failed: {exc}", log=self.spec.qemu_log) from exc
        finally:
            if not accept.done():
                accept.cancel()
                with contextlib.suppress(BaseException):
                    await accept

    # ------------------------------------------------------------ state

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def returncode(self) -> int | None:
        return self._process.returncode if self._process is not None else None

    def frozen_for(self) -> float:
        """How long QEMU's process has been seen stopped (SIGSTOP) without a break; 0 when
        it runs. Asked often: one read of /proc/<pid>/stat."""
        if self.exited or self.pid is None or not process_stopped(self.pid):
            self._frozen_since = None
            return 0.0
        now = time.monotonic()
        if self._frozen_since is None:
            self._frozen_since = now
        return now - self._frozen_since

    @property
    def exited(self) -> bool:
        return self._process is not None and self._process.returncode is not None

    @property
    def state(self) -> MachineState:
        """The machine's state as one value. A panic wins over how QEMU then ended: with
        panic=-1 and -no-reboot, QEMU's exit is the panic's consequence."""
        status = self.returncode
        if self.panicked:
            life = Life.PANICKED
        elif self._process is None:
            life = Life.NOT_STARTED
        elif status is None:
            life = Life.RUNNING
        elif self._stopping:
            life = Life.STOPPED
        elif status < 0:
            life = Life.KILLED
        elif status > 0:
            life = Life.FAILED
        else:
            life = Life.POWERED_OFF
        frozen = life is Life.RUNNING and self.pid is not None and process_stopped(self.pid)
        return MachineState(life, status, self.panic_line, frozen, self.disk_error, self.disk_full)

    def console_text(self) -> str:
        try:
            return self.console_log.read_bytes().decode(errors="replace")
        except OSError:
            return ""

    def console_tail(self, lines: int = TAIL_LINES) -> str:
        return tail_text(self.console_log, lines)

    def panic_text(self) -> str:
        """The console from a little before the panic line to the end."""
        text = self.console_text()
        if self.panic_line is None:
            return "\n".join(text.splitlines()[-TAIL_LINES:])
        lines = text.splitlines()
        for index, line in enumerate(lines):
            if self.panic_line in line:
                # A little context before (the oops that led here), the whole report after.
                return "\n".join(lines[max(0, index - PANIC_CONTEXT_LINES):index + TAIL_LINES])
        return "\n".join(lines[-TAIL_LINES:])

    async def changed(self, timeout: float) -> None:
        """Return when the console or the process changed, or after `timeout`."""
        self._changed.clear()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self._changed.wait(), timeout)

    # ------------------------------------------------------------ watchers

    async def _record_events(self) -> None:
        assert self._qmp is not None
        with open(self.events_log, "a") as out:
            writable = True
            async for event in self._qmp.events:
                record = (time.time(), dict(event))
                self.events.append(record)
                if writable:
                    try:
                        out.write(json.dumps({"host_time": record[0], **record[1]}) + "\n")
                        out.flush()
                    except OSError as exc:  # a full disk: keep the events in memory, and watching
                        log.warning("QMP events log %s: %s; later events are kept in memory only",
                                    self.events_log, exc.strerror)
                        writable = False
                if event.get("event") == "GUEST_PANICKED":
                    self._mark_panic("GUEST_PANICKED (pvpanic)")
                elif event.get("event") == "BLOCK_IO_ERROR":
                    self._mark_disk_error(event.get("data") or {})
                self._changed.set()

    def _mark_disk_error(self, data: dict[str, Any]) -> None:
        """QEMU's BLOCK_IO_ERROR: the host refused a read or write of the guest's disk
        (rig's overlay); with `nospace`, the host's disk is full and QEMU paused the guest."""
        if self.disk_error is None:
            self.disk_full = bool(data.get("nospace"))
            action = {"stop": "QEMU paused the guest", "report": "the guest got an I/O error",
                      "ignore": "QEMU ignored it"}.get(str(data.get("action")), f"QEMU's action: {data.get('action')}")
            self.disk_error = (f"{data.get('operation', 'an access')} of the guest's disk "
                               f"({data.get('device') or data.get('node-name') or 'root'}) failed on the host "
                               f"({data.get('reason') or 'I/O error'}); {action}")

    async def _watch(self) -> None:
        while True:
            self._read_console()
            if self.exited:
                self._read_console()
                self._changed.set()
                return
            await asyncio.sleep(WATCH_INTERVAL_S)

    def _read_console(self) -> None:
        try:
            with open(self.console_log, "rb") as handle:
                handle.seek(self._console_pos)
                data = handle.read()
        except OSError:
            return
        if not data:
            return
        self._console_pos += len(data)
        chunk = self._console_partial + data
        lines = chunk.split(b"\n")
        self._console_partial = lines.pop()
        for raw in lines:
            line = raw.decode(errors="replace")
            if self.init_seen_at is None and "as init process" in line:
                self.init_seen_at = time.monotonic()
            for mark, seen in self.console_marks.items():
                if seen is None and mark in line:
                    self.console_marks[mark] = time.monotonic()
            if PANIC_RE.search(line):
                self._mark_panic(line.strip())
        self._changed.set()

    def _mark_panic(self, line: str) -> None:
        if not self.panicked:
            self.panicked = True
            self.panic_seen_at = time.monotonic()
        from_console = "Kernel panic" in line
        # The console's own panic line says why; pvpanic's event only says that it happened.
        if self.panic_line is None or (from_console and not self.panic_line.startswith("Kernel panic")):
            self.panic_line = line[line.find("Kernel panic"):] if from_console else line

    # ------------------------------------------------------------ QMP commands

    async def execute(self, command: str, arguments: dict[str, object] | None = None,
                      *, timeout: float = QMP_COMMAND_TIMEOUT_S) -> Any:
        if self._qmp is None or self.exited:
            raise MachineError(f"QMP '{command}': QEMU is not running (exit status {self.returncode})",
                               log=self.spec.qemu_log)
        try:
            return await asyncio.wait_for(self._qmp.execute(command, arguments), timeout)
        except asyncio.TimeoutError as exc:
            raise MachineError(f"QMP '{command}' got no answer within {timeout:.0f} s", log=self.spec.qemu_log) from exc
        except ExecuteError as exc:
            raise MachineError(f"QMP '{command}' failed: {exc.error.error.desc}", log=self.spec.qemu_log) from exc
        except (QMPError, EOFError, OSError) as exc:
            raise MachineError(f"QMP '{command}' failed: {str(exc) or type(exc).__name__}", log=self.spec.qemu_log) from exc

    async def query_status(self) -> str:
        """The VM's run state: 'running', 'paused', 'guest-panicked', 'shutdown', ..."""
        reply = await self.execute("query-status")
        return str(reply["status"])

    async def balloon(self, target_mib: int) -> None:
        """Ask the guest's balloon driver to leave it `target_mib` MiB."""
        await self.execute("balloon", {"value": int(target_mib) << 20})

    async def query_balloon(self) -> int:
        """The guest's current memory size in MiB, as the balloon reports it."""
        reply = await self.execute("query-balloon")
        return int(reply["actual"]) >> 20

    async def screendump(self, path: Path) -> Path:
        """The guest's display as a PNG file (QEMU writes it, so the path must be absolute)."""
        path = path.resolve()
        await self.execute("screendump", {"filename": str(path), "format": "png"})
        return path

    async def send_key(self, keys: Sequence[str], *, hold_ms: int = 100) -> None:
        """Press `keys` (QEMU qcodes: "alt", "sysrq", "w") together on the guest's keyboard."""
        await self.execute("send-key", {"keys": [{"type": "qcode", "data": key} for key in keys],
                                        "hold-time": hold_ms})

    async def hmp(self, command: str, cpu_index: int | None = None) -> str:
        """A human monitor command's output (`info registers -a`, `x /8gx ADDR` on one CPU)."""
        arguments: dict[str, object] = {"command-line": command}
        if cpu_index is not None:
            arguments["cpu-index"] = cpu_index
        return str(await self.execute("human-monitor-command", arguments))

    async def inject_nmi(self) -> None:
        """An NMI on every vCPU (x86); QEMU refuses it on machines that cannot take one."""
        await self.execute("inject-nmi")

    async def dump_guest_memory(self, path: Path, *, timeout: float) -> None:
        """The guest's memory as an ELF core at `path` (absolute: QEMU writes it), for `crash`.
        QMP answers once the whole dump is written; the guest is paused meanwhile."""
        await self.execute("dump-guest-memory", {"paging": False, "protocol": f"file:{path.resolve()}"},
                           timeout=timeout)

    # ------------------------------------------------------------ stopping

    async def wait_exit(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while not self.exited and time.monotonic() < deadline:
            await asyncio.sleep(WATCH_INTERVAL_S)
        if self.exited:
            self._read_console()  # the last lines, before the watcher's next look
        return self.returncode

    async def shutdown(self, poweroff: Callable[[], Awaitable[object]] | None = None) -> int | None:
        """Stop QEMU: `poweroff` (the guest's own power-off) if given, then QMP quit,
        then SIGTERM, then SIGKILL; each step only if the previous one did not end it."""
        if not self.exited:  # a QEMU that ended before keeps the state it ended in
            self._stopping = True
        try:
            if poweroff is not None and not self.exited:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(poweroff(), GUEST_POWEROFF_WAIT_S)
                await self.wait_exit(GUEST_POWEROFF_WAIT_S)
            if not self.exited and self._qmp is not None:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(self._qmp.execute("quit"), QMP_QUIT_WAIT_S)
                await self.wait_exit(QMP_QUIT_WAIT_S)
        finally:
            await self._stop_everything()
        return self.returncode

    async def _stop_everything(self) -> None:
        """SIGTERM/SIGKILL if still running, then close QMP and stop the watchers."""
        if self._process is not None and not self.exited:
            self._stopping = True
            self._process.signal_group(signal.SIGTERM)
            await self.wait_exit(SIGTERM_WAIT_S)
            self._process.stop(grace_s=0)
        self._read_console()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(BaseException):
                await task
        self._tasks = []
        if self._qmp is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._qmp.disconnect(), 5)
        self.spec.qmp_socket.unlink(missing_ok=True)
        atexit.unregister(self.kill)

    def kill(self) -> None:
        """Synchronous last resort (signal handlers, interpreter exit): SIGKILL the group."""
        if self._process is not None and self._process.returncode is None:
            self._process.signal_group(signal.SIGKILL)
            self._process.wait(5)


def start_hint(spec: MachineSpec) -> str:
    """What to do when QEMU ends before it connects: a GPU model that renders through the
    host's OpenGL most often lacks a package (QEMU's SDL module, Mesa's EGL)."""
    model = spec.guest.gpu_model
    if model.uses_host_gl:
        return (f"--gpu {model.name} needs QEMU's OpenGL display: `rig doctor` tries it; install "
                f"{' '.join(model.host_packages)} (./setup does)")
    return "check the QEMU arguments with --dry-run"


def tail_text(path: Path, lines: int) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            size = handle.tell()
            handle.seek(max(0, size - 256 * 1024))
            data = handle.read()
    except OSError:
        return ""
    return "\n".join(data.decode(errors="replace").splitlines()[-lines:])


def indent(text: str, prefix: str = "    ") -> str:
    return "\n".join(prefix + line for line in text.splitlines()) or prefix + "(empty)"
