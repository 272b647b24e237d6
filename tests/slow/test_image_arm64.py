"""The arm64 guest image, really built on this (x86_64) host under qemu-user, and the
binfmt_misc entry rig registers for it: gone after a build, and after an interrupted one."""

from __future__ import annotations

import json
import os
import platform
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from rig import binfmt, image

RIG = [sys.executable, "-m", "rig"]

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or platform.machine() != "x86_64" or not (binfmt.PACKAGE_CONF_DIR / "qemu-aarch64.conf").is_file(),
    reason="needs root on an x86_64 host with Debian's qemu-user-static (./setup installs it)")


def _rig_entries(pid: int | None = None) -> list[str]:
    """rig's binfmt_misc entries now (of one rig process, if given)."""
    return [name for name, owner in binfmt.rig_entries(binfmt.Kernel()) if pid is None or owner == pid]


def _children(pid: int, comm: str) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue
        name = text[text.index("(") + 1 : text.rindex(")")]
        ppid = int(text[text.rindex(")") + 2 :].split()[1])
        if ppid == pid and name == comm:
            found.append(int(stat.parent.name))
    return found


def _mounts_in(directory: Path) -> list[str]:
    return [line for line in Path("/proc/self/mounts").read_text().splitlines() if f" {directory}/" in line]


@pytest.fixture(scope="module")
def built_arm64_image() -> Iterator[image.GuestImage]:
    """`rig image build --arch arm64`, in rig's shared cache (cold the first time: minutes)."""
    mounted_before = binfmt.Kernel().mounted()
    started = time.monotonic()
    build = subprocess.Popen([*RIG, "image", "build", "--arch", "arm64"], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        stdout, stderr = build.communicate(timeout=3600)
    finally:
        if build.poll() is None:
            build.send_signal(signal.SIGINT)  # rig removes its entry on the way out
            build.communicate(timeout=120)
    print(f"rig image build --arch arm64: {time.monotonic() - started:.0f} s\n{stdout}{stderr}")
    assert build.returncode == 0, stderr
    assert _rig_entries(build.pid) == []  # the build's entry is gone
    assert binfmt.Kernel().mounted() == mounted_before or _rig_entries()  # another rig's build may hold it
    found = image.find_image("arm64")
    assert found is not None
    yield found


def test_arm64_image_is_arm64_without_igt(built_arm64_image: image.GuestImage) -> None:
    manifest = json.loads(built_arm64_image.manifest.read_text())
    assert manifest["arch"] == "arm64" and manifest["igt_version"] is None
    for package in image.load_recipe("arm64").packages:
        assert package in manifest["packages"], package
    # sshd in the image is an aarch64 ELF (e_machine 0xb7): debugfs reads ext4 without mounting.
    sshd = subprocess.run(["debugfs", "-R", "cat /usr/sbin/sshd", str(built_arm64_image.disk)],
                          capture_output=True, timeout=120).stdout
    assert sshd[:4] == b"\x7fELF" and sshd[18:20] == b"\xb7\x00"
    init = subprocess.run(["debugfs", "-R", f"cat {image.GUEST_INIT}", str(built_arm64_image.disk)],
                          capture_output=True, text=True, timeout=60).stdout
    assert init == image.INIT_SCRIPT.read_text()


def test_second_build_is_a_cache_hit_and_show_lists_it(built_arm64_image: image.GuestImage) -> None:
    # Watched while it runs, and only its own entry: binfmt_misc is the whole host's, and
    # another rig (a test on the other pytest worker) may be registered meanwhile.
    again = subprocess.Popen([*RIG, "image", "build", "arm64"], text=True,
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    registered = False
    deadline = time.monotonic() + 600
    while again.poll() is None and time.monotonic() < deadline:
        registered = registered or bool(_rig_entries(again.pid))
        time.sleep(0.05)
    stdout, stderr = again.communicate(timeout=60)
    assert again.returncode == 0, stderr
    assert "(cache hit)" in stdout and built_arm64_image.recipe_hash in stdout
    assert not registered  # a cache hit registers nothing
    shown = subprocess.run([*RIG, "image", "show", "--arch", "arm64"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0, shown.stderr
    assert "arch         arm64" in shown.stdout and "IGT          none" in shown.stdout
    assert built_arm64_image.recipe_hash in shown.stdout
    listed = subprocess.run([*RIG, "image", "list"], capture_output=True, text=True, timeout=60)
    assert listed.returncode == 0, listed.stderr
    assert any(built_arm64_image.recipe_hash in line and " arm64 " in line for line in listed.stdout.splitlines())


def _interrupt(how: str, rig: subprocess.Popen[str]) -> None:
    if how == "mmdebstrap killed":
        # The whole group: mmdebstrap and the apt/dpkg it started (as the OOM killer or a
        # crash of the host's tools would leave things, minus the survivors).
        os.killpg(_wait_for(lambda: _children(rig.pid, "mmdebstrap"), rig)[0], signal.SIGKILL)
    elif how == "Ctrl-C":
        rig.send_signal(signal.SIGINT)
    else:
        rig.send_signal(signal.SIGTERM)


def _wait_for(probe, rig: subprocess.Popen[str], deadline_s: float = 300.0):  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if (found := probe()):
            return found
        assert rig.poll() is None, f"rig ended before it was interrupted: {rig.communicate()}"
        time.sleep(0.2)
    pytest.fail("timed out waiting for the build to get going")


@pytest.mark.parametrize(("how", "exit_code"), [("mmdebstrap killed", 3), ("Ctrl-C", 130), ("SIGTERM", 130)])
def test_interrupted_build_leaves_no_registration(tmp_path: Path, how: str, exit_code: int) -> None:
    env = {**os.environ, "RIG_CACHE_DIR": str(tmp_path / "cache")}  # a cold cache: a real build starts
    mounted_before = binfmt.Kernel().mounted()
    rig = subprocess.Popen([*RIG, "image", "build", "--arch", "arm64"], env=env, text=True,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    try:
        _wait_for(lambda: _rig_entries(rig.pid), rig)
        _wait_for(lambda: _children(rig.pid, "mmdebstrap"), rig)
        if how == "mmdebstrap killed":
            # Into the part that runs arm64 programs in the chroot, with the host's /proc,
            # /sys and /dev nodes mounted inside it: a killed mmdebstrap leaves those behind.
            _wait_for(lambda: any("installing essential packages" in log.read_text()
                                  for log in (tmp_path / "cache").glob("images/.arm64-*/build.log")), rig, 900.0)
            assert _mounts_in(tmp_path), "mmdebstrap mounted nothing in its chroot: the test proves nothing"
        else:
            time.sleep(5)
        _interrupt(how, rig)
        stdout, stderr = rig.communicate(timeout=120)
    finally:
        if rig.poll() is None:
            os.killpg(rig.pid, signal.SIGKILL)
            rig.wait()
    assert rig.returncode == exit_code, stderr
    assert _rig_entries(rig.pid) == []
    assert binfmt.Kernel().mounted() == mounted_before or _rig_entries()  # another rig's build may hold it
    images = tmp_path / "cache" / "images"
    assert not any(p.name.startswith(".arm64-") and ".staging" in p.name for p in images.iterdir()), \
        f"the failed build's staging directory was kept: {stderr}"
    assert _mounts_in(tmp_path) == []  # rig unmounted what the killed mmdebstrap left
