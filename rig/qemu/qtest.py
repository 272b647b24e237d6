"""QEMU's qtest protocol, to test rig's device models at their registers without a guest.

`launch()` starts rig's qemu-system-aarch64 with `-accel qtest` (no CPU runs; the test is
the only bus master and the only clock: virtual time moves by `clock_step`) and two
private sockets: the qtest text protocol and QMP (for qom-get/qom-set of a device's
properties). `Qtest` and `Qmp` speak the protocols over any connected socket, which is
what the unit tests fake.

The qtest protocol (QEMU's system/qtest.c) is one command line, one reply line: "OK"
with values, or "FAIL"/"ERR" with a reason. Interrupt lines a test intercepts change
asynchronously: "IRQ raise N" / "IRQ lower N" lines arrive before the reply of the
command that caused them, so after each command the recorded levels are current.
"""

from __future__ import annotations

import base64
import contextlib
import json
import socket
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rig import proc
from rig.errors import InfraError

# A qtest command is answered at once unless the device model is stuck; QEMU itself needs
# a few seconds to start on a loaded host.
COMMAND_TIMEOUT_S = 30.0
CONNECT_TIMEOUT_S = 60.0
# UNIX socket paths are limited to 108 bytes: the sockets live in a short private /tmp dir.
SOCKET_DIR_PREFIX = "rig-qtest-"


class QtestError(InfraError):
    """QEMU under qtest refused a command, went away or stopped answering."""


class LineChannel:
    """Lines over a connected stream socket, each read bounded by a deadline."""

    def __init__(self, sock: socket.socket, what: str) -> None:
        self.sock = sock
        self.what = what
        self._buffer = b""

    def send_line(self, line: str) -> None:
        try:
            self.sock.sendall(line.encode() + b"\n")
        except OSError as exc:
            raise QtestError(f"{self.what}: cannot send '{line[:60]}': {exc}",
                             hint="QEMU has probably exited; read its log") from exc

    def read_line(self, timeout_s: float) -> str:
        deadline = time.monotonic() + timeout_s
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise QtestError(f"{self.what}: no answer within {timeout_s:.0f} s",
                                 hint="the device model may be stuck in a loop; read QEMU's log")
            self.sock.settimeout(left)
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            except OSError as exc:
                raise QtestError(f"{self.what}: {exc}", hint="QEMU has probably exited; read its log") from exc
            if not chunk:
                raise QtestError(f"{self.what}: QEMU closed the connection",
                                 hint="QEMU has probably exited or aborted; read its log")
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode(errors="replace").rstrip("\r")


