"""rig's own QEMU build: source lookup, rig's device folder, host checks, cache, CLI.

The real build (tens of minutes) is in tests/slow/test_qemu_build.py; here the seams are
the Debian mirror (a SourcePackage instead of apt's answer), PATH (fake host programs)
and rig's cache directory.
"""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from rig import cli
from rig.errors import InfraError, UserError
from rig.progress import quiet
from rig.qemu import build as qb
from rig.source import PrivateApt

# `apt-cache showsrc --only-source qemu` against trixie (long fields trimmed), with a
# second version and an unrelated stanza around it.
SHOWSRC = """\
Package: qemu
Binary: qemu-system, qemu-block-extra, qemu-system-data, qemu-system-arm, qemu-user
Version: 1:10.0.13+ds-0+deb13u1
Maintainer: Debian QEMU Team <pkg-qemu-devel@lists.alioth.debian.org>
Format: 3.0 (quilt)
Files:
 ef31bdc115b30b4c6bfe8b794341ffb5 12462 qemu_10.0.13+ds-0+deb13u1.dsc
 e9f804eae55071cd8ea1ae009f0fa1fd 40010016 qemu_10.0.13+ds.orig.tar.xz
Checksums-Sha256:
 a426c892e5369058c3423816c8625bc8010bb5a58ece57261f62b64ee4d765ad 12462 qemu_10.0.13+ds-0+deb13u1.dsc
 6a0888e806c2ffc0c5f0733e974f9aea55491950d3c47c98669c8b236dde59ae 40010016 qemu_10.0.13+ds.orig.tar.xz
 da73c092f5684c551b0334d675eb16a3dec91e1edea94759cfb1102fa4a0364e 156096 qemu_10.0.13+ds-0+deb13u1.debian.tar.xz
Homepage: http://www.qemu.org/
Directory: pool/main/q/qemu

Package: qemu-web-desktop
Version: 1.0-1
Checksums-Sha256:
 0000000000000000000000000000000000000000000000000000000000000000 100 qemu-web-desktop_1.0-1.dsc

Package: qemu
Version: 1:10.0.2+ds-2
Checksums-Sha256:
 1111111111111111111111111111111111111111111111111111111111111111 12000 qemu_10.0.2+ds-2.dsc
Directory: pool/main/q/qemu
"""

PACKAGE = qb.SourcePackage(version="1:10.0.13+ds-0+deb13u1", dsc="qemu_10.0.13+ds-0+deb13u1.dsc",
                           dsc_sha256="a426c892e5369058c3423816c8625bc8010bb5a58ece57261f62b64ee4d765ad")


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "cache"
    monkeypatch.setenv("RIG_CACHE_DIR", str(root))
    return root


def devices_dir(tmp_path: Path) -> Path:
    root = tmp_path / "qemu-devices"
    (root / "patches").mkdir(parents=True)
    (root / "hw" / "misc").mkdir(parents=True)
    (root / "README.md").write_text("docs\n")
    (root / "hw" / ".gitkeep").write_text("")
    (root / "patches" / ".gitkeep").write_text("")
    return root


