"""The default guest image, really built (the session's guest_image fixture), and what
`rig image` says about it."""

from __future__ import annotations

import json
import stat
import subprocess
import sys
import time

from rig import image


def test_second_build_is_a_cache_hit(guest_image) -> None:  # type: ignore[no-untyped-def]
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-m", "rig", "image", "build"], capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr
    assert "(cache hit)" in result.stdout and guest_image.recipe_hash in result.stdout
    assert time.monotonic() - started < 30


def test_manifest_names_igt_and_the_recipe(guest_image) -> None:  # type: ignore[no-untyped-def]
    manifest = json.loads(guest_image.manifest.read_text())
    assert manifest["recipe_hash"] == guest_image.recipe_hash
    assert manifest["igt_version"] == manifest["packages"]["igt-gpu-tools-tests"]
    for package in image.load_recipe("default").packages:
        assert package in manifest["packages"], package
    assert manifest["disk_bytes"] == guest_image.disk.stat().st_size
    shown = subprocess.run([sys.executable, "-m", "rig", "image", "show"], capture_output=True, text=True, timeout=60)
    assert shown.returncode == 0
    assert f"IGT          {manifest['igt_version']}" in shown.stdout and guest_image.recipe_hash in shown.stdout


def test_keys_are_private_and_the_host_key_is_pinned(guest_image) -> None:  # type: ignore[no-untyped-def]
    assert stat.S_IMODE(guest_image.ssh_key.stat().st_mode) == 0o600
    assert stat.S_IMODE(guest_image.root.stat().st_mode) == 0o700
    pinned = guest_image.known_hosts.read_text().split()
    host_pub = (guest_image.root / "ssh" / "host_ed25519.pub").read_text().split()
    assert pinned[1:3] == host_pub[:2]
    # The image carries that same key as sshd's only host key (debugfs reads ext4 without mounting).
    listing = subprocess.run(["debugfs", "-R", "ls -l /etc/ssh", str(guest_image.disk)],
                             capture_output=True, text=True, timeout=60).stdout
    assert "ssh_host_ed25519_key" in listing and "ssh_host_rsa_key" not in listing
    inside = subprocess.run(["debugfs", "-R", "cat /etc/ssh/ssh_host_ed25519_key.pub", str(guest_image.disk)],
                            capture_output=True, text=True, timeout=60).stdout.split()
    assert inside[:2] == host_pub[:2]
    init = subprocess.run(["debugfs", "-R", f"cat {image.GUEST_INIT}", str(guest_image.disk)],
                          capture_output=True, text=True, timeout=60).stdout
    assert init == image.INIT_SCRIPT.read_text()
