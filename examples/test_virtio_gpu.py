"""A reproducer on virtio-gpu, in Python run in the guest, under memory pressure: a
resource mapped, shared as a dma-buf and closed in a bad order while the balloon squeezes
the guest. Every test in this module runs on one machine with virtio-gpu and the balloon.

    pytest examples/test_virtio_gpu.py
"""

from __future__ import annotations

from pathlib import Path

import pytest

UAPI = Path(__file__).with_name("drm_uapi.py")

pytestmark = pytest.mark.rig_machine(gpu="virtio-gpu", pressure="balloon")

BAD_ORDER = """
import mmap, os, sys
sys.path.insert(0, "/tmp")
from drm_uapi import *

fd = os.open(sys.argv[1], os.O_RDWR | os.O_CLOEXEC)
for round in range(8):
    handle, res = virtgpu_resource_create(fd, 128, 128)
    size = 128 * 128 * 4
    view = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE,
                     offset=virtgpu_map(fd, handle))
    buf = prime_export(fd, handle)
    gem_close(fd, handle)          # handle first, then the dma-buf, the mapping last
    os.close(buf)
    view[: 4096] = bytes(range(256)) * 16
    view.close()
os.close(fd)
print("resources", 8)
"""


def test_map_share_and_close_in_a_bad_order(rig_guest) -> None:
    assert rig_guest.driver == "virtio_gpu"
    rig_guest.put(UAPI, "/tmp/drm_uapi.py")
    card = rig_guest.dri_node("virtio_gpu")
    result = rig_guest.python(BAD_ORDER, card, timeout=180)
    assert result.ok, result.stderr
    assert result.stdout.strip() == "resources 8"
