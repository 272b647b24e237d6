"""rig's guest programs: found by name, built static for the image's architecture with
the compiler of that architecture (the real cross compiler when this host has it), the
missing pieces of a toolchain named by their Debian package, and a part of the image's
recipe and cache key."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from rig import guest_programs, image
from rig.errors import InfraError, UserError

CROSS = guest_programs.TOOLCHAINS["arm64"]
# ELF e_machine of AArch64; a static binary has no PT_INTERP (no dynamic loader named).
EM_AARCH64 = 183


def test_programs_are_found_by_name_and_a_wrong_name_lists_them() -> None:
    assert "panfrost" in guest_programs.available()
    names = [p.name for p in guest_programs.sources("panfrost")]
    assert "main.c" in names and "harness.h" in names and names == sorted(names)
    with pytest.raises(UserError, match="guest program 'nosuch' has no C sources") as caught:
        guest_programs.program_dir("nosuch")
    assert "panfrost" in (caught.value.hint or "")
    with pytest.raises(UserError):
        guest_programs.program_dir("../programs")
    with pytest.raises(UserError, match="cannot build guest programs for riscv64"):
        guest_programs.toolchain("riscv64")


@pytest.mark.skipif(shutil.which(CROSS.compiler) is None, reason=f"no {CROSS.compiler} on this host")
def test_rig_panfrost_cross_builds_static_for_arm64_without_a_warning(tmp_path: Path) -> None:
    binary = guest_programs.build_program("panfrost", "arm64", tmp_path)
    assert binary == tmp_path / "rig-panfrost"
    data = binary.read_bytes()
    assert data[:4] == b"\x7fELF" and int.from_bytes(data[18:20], "little") == EM_AARCH64
    assert b"/lib/ld-linux-aarch64.so" not in data  # static: no dynamic loader
    assert binary.stat().st_mode & stat.S_IXUSR
    log = (tmp_path / "rig-panfrost.log").read_text()
    assert "warning:" not in log and "error:" not in log, log


def test_a_missing_cross_compiler_names_its_package(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(InfraError, match="'aarch64-linux-gnu-gcc'.*is not installed") as caught:
        guest_programs.build_program("panfrost", "arm64", tmp_path / "out")
    assert "gcc-aarch64-linux-gnu libc6-dev-arm64-cross" in (caught.value.hint or "")
    assert not (tmp_path / "out").exists()


def _fake_compiler(bin_dir: Path, libc_answer: str, *, fails: bool = False) -> None:
    """A stand-in for aarch64-linux-gnu-gcc at the PATH seam: answers -print-file-name
    as gcc does, and "compiles" by failing with a gcc-like message or writing the output."""
    bin_dir.mkdir(exist_ok=True)
    script = bin_dir / CROSS.compiler
    script.write_text("#!/bin/sh\n"
                      f'case "$1" in -print-file-name=*) echo "{libc_answer}"; exit 0;; esac\n'
                      + ('echo "main.c:1:10: fatal error: drm/drm.h: No such file or directory" >&2; exit 1\n'
                         if fails else
                         'while [ "$1" != "-o" ]; do shift; done; echo binary > "$2"\n'))
    script.chmod(0o755)


def test_a_compiler_without_static_libc_names_the_libc_package(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    _fake_compiler(tmp_path / "bin", "libc.a")  # gcc's answer when it has no such file
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    with pytest.raises(InfraError, match="no static C library") as caught:
        guest_programs.build_program("panfrost", "arm64", tmp_path / "out")
    assert "libc6-dev-arm64-cross" in (caught.value.hint or "")


def test_a_failed_build_points_at_the_compilers_messages(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    _fake_compiler(tmp_path / "bin", "/usr/aarch64-linux-gnu/lib/libc.a", fails=True)
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}:/usr/bin:/bin")
    with pytest.raises(InfraError, match="build of rig's guest program rig-panfrost for arm64") as caught:
        guest_programs.build_program("panfrost", "arm64", tmp_path / "out")
    assert caught.value.log == tmp_path / "out" / "rig-panfrost.log"
    assert "drm/drm.h" in caught.value.log.read_text()
    assert "libc6-dev-arm64-cross" in (caught.value.hint or "")


def test_the_arm64_recipe_installs_rig_panfrost_and_programs_are_validated() -> None:
    assert image.load_recipe("arm64").programs == ("panfrost",)
    good = 'suite = "sid"\npackages = ["openssh-server"]\narch = "arm64"\n'
    assert image.parse_recipe(good + 'programs = ["panfrost"]\n', "t").programs == ("panfrost",)
    with pytest.raises(UserError) as caught:
        image.parse_recipe(good + 'programs = ["panfrost", "nosuch"]\n', "t")
    assert "guest program 'nosuch' has no C sources" in str(caught.value)
    with pytest.raises(UserError, match="'programs' must be a list"):
        image.parse_recipe(good + 'programs = "panfrost"\n', "t")


def test_a_change_to_a_programs_sources_changes_the_image_key(monkeypatch: pytest.MonkeyPatch,
                                                              tmp_path: Path) -> None:
    good = 'suite = "sid"\npackages = ["openssh-server"]\narch = "arm64"\n'
    without = image.parse_recipe(good, "t")
    recipe = image.parse_recipe(good + 'programs = ["panfrost"]\n', "t")
    # a recipe without programs keeps the canonical form (and key) it always had
    assert "programs" not in without.canonical() and "programs" in recipe.canonical()
    before = image.recipe_hash(recipe)
    assert before != image.recipe_hash(without)
    copy = tmp_path / "programs"
    shutil.copytree(guest_programs.PROGRAMS_DIR, copy)
    monkeypatch.setattr(guest_programs, "PROGRAMS_DIR", copy)
    assert image.recipe_hash(recipe) == before
    (copy / "panfrost" / "tests_rig.c").write_text((copy / "panfrost" / "tests_rig.c").read_text() + "\n")
    assert image.recipe_hash(recipe) != before


def test_programs_are_installed_executable_with_their_digest(tmp_path: Path) -> None:
    built = tmp_path / "out" / "rig-panfrost"
    built.parent.mkdir()
    built.write_bytes(b"\x7fELF...")
    rootfs = tmp_path / "rootfs"
    installed = image.install_programs(rootfs, [built])
    target = rootfs / "usr/local/bin/rig-panfrost"
    assert target.read_bytes() == built.read_bytes() and target.stat().st_mode & 0o777 == 0o755
    assert list(installed) == ["/usr/local/bin/rig-panfrost"] and len(installed["/usr/local/bin/rig-panfrost"]) == 64
