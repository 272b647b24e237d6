"""Whether QEMU's virgl renders on this host, asked of QEMU itself without a kernel.

QEMU initialises virglrenderer only when a guest sends its first virtio-gpu command, so
a QEMU that opens its OpenGL display (rig doctor's first probe) may still fail at the
first 3D command: an EGL without the context virglrenderer wants, a Mesa without
llvmpipe. This module plays the guest's driver over QEMU's qtest protocol (the CPUs paused:
no firmware runs and rig is the only bus master): it finds the virtio-gpu-gl PCI function through configuration mechanism #1,
negotiates the features (3D must be offered), sets up the control queue in guest memory
and sends what the kernel's virtio_gpu driver sends for a 3D client: capability set
info, a context, a 3D resource with guest backing, a transfer to the host and back (the
bytes must come back as written: virglrenderer stored them in an OpenGL texture), and an
empty command buffer. About a second on Debian's QEMU; the answer names the step that
failed.

Layouts are the virtio 1.x PCI transport's (virtio_pci_cap, virtio_pci_common_cfg, the
split virtqueue) and virtio-gpu's control commands (include/uapi/linux/virtio_gpu.h).
"""

from __future__ import annotations

import struct
import time
from dataclasses import dataclass
from pathlib import Path

from rig.errors import InfraError
from rig.qemu.argv import SECCOMP
from rig.qemu.qtest import Qtest, launch
from rig.target import X86_64, GpuModel

# The QEMU devices this probe drives (their -device names start so).
GL_DEVICES = ("virtio-gpu-gl", "virtio-vga-gl")

# PCI configuration mechanism #1 (the PC's 0xcf8/0xcfc ports).
PCI_ADDRESS_PORT = 0xCF8
PCI_DATA_PORT = 0xCFC
VIRTIO_VENDOR = 0x1AF4
VIRTIO_GPU_DEVICE = 0x1050  # 0x1040 + virtio device id 16
PCI_COMMAND_MEMORY_AND_MASTER = 0x6
PCI_STATUS_CAPABILITIES = 0x10
PCI_CAP_VENDOR = 0x09
# Where rig maps the device's BAR: inside q35's 32-bit PCI hole, above its MMCONFIG window.
BAR_BASE = 0xC000_0000

# virtio_pci_cap.cfg_type
COMMON_CFG, NOTIFY_CFG, DEVICE_CFG = 1, 2, 4
# virtio_pci_common_cfg offsets
DEVICE_FEATURE_SELECT, DEVICE_FEATURE, DRIVER_FEATURE_SELECT, DRIVER_FEATURE = 0x00, 0x04, 0x08, 0x0C
DEVICE_STATUS, QUEUE_SELECT, QUEUE_SIZE, QUEUE_ENABLE, QUEUE_NOTIFY_OFF = 0x14, 0x16, 0x18, 0x1C, 0x1E
QUEUE_DESC, QUEUE_DRIVER, QUEUE_DEVICE = 0x20, 0x28, 0x30
STATUS_ACKNOWLEDGE, STATUS_DRIVER, STATUS_DRIVER_OK, STATUS_FEATURES_OK = 1, 2, 4, 8
VIRTIO_GPU_F_VIRGL = 0
VIRTIO_F_VERSION_1 = 32
VIRTQ_DESC_F_NEXT, VIRTQ_DESC_F_WRITE = 1, 2

# Guest memory rig lays the control queue and the buffers in (qtest's board has 128 MiB).
QUEUE_SIZE_USED = 8
DESC_ADDR, AVAIL_ADDR, USED_ADDR = 0x10000, 0x11000, 0x12000
COMMAND_ADDR, RESPONSE_ADDR, BACKING_ADDR = 0x20000, 0x21000, 0x30000

# virtio-gpu control commands and responses
CMD_RESOURCE_ATTACH_BACKING = 0x0106
CMD_GET_CAPSET_INFO = 0x0108
CMD_CTX_CREATE, CMD_CTX_ATTACH_RESOURCE, CMD_RESOURCE_CREATE_3D = 0x0200, 0x0202, 0x0204
CMD_TRANSFER_TO_HOST_3D, CMD_TRANSFER_FROM_HOST_3D, CMD_SUBMIT_3D = 0x0205, 0x0206, 0x0207
RESP_OK_NODATA, RESP_OK_CAPSET_INFO = 0x1100, 0x1102
CAPSET_VIRGL2 = 2

