"""Guest over a real SSH protocol: a small paramiko server in a thread stands in for the
guest's sshd (a seam) and runs each command with `sh -c`, as sshd does."""

from __future__ import annotations

import errno
import shlex
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import paramiko
import pytest

from rig.errors import InfraError, KernelError, UserError
from rig.guest import Guest, GuestTimeout, GuestUnreachable, HostKeyMismatch, pinned_keys, remote_command


def keygen(path: Path) -> Path:
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(path)], check=True)
    return path


class FakeSshd(paramiko.ServerInterface):
    def __init__(self, client_key: paramiko.PKey, children: list[subprocess.Popen[bytes]]) -> None:
        self.client_key = client_key
        self.children = children

    def get_allowed_auths(self, username: str) -> str:
        return "publickey"

    def check_auth_publickey(self, username: str, key: paramiko.PKey) -> int:
        ok = username == "root" and key == self.client_key
        return paramiko.AUTH_SUCCESSFUL if ok else paramiko.AUTH_FAILED

    def check_channel_request(self, kind: str, chanid: int) -> int:
        return paramiko.OPEN_SUCCEEDED if kind == "session" else paramiko.OPEN_FAILED_ADMINISTRATIVELY_PROHIBITED

    def check_channel_exec_request(self, channel: paramiko.Channel, command: bytes) -> bool:
        child = subprocess.Popen(["sh", "-c", command.decode()], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
        self.children.append(child)
        threading.Thread(target=self._serve, args=(channel, child), daemon=True).start()
        return True

    @staticmethod
    def _serve(channel: paramiko.Channel, child: subprocess.Popen[bytes]) -> None:
        assert child.stdout is not None and child.stderr is not None and child.stdin is not None

        def pump_stderr() -> None:
            for block in iter(lambda: child.stderr.read1(65536), b""):  # type: ignore[union-attr]
                channel.sendall_stderr(block)

        def pump_stdin() -> None:
            # The client's EOF comes after the server acknowledged the exec request, so
            # closing the channel only after it keeps the close from overtaking the
            # acknowledgement (which a client rightly takes as a failed exec).
            try:
                for block in iter(lambda: channel.recv(65536), b""):
                    child.stdin.write(block)  # type: ignore[union-attr]
                    child.stdin.flush()  # type: ignore[union-attr]
            except OSError:  # the program ended without reading all its input, as programs may
                pass
            finally:
                try:
                    child.stdin.close()  # type: ignore[union-attr]
                except OSError:
                    pass

        err = threading.Thread(target=pump_stderr, daemon=True)
        err.start()
        stdin = threading.Thread(target=pump_stdin, daemon=True)
        stdin.start()
        try:
            for block in iter(lambda: child.stdout.read1(65536), b""):  # type: ignore[union-attr]
                channel.sendall(block)
            err.join()
            status = child.wait()
            stdin.join()
            if status >= 0:
                channel.send_exit_status(status)
            else:  # as OpenSSH's sshd does: a death by signal is exit-signal, with no exit-status
                send_exit_signal(channel, signal.Signals(-status).name.removeprefix("SIG"))
            channel.shutdown_write()
            channel.close()
        except (OSError, EOFError):
            child.kill()


def send_exit_signal(channel: paramiko.Channel, name: str) -> None:
    """RFC 4254 6.10's exit-signal request, which paramiko's server side cannot send."""
    message = paramiko.Message()
    message.add_byte(paramiko.common.cMSG_CHANNEL_REQUEST)
    message.add_int(channel.remote_chanid)
    message.add_string("exit-signal")
    message.add_boolean(False)
    message.add_string(name)
    message.add_boolean(False)  # core dumped
    message.add_string("")  # error message
    message.add_string("")  # language tag
    channel.transport._send_user_message(message)


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    """(port, client key, known_hosts) of a live fake sshd on 127.0.0.1."""
    host_key = keygen(tmp_path / "host")
    client_key = keygen(tmp_path / "client")
    known_hosts = tmp_path / "known_hosts"
    known_hosts.write_text("rig-guest " + " ".join((tmp_path / "host.pub").read_text().split()[:2]) + "\n")
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    children: list[subprocess.Popen[bytes]] = []
    transports: list[paramiko.Transport] = []
    server = FakeSshd(paramiko.Ed25519Key.from_private_key_file(str(client_key)), children)

    def accept() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            transport = paramiko.Transport(conn)
            transport.add_server_key(paramiko.Ed25519Key.from_private_key_file(str(host_key)))
            transports.append(transport)
            try:
                transport.start_server(server=server)
            except (OSError, EOFError, paramiko.SSHException):
                continue  # a client that hung up during negotiation (some tests do)

    threading.Thread(target=accept, daemon=True).start()
    yield listener.getsockname()[1], client_key, known_hosts
    listener.close()
    for transport in transports:
        transport.close()
    for child in children:
        if child.poll() is None:
            child.kill()


@pytest.fixture
def guest(sshd: tuple[int, Path, Path]) -> Iterator[Guest]:
    port, key, known_hosts = sshd
    with Guest.connect(port, key, known_hosts, timeout=10) as connected:
        yield connected


def test_arguments_reach_the_program_verbatim(guest: Guest) -> None:
    words = ["a b", "it's", "$(echo pwned)", "; echo injected", "*", "", "back\\slash", "new\nline"]
    result = guest.run(["printf", "[%s]", *words], timeout=10)
    assert result.ok
    assert result.stdout == "".join(f"[{w}]" for w in words)


def test_environment_is_passed_quoted(guest: Guest) -> None:
    result = guest.run(["sh", "-c", 'printf %s "$IGT_X"'], timeout=10, env={"IGT_X": "x y; $(z)"})
    assert result.stdout == "x y; $(z)"


def test_exit_status_stdout_stderr_and_duration(guest: Guest) -> None:
    result = guest.run(["sh", "-c", "echo out; echo err >&2; sleep 0.2; exit 3"], timeout=10)
    assert (result.exit_status, result.stdout, result.stderr) == (3, "out\n", "err\n")
    assert result.duration_s >= 0.2 and not result.ok


def test_a_command_killed_by_a_signal_has_its_status_not_a_lost_connection(guest: Guest) -> None:
    """The guest's OOM killer ends a test with SIGKILL: sshd says exit-signal KILL. The
    command failed (137, as a shell says it); the connection is fine and keeps working."""
    # $PPID: the shell the stand-in sshd started for the command (sshd's own child)
    killed = guest.run(["sh", "-c", "echo before; kill -KILL $PPID"], timeout=30)
    assert killed.exit_status == 128 + signal.SIGKILL and killed.stdout == "before\n"
    assert guest.run(["sh", "-c", "kill -SEGV $PPID"], timeout=30).exit_status == 128 + signal.SIGSEGV
    assert guest.run(["true"], timeout=30).exit_status == 0


def test_check_raises_with_the_output(guest: Guest) -> None:
    with pytest.raises(KernelError, match="exit status 2"):
        guest.run(["sh", "-c", "echo broken >&2; exit 2"], timeout=10, check=True)


def test_large_output_arrives_whole(guest: Guest) -> None:
    result = guest.run(["head", "-c", "3000000", "/dev/zero"], timeout=30)
    assert len(result.stdout) == 3_000_000


def test_streaming_callbacks_see_output(guest: Guest) -> None:
    seen: list[bytes] = []
    guest.run(["sh", "-c", "echo one; echo two"], timeout=10, on_stdout=seen.append)
    assert b"".join(seen) == b"one\ntwo\n"


def test_a_command_that_never_returns_hits_its_deadline(guest: Guest) -> None:
    started = time.monotonic()
    with pytest.raises(GuestTimeout, match="did not finish within 1 s"):
        guest.run(["sleep", "60"], timeout=1)
    assert time.monotonic() - started < 5
    assert guest.run(["true"], timeout=10).ok  # the session survives


def test_commands_from_several_threads_share_one_session(guest: Guest) -> None:
    results: dict[int, str] = {}

    def work(i: int) -> None:
        results[i] = guest.run(["sh", "-c", f"sleep 0.3; echo {i}"], timeout=20).stdout

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert results == {i: f"{i}\n" for i in range(6)}
    assert time.monotonic() - started < 6 * 0.3 + 2  # in parallel, not one after another


def test_unpinned_host_key_is_refused(sshd: tuple[int, Path, Path], tmp_path: Path) -> None:
    port, key, _ = sshd
    other = keygen(tmp_path / "other")
    wrong = tmp_path / "wrong_known_hosts"
    wrong.write_text("rig-guest " + " ".join(Path(str(other) + ".pub").read_text().split()[:2]) + "\n")
    with pytest.raises(HostKeyMismatch, match="not the guest image's pinned host key"):
        Guest.connect(port, key, wrong, timeout=10)


def test_wrong_client_key_is_unreachable_not_a_crash(sshd: tuple[int, Path, Path], tmp_path: Path) -> None:
    port, _, known_hosts = sshd
    with pytest.raises(GuestUnreachable):
        Guest.connect(port, keygen(tmp_path / "stranger"), known_hosts, timeout=10)


def test_silent_server_gives_up_after_the_banner_wait(tmp_path: Path) -> None:
    listener = socket.socket()  # accepts like QEMU's user networking, then says nothing
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    key, known = keygen(tmp_path / "k"), tmp_path / "kh"
    known.write_text("rig-guest " + " ".join((tmp_path / "k.pub").read_text().split()[:2]) + "\n")
    connect_timeout = 60.0
    started = time.monotonic()
    with pytest.raises(GuestUnreachable, match="did not greet"):
        Guest.connect(listener.getsockname()[1], key, known, timeout=connect_timeout, banner_wait_s=0.5)
    # the banner wait ended it, not the much longer connect timeout (a loaded host is slow, not that slow)
    assert time.monotonic() - started < connect_timeout / 2
    listener.close()


def test_closed_port_is_unreachable(tmp_path: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    key, known = keygen(tmp_path / "k"), tmp_path / "kh"
    known.write_text("rig-guest " + " ".join((tmp_path / "k.pub").read_text().split()[:2]) + "\n")
    with pytest.raises(GuestUnreachable):
        Guest.connect(port, key, known, banner_wait_s=0.5)


def test_remote_command_quoting() -> None:
    assert shlex.split(remote_command(["echo", "a b", "$HOME"])) == ["echo", "a b", "$HOME"]
    assert shlex.split(remote_command(["true"], {"A": "1 2"})) == ["env", "A=1 2", "true"]
    with pytest.raises(UserError):
        remote_command([])
    with pytest.raises(UserError, match="not valid"):
        remote_command(["true"], {"A;rm": "x"})


def test_known_hosts_without_keys_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "known_hosts"
    empty.write_text("# nothing\n")
    with pytest.raises(Exception, match="no host key"):
        pinned_keys(empty)


def test_a_copy_the_hosts_full_disk_refused_is_the_hosts_fault_not_a_lost_guest(tmp_path: Path) -> None:
    """paramiko's sftp.get writes the local file: ENOSPC there is the host's disk (exit 3,
    the disk-full hint), never 'the guest stopped answering' (which would start hang
    forensics on a healthy guest); any other failure of the copy is the connection's."""
    from rig.errors import DISK_FULL_HINT
    from rig.guest import _copy_error

    full = _copy_error(OSError(errno.ENOSPC, "No space left on device"), "/tmp/results", tmp_path / "igt")
    assert type(full) is InfraError and full.hint == DISK_FULL_HINT
    assert full.message == f"the disk is full copying the guest's /tmp/results to {tmp_path / 'igt'} " \
                           "(No space left on device)"
    lost = _copy_error(EOFError(), "/tmp/results", tmp_path / "igt")
    assert isinstance(lost, GuestUnreachable) and "EOFError" in lost.message
