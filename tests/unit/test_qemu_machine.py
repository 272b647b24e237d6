"""Machine against a stand-in for QEMU (a seam): a small program that connects to rig's
QMP socket and speaks real QMP JSON, with switchable misbehaviour."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import stat
import sys
import time
from pathlib import Path

import pytest

from rig.guest_spec import GuestSpec
from rig.qemu import machine as machine_mod
from rig.qemu.argv import MachineSpec, build_argv
from rig.qemu.machine import Life, Machine, MachineError, MachineState

FAKE_QEMU = r'''
import json, os, signal, socket, sys, time
argv = sys.argv[1:]
mode = os.environ.get("FAKE_QEMU_MODE", "normal")
def chardev(kind):
    for i, word in enumerate(argv):
        if word == "-chardev" and argv[i + 1].startswith(kind):
            return dict(p.split("=", 1) for p in argv[i + 1].split(",")[1:] if "=" in p)["path"]
console = open(chardev("file"), "a")
if mode == "exit-early":
    print("qemu-system-x86_64: -device nonsense: no such device", file=sys.stderr)
    sys.exit(1)
if mode == "no-gl":  # the display's OpenGL fails, as a missing EGL makes it; says what it was given
    print(f"SDL_VIDEODRIVER={os.environ.get('SDL_VIDEODRIVER')}", file=sys.stderr)
    print("qemu-system-x86_64: OpenGL support is not available", file=sys.stderr)
    sys.exit(1)
if mode == "ignore-term":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
sock = socket.socket(socket.AF_UNIX)
sock.connect(chardev("socket"))
def send(obj):
    if obj.get("id", 0) is None:
        del obj["id"]
    sock.sendall((json.dumps(obj) + "\n").encode())
def messages():  # QMP is a stream of JSON objects; newlines are optional
    decoder, pending = json.JSONDecoder(), ""
    while True:
        data = sock.recv(65536)
        if not data:
            return
        pending += data.decode()
        while pending.strip():
            try:
                obj, end = decoder.raw_decode(pending.lstrip())
            except ValueError:
                break
            pending = pending.lstrip()[end:]
            yield obj
def event(name, data=None):
    now = time.time()
    send({"event": name, "data": data or {}, "timestamp": {"seconds": int(now), "microseconds": 0}})
send({"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 0}, "package": ""}, "capabilities": []}})
balloon = 2048 << 20
qmplog = os.environ.get("FAKE_QEMU_QMPLOG")
for msg in messages():
    cmd, mid, args = msg.get("execute"), msg.get("id"), msg.get("arguments", {})
    reply = {"return": {}}
    if qmplog:
        with open(qmplog, "a") as out:
            out.write(json.dumps(msg) + "\n")
    if cmd == "qmp_capabilities":
        send({"return": {}, "id": mid})
        console.write("[    0.000000] Linux version 6.1.0 (fake)\n"); console.flush()
        if mode == "panic":
            time.sleep(0.3)
            console.write("[    1.000000] Kernel panic - not syncing: sysrq triggered crash\n"
                          "[    1.000001] CPU: 0 PID: 1 Comm: sh\n"); console.flush()
            event("GUEST_PANICKED", {"action": "pause"})
            time.sleep(0.1)
            sys.exit(0)
        if mode == "disk-full":  # the overlay's write refused by the host: werror=enospc pauses the guest
            event("BLOCK_IO_ERROR", {"device": "", "node-name": "#block123", "operation": "write",
                                     "action": "stop", "nospace": True, "reason": "No space left on device"})
            event("STOP")
        continue
    if cmd == "query-status":
        reply = {"return": {"status": "running", "running": True}}
    elif cmd == "balloon":
        balloon = args["value"]
        send({"return": {}, "id": mid})
        event("BALLOON_CHANGE", {"actual": balloon})
        continue
    elif cmd == "query-balloon":
        reply = {"return": {"actual": balloon}}
    elif cmd == "screendump":
        open(args["filename"], "wb").write(b"\x89PNG\r\n\x1a\n")
    elif cmd == "send-key":
        # A kernel whose keyboard interrupt is still taken answers sysrq on the console;
        # a wedged one ("wedged": every CPU stuck with interrupts off) says nothing.
        keys = [k["data"] for k in args["keys"]]
        if mode == "hung-task" and keys[:2] == ["alt", "sysrq"]:
            answers = {"w": "sysrq: Show Blocked State\n"
                            "task:vgem_basic      state:D stack:0     pid:231   ppid:229    flags:0x00004000\n"
                            "Call Trace:\n <TASK>\n __schedule+0x3f0/0xb00\n schedule+0x5e/0xd0\n"
                            " vgem_fence_signal_ioctl+0x9a/0x150\n drm_ioctl+0x2a1/0x4c0\n </TASK>\n",
                       "l": "sysrq: Show backtrace of all active CPUs\n"
                            "NMI backtrace for cpu 1 skipped: idling at default_idle+0xb/0x10\n"}
            console.write("".join(f"[   80.00000{i}] {line}\n"
                                  for i, line in enumerate(answers.get(keys[2], "").splitlines())))
            console.flush()
    elif cmd == "inject-nmi":
        if mode == "wedged":
            send({"return": {}, "id": mid})
            console.write("[   90.000000] Uhhuh. NMI received for unknown reason 30 on CPU 0.\n"
                          "[   90.000001] Kernel panic - not syncing: NMI: Not continuing\n"
                          "[   90.000002] NMI backtrace for cpu 1\n[   90.000003] Call Trace:\n"
                          "[   90.000004]  <TASK>\n[   90.000005]  native_queued_spin_lock_slowpath+0x10/0x20\n"
                          "[   90.000006]  vgem_fence_attach_ioctl+0x1/0x2\n[   90.000007]  </TASK>\n")
            console.flush()
            sys.exit(0)  # panic=-1 and -no-reboot: the guest's reboot ends QEMU
    elif cmd == "human-monitor-command":
        line = args["command-line"]
        if line == "info registers -a":
            out = "".join(f"CPU#{n}\nRAX=0000000000000000 RBX=0000000000000001\nRSI=0 RDI=0 RBP=0 RSP=ffffc9000000{n}e58\n"
                          f"RIP=ffffffff8100{n}010 RFL=00000046 [---Z-P-] CPL=0 II=0 A20=1 SMM=0 HLT=0\n"
                          for n in range(2))
        else:  # x /Ngx ADDR on one CPU: its stack holds a return address into the ioctl
            out = f"{line.split()[-1][2:]}: 0xffffffff81002034 0x0000000000000001\n"
        reply = {"return": out}
    elif cmd == "dump-guest-memory":
        open(args["protocol"].removeprefix("file:"), "wb").write(b"\x7fELF" + bytes(60))
    elif cmd == "fake-poweroff":
        send({"return": {}, "id": mid}); event("SHUTDOWN", {"guest": True, "reason": "guest-shutdown"}); sys.exit(0)
    elif cmd == "quit":
        send({"return": {}, "id": mid})
        if mode in ("ignore-quit", "ignore-term"):
            continue
        event("SHUTDOWN", {"guest": False, "reason": "host-qmp-quit"}); sys.exit(0)
    else:
        reply = {"error": {"class": "CommandNotFound", "desc": f"The command {cmd} has not been found"}}
    reply["id"] = mid
    send(reply)
'''


@pytest.fixture(autouse=True)
def quick_shutdown(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(machine_mod, "QMP_QUIT_WAIT_S", 1.0)
    monkeypatch.setattr(machine_mod, "SIGTERM_WAIT_S", 1.0)
    monkeypatch.setattr(machine_mod, "GUEST_POWEROFF_WAIT_S", 2.0)


def fake_machine(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str = "normal",
                 gpu: str = "virtio-gpu") -> Machine:
    script = tmp_path / "fake_qemu.py"
    script.write_text(FAKE_QEMU)
    monkeypatch.setenv("FAKE_QEMU_MODE", mode)
    spec = MachineSpec(kernel=tmp_path / "bzImage", run_dir=tmp_path / "run", ssh_port=2222, disk=tmp_path / "o.qcow2",
                       guest=GuestSpec(gpu=gpu))
    argv = build_argv(spec)
    return Machine(spec, argv=[sys.executable, str(script), *argv[1:]])


def gone(pid: int | None) -> bool:
    assert pid is not None
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_qmp_commands_events_and_private_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with fake_machine(tmp_path, monkeypatch) as machine:
            assert stat.S_IMODE(machine.spec.run_dir.stat().st_mode) == 0o700
            assert stat.S_IMODE(machine.spec.qmp_socket.stat().st_mode) == 0o600
            assert await machine.query_status() == "running"
            await machine.balloon(512)
            assert await machine.query_balloon() == 512
            png = await machine.screendump(tmp_path / "screen.png")
            assert png.read_bytes().startswith(b"\x89PNG")
            for _ in range(50):
                if machine.events:
                    break
                await asyncio.sleep(0.05)
            (when, event), = machine.events
            assert event["event"] == "BALLOON_CHANGE" and event["data"]["actual"] == 512 << 20
            assert abs(when - time.time()) < 30
            pid = machine.pid
        assert machine.returncode == 0 and gone(pid)
        logged = [json.loads(line) for line in machine.events_log.read_text().splitlines()]
        assert [e["event"] for e in logged] == ["BALLOON_CHANGE", "SHUTDOWN"]
        assert not machine.spec.qmp_socket.exists()

    asyncio.run(scenario())


def test_failed_command_names_qemus_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with fake_machine(tmp_path, monkeypatch) as machine:
            with pytest.raises(MachineError, match="has not been found"):
                await machine.execute("no-such-command")

    asyncio.run(scenario())


def test_qemu_exiting_before_qmp_shows_its_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    machine = fake_machine(tmp_path, monkeypatch, "exit-early")
    assert machine.state.life is Life.NOT_STARTED
    with pytest.raises(MachineError, match="no such device"):
        asyncio.run(machine.start())
    assert machine.returncode == 1
    assert machine.state == MachineState(Life.FAILED, 1)


def test_qemu_runs_with_the_gpu_models_environment_and_a_gl_failure_names_the_packages(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("SDL_VIDEODRIVER", raising=False)
    machine = fake_machine(tmp_path, monkeypatch, "no-gl", gpu="virgl")
    with pytest.raises(MachineError, match="SDL_VIDEODRIVER=offscreen") as caught:
        asyncio.run(machine.start())
    assert "qemu-system-gui" in (caught.value.hint or "") and "rig doctor" in (caught.value.hint or "")
    (tmp_path / "2d").mkdir()
    plain = fake_machine(tmp_path / "2d", monkeypatch, "no-gl")
    with pytest.raises(MachineError, match="SDL_VIDEODRIVER=None") as caught:
        asyncio.run(plain.start())
    assert "--dry-run" in (caught.value.hint or "")


def test_guest_poweroff_is_tried_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        machine = fake_machine(tmp_path, monkeypatch)
        await machine.start()
        status = await machine.shutdown(lambda: machine.execute("fake-poweroff"))
        assert status == 0
        assert [e["event"] for _, e in machine.events] == ["SHUTDOWN"]
        assert machine.events[0][1]["data"]["reason"] == "guest-shutdown"

    asyncio.run(scenario())


def test_ignored_quit_escalates_to_sigterm(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        machine = fake_machine(tmp_path, monkeypatch, "ignore-quit")
        await machine.start()
        assert await machine.shutdown() == -signal.SIGTERM
        assert gone(machine.pid)

    asyncio.run(scenario())


def test_ignored_sigterm_escalates_to_sigkill(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        machine = fake_machine(tmp_path, monkeypatch, "ignore-term")
        await machine.start()
        assert await machine.shutdown() == -signal.SIGKILL
        assert gone(machine.pid)

    asyncio.run(scenario())


def test_panic_is_noticed_from_console_and_pvpanic(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with fake_machine(tmp_path, monkeypatch, "panic") as machine:
            deadline = time.monotonic() + 10
            while not machine.exited and time.monotonic() < deadline:
                await machine.changed(0.5)
            await asyncio.sleep(0.3)
            assert machine.panicked
            assert machine.panic_line == "Kernel panic - not syncing: sysrq triggered crash"
            assert machine.state == MachineState(Life.PANICKED, 0, machine.panic_line)  # the panic, not the exit
            assert "Comm: sh" in machine.panic_text()
            assert any(e["event"] == "GUEST_PANICKED" for _, e in machine.events)

    asyncio.run(scenario())


def test_a_guest_paused_by_a_full_host_disk_is_the_hosts_problem(tmp_path: Path,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """QEMU's BLOCK_IO_ERROR with nospace: the state says so, and blame makes it the host's
    (exit 3, the disk-full hint), though QEMU still runs and the guest is silent."""
    from rig.errors import DISK_FULL_HINT
    from rig.vm import blame

    async def scenario() -> None:
        async with fake_machine(tmp_path, monkeypatch, "disk-full") as machine:
            deadline = time.monotonic() + 10
            while len(machine.events) < 2 and time.monotonic() < deadline:  # BLOCK_IO_ERROR, STOP
                await machine.changed(0.5)
            state = machine.state
            assert state.life is Life.RUNNING and state.disk_full
            assert state.disk_error == ("write of the guest's disk (#block123) failed on the host "
                                        "(No space left on device); QEMU paused the guest")
            error = blame(machine)
            assert error.exit_code == 3 and error.hint == DISK_FULL_HINT
            assert error.message.startswith("the disk is full: write of the guest's disk")
            assert [e["event"] for _, e in machine.events] == ["BLOCK_IO_ERROR", "STOP"]

    asyncio.run(scenario())


def test_qemu_killed_from_outside_is_seen(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with fake_machine(tmp_path, monkeypatch) as machine:
            assert machine.pid is not None
            os.kill(machine.pid, signal.SIGKILL)
            assert await machine.wait_exit(5) is not None
            assert machine.exited
            assert machine.state.life is Life.KILLED and machine.state.signal == signal.SIGKILL
            with pytest.raises(MachineError, match="not running"):
                await machine.query_status()

    asyncio.run(scenario())


def test_cancellation_still_stops_qemu(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pids: list[int] = []

    async def body() -> None:
        async with fake_machine(tmp_path, monkeypatch, "ignore-quit") as machine:
            assert machine.pid is not None
            pids.append(machine.pid)
            await asyncio.sleep(60)

    async def scenario() -> None:
        task = asyncio.create_task(body())
        while not pids:
            await asyncio.sleep(0.05)
        task.cancel()  # what Ctrl-C does to asyncio.run's main task
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(scenario())
    assert gone(pids[0])


def test_state_is_running_then_stopped_by_rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        machine = fake_machine(tmp_path, monkeypatch, "ignore-quit")
        await machine.start()
        assert machine.state == MachineState(Life.RUNNING) and not machine.state.over
        await machine.shutdown()  # QMP quit ignored: SIGTERM, which is rig's, not a killer's
        assert machine.state == MachineState(Life.STOPPED, -signal.SIGTERM) and machine.state.over

    asyncio.run(scenario())


def test_a_guest_powering_off_by_itself_is_powered_off(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    async def scenario() -> None:
        async with fake_machine(tmp_path, monkeypatch) as machine:
            await machine.execute("fake-poweroff")
            assert await machine.wait_exit(5) == 0
            assert machine.state == MachineState(Life.POWERED_OFF, 0)
        assert machine.state.life is Life.POWERED_OFF  # shutdown after the fact changes nothing

    asyncio.run(scenario())


# ---------------------------------------------------------------- hang forensics over QMP


def _qmp_log(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def _investigate(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, mode: str, policy=None):
    from rig.forensics import HangPolicy, investigate
    from rig.target import X86_64

    qmplog = tmp_path / "qmp.jsonl"
    monkeypatch.setenv("FAKE_QEMU_QMPLOG", str(qmplog))
    machine = fake_machine(tmp_path, monkeypatch, mode)
    (tmp_path / "System.map").write_text("ffffffff81000000 T _stext\nffffffff81000000 T native_queued_spin_lock_slowpath\n"
                                         "ffffffff81001000 T default_idle\nffffffff81002000 T vgem_fence_attach_ioctl\n"
                                         "ffffffff81003000 T _etext\nffffffff82000000 D jiffies\n")

    async def main():
        async with machine:
            record = await investigate(machine, X86_64, policy or HangPolicy(), "a guest command did not finish",
                                       dump_dir=tmp_path / "run", kernel=tmp_path / "bzImage", answer_wait_s=1.0,
                                       quiet_s=0.3, nmi_wait_s=5.0)
            return record, machine.state

    record, state = asyncio.run(main())
    sent = [m for m in _qmp_log(qmplog) if m.get("execute") not in ("qmp_capabilities", "quit")]
    return record, state, sent


def test_a_hung_task_is_asked_for_by_sysrq_keys_and_needs_no_nmi(tmp_path: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    record, state, sent = _investigate(tmp_path, monkeypatch, "hung-task")
    keys = [[k["data"] for k in m["arguments"]["keys"]] for m in sent if m["execute"] == "send-key"]
    assert keys == [["alt", "sysrq", "w"], ["alt", "sysrq", "l"]]
    # the kernel answered: no NMI, and no need of QEMU's view of the vCPUs
    assert all(m["execute"] not in ("inject-nmi", "human-monitor-command") for m in sent)
    assert [(a.key, a.route, a.answered) for a in record.asks] == [("w", "keyboard", True), ("l", "keyboard", True)]
    assert record.nmi is None and state.life is Life.RUNNING  # left for rig to stop as usual
    console = tmp_path / "run" / "console.log"
    full = record.with_console(console)
    assert [(t.comm, t.pid, t.state) for t in full.blocked] == [("vgem_basic", 231, "D")]
    assert "vgem_fence_signal_ioctl" in full.blocked[0].frames
    assert [(c.cpu, c.idle) for c in full.cpus] == [(1, True)]


def test_a_wedged_guest_gets_the_nmi_after_unanswered_keys(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    record, state, sent = _investigate(tmp_path, monkeypatch, "wedged")
    # w went unanswered: the keyboard interrupt is not taken, so l is not even sent; QEMU
    # shows each vCPU (registers, then its stack through its own page tables); then the NMI
    assert [m["execute"] for m in sent] == ["send-key", "human-monitor-command", "human-monitor-command",
                                            "human-monitor-command", "inject-nmi"]
    reads = [m["arguments"] for m in sent if m["execute"] == "human-monitor-command"]
    assert reads[1] == {"command-line": "x /128gx 0xffffc90000000e58", "cpu-index": 0}
    assert reads[2] == {"command-line": "x /128gx 0xffffc90000001e58", "cpu-index": 1}
    assert [(v.cpu, v.pc, v.stack) for v in record.vcpus] == [
        (0, "native_queued_spin_lock_slowpath+0x10", ("vgem_fence_attach_ioctl+0x34",)),
        (1, "default_idle+0x10", ("vgem_fence_attach_ioctl+0x34",))]
    shown = (tmp_path / "run" / "vcpus.txt").read_text()  # QEMU's words, kept beside the console
    assert shown.startswith("(qemu) info registers -a\nCPU#0\n") and "[cpu 1]" in shown
    assert [(a.key, a.answered) for a in record.asks] == [("w", False)] and record.skipped == ("l",)
    assert record.nmi == "sent" and record.nmi_answered
    assert state.life is Life.PANICKED  # the NMI became a panic, as unknown_nmi_panic makes it
    full = record.with_console(tmp_path / "run" / "console.log")
    assert [c.cpu for c in full.cpus] == [1] and full.cpus[0].frames[0] == "native_queued_spin_lock_slowpath"


def test_dump_on_hang_writes_the_guest_memory_before_the_nmi(tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from rig.forensics import DUMP_NAME, HangPolicy

    record, _, sent = _investigate(tmp_path, monkeypatch, "wedged", HangPolicy(dump=True, task_list=True))
    assert [m["execute"] for m in sent if m["execute"] != "human-monitor-command"] == [
        "send-key", "dump-guest-memory", "inject-nmi"]
    dump = next(m for m in sent if m["execute"] == "dump-guest-memory")["arguments"]
    assert dump == {"paging": False, "protocol": f"file:{(tmp_path / 'run' / DUMP_NAME).resolve()}"}
    assert record.dump == str((tmp_path / "run" / DUMP_NAME).resolve()) and record.dump_bytes == 64
    assert record.skipped == ("l", "t")
