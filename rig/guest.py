"""SSH into the guest (paramiko): commands, file transfers and an interactive shell, each
with its own deadline. The guest's host key is pinned: a key rig did not put into the
image is refused, never learnt.

One `Guest` holds one SSH transport; every command gets its own channel, so several
threads may run commands at once (a workload beside a memory-pressure loop).
"""

from __future__ import annotations

import logging
import os
import select
import shlex
import signal
import socket
import stat
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import paramiko

# paramiko logs every failed attempt of its transport thread; rig reports failures itself.
logging.getLogger("paramiko").addHandler(logging.NullHandler())

from rig.errors import InfraError, KernelError, UserError, disk_full

USER = "root"
# The first SSH handshake under TCG, with the guest busy booting, can take a few seconds.
HANDSHAKE_TIMEOUT_S = 15.0
# A channel open or an SFTP round trip; a live guest answers these in well under a second.
CHANNEL_TIMEOUT_S = 30.0
# Copying one file, or a directory tree (IGT's results), over SFTP.
COPY_TIMEOUT_S = 120.0
TREE_TIMEOUT_S = 300.0
READ_CHUNK = 65536


class GuestUnreachable(InfraError):
    """No SSH session could be made with the guest."""


class GuestTimeout(KernelError):
    """A command in the guest did not finish in time: the guest hangs or is too slow."""


class HostKeyMismatch(InfraError):
    """Whatever answered is not the guest rig booted."""


@dataclass(frozen=True)
class GuestResult:
    argv: tuple[str, ...]
    exit_status: int
    stdout: str
    stderr: str
    duration_s: float

    @property
    def ok(self) -> bool:
        return self.exit_status == 0


def _copy_error(exc: BaseException, remote: str, local: Path) -> InfraError:
    """What a failed copy from the guest was: the host's disk refusing the local file
    (its fault, whatever the guest does), else the connection."""
    if (full := disk_full(exc)) is not None:
        return InfraError(f"the disk is full copying the guest's {remote} to {local} "
                          f"({getattr(exc, 'strerror', None)})", hint=full.hint)
    return GuestUnreachable(f"copying the guest's {remote} to {local} failed: {str(exc) or type(exc).__name__}")


def remote_command(argv: Sequence[str], env: Mapping[str, str] | None = None) -> str:
    """The one string sshd hands to the guest's shell: every word quoted, env via env(1)."""
    if not argv:
        raise UserError("empty command for the guest", hint="give the program to run and its arguments")
    words = [str(a) for a in argv]
    if env:
        for key in env:
            if not key or not (key[0].isalpha() or key[0] == "_") or not all(c.isalnum() or c == "_" for c in key):
                raise UserError(f"environment variable name {key!r} is not valid", hint="use letters, digits and _")
        words = ["env", *(f"{k}={v}" for k, v in env.items()), *words]
    return shlex.join(words)


def _handle_channel_request(channel: paramiko.Channel, message: paramiko.Message) -> None:
    """paramiko's handler of channel requests, which also reads exit-signal (RFC 4254 6.10).

    sshd sends exit-signal instead of exit-status when the command died of a signal (the
    guest's OOM killer, a crash, a kill). paramiko reads only exit-status and drops the
    other, so such a command looked like an SSH connection lost mid-command; here it
    gets the status a shell gives it, 128 + the signal's number (137 for KILL).
    """
    start = message.packet.tell()
    if message.get_text() == "exit-signal":
        message.get_boolean()  # want-reply: always false for exit-signal
        number = getattr(signal.Signals, f"SIG{message.get_text()}", None)
        channel.exit_status = 128 + (int(number) if number is not None else 0)
        channel.status_event.set()
        return
    message.packet.seek(start)
    paramiko.Channel._handle_request(channel, message)


