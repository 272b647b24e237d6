"""rig.qemu.qtest's protocol handling against a scripted peer on a socket pair: replies,
interleaved IRQ lines, refusals, silence, QMP events and errors."""

from __future__ import annotations

import base64
import json
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rig.qemu.qtest import Qmp, Qtest, QtestError, qtest_argv

Script = Callable[[str], list[str]]  # one received line -> the lines to answer


class Peer:
    """The QEMU side: answers each received line through `script`, records what it got."""

    def __init__(self, sock: socket.socket, script: Script, greeting: list[str] | None = None) -> None:
        self.sock = sock
        self.script = script
        self.received: list[str] = []
        self.greeting = greeting or []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        for line in self.greeting:
            self.sock.sendall(line.encode() + b"\n")
        buffer = b""
        while True:
            try:
                chunk = self.sock.recv(4096)
            except OSError:
                return
            if not chunk:
                return
            buffer += chunk
            while b"\n" in buffer:
                line, buffer = buffer.split(b"\n", 1)
                self.received.append(line.decode())
                for answer in self.script(line.decode()):
                    self.sock.sendall(answer.encode() + b"\n")


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    ours, theirs = socket.socketpair()
    yield ours, theirs
    ours.close()
    theirs.close()


def qtest_with(pair: tuple[socket.socket, socket.socket], script: Script, timeout_s: float = 5.0) -> tuple[Qtest, Peer]:
    ours, theirs = pair
    return Qtest(ours, timeout_s), Peer(theirs, script)


def test_read_and_write_commands_are_sent_in_qtest_syntax(pair) -> None:
    qt, peer = qtest_with(pair, lambda line: ["OK 0x0000000072120000"] if line.startswith("read") else ["OK"])
    assert qt.readl(0x090C0000) == 0x72120000
    qt.writel(0x090C0024, 0xFFFFFFFF)
    qt.writeq(0x40000000, -1)
    assert qt.readq(0x40000000) == 0x72120000
    assert peer.received == ["readl 0x90c0000", "writel 0x90c0024 0xffffffff",
                             "writeq 0x40000000 0xffffffffffffffff", "readq 0x40000000"]


def test_memory_goes_through_base64(pair) -> None:
    stored: dict[str, bytes] = {}

    def script(line: str) -> list[str]:
        words = line.split()
        if words[0] == "b64write":
            stored[words[1]] = base64.b64decode(words[3])
            assert int(words[2], 16) == len(stored[words[1]])
            return ["OK"]
        return ["OK " + base64.b64encode(stored[words[1]][: int(words[2], 16)]).decode()]

    qt, _ = qtest_with(pair, script)
    qt.memwrite(0x40001000, bytes(range(40)))
    assert qt.memread(0x40001000, 40) == bytes(range(40))


def test_a_short_memread_is_an_error(pair) -> None:
    qt, _ = qtest_with(pair, lambda line: ["OK " + base64.b64encode(b"abc").decode()])
    with pytest.raises(QtestError, match="returned 3"):
        qt.memread(0x40000000, 8)


def test_irq_lines_before_a_reply_update_the_levels_in_order(pair) -> None:
    answers = {
        "writel 0x90c1008 0x70007": ["IRQ raise 0", "IRQ raise 2", "OK"],
        "writel 0x90c1004 0x1": ["IRQ lower 0", "OK"],
    }
    qt, _ = qtest_with(pair, lambda line: answers.get(line, ["OK"]))
    qt.writel(0x090C1008, 0x70007)
    assert qt.irq(0) and qt.irq(2) and not qt.irq(1)
    qt.writel(0x090C1004, 1)
    assert not qt.irq(0) and qt.irq(2)
    assert qt.irq_events == [(0, True), (2, True), (0, False)]


def test_refusals_raise_with_qemus_reason(pair) -> None:
    qt, _ = qtest_with(pair, lambda line: ["FAIL Unknown command 'bogus'"])
    with pytest.raises(QtestError, match="Unknown command 'bogus'"):
        qt.command("bogus")


