"""rig.qemu.virgl against Debian's real QEMU (no kernel: rig drives virtio-gpu-gl over
qtest as a guest's driver would), and the ways it must fail."""

from __future__ import annotations

import dataclasses
import shutil
import struct
from pathlib import Path

import pytest

from rig.qemu import virgl
from rig.qemu.qtest import QtestError
from rig.target import X86_64

QEMU = shutil.which("qemu-system-x86_64")
needs_qemu = pytest.mark.skipif(QEMU is None, reason="needs Debian's QEMU (./setup installs it)")


def test_a_control_header_is_virtio_gpus_24_bytes() -> None:
    header = virgl._header(virgl.CMD_SUBMIT_3D, ctx_id=7)
    assert len(header) == 24
    assert struct.unpack("<IIQIB", header[:21]) == (0x0207, 0, 0, 7, 0)


@needs_qemu
def test_virgl_renders_in_debians_qemu(tmp_path: Path) -> None:
    answer = virgl.probe(QEMU, log=tmp_path / "qemu.log")  # type: ignore[arg-type]
    # virglrenderer's newest capability set: VIRGL2, with a body the guest's Mesa reads
    assert answer.capset_id == virgl.CAPSET_VIRGL2 and answer.capset_max_version >= 1
    assert answer.capset_max_size > 0
    assert "gl_version" in (tmp_path / "qemu.log").read_text()  # virglrenderer started on llvmpipe
    assert virgl.why_not(QEMU) is None  # type: ignore[arg-type]


@needs_qemu
def test_a_display_without_opengl_is_named_not_hung(tmp_path: Path) -> None:
    # SDL's dummy video driver has no OpenGL: QEMU aborts, and the probe says so.
    model = dataclasses.replace(X86_64.gpu("virgl"), environment=(("SDL_VIDEODRIVER", "dummy"),))
    with pytest.raises(QtestError):
        virgl.probe(QEMU, model, log=tmp_path / "qemu.log")  # type: ignore[arg-type]
    assert virgl.why_not(QEMU, model) is not None  # type: ignore[arg-type]


@needs_qemu
def test_a_2d_device_offers_no_3d(tmp_path: Path) -> None:
    model = dataclasses.replace(X86_64.gpu("virtio-gpu"), display="none")
    with pytest.raises(virgl.VirglError, match="does not offer 3D"):
        virgl.probe(QEMU, model, log=tmp_path / "qemu.log")  # type: ignore[arg-type]


@needs_qemu
def test_bytes_that_do_not_come_back_are_a_failure(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A transfer to the host of another resource: the one read back never got the bytes.
    real_expect = virgl._Driver.expect

    def misdirected(self: virgl._Driver, what: str, command: bytes, *args: object) -> bytes:
        if what == "TRANSFER_TO_HOST_3D":
            # header (24) + box (24) + offset (8): the resource id is at 56
            command = command[:56] + struct.pack("<I", virgl.RESOURCE_ID + 1) + command[60:]
        return real_expect(self, what, command, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(virgl._Driver, "expect", misdirected)
    with pytest.raises(virgl.VirglError):
        virgl.probe(QEMU, log=tmp_path / "qemu.log")  # type: ignore[arg-type]