def _read_exit_signal(transport: paramiko.Transport) -> None:
    """Route this transport's channel requests through `_handle_channel_request` (the
    transport's own table, so no other paramiko user in the process is touched)."""
    table = type(transport)._channel_handler_table
    if transport.__dict__.get("_channel_handler_table") is None:
        transport._channel_handler_table = {  # type: ignore[misc]
            **table, paramiko.common.MSG_CHANNEL_REQUEST: _handle_channel_request}


def pinned_keys(known_hosts: Path) -> list[paramiko.PKey]:
    """The host keys in a known_hosts file rig wrote for an image."""
    keys: list[paramiko.PKey] = []
    for line in known_hosts.read_text().splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        entry = paramiko.hostkeys.HostKeyEntry.from_line(line)
        if entry is not None and entry.key is not None:
            keys.append(entry.key)
    if not keys:
        raise InfraError(f"no host key in {known_hosts}", hint="rebuild the guest image: rig image build --rebuild")
    return keys


class _PinnedKeyPolicy(paramiko.MissingHostKeyPolicy):
    """Refuse every key: the pinned ones are already in the client's known keys."""

    def missing_host_key(self, client: paramiko.SSHClient, hostname: str, key: paramiko.PKey) -> None:
        raise HostKeyMismatch(
            f"the SSH server at {hostname} offered a {key.get_name()} host key that is not the guest image's "
            f"pinned host key (fingerprint {key.fingerprint})",
            hint="another program may hold the forwarded port; run again",
        )


def _greeted_socket(host: str, port: int, wait_s: float) -> socket.socket:
    """A TCP connection on which the SSH server has already sent its first bytes."""
    try:
        sock = socket.create_connection((host, port), timeout=wait_s)
    except OSError as exc:
        raise GuestUnreachable(f"cannot connect to {host}:{port}: {exc.strerror or exc}") from exc
    try:
        sock.settimeout(wait_s)
        first = sock.recv(4, socket.MSG_PEEK)  # leave the banner for paramiko to read
    except OSError as exc:
        sock.close()
        raise GuestUnreachable(f"sshd in the guest did not greet within {wait_s:.1f} s") from exc
    if not first:
        sock.close()
        raise GuestUnreachable("the guest closed the connection (sshd not listening yet)")
    return sock


