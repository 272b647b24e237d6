"""The README's main job as an ordinary user: a user of its own (useradd) copies rig's
checkout into its home, runs `./setup` there (Debian's packages are already installed, so
setup needs no root), then `.venv/bin/rig run` on its built-in defaults, with its own
HOME, its own rig cache and no root anywhere.

The user's cache is seeded with copies of the entries the session's fixtures already
built (Debian's 6.1 source tree and rig's package lists, the default kernel build and its
index, the default guest image), owned by the user, so the test measures what rig itself
needs as that user (the KVM probe and its TCG fallback, QEMU, QMP, SSH with the image's
keys, locks, run directory modes) and not a second kernel build. The copies cost about
2.5 GB of disk for the length of the test.

Needs root (to make the user); CI runs as root.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from rig import cache
from tests.slow.test_boot import qemu_processes

REPO = Path(__file__).resolve().parent.parent.parent
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or not shutil.which("useradd") or not shutil.which("runuser"),
    reason="needs root to make an ordinary user for rig (useradd, runuser); CI runs as root")


@dataclass(frozen=True)
class User:
    name: str
    uid: int
    gid: int
    home: Path

    def run(self, argv: list[str], *, cwd: Path, timeout: float) -> subprocess.CompletedProcess[str]:
        """`argv` as this user, with a clean environment of its own (nothing of root's)."""
        env = ["env", "-i", f"HOME={self.home}", f"USER={self.name}", f"LOGNAME={self.name}", f"PATH={PATH}",
               "LANG=C.UTF-8", "SHELL=/bin/sh"]
        return subprocess.run(["runuser", "-u", self.name, "--", *env, *argv], cwd=cwd, capture_output=True,
                              text=True, timeout=timeout)

    def processes(self) -> list[int]:
        """PIDs of every process running as this user."""
        found = []
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    if entry.stat().st_uid == self.uid:
                        found.append(int(entry.name))
                except OSError:
                    continue
        return found


@pytest.fixture
def user() -> Iterator[User]:
    name = f"rigtest{os.getpid() % 100000}"
    home = Path(tempfile.mkdtemp(prefix="rig-user-", dir="/tmp"))
    subprocess.run(["useradd", "--home-dir", str(home), "--no-create-home", "--user-group", "--shell", "/bin/sh",
                    name], check=True, capture_output=True, timeout=60)
    entry = pwd.getpwnam(name)
    os.chown(home, entry.pw_uid, entry.pw_gid)
    made = User(name, entry.pw_uid, entry.pw_gid, home)
    try:
        yield made
    finally:
        for pid in made.processes():  # only what this test's user started
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        subprocess.run(["userdel", name], capture_output=True, timeout=60)
        shutil.rmtree(home, ignore_errors=True)


def _copy_checkout(into: Path) -> None:
    """rig's checkout as it is (tracked and new files, not what .gitignore leaves out),
    as a user would have cloned it."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                            capture_output=True, check=True, timeout=60).stdout.split(b"\0")
    for name in filter(None, (n.decode() for n in listed)):
        source = REPO / name
        if source.is_file():  # a tracked file deleted in the work tree is not copied
            (into / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, into / name)


def _seed_cache(cache_root: Path, kernel, image) -> None:  # type: ignore[no-untyped-def]
    """Copies of the built entries the run will look up: the source tree (a cache hit
    reads its commit), rig's package lists, the kernel build and the aliases pointing at
    it, and the guest image. cp --reflink makes them cheap where the filesystem can."""
    root = cache.cache_root()
    entry = Path(kernel.cache_entry)
    aliases = [p for p in (root / "builds" / "index").glob("*.json")
               if json.loads(p.read_text()).get("entry") == entry.name]
    copies = [root / "apt", Path(kernel.source_repo), entry, *aliases, image.root]
    for source in copies:
        assert source.exists(), f"{source} is not in rig's cache: the fixtures should have made it"
        relative = source.relative_to(root)
        for parent in reversed((cache_root / relative).parents):  # private, as rig makes them
            if parent.is_relative_to(cache_root.parent) and not parent.exists():
                parent.mkdir(mode=0o700)
        subprocess.run(["cp", "-a", "--reflink=auto", str(source), str(cache_root / relative)], check=True,
                       timeout=900)


def _owned_and_private(path: Path, uid: int) -> list[str]:
    """What under `path` is not the user's, or can be written (or, for a directory,
    entered) by others."""
    wrong = []
    for item in [path, *path.rglob("*")]:
        info = item.lstat()
        if stat.S_ISLNK(info.st_mode):
            continue
        if info.st_uid != uid:
            wrong.append(f"{item} owned by uid {info.st_uid}")
        if info.st_mode & 0o022:
            wrong.append(f"{item} writable by others ({stat.filemode(info.st_mode)})")
    return wrong


def test_the_readme_main_job_runs_as_an_ordinary_user(kernel_6_1, guest_image, user: User) -> None:  # type: ignore[no-untyped-def]
    checkout = user.home / "rig"
    checkout.mkdir()
    _copy_checkout(checkout)
    started = time.monotonic()
    _seed_cache(user.home / ".cache" / "rig", kernel_6_1, guest_image)
    subprocess.run(["chown", "-R", f"{user.uid}:{user.gid}", str(user.home)], check=True, timeout=600)
    seeded_s = time.monotonic() - started

    started = time.monotonic()
    setup = user.run(["./setup"], cwd=checkout, timeout=1200)
    setup_s = time.monotonic() - started
    assert setup.returncode == 0, setup.stdout[-3000:] + setup.stderr[-3000:]
    assert "setup: installing" not in setup.stderr  # nothing for root to do: the packages are there

    started = time.monotonic()
    done = user.run([".venv/bin/rig", "run"], cwd=checkout, timeout=1800)
    run_s = time.monotonic() - started
    print(f"cache seeded in {seeded_s:.0f} s, ./setup as the user {setup_s:.0f} s, rig run {run_s:.0f} s")
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    run_dir = Path(done.stdout.strip().splitlines()[-1])
    assert run_dir.parent == checkout / "rig-runs"
    data = json.loads((run_dir / "report.json").read_text())
    assert data["outcome"] == "pass" and data["summary"].startswith("PASS:"), data["summary"]
    # the kernel came from the user's cache (no make directory was even made)
    assert data["kernel"]["cache_hit"] is True and not (user.home / ".cache" / "rig" / "build").exists()

    # the run directory, and rig's cache with the image's keys in it, are the user's and private
    assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
    assert _owned_and_private(run_dir, user.uid) == []
    user_cache = user.home / ".cache" / "rig"
    assert stat.S_IMODE(user_cache.stat().st_mode) == 0o700
    keys = user_cache / guest_image.root.relative_to(cache.cache_root()) / "ssh"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o700
    assert stat.S_IMODE((keys / guest_image.ssh_key.name).stat().st_mode) == 0o600
    assert _owned_and_private(user_cache, user.uid) == []
    # the user's rig chose its accelerator by its own probe: TCG where it cannot open /dev/kvm
    kvm_usable = user.run(["test", "-r", "/dev/kvm", "-a", "-w", "/dev/kvm"], cwd=user.home, timeout=60)
    accels = {a["accel"] for a in data["attempts"]}
    print(f"accelerator {accels}; /dev/kvm {'usable' if kvm_usable.returncode == 0 else 'not usable'} by the user")
    if kvm_usable.returncode != 0:
        assert accels == {"tcg"}
    # nothing of the run is left: no QEMU, no process of the user at all
    assert qemu_processes(str(run_dir)) == []
    assert user.processes() == []
