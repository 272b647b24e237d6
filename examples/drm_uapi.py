"""DRM uAPI for guest-side Python: ioctl numbers and structs of include/uapi/drm, with
the standard library only (the guest image has python3 and nothing else for it).

The example tests copy this file into the guest (rig_guest.put) and import it from the
Python they run there (rig_guest.python).
"""

from __future__ import annotations

import fcntl
import os
import struct

# asm-generic/ioctl.h: direction (2 bits), size (14), type (8), number (8)
_IOC_WRITE, _IOC_READ = 1, 2
DRM_IOCTL_BASE = ord("d")
DRM_COMMAND_BASE = 0x40  # driver-specific ioctls start here


def _ioc(direction: int, nr: int, size: int) -> int:
    return (direction << 30) | (size << 16) | (DRM_IOCTL_BASE << 8) | nr


def iow(nr: int, fmt: str) -> int:
    return _ioc(_IOC_WRITE, nr, struct.calcsize(fmt))


def iowr(nr: int, fmt: str) -> int:
    return _ioc(_IOC_READ | _IOC_WRITE, nr, struct.calcsize(fmt))


# struct layouts (native alignment: "=" would drop the padding the kernel has)
GEM_CLOSE = "II"  # handle, pad
PRIME_HANDLE = "IIi"  # handle, flags, fd
CREATE_DUMB = "IIIIIIQ"  # height, width, bpp, flags, handle, pitch, size
MAP_DUMB = "IIQ"  # handle, pad, offset
VGEM_FENCE_ATTACH = "IIII"  # handle, flags, out_fence, pad
VGEM_FENCE_SIGNAL = "II"  # fence, flags
VIRTGPU_RESOURCE_CREATE = "I" * 14  # target ... stride
VIRTGPU_MAP = "QII"  # offset, handle, pad

DRM_IOCTL_GEM_CLOSE = iow(0x09, GEM_CLOSE)
DRM_IOCTL_PRIME_HANDLE_TO_FD = iowr(0x2D, PRIME_HANDLE)
DRM_IOCTL_MODE_CREATE_DUMB = iowr(0xB2, CREATE_DUMB)
DRM_IOCTL_MODE_MAP_DUMB = iowr(0xB3, MAP_DUMB)
DRM_IOCTL_VGEM_FENCE_ATTACH = iowr(DRM_COMMAND_BASE + 0x01, VGEM_FENCE_ATTACH)
DRM_IOCTL_VGEM_FENCE_SIGNAL = iow(DRM_COMMAND_BASE + 0x02, VGEM_FENCE_SIGNAL)
DRM_IOCTL_VIRTGPU_MAP = iowr(DRM_COMMAND_BASE + 0x01, VIRTGPU_MAP)
DRM_IOCTL_VIRTGPU_RESOURCE_CREATE = iowr(DRM_COMMAND_BASE + 0x04, VIRTGPU_RESOURCE_CREATE)

VGEM_FENCE_WRITE = 0x1
DRM_CLOEXEC, DRM_RDWR = os.O_CLOEXEC, os.O_RDWR
PIPE_TEXTURE_2D = 2  # the only target virtio-gpu takes without virgl
VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM = 1


def ioctl(fd: int, request: int, fmt: str, *values: int) -> tuple[int, ...]:
    """One ioctl with a struct in and out; OSError with the kernel's errno on failure."""
    buf = bytearray(struct.pack(fmt, *values))
    fcntl.ioctl(fd, request, buf, True)
    return struct.unpack(fmt, buf)


def create_dumb(fd: int, width: int, height: int, bpp: int = 32) -> tuple[int, int, int]:
    """A dumb buffer: (handle, pitch, size)."""
    _h, _w, _b, _f, handle, pitch, size = ioctl(fd, DRM_IOCTL_MODE_CREATE_DUMB, CREATE_DUMB,
                                               height, width, bpp, 0, 0, 0, 0)
    return handle, pitch, size


def map_dumb(fd: int, handle: int) -> int:
    """The fake offset to mmap the buffer at."""
    return ioctl(fd, DRM_IOCTL_MODE_MAP_DUMB, MAP_DUMB, handle, 0, 0)[2]


def gem_close(fd: int, handle: int) -> None:
    ioctl(fd, DRM_IOCTL_GEM_CLOSE, GEM_CLOSE, handle, 0)


def prime_export(fd: int, handle: int) -> int:
    """A dma-buf file descriptor for the buffer."""
    return ioctl(fd, DRM_IOCTL_PRIME_HANDLE_TO_FD, PRIME_HANDLE, handle, DRM_CLOEXEC | DRM_RDWR, -1)[2]


def vgem_fence_attach(fd: int, handle: int, write: bool = True) -> int:
    """A vgem fence on the buffer; its id for vgem_fence_signal."""
    return ioctl(fd, DRM_IOCTL_VGEM_FENCE_ATTACH, VGEM_FENCE_ATTACH, handle,
                 VGEM_FENCE_WRITE if write else 0, 0, 0)[2]


def vgem_fence_signal(fd: int, fence: int) -> None:
    ioctl(fd, DRM_IOCTL_VGEM_FENCE_SIGNAL, VGEM_FENCE_SIGNAL, fence, 0)


def virtgpu_resource_create(fd: int, width: int, height: int) -> tuple[int, int]:
    """A 2D virtio-gpu resource: (GEM handle, host resource id)."""
    size = width * height * 4
    out = ioctl(fd, DRM_IOCTL_VIRTGPU_RESOURCE_CREATE, VIRTGPU_RESOURCE_CREATE,
                PIPE_TEXTURE_2D, VIRTIO_GPU_FORMAT_B8G8R8A8_UNORM, 0, width, height, 1, 1, 0, 0, 0, 0, 0,
                size, width * 4)
    return out[10], out[11]


def virtgpu_map(fd: int, handle: int) -> int:
    """The fake offset to mmap the resource's backing pages at."""
    return ioctl(fd, DRM_IOCTL_VIRTGPU_MAP, VIRTGPU_MAP, 0, handle, 0)[0]