class Guest:
    """An SSH session with the guest (see the module docstring)."""

    def __init__(self, client: paramiko.SSHClient, host: str, port: int) -> None:
        self._client = client
        self.host = host
        self.port = port
        self._lock = threading.Lock()

    @classmethod
    def connect(cls, port: int, key: Path, known_hosts: Path, *, host: str = "127.0.0.1",
                timeout: float = HANDSHAKE_TIMEOUT_S, banner_wait_s: float | None = None) -> Guest:
        """One attempt to log in; raises GuestUnreachable (or HostKeyMismatch) on failure.

        `banner_wait_s`: give up early unless sshd greets within this time. QEMU's user
        networking accepts the TCP connection before the guest does, so while the guest
        is still booting a connection can sit silent for long; a short wait and a retry
        is faster than a long handshake timeout.
        """
        sock = _greeted_socket(host, port, banner_wait_s if banner_wait_s is not None else timeout)
        client = paramiko.SSHClient()
        address = f"[{host}]:{port}"
        for pinned in pinned_keys(known_hosts):
            client.get_host_keys().add(address, pinned.get_name(), pinned)
        client.set_missing_host_key_policy(_PinnedKeyPolicy())
        try:
            pkey = paramiko.Ed25519Key.from_private_key_file(str(key))
            client.connect(
                host, port=port, username=USER, pkey=pkey, sock=sock,
                timeout=timeout, banner_timeout=timeout, auth_timeout=timeout, channel_timeout=timeout,
                allow_agent=False, look_for_keys=False,
                # The post-quantum exchange costs seconds under TCG; the guest offers curve25519.
                disabled_algorithms={"kex": ["mlkem768x25519-sha256", "sntrup761x25519-sha512@openssh.com"]},
            )
        except HostKeyMismatch:
            client.close()
            raise
        except paramiko.BadHostKeyException as exc:
            client.close()
            raise HostKeyMismatch(f"the SSH server at {address} offered a host key that is not the guest image's "
                                  f"pinned host key (fingerprint {exc.key.fingerprint})",
                                  hint="another program may hold the forwarded port; run again") from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            client.close()
            sock.close()
            raise GuestUnreachable(f"SSH to the guest at {address} failed: {str(exc) or type(exc).__name__}") from exc
        transport = client.get_transport()
        assert transport is not None
        transport.set_keepalive(5)
        return cls(client, host, port)

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> Guest:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def alive(self) -> bool:
        transport = self._client.get_transport()
        return transport is not None and transport.is_active()

    def _channel(self, timeout: float) -> paramiko.Channel:
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise GuestUnreachable("the SSH session with the guest is closed")
        try:
            _read_exit_signal(transport)
            return transport.open_session(timeout=min(timeout, CHANNEL_TIMEOUT_S))
        except (paramiko.SSHException, OSError, EOFError) as exc:
            raise GuestUnreachable(f"cannot open an SSH channel to the guest: {str(exc) or type(exc).__name__}") from exc

    # ------------------------------------------------------------ commands

    def run(self, argv: Sequence[str], *, timeout: float, check: bool = False,
            env: Mapping[str, str] | None = None, input: bytes | None = None,
            on_stdout: Callable[[bytes], None] | None = None,
            on_stderr: Callable[[bytes], None] | None = None) -> GuestResult:
        """Run argv in the guest; GuestTimeout if it has not finished after `timeout` s.

        `on_stdout`/`on_stderr` see the output as it arrives (it is also kept whole)."""
        command = remote_command(argv, env)
        started = time.monotonic()
        deadline = started + timeout
        channel = self._channel(timeout)
        out, err = bytearray(), bytearray()
        try:
            channel.exec_command(command)
            if input is not None:
                channel.sendall(input)
            channel.shutdown_write()
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise GuestTimeout(
                        f"guest command {shlex.join(argv)} did not finish within {timeout:.0f} s",
                        hint="the guest may hang; see the console log")
                select.select([channel], [], [], min(remaining, 1.0))
                while channel.recv_ready():
                    data = channel.recv(READ_CHUNK)
                    out += data
                    if on_stdout is not None:
                        on_stdout(data)
                while channel.recv_stderr_ready():
                    data = channel.recv_stderr(READ_CHUNK)
                    err += data
                    if on_stderr is not None:
                        on_stderr(data)
                drained = not channel.recv_ready() and not channel.recv_stderr_ready()
                # Done when the exit status came and the output ended (EOF or close).
                if drained and channel.exit_status_ready() and (channel.eof_received or channel.closed):
                    break
                if drained and channel.closed:
                    break
            status = channel.recv_exit_status() if channel.exit_status_ready() else -1
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise GuestUnreachable(f"SSH connection lost while running {shlex.join(argv)}: {str(exc) or type(exc).__name__}") from exc
        finally:
            channel.close()
        result = GuestResult(tuple(argv), status, out.decode(errors="replace"), err.decode(errors="replace"),
                             time.monotonic() - started)
        if status == -1:
            raise GuestUnreachable(f"guest command {shlex.join(argv)} ended without an exit status (connection lost?)")
        if check and not result.ok:
            detail = (result.stderr or result.stdout).strip().splitlines()[-10:]
            raise KernelError(f"guest command {shlex.join(argv)} failed with exit status {status}"
                              + (":\n    " + "\n    ".join(detail) if detail else ""))
        return result

    def start_poweroff(self) -> None:
        """Ask rig-init to power the guest off; returns at once (the SSH session dies with it)."""
        channel = self._channel(5)
        try:
            channel.exec_command(remote_command(["kill", "-USR2", "1"]))
            # Closing before sshd has run the command could drop it; kill returns at once.
            channel.status_event.wait(3)
        finally:
            channel.close()

    # ------------------------------------------------------------ files

    def _sftp(self, timeout: float) -> paramiko.SFTPClient:
        transport = self._client.get_transport()
        if transport is None or not transport.is_active():
            raise GuestUnreachable("the SSH session with the guest is closed")
        channel = self._channel(timeout)
        channel.settimeout(timeout)
        channel.invoke_subsystem("sftp")
        return paramiko.SFTPClient(channel)

    def put(self, local: Path, remote: str, *, timeout: float = COPY_TIMEOUT_S, mode: int | None = None) -> None:
        """Copy a host file into the guest (mode: the file's own unless given)."""
        # Outside the try: a host file that is not there is not the guest's failure.
        mode = mode if mode is not None else stat.S_IMODE(os.stat(local).st_mode)
        try:
            with self._sftp(timeout) as sftp:
                sftp.put(str(local), remote)
                sftp.chmod(remote, mode)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise GuestUnreachable(f"copying {local} to the guest's {remote} failed: {str(exc) or type(exc).__name__}") from exc

    def get(self, remote: str, local: Path, *, timeout: float = COPY_TIMEOUT_S) -> Path:
        """Copy a guest file to the host."""
        local.parent.mkdir(parents=True, exist_ok=True)
        try:
            with self._sftp(timeout) as sftp:
                sftp.get(remote, str(local))
        except FileNotFoundError as exc:
            raise KernelError(f"the guest has no file {remote}") from exc
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise _copy_error(exc, remote, local) from exc
        return local

    def get_dir(self, remote: str, local: Path, *, timeout: float = TREE_TIMEOUT_S) -> Path:
        """Copy a guest directory tree (regular files only) to the host."""
        deadline = time.monotonic() + timeout
        try:
            with self._sftp(timeout) as sftp:
                self._get_tree(sftp, remote, local, deadline)
        except (OSError, EOFError, paramiko.SSHException) as exc:
            raise _copy_error(exc, remote, local) from exc
        return local

    def _get_tree(self, sftp: paramiko.SFTPClient, remote: str, local: Path, deadline: float) -> None:
        local.mkdir(parents=True, exist_ok=True)
        for entry in sftp.listdir_attr(remote):
            if time.monotonic() > deadline:
                raise GuestTimeout(f"copying the guest's {remote} took too long")
            source = f"{remote.rstrip('/')}/{entry.filename}"
            mode = entry.st_mode or 0
            if stat.S_ISDIR(mode):
                self._get_tree(sftp, source, local / entry.filename, deadline)
            elif stat.S_ISREG(mode):
                sftp.get(source, str(local / entry.filename))

    # ------------------------------------------------------------ interactive

    def interactive_shell(self, *, idle_timeout: float | None = None) -> int:
        """A login shell on this terminal (stdin must be a tty); returns its exit status."""
        import termios
        import tty

        channel = self._channel(CHANNEL_TIMEOUT_S)
        size = os.get_terminal_size(sys.stdout.fileno())
        channel.get_pty(term=os.environ.get("TERM", "xterm"), width=size.columns, height=size.lines)
        channel.invoke_shell()
        saved = termios.tcgetattr(sys.stdin.fileno())
        last = time.monotonic()
        try:
            tty.setraw(sys.stdin.fileno())
            while True:
                ready, _, _ = select.select([channel, sys.stdin], [], [], 1.0)
                if channel in ready:
                    data = channel.recv(READ_CHUNK)
                    if not data:
                        break
                    os.write(sys.stdout.fileno(), data)
                    last = time.monotonic()
                if sys.stdin in ready:
                    data = os.read(sys.stdin.fileno(), 1024)
                    if not data:
                        break
                    channel.sendall(data)
                    last = time.monotonic()
                if channel.exit_status_ready() and not channel.recv_ready():
                    break
                if idle_timeout is not None and time.monotonic() - last > idle_timeout:
                    break
        finally:
            termios.tcsetattr(sys.stdin.fileno(), termios.TCSADRAIN, saved)
            status = channel.recv_exit_status() if channel.exit_status_ready() else 0
            channel.close()
        return status