# The 3D resource: a 64x64 2D texture of B8G8R8A8 (virgl format 1) bound as a render target,
# as IGT's drm_virtgpu creates one.
PIPE_TEXTURE_2D, VIRGL_FORMAT_B8G8R8A8_UNORM, VIRGL_BIND_RENDER_TARGET = 2, 1, 1 << 1
WIDTH = HEIGHT = 64
BACKING_SIZE = WIDTH * HEIGHT * 4
CONTEXT_ID, RESOURCE_ID = 1, 1

# One command is answered at once; virglrenderer's first one also initialises it (a
# shader compiler's start under llvmpipe), which takes longer on a loaded host.
COMMAND_WAIT_S = 30.0


@dataclass(frozen=True)
class VirglAnswer:
    """What the probe saw: the capability set QEMU's virglrenderer offers."""

    capset_id: int
    capset_max_version: int
    capset_max_size: int
    seconds: float


class VirglError(InfraError):
    """QEMU's virgl did not do what a guest's driver asks of it."""


def _header(kind: int, ctx_id: int = 0) -> bytes:
    # virtio_gpu_ctrl_hdr: type, flags, fence_id, ctx_id, ring_idx, padding[3]
    return struct.pack("<IIQIB3x", kind, 0, 0, ctx_id, 0)