def executable(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


# --- the source package -------------------------------------------------------------


def test_showsrc_gives_each_qemu_version_with_its_dsc_hash() -> None:
    found = qb.parse_showsrc(SHOWSRC)
    assert found == [PACKAGE, qb.SourcePackage("1:10.0.2+ds-2", "qemu_10.0.2+ds-2.dsc", "1" * 64)]
    assert qb.parse_showsrc("Package: qemu\nVersion: 1\n") == []


def test_newest_compares_debian_versions_not_strings() -> None:
    # As strings "10.0.2" > "10.0.13"; dpkg knows better.
    assert qb._newest(qb.parse_showsrc(SHOWSRC)).version == "1:10.0.13+ds-0+deb13u1"
    assert qb._newest(list(reversed(qb.parse_showsrc(SHOWSRC)))).version == "1:10.0.13+ds-0+deb13u1"


def test_private_apt_for_sources_writes_a_deb_src_line(tmp_path: Path) -> None:
    apt = PrivateApt(tmp_path / "apt", "http://mirror.example.org/debian", entries=(("deb-src", "trixie"),))
    assert apt.sources.read_text() == "deb-src http://mirror.example.org/debian trixie main\n"
    # A Sources index counts as lists, so a fresh update is not repeated at every call.
    (apt.lists / "mirror_dists_trixie_main_source_Sources").write_text("")
    (apt.lists / ".rig-updated").touch()
    assert apt.lists_age_s() < 60


def test_unreachable_mirror_is_a_host_problem_with_a_hint(tmp_path: Path) -> None:
    # Port 9 (discard) on localhost: nothing listens, so apt fails at once.
    apt = PrivateApt(tmp_path / "apt", "http://127.0.0.1:9/debian", entries=(("deb-src", "trixie"),))
    with pytest.raises(InfraError, match="cannot fetch Debian trixie's source lists from http://127.0.0.1:9") as info:
        qb.resolve_source(apt, quiet())
    assert "check the network" in (info.value.hint or "")


def test_without_lists_and_network_there_is_no_source(tmp_path: Path) -> None:
    apt = PrivateApt(tmp_path / "apt", "http://127.0.0.1:9/debian", entries=(("deb-src", "trixie"),))
    assert qb.resolve_source(apt, quiet(), network=False) is None


# --- rig's device folder ----------------------------------------------------------


def test_device_sources_are_patches_in_order_and_files_but_not_docs(tmp_path: Path) -> None:
    root = devices_dir(tmp_path)
    (root / "patches" / "0002-second.patch").write_text("b")
    (root / "patches" / "0001-first.patch").write_text("a")
    (root / "patches" / "notes.txt").write_text("not a patch")
    (root / "hw" / "misc" / "mali_jm.c").write_text("int x;\n")
    (root / "hw" / "misc" / "mali_jm.c~").write_text("backup")
    (root / "include" / "hw" / "misc").mkdir(parents=True)
    (root / "include" / "hw" / "misc" / "mali_jm.h").write_text("#pragma once\n")
    found = qb.device_sources(root)
    assert found.patches == ("0001-first.patch", "0002-second.patch")
    assert found.files == ("hw/misc/mali_jm.c", "include/hw/misc/mali_jm.h")


def test_the_repository_folder_is_found() -> None:
    found = qb.device_sources()
    assert (found.root / "README.md").is_file() and (found.root / "patches").is_dir()


def test_key_follows_the_dsc_and_every_byte_of_rigs_files_but_not_the_readme(tmp_path: Path) -> None:
    root = devices_dir(tmp_path)
    (root / "hw" / "misc" / "dev.c").write_text("int x;\n")
    first = qb.build_key(PACKAGE, qb.device_sources(root))
    (root / "README.md").write_text("more docs\n")
    assert qb.build_key(PACKAGE, qb.device_sources(root)) == first
    other_dsc = qb.SourcePackage(PACKAGE.version, PACKAGE.dsc, "f" * 64)
    assert qb.build_key(other_dsc, qb.device_sources(root)) != first
    (root / "hw" / "misc" / "dev.c").write_text("int y;\n")
    second = qb.build_key(PACKAGE, qb.device_sources(root))
    assert second != first
    (root / "patches" / "0001-a.patch").write_text("")
    assert qb.build_key(PACKAGE, qb.device_sources(root)) not in (first, second)


def _builder(tmp_path: Path, root: Path) -> qb._Builder:
    builder = qb._Builder(PrivateApt(tmp_path / "apt", "http://127.0.0.1:9/debian", entries=()), PACKAGE,
                          qb.device_sources(root), "key", quiet())
    builder.tree.mkdir(parents=True)
    (builder.tree / "hw" / "misc").mkdir(parents=True)
    (builder.tree / "hw" / "misc" / "meson.build").write_text("system_ss.add(files('edu.c'))\n")
    builder.log.write_text("")
    return builder


def test_device_files_are_copied_then_patches_applied(tmp_path: Path) -> None:
    root = devices_dir(tmp_path)
    (root / "hw" / "misc" / "mali_jm.c").write_text("/* the model */\n")
    (root / "patches" / "0001-build-mali.patch").write_text("""\
--- a/hw/misc/meson.build
+++ b/hw/misc/meson.build
@@ -1 +1,2 @@
 system_ss.add(files('edu.c'))
+system_ss.add(files('mali_jm.c'))
""")
    builder = _builder(tmp_path, root)
    builder._add_devices()
    assert (builder.tree / "hw" / "misc" / "mali_jm.c").read_text() == "/* the model */\n"
    assert "mali_jm.c" in (builder.tree / "hw" / "misc" / "meson.build").read_text()


def test_a_patch_that_does_not_apply_names_itself(tmp_path: Path) -> None:
    root = devices_dir(tmp_path)
    (root / "patches" / "0001-stale.patch").write_text("""\
--- a/hw/misc/meson.build
+++ b/hw/misc/meson.build
@@ -1 +1,2 @@
 something QEMU no longer has
+more
""")
    with pytest.raises(UserError, match="qemu-devices/patches/0001-stale.patch") as info:
        _builder(tmp_path, root)._add_devices()
    assert "refresh the patch" in (info.value.hint or "")


def test_a_device_file_may_not_replace_one_of_qemus(tmp_path: Path) -> None:
    root = devices_dir(tmp_path)
    (root / "hw" / "misc" / "meson.build").write_text("mine\n")
    with pytest.raises(UserError, match="would replace QEMU's own hw/misc/meson.build"):
        _builder(tmp_path, root)._add_devices()


# --- host packages ------------------------------------------------------------------


def test_missing_build_packages_are_named_with_setup(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    for tool in ("ninja", "cc", "dpkg-source", "patch"):
        executable(bin_dir / tool, "#!/bin/sh\nexit 0\n")
    # pkg-config that knows glib, pixman and libpng but not slirp.
    executable(bin_dir / "pkg-config", '#!/bin/sh\ncase "$2" in glib-2.0|pixman-1|libpng) exit 0;; esac\nexit 1\n')
    monkeypatch.setenv("PATH", str(bin_dir))
    include = tmp_path / "include"
    include.mkdir()
    assert qb.missing_build_packages(include) == [("libslirp-dev", "pkg-config module slirp"),
                                                  ("libfdt-dev", "the header libfdt.h")]
    with pytest.raises(InfraError, match="libslirp-dev") as info:
        qb.check_build_packages(include)
    assert "apt-get install libfdt-dev libslirp-dev" in (info.value.hint or "")
    assert "./setup" in (info.value.hint or "")
    (include / "libfdt.h").write_text("")
    (bin_dir / "ninja").unlink()
    assert [p for p, _ in qb.missing_build_packages(include)] == ["ninja-build", "libslirp-dev"]


def test_setup_installs_every_package_the_build_checks_for() -> None:
    setup = (Path(__file__).resolve().parents[2] / "setup").read_text()
    for _, package in (*qb.BUILD_TOOLS, *qb.BUILD_LIBRARIES, *qb.BUILD_HEADERS):
        assert package in setup.split(), package
    assert "python3-venv" in setup.split()


# --- the cache and the CLI ----------------------------------------------------------


def fake_entry(key: str, *, patches: tuple[str, ...] = ()) -> Path:
    entry = qb._entry_dir(key)
    entry.mkdir(parents=True)
    executable(entry / qb.BINARY, "#!/bin/sh\necho 'QEMU emulator version 10.0.13 (Debian 1:10.0.13+ds-0+deb13u1)'\n"
                                  "echo 'Copyright (c) 2003-2025 Fabrice Bellard and the QEMU Project developers'\n")
    (entry / "build.log").write_text("")
    (entry / "entry.json").write_text(json.dumps({
        "version": "QEMU emulator version 10.0.13 (Debian 1:10.0.13+ds-0+deb13u1)",
        "package_version": PACKAGE.version, "patches": list(patches), "device_files": [],
        "built_at": "2026-11-29T02:30:00Z", "timings": {"total": 1234.5},
    }))
    return entry


def test_a_cached_build_is_used_without_building(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qb, "resolve_source", lambda apt, reporter, network=True: PACKAGE)
    entry = fake_entry(qb.build_key(PACKAGE, qb.device_sources()))

    def no_build(self: qb._Builder) -> None:
        raise AssertionError("a cache hit must not build")

    monkeypatch.setattr(qb._Builder, "run", no_build)
    found = qb.ensure_qemu(progress=False)
    assert found.cache_hit and found.binary == entry / qb.BINARY
    assert found.version.startswith("QEMU emulator version 10.0.13")
    assert found.build_s == 1234.5


def test_an_incomplete_entry_is_not_a_cache_hit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(qb, "resolve_source", lambda apt, reporter, network=True: PACKAGE)
    entry = fake_entry(qb.build_key(PACKAGE, qb.device_sources()))
    (entry / qb.BINARY).unlink()
    assert qb.find_qemu() is None


def test_show_prints_version_patches_and_binary(monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(qb, "resolve_source", lambda apt, reporter, network=True: PACKAGE)
    entry = fake_entry(qb.build_key(PACKAGE, qb.device_sources()), patches=("0001-a.patch", "0002-b.patch"))
    assert cli.main(["qemu", "show"]) == 0
    out = capsys.readouterr().out
    assert "version   QEMU emulator version 10.0.13" in out
    assert "patches   0001-a.patch\n          0002-b.patch\n" in out
    assert f"binary    {entry / qb.BINARY}" in out
    assert cli.main(["qemu", "show", "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["patches"] == ["0001-a.patch", "0002-b.patch"] and facts["binary"] == str(entry / qb.BINARY)


def test_show_before_any_build_says_how_to_build(capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["qemu", "show"]) == 2
    err = capsys.readouterr().err
    assert "not built" in err and "rig qemu build" in err


def test_show_of_a_binary_that_no_longer_runs_is_a_host_problem(monkeypatch: pytest.MonkeyPatch,
                                                                capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(qb, "resolve_source", lambda apt, reporter, network=True: PACKAGE)
    entry = fake_entry(qb.build_key(PACKAGE, qb.device_sources()))
    executable(entry / qb.BINARY,
               "#!/bin/sh\necho 'error while loading shared libraries: libslirp.so.0' >&2\nexit 127\n")
    assert cli.main(["qemu", "show"]) == 3
    assert "libslirp.so.0" in capsys.readouterr().err


def test_configure_line_keeps_the_two_fixes_debians_repack_needs() -> None:
    assert "--disable-install-blobs" in qb.CONFIGURE_ARGS
    assert "--target-list=aarch64-softmmu" in qb.CONFIGURE_ARGS
    assert qb.MESON.startswith("meson==1.") and int(qb.MESON.split(".")[1]) >= 5


# The Kconfig symbol (QEMU's hw/*/Kconfig) of each device rig plugs into an arm64 guest.
DEVICE_SYMBOLS = {"virtio-balloon-pci": {"VIRTIO_BALLOON", "VIRTIO_PCI"}, "virtio-rng-pci": {"VIRTIO_RNG", "VIRTIO_PCI"},
                  "virtio-blk-pci": {"VIRTIO_BLK", "VIRTIO_PCI"}, "virtio-net-pci": {"VIRTIO_NET", "VIRTIO_PCI"},
                  "virtio-gpu-pci": {"VIRTIO_GPU", "VIRTIO_PCI"}, "pvpanic-pci": {"PVPANIC_PCI"}}


def test_the_device_config_builds_every_device_an_arm64_guest_gets() -> None:
    """The build leaves out every device its config does not name: a device rig plugs in
    but the config forgot would only show as QEMU refusing -device at the first boot."""
    from rig.guest_spec import GuestSpec
    from rig.qemu.argv import MachineSpec, build_argv
    from rig.target import ARM64

    name = next(a.split("=", 1)[1] for a in qb.CONFIGURE_ARGS if a.startswith("--with-devices-aarch64="))
    assert "--without-default-devices" in qb.CONFIGURE_ARGS
    rel = f"configs/devices/aarch64-softmmu/{name}.mak"
    assert rel in qb.device_sources().files  # copied into QEMU's tree, where configure looks for it
    lines = (qb.DEVICES_DIR / rel).read_text().splitlines()
    symbols = {line.split("=")[0].removeprefix("CONFIG_") for line in lines if line.endswith("=y")}
    plugged = set()
    for gpu in ARM64.gpus:
        guest = GuestSpec(target=ARM64, gpu=gpu)
        argv = build_argv(MachineSpec(kernel=Path("/k/Image"), run_dir=Path("/run/r"), disk=Path("/run/r/o.qcow2"),
                                      ssh_port=2222, guest=guest, binary="/q/qemu-system-aarch64"))
        plugged |= {argv[i + 1].split(",")[0] for i, word in enumerate(argv) if word == "-device"}
    assert plugged <= DEVICE_SYMBOLS.keys(), f"add the Kconfig symbols of {plugged - DEVICE_SYMBOLS.keys()} here and to {rel}"
    assert set().union(*(DEVICE_SYMBOLS[d] for d in plugged)) | {"ARM_VIRT"} <= symbols


FAKE_NINJA = """#!/bin/sh
for arg in "$@"; do [ "$arg" = -n ] && { echo '[1/2] Compiling C object a.o'; echo '[2/2] Linking x'; exit 0; }; done
echo '[1/2] Compiling C object libcommon.a.p/hw_misc_mali_jm.c.o'
echo 'FAILED: libcommon.a.p/hw_misc_mali_jm.c.o'
echo '../%s:3:1: error: expected declaration specifiers'
echo 'ninja: build stopped: subcommand failed.'
exit 1
"""


@pytest.mark.parametrize("failing, error", [("hw/misc/mali_jm.c", UserError), ("hw/arm/virt.c", InfraError)])
def test_a_compile_error_says_whose_file_broke(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                               failing: str, error: type) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    executable(bin_dir / "ninja", FAKE_NINJA % failing)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    root = devices_dir(tmp_path)
    (root / "hw" / "misc" / "mali_jm.c").write_text("int x\n")
    builder = _builder(tmp_path, root)
    with pytest.raises(error, match=f"{failing}:3:1: error: expected declaration specifiers") as info:
        builder._ninja()
    assert info.value.log == builder.log
