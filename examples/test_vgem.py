"""A reproducer on vgem, in Python run in the guest: buffers, fences, maps, closes.

Run with rig's pytest plugin (rig's kernel, a booted guest, its kernel reports judged):

    pytest examples/test_vgem.py                               # debian:6.1 as Debian ships it
    pytest examples/test_vgem.py --rig-series tests/data/series/lockdep

On the lockdep series, test_signal_fences_on_shared_buffers passes its own checks but
fails: signalling a vgem fence closes a locking cycle, and lockdep's report (possible
deadlock in vgem_fence_signal_ioctl) is the test's failure.
"""

from __future__ import annotations

from pathlib import Path

import pytest

UAPI = Path(__file__).with_name("drm_uapi.py")
GUEST_DIR = "/tmp"


@pytest.fixture
def vgem(rig_guest):
    """The guest with the uAPI helpers in place; the vgem card's path."""
    rig_guest.put(UAPI, f"{GUEST_DIR}/drm_uapi.py")
    return rig_guest.dri_node("vgem")


FENCES = f"""
import os, sys
sys.path.insert(0, {GUEST_DIR!r})
from drm_uapi import *

fd = os.open(sys.argv[1], os.O_RDWR | os.O_CLOEXEC)
handles = [create_dumb(fd, 256, 256)[0] for _ in range(3)]
shared = [prime_export(fd, h) for h in handles]          # as a compositor would share them
for round in range(4):
    fences = [vgem_fence_attach(fd, h) for h in handles]
    for fence in reversed(fences):                      # signalled in the other order
        vgem_fence_signal(fd, fence)
for h in handles:
    gem_close(fd, h)
for buf in shared:
    os.close(buf)
os.close(fd)
print("signalled", 4 * len(handles), "fences")
"""


def test_signal_fences_on_shared_buffers(rig_guest, vgem) -> None:
    result = rig_guest.python(FENCES, vgem, timeout=120)
    assert result.ok, result.stderr
    assert "signalled 12 fences" in result.stdout


MAP_THEN_CLOSE = f"""
import mmap, os, sys
sys.path.insert(0, {GUEST_DIR!r})
from drm_uapi import *

fd = os.open(sys.argv[1], os.O_RDWR | os.O_CLOEXEC)
handle, pitch, size = create_dumb(fd, 64, 64)
view = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE, offset=map_dumb(fd, handle))
gem_close(fd, handle)                  # the handle goes first: the mapping keeps the object
view[:4] = b"rig!"
assert view[:4] == b"rig!"
view.close()
os.close(fd)
print("ok", pitch, size)
"""


def test_a_mapping_outlives_its_handle(rig_guest, vgem) -> None:
    result = rig_guest.python(MAP_THEN_CLOSE, vgem, timeout=120)
    assert result.ok, result.stderr
    assert result.stdout.split() == ["ok", "256", "16384"]


def test_any_guest_command(rig_guest) -> None:
    """Guest code need not be Python: any command runs (argv, or a string for sh -c)."""
    assert rig_guest.run(["uname", "-m"]).stdout.strip() == rig_guest.spec.target.uname_machine
    assert "vgem" in rig_guest.run("cat /sys/kernel/debug/dri/*/name", check=True).stdout