class _Driver:
    """Just enough of a virtio-gpu driver on one control queue."""

    def __init__(self, qt: Qtest) -> None:
        self.qt = qt
        self.slot = self._find_device()
        self.common = self.notify = self.device_cfg = 0
        self.notify_multiplier = 0
        self.next_avail = 0

    # --- PCI --------------------------------------------------------------------------

    def _cfg_address(self, slot: int, offset: int) -> int:
        return 0x8000_0000 | (slot << 11) | (offset & 0xFC)

    def cfg_read(self, offset: int, size: int = 4, slot: int | None = None) -> int:
        self.qt.outl(PCI_ADDRESS_PORT, self._cfg_address(self.slot if slot is None else slot, offset))
        value = self.qt.inl(PCI_DATA_PORT) >> (8 * (offset & 3))
        return value & ((1 << (8 * size)) - 1)

    def cfg_write(self, offset: int, value: int) -> None:
        self.qt.outl(PCI_ADDRESS_PORT, self._cfg_address(self.slot, offset))
        self.qt.outl(PCI_DATA_PORT, value)

    def _find_device(self) -> int:
        for slot in range(32):
            ids = self.cfg_read(0, slot=slot)
            if ids & 0xFFFF == VIRTIO_VENDOR and ids >> 16 == VIRTIO_GPU_DEVICE:
                return slot
        raise VirglError("no virtio-gpu PCI function on the probe's bus 0",
                         hint="the device model did not appear: read QEMU's log")

    def map_bars(self) -> None:
        """Map every memory BAR the virtio capabilities point at, then read them."""
        self.cfg_write(0x20, BAR_BASE)  # BAR4: the modern virtio registers (64-bit, prefetchable)
        self.cfg_write(0x24, 0)
        self.cfg_write(0x04, PCI_COMMAND_MEMORY_AND_MASTER)
        if not self.cfg_read(0x06, 2) & PCI_STATUS_CAPABILITIES:
            raise VirglError("the virtio-gpu function has no capability list")
        cap = self.cfg_read(0x34, 1)
        while cap:
            if self.cfg_read(cap, 1) == PCI_CAP_VENDOR:
                cfg_type, bar = self.cfg_read(cap + 3, 1), self.cfg_read(cap + 4, 1)
                offset = self.cfg_read(cap + 8)
                if bar == 4:
                    if cfg_type == COMMON_CFG:
                        self.common = BAR_BASE + offset
                    elif cfg_type == NOTIFY_CFG:
                        self.notify = BAR_BASE + offset
                        self.notify_multiplier = self.cfg_read(cap + 16)
                    elif cfg_type == DEVICE_CFG:
                        self.device_cfg = BAR_BASE + offset
            cap = self.cfg_read(cap + 1, 1)
        if not (self.common and self.notify and self.device_cfg):
            raise VirglError("the virtio-gpu function lacks a modern virtio capability (common, notify, device)")

    # --- virtio -----------------------------------------------------------------------

    def negotiate(self) -> None:
        qt, common = self.qt, self.common
        qt.writeb(common + DEVICE_STATUS, 0)
        qt.writeb(common + DEVICE_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER)
        qt.writel(common + DEVICE_FEATURE_SELECT, 0)
        low = qt.readl(common + DEVICE_FEATURE)
        if not low >> VIRTIO_GPU_F_VIRGL & 1:
            raise VirglError("the device does not offer 3D (VIRTIO_GPU_F_VIRGL)",
                             hint="QEMU's virtio-gpu-gl found no OpenGL for virglrenderer; read QEMU's log")
        qt.writel(common + DRIVER_FEATURE_SELECT, 0)
        qt.writel(common + DRIVER_FEATURE, 1 << VIRTIO_GPU_F_VIRGL)
        qt.writel(common + DRIVER_FEATURE_SELECT, 1)
        qt.writel(common + DRIVER_FEATURE, 1 << (VIRTIO_F_VERSION_1 - 32))
        qt.writeb(common + DEVICE_STATUS, STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK)
        if not qt.readb(common + DEVICE_STATUS) & STATUS_FEATURES_OK:
            raise VirglError("the device refused the features (VIRGL, VERSION_1)")
        qt.writew(common + QUEUE_SELECT, 0)  # the control queue
        qt.writew(common + QUEUE_SIZE, QUEUE_SIZE_USED)
        qt.writeq(common + QUEUE_DESC, DESC_ADDR)
        qt.writeq(common + QUEUE_DRIVER, AVAIL_ADDR)
        qt.writeq(common + QUEUE_DEVICE, USED_ADDR)
        qt.memwrite(AVAIL_ADDR, bytes(4 + 2 * QUEUE_SIZE_USED))
        qt.memwrite(USED_ADDR, bytes(4 + 8 * QUEUE_SIZE_USED))
        self.notify += qt.readw(common + QUEUE_NOTIFY_OFF) * self.notify_multiplier
        qt.writew(common + QUEUE_ENABLE, 1)
        qt.writeb(common + DEVICE_STATUS,
                  STATUS_ACKNOWLEDGE | STATUS_DRIVER | STATUS_FEATURES_OK | STATUS_DRIVER_OK)

    def num_capsets(self) -> int:
        # virtio_gpu_config: events_read, events_clear, num_scanouts, num_capsets
        return self.qt.readl(self.device_cfg + 12)

    def send(self, what: str, command: bytes, response_size: int = 24) -> bytes:
        """One command and its response on the control queue; the response's bytes."""
        qt = self.qt
        qt.memwrite(COMMAND_ADDR, command)
        qt.memwrite(RESPONSE_ADDR, bytes(response_size))
        qt.memwrite(DESC_ADDR, struct.pack("<QIHH", COMMAND_ADDR, len(command), VIRTQ_DESC_F_NEXT, 1)
                    + struct.pack("<QIHH", RESPONSE_ADDR, response_size, VIRTQ_DESC_F_WRITE, 0))
        used_before = qt.readw(USED_ADDR + 2)
        qt.writew(AVAIL_ADDR + 4 + 2 * (self.next_avail % QUEUE_SIZE_USED), 0)
        self.next_avail += 1
        qt.writew(AVAIL_ADDR + 2, self.next_avail)
        qt.writew(self.notify, 0)
        deadline = time.monotonic() + COMMAND_WAIT_S
        while qt.readw(USED_ADDR + 2) == used_before:
            if time.monotonic() > deadline:
                raise VirglError(f"{what}: QEMU did not answer within {COMMAND_WAIT_S:.0f} s")
            time.sleep(0.005)  # QEMU's main loop answers from a bottom half
        return qt.memread(RESPONSE_ADDR, response_size)

    def expect(self, what: str, command: bytes, answer: int = RESP_OK_NODATA, response_size: int = 24) -> bytes:
        response = self.send(what, command, response_size)
        kind = struct.unpack_from("<I", response)[0]
        if kind != answer:
            raise VirglError(f"{what}: the device answered 0x{kind:04x}, not 0x{answer:04x}",
                             hint="QEMU's log has virglrenderer's own message")
        return response