def test_silence_is_a_timeout_not_a_hang(pair) -> None:
    qt, _ = qtest_with(pair, lambda line: [], timeout_s=0.3)
    with pytest.raises(QtestError, match="no answer within"):
        qt.readl(0)


def test_a_closed_connection_is_reported(pair) -> None:
    ours, theirs = pair
    qt = Qtest(ours, 5.0)
    theirs.shutdown(socket.SHUT_RDWR)
    with pytest.raises(QtestError, match="closed the connection|cannot send"):
        qt.readl(0)


def test_clock_step_returns_the_new_virtual_time(pair) -> None:
    qt, peer = qtest_with(pair, lambda line: ["OK 1500"])
    assert qt.clock_step(1000) == 1500
    assert qt.clock_step() == 1500
    assert peer.received == ["clock_step 1000", "clock_step"]


def test_irq_intercept_names_the_gpio_list(pair) -> None:
    qt, peer = qtest_with(pair, lambda line: ["OK"])
    qt.irq_intercept_out("/machine/gpu", "sysbus-irq")
    assert peer.received == ["irq_intercept_out /machine/gpu sysbus-irq"]


def qmp_script(line: str) -> list[str]:
    request = json.loads(line)
    if request["execute"] == "qmp_capabilities":
        return [json.dumps({"return": {}})]
    if request["execute"] == "qom-get":
        return [json.dumps({"event": "RESET", "data": {}}), json.dumps({"return": 7})]
    return [json.dumps({"error": {"class": "GenericError", "desc": "Property 'x' not found"}})]


def test_qmp_handshake_skips_events_and_reports_errors(pair) -> None:
    ours, theirs = pair
    peer = Peer(theirs, qmp_script, greeting=[json.dumps({"QMP": {"version": {}, "capabilities": []}})])
    qmp = Qmp(ours, 5.0)
    qmp.handshake()
    assert qmp.qom_get("/machine/gpu", "jobs-run") == 7
    assert [e["event"] for e in qmp.events] == ["RESET"]
    with pytest.raises(QtestError, match="Property 'x' not found"):
        qmp.qom_set("/machine/gpu", "x", 1)
    assert json.loads(peer.received[1]) == {"execute": "qom-get",
                                            "arguments": {"path": "/machine/gpu", "property": "jobs-run"}}


def test_qmp_wants_a_greeting_first(pair) -> None:
    ours, theirs = pair
    Peer(theirs, qmp_script, greeting=[json.dumps({"return": {}})])
    with pytest.raises(QtestError, match="expected a greeting"):
        Qmp(ours, 5.0).handshake()


def test_argv_runs_no_cpu_and_connects_both_sockets() -> None:
    argv = qtest_argv(Path("/q/qemu-system-aarch64"), "virt,mali=on", Path("/t/qt.sock"), Path("/t/qmp.sock"))
    assert argv[argv.index("-accel") + 1] == "qtest"
    assert argv[argv.index("-machine") + 1] == "virt,mali=on"
    assert argv[argv.index("-qtest") + 1] == "unix:/t/qt.sock"
    assert argv[argv.index("-qmp") + 1] == "unix:/t/qmp.sock"
    assert "-nodefaults" in argv and argv[argv.index("-display") + 1] == "none"
    assert "-S" not in argv  # under the qtest accelerator no CPU runs anyway


def test_a_qemu_without_the_qtest_accelerator_runs_paused_with_the_display_asked_for() -> None:
    argv = qtest_argv(Path("/usr/bin/qemu-system-x86_64"), "q35", Path("/t/qt.sock"), Path("/t/qmp.sock"),
                      display="sdl,gl=on", accel="tcg")
    assert argv[argv.index("-accel") + 1] == "tcg" and "-S" in argv  # no firmware runs, rig is the only master
    assert argv[argv.index("-display") + 1] == "sdl,gl=on"
