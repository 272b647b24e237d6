from __future__ import annotations

from pathlib import Path

import pytest

from rig import cli
from rig.errors import UserError
from rig.kernel_image import check_kernel_image, format_problem

from .kernelimages import fake_kernel_image


def test_a_text_file_is_not_a_bzimage_and_rig_boot_says_so_before_qemu(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    import rig.commands.boot as boot

    started: list[object] = []
    monkeypatch.setattr(boot, "qemu_binary", lambda *a, **k: started.append(a))
    monkeypatch.setattr(boot, "run_sync", lambda *a, **k: started.append(a))
    status = cli.main(["boot", "--bzimage", "/etc/passwd", "--out", str(tmp_path / "run"), "--", "true"])
    assert status == 2
    err = capsys.readouterr().err
    assert "--bzimage /etc/passwd is not a kernel image rig can boot on x86_64" in err
    assert "no bzImage header" in err and "arch/x86/boot/bzImage" in err  # what it is and the fix
    assert "QMP" not in err and not started  # QEMU never started


def test_rig_run_lists_a_wrong_kernel_file_with_the_other_problems(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    status = cli.main(["run", "--bzimage", "/etc/passwd", "--retries", "9", "--out", str(tmp_path / "run")])
    assert status == 2
    err = capsys.readouterr().err
    assert "/etc/passwd is not a kernel image" in err and "--retries 9" in err


def test_rig_boot_dry_run_checks_the_file_too(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["boot", "--bzimage", "/etc/passwd", "--out", str(tmp_path / "run"), "--dry-run"]) == 2
    assert "not a kernel image" in capsys.readouterr().err


def test_each_architecture_wants_its_own_format(tmp_path: Path) -> None:
    bz = fake_kernel_image(tmp_path / "bzImage", "x86_64")
    image = fake_kernel_image(tmp_path / "Image", "arm64")
    assert check_kernel_image(bz, "x86_64") == bz.resolve()
    assert check_kernel_image(image, "arm64") == image.resolve()
    with pytest.raises(UserError, match=r"it is an arm64 kernel image \(Image\), not an x86_64 one") as info:
        check_kernel_image(image, "x86_64")
    assert info.value.exit_code == 2
    with pytest.raises(UserError, match=r"it is an x86_64 kernel image \(bzImage\), not an arm64 one"):
        check_kernel_image(bz, "arm64")


def test_a_vmlinux_a_short_file_and_a_missing_one_are_each_named(tmp_path: Path) -> None:
    vmlinux = tmp_path / "vmlinux"
    vmlinux.write_bytes(b"\x7fELF\x02\x01\x01" + bytes(2000))
    with pytest.raises(UserError, match="it is an ELF file .a vmlinux.., not a bzImage"):
        check_kernel_image(vmlinux, "x86_64")
    assert format_problem(b"MZ", "arm64") == "it is too short (2 bytes) for a kernel image"
    with pytest.raises(UserError, match="no such file"):
        check_kernel_image(tmp_path / "nope", "x86_64")


def test_boot_guest_refuses_a_wrong_file_before_qemu(tmp_path: Path) -> None:
    import asyncio

    from rig.guest_spec import GuestSpec
    from rig.vm import boot_guest

    async def boot() -> None:
        async with boot_guest(Path("/etc/passwd"), None, tmp_path / "vm", GuestSpec()):  # type: ignore[arg-type]
            raise AssertionError("booted")

    with pytest.raises(UserError, match="kernel image /etc/passwd is not a kernel image"):
        asyncio.run(boot())