def _round_trip(driver: _Driver) -> None:
    """A 3D resource backed by guest memory: bytes to the host and back."""
    driver.expect("RESOURCE_CREATE_3D", _header(CMD_RESOURCE_CREATE_3D) + struct.pack(
        "<12I", RESOURCE_ID, PIPE_TEXTURE_2D, VIRGL_FORMAT_B8G8R8A8_UNORM, VIRGL_BIND_RENDER_TARGET,
        WIDTH, HEIGHT, 1, 1, 0, 0, 0, 0))
    driver.expect("RESOURCE_ATTACH_BACKING", _header(CMD_RESOURCE_ATTACH_BACKING)
                  + struct.pack("<II", RESOURCE_ID, 1) + struct.pack("<QII", BACKING_ADDR, BACKING_SIZE, 0))
    driver.expect("CTX_ATTACH_RESOURCE", _header(CMD_CTX_ATTACH_RESOURCE, CONTEXT_ID)
                  + struct.pack("<II", RESOURCE_ID, 0))
    pattern = bytes((i * 7 + 3) & 0xFF for i in range(BACKING_SIZE))
    driver.qt.memwrite(BACKING_ADDR, pattern)
    # virtio_gpu_transfer_host_3d: box (x, y, z, w, h, d), offset, resource, level, stride, layer_stride
    transfer = struct.pack("<6IQ4I", 0, 0, 0, WIDTH, HEIGHT, 1, 0, RESOURCE_ID, 0, WIDTH * 4, 0)
    driver.expect("TRANSFER_TO_HOST_3D", _header(CMD_TRANSFER_TO_HOST_3D, CONTEXT_ID) + transfer)
    driver.qt.memwrite(BACKING_ADDR, bytes(BACKING_SIZE))
    driver.expect("TRANSFER_FROM_HOST_3D", _header(CMD_TRANSFER_FROM_HOST_3D, CONTEXT_ID) + transfer)
    back = driver.qt.memread(BACKING_ADDR, BACKING_SIZE)
    if back != pattern:
        same = sum(a == b for a, b in zip(back, pattern))
        raise VirglError(f"a 3D resource's bytes did not come back from the host as written "
                         f"({same} of {BACKING_SIZE} equal)", hint="virglrenderer's OpenGL is broken here")


def probe(qemu: str | Path, model: GpuModel | None = None, *, log: Path | None = None) -> VirglAnswer:
    """Drive `model`'s virtio-gpu-gl (default: x86_64's virgl) in `qemu` as a guest
    driver would; VirglError names the step that failed (QtestError: QEMU went away)."""
    model = model or X86_64.gpu("virgl")
    extra: list[str] = ["-sandbox", SECCOMP]
    for device in model.devices:
        extra += ["-device", device]
    started = time.monotonic()
    machine = ",".join((X86_64.machine, *model.machine_options))
    # Debian's QEMU has no qtest accelerator: TCG with the CPUs paused, so no firmware runs.
    with launch(Path(qemu), machine, extra, log=log, display=model.display, accel="tcg",
                env=dict(model.environment)) as session:
        driver = _Driver(session.qtest)
        driver.map_bars()
        driver.negotiate()
        count = driver.num_capsets()
        if count < 1:
            raise VirglError("the device lists no capability set")
        infos = []
        for index in range(count):
            response = driver.expect(f"GET_CAPSET_INFO {index}", _header(CMD_GET_CAPSET_INFO)
                                     + struct.pack("<II", index, 0), RESP_OK_CAPSET_INFO, 40)
            infos.append(struct.unpack_from("<III", response, 24))
        name = b"rig-virgl-probe"
        # virtio_gpu_ctx_create: nlen, context_init (padding before 5.16), debug_name[64]
        driver.expect("CTX_CREATE", _header(CMD_CTX_CREATE, CONTEXT_ID)
                      + struct.pack("<II64s", len(name), 0, name))
        _round_trip(driver)
        driver.expect("SUBMIT_3D", _header(CMD_SUBMIT_3D, CONTEXT_ID) + struct.pack("<II", 0, 0))
    best = max(infos, key=lambda info: (info[0] == CAPSET_VIRGL2, info[1]))
    return VirglAnswer(best[0], best[1], best[2], round(time.monotonic() - started, 2))


def why_not(qemu: str | Path, model: GpuModel | None = None) -> str | None:
    """None when virgl renders in `qemu`, else what went wrong (for rig doctor)."""
    try:
        probe(qemu, model)
    except InfraError as exc:  # VirglError, or QtestError: QEMU went away or stopped answering
        return exc.message
    return None
