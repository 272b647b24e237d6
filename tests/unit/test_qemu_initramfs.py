from __future__ import annotations

import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from rig.qemu.initramfs import Entry, cpio_newc


@pytest.mark.skipif(shutil.which("cpio") is None, reason="cpio not installed")
def test_archive_is_read_back_by_cpio(tmp_path: Path) -> None:
    archive = cpio_newc([
        Entry("bin", stat.S_IFDIR | 0o755),
        Entry("bin/hello", stat.S_IFREG | 0o755, b"#!/bin/sh\necho hi\n"),
        Entry("bin/link", stat.S_IFLNK | 0o777, b"hello"),
        Entry("odd-size", stat.S_IFREG | 0o644, b"x" * 7),
    ])
    assert len(archive) % 4 == 0
    subprocess.run(["cpio", "-idm", "--quiet"], input=archive, cwd=tmp_path, check=True)
    assert (tmp_path / "bin/hello").read_bytes() == b"#!/bin/sh\necho hi\n"
    assert (tmp_path / "bin/hello").stat().st_mode & 0o777 == 0o755
    assert (tmp_path / "bin/link").is_symlink() and (tmp_path / "bin/link").readlink() == Path("hello")
    assert (tmp_path / "odd-size").read_bytes() == b"x" * 7