class Qtest:
    """The qtest text protocol: memory and MMIO access, virtual time, intercepted IRQs."""

    def __init__(self, sock: socket.socket, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self.channel = LineChannel(sock, "qtest")
        self.timeout_s = timeout_s
        # Level of each intercepted output line, by index, as QEMU last reported it.
        self.irqs: dict[int, bool] = {}
        # Every change in order: (index, level); tests look for edges here.
        self.irq_events: list[tuple[int, bool]] = []

    def command(self, line: str) -> list[str]:
        """Send one command; the words of its OK reply after "OK"."""
        self.channel.send_line(line)
        while True:
            reply = self.channel.read_line(self.timeout_s)
            words = reply.split()
            if words[:1] == ["IRQ"] and len(words) == 3 and words[1] in ("raise", "lower"):
                level = words[1] == "raise"
                self.irqs[int(words[2])] = level
                self.irq_events.append((int(words[2]), level))
                continue
            if words[:1] == ["OK"]:
                return words[1:]
            raise QtestError(f"qtest: '{line[:80]}' was refused: {reply}",
                             hint="check the address and the command's arguments")

    def _value(self, line: str) -> int:
        words = self.command(line)
        if len(words) != 1:
            raise QtestError(f"qtest: '{line}' answered {words!r}, not one value")
        return int(words[0], 16)

    def readb(self, addr: int) -> int:
        return self._value(f"readb 0x{addr:x}")

    def readw(self, addr: int) -> int:
        return self._value(f"readw 0x{addr:x}")

    def readl(self, addr: int) -> int:
        return self._value(f"readl 0x{addr:x}")

    def readq(self, addr: int) -> int:
        return self._value(f"readq 0x{addr:x}")

    def writeb(self, addr: int, value: int) -> None:
        self.command(f"writeb 0x{addr:x} 0x{value & 0xff:x}")

    def writew(self, addr: int, value: int) -> None:
        self.command(f"writew 0x{addr:x} 0x{value & 0xffff:x}")

    def writel(self, addr: int, value: int) -> None:
        self.command(f"writel 0x{addr:x} 0x{value & 0xffffffff:x}")

    def outl(self, port: int, value: int) -> None:
        """An x86 I/O port write (PCI configuration mechanism #1 on a PC board)."""
        self.command(f"outl 0x{port:x} 0x{value & 0xffffffff:x}")

    def inl(self, port: int) -> int:
        return self._value(f"inl 0x{port:x}")

    def writeq(self, addr: int, value: int) -> None:
        self.command(f"writeq 0x{addr:x} 0x{value & 0xffffffffffffffff:x}")

    def memwrite(self, addr: int, data: bytes) -> None:
        if data:
            self.command(f"b64write 0x{addr:x} 0x{len(data):x} {base64.b64encode(data).decode()}")

    def memread(self, addr: int, size: int) -> bytes:
        if size == 0:
            return b""
        words = self.command(f"b64read 0x{addr:x} 0x{size:x}")
        data = base64.b64decode(words[0]) if words else b""
        if len(data) != size:
            raise QtestError(f"qtest: b64read of {size} bytes at 0x{addr:x} returned {len(data)}")
        return data

    def clock_step(self, ns: int | None = None) -> int:
        """Advance virtual time by `ns` (or to the next timer); the new time in ns."""
        return int(self.command("clock_step" if ns is None else f"clock_step {ns}")[0])

    def clock_get(self) -> int:
        return int(self.command("clock_step 0")[0])

    def irq_intercept_out(self, qom_path: str, name: str | None = None) -> None:
        """Take the device's output lines (a named GPIO list, e.g. "sysbus-irq") away
        from the board and report their levels here instead."""
        self.command(f"irq_intercept_out {qom_path}" + (f" {name}" if name else ""))

    def irq(self, index: int) -> bool:
        return self.irqs.get(index, False)


class Qmp:
    """A minimal synchronous QMP client: enough for qom-get/qom-set in tests."""

    def __init__(self, sock: socket.socket, timeout_s: float = COMMAND_TIMEOUT_S) -> None:
        self.channel = LineChannel(sock, "QMP")
        self.timeout_s = timeout_s
        self.events: list[dict[str, Any]] = []
        self._greeted = False

    def _read(self) -> dict[str, Any]:
        line = self.channel.read_line(self.timeout_s)
        try:
            message = json.loads(line)
        except ValueError as exc:
            raise QtestError(f"QMP: not JSON: {line[:120]}") from exc
        if not isinstance(message, dict):
            raise QtestError(f"QMP: not an object: {line[:120]}")
        return message

    def handshake(self) -> None:
        greeting = self._read()
        if "QMP" not in greeting:
            raise QtestError(f"QMP: expected a greeting, got {greeting!r}")
        self._greeted = True
        self.execute("qmp_capabilities")

    def execute(self, command: str, arguments: dict[str, Any] | None = None) -> Any:
        request: dict[str, Any] = {"execute": command}
        if arguments:
            request["arguments"] = arguments
        self.channel.send_line(json.dumps(request))
        while True:
            message = self._read()
            if "event" in message:
                self.events.append(message)
                continue
            if "error" in message:
                error = message["error"]
                raise QtestError(f"QMP {command}: {error.get('class')}: {error.get('desc')}",
                                 hint="check the QOM path and property name (qom-list shows them)")
            if "return" in message:
                return message["return"]
            raise QtestError(f"QMP {command}: unexpected answer {message!r}")

    def qom_get(self, path: str, prop: str) -> Any:
        return self.execute("qom-get", {"path": path, "property": prop})

    def qom_set(self, path: str, prop: str, value: Any) -> None:
        self.execute("qom-set", {"path": path, "property": prop, "value": value})


@dataclass(frozen=True)
class QtestSession:
    qtest: Qtest
    qmp: Qmp
    log: Path  # QEMU's stdout and stderr
    process: proc.Spawned


def qtest_argv(binary: Path, machine: str, qtest_socket: Path, qmp_socket: Path,
               extra: Sequence[str] = (), *, display: str = "none", accel: str = "qtest") -> list[str]:
    """QEMU under qtest: no CPU runs, no default devices, no display unless a device needs
    one (virtio-gpu-gl renders through its display's OpenGL); QEMU connects to the two
    sockets rig listens on. A QEMU built without the qtest accelerator (Debian's) takes the
    qtest protocol all the same with accel "tcg" and its CPUs paused (-S): then no
    firmware runs either, but virtual time stands still (no clock_step)."""
    paused = ["-S"] if accel != "qtest" else []
    return [str(binary), "-machine", machine, "-accel", accel, *paused, "-qtest", f"unix:{qtest_socket}",
            "-qmp", f"unix:{qmp_socket}", "-display", display, "-nodefaults", "-serial", "none",
            "-monitor", "none", *extra]


def _accept(listener: socket.socket, spawned: proc.Spawned, what: str, timeout_s: float) -> socket.socket:
    deadline = time.monotonic() + timeout_s
    listener.settimeout(0.2)
    while True:
        try:
            conn, _ = listener.accept()
            conn.settimeout(None)
            return conn
        except TimeoutError:
            pass
        if spawned.returncode is not None:
            raise QtestError(f"QEMU exited with status {spawned.returncode} before connecting its {what} socket",
                             log=spawned.log, hint="read the log: an unknown machine option names itself there")
        if time.monotonic() > deadline:
            raise QtestError(f"QEMU did not connect its {what} socket within {timeout_s:.0f} s", log=spawned.log,
                             hint="the host may be overloaded; read the log")


@contextlib.contextmanager
def launch(binary: Path, machine: str = "virt", extra: Sequence[str] = (), *, log: Path | None = None,
           timeout_s: float = COMMAND_TIMEOUT_S, display: str = "none", accel: str = "qtest",
           env: dict[str, str] | None = None) -> Iterator[QtestSession]:
    """QEMU under qtest for the duration of the with-block; always stopped afterwards."""
    with tempfile.TemporaryDirectory(prefix=SOCKET_DIR_PREFIX) as tmp:
        qtest_path, qmp_path = Path(tmp) / "qtest.sock", Path(tmp) / "qmp.sock"
        log = log or Path(tmp) / "qemu.log"
        with contextlib.ExitStack() as stack:
            listeners = []
            for path in (qtest_path, qmp_path):
                listener = stack.enter_context(socket.socket(socket.AF_UNIX, socket.SOCK_STREAM))
                listener.bind(str(path))
                listener.listen(1)
                listeners.append(listener)
            spawned = proc.spawn(qtest_argv(binary, machine, qtest_path, qmp_path, extra, display=display,
                                            accel=accel), log=log,
                                 env=env)
            stack.callback(spawned.stop)
            qtest_sock = stack.enter_context(_accept(listeners[0], spawned, "qtest", CONNECT_TIMEOUT_S))
            qmp_sock = stack.enter_context(_accept(listeners[1], spawned, "QMP", CONNECT_TIMEOUT_S))
            qmp = Qmp(qmp_sock, timeout_s)
            qmp.handshake()
            yield QtestSession(qtest=Qtest(qtest_sock, timeout_s), qmp=qmp, log=log, process=spawned)
