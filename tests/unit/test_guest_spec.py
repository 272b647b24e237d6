"""The guest as data: targets, GuestSpec's checks, the machine options that make one, and
`rig boot` refusing bad ones before anything is built."""

from __future__ import annotations

import argparse
import sys
import types
from pathlib import Path

import pytest

from rig import guest_spec
from rig.commands._machine_options import add_machine_arguments, guest_spec_from_args
from rig.commands.build import add_build_arguments
from rig.errors import UserError
from rig.guest_spec import GuestSpec
from rig.target import ARM64, DEFAULT_TARGET, TARGETS, X86_64, target


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_build_arguments(parser)  # --arch
    add_machine_arguments(parser)
    return parser.parse_args(list(argv))


def test_defaults_make_the_x86_64_guest_rig_always_booted() -> None:
    spec = guest_spec_from_args(parse())
    assert spec == GuestSpec()
    assert spec.target is X86_64 is DEFAULT_TARGET and spec.gpu == "virtio-gpu" and spec.driver == "virtio_gpu"
    assert spec.accel is None  # auto: probe KVM


def test_options_become_the_spec() -> None:
    spec = guest_spec_from_args(parse("--gpu", "bochs", "--memory", "4096", "--cpus", "1", "--accel", "tcg",
                                      "--append", "kmemleak=on", "--append", "quiet", "--ready-timeout", "60"))
    assert (spec.gpu, spec.memory_mib, spec.cpus, spec.accel) == ("bochs", 4096, 1, "tcg")
    assert spec.cmdline_extra == ("kmemleak=on", "quiet") and spec.ready_timeout_s == 60
    assert spec.driver == "bochs-drm"


def test_arch_chooses_the_target() -> None:
    spec = guest_spec_from_args(parse("--arch", "arm64"))
    assert spec.target is ARM64 and spec.gpu == "virtio-gpu"


def test_every_problem_is_listed_in_one_error() -> None:
    with pytest.raises(UserError) as info:
        guest_spec_from_args(parse("--cpus", "0", "--append", "a b", "--gpu", "voodoo", "--memory", "100",
                                   "--ready-timeout", "0"))
    message = info.value.message
    for part in ("--cpus 0", "--append 'a b'", "--gpu voodoo", "--memory 100", "--ready-timeout 0"):
        assert part in message, part
    assert info.value.exit_code == 2


def test_a_gpu_model_is_checked_against_the_arch() -> None:
    assert guest_spec_from_args(parse("--gpu", "bochs")).gpu == "bochs"
    with pytest.raises(UserError, match="--gpu bochs: not a GPU model on arm64") as info:
        guest_spec_from_args(parse("--gpu", "bochs", "--arch", "arm64"))
    assert "virtio-gpu" in info.value.message  # what to give instead


def test_unknown_arch_is_refused_by_the_parser(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parse("--arch", "riscv64")
    assert info.value.code == 2 and "riscv64" in capsys.readouterr().err


def test_kvm_for_a_foreign_guest_is_refused_before_anything(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(guest_spec, "host_machine", lambda: "x86_64")
    with pytest.raises(UserError, match="--accel kvm"):
        guest_spec_from_args(parse("--arch", "arm64", "--accel", "kvm"))
    assert guest_spec_from_args(parse("--arch", "arm64", "--accel", "tcg")).accel == "tcg"
    monkeypatch.setattr(guest_spec, "host_machine", lambda: "aarch64")
    assert guest_spec_from_args(parse("--arch", "arm64", "--accel", "kvm")).accel == "kvm"


@pytest.mark.parametrize("extra", ["", "a\tb", "bell\a", "x" * 700])
def test_kernel_arguments_must_be_single_printable_words(extra: str) -> None:
    assert GuestSpec(cmdline_extra=(extra,)).problems()


def test_an_image_is_a_recipe_name_or_a_toml_file() -> None:
    assert not GuestSpec(image="default").problems() and not GuestSpec(image="images/x/recipe.toml").problems()
    assert GuestSpec(image="images/x").problems() and GuestSpec(image="").problems()


def test_with_cmdline_adds_arguments_and_keeps_the_rest() -> None:
    spec = GuestSpec(target=ARM64, cpus=1, cmdline_extra=("a=1",)).with_cmdline("fbcon=map:1")
    assert spec.cmdline_extra == ("a=1", "fbcon=map:1") and spec.cpus == 1 and spec.target is ARM64


def test_to_json_names_the_arch() -> None:
    assert GuestSpec(target=ARM64).to_json()["arch"] == "arm64"


def test_targets_are_found_by_name() -> None:
    assert target("x86_64") is X86_64 and target("arm64") is ARM64 and set(TARGETS) == {"x86_64", "arm64"}
    with pytest.raises(UserError, match="--arch sparc"):
        target("sparc")


def test_each_target_names_its_default_gpu_and_console() -> None:
    for each in TARGETS.values():
        assert each.gpu_default in each.gpus and "none" in each.gpus
        assert each.console and each.machine
    assert X86_64.native_on("x86_64") and not ARM64.native_on("x86_64") and ARM64.native_on("aarch64")
    assert ARM64.qemu_system == "qemu-system-aarch64" and ARM64.virtio("blk") == "virtio-blk-pci"


# ---------------------------------------------------------------- the QEMU binary

def test_an_installed_qemu_is_found_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    from rig import proc, vm

    asked: list[tuple[str, str]] = []
    monkeypatch.setattr(proc, "require_tool", lambda name, package: asked.append((name, package)) or f"/usr/bin/{name}")
    assert vm.qemu_binary(X86_64) == "/usr/bin/qemu-system-x86_64"
    assert asked == [("qemu-system-x86_64", "qemu-system-x86")]


def test_rigs_own_qemu_is_built_through_rig_qemu_build(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from rig import vm

    built: list[bool] = []

    def ensure_qemu(progress: bool = True) -> object:
        built.append(progress)
        return types.SimpleNamespace(binary=tmp_path / "qemu-system-aarch64")

    module = types.ModuleType("rig.qemu.build")
    module.ensure_qemu = ensure_qemu  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rig.qemu.build", module)
    assert vm.qemu_binary(ARM64, progress=True) == str(tmp_path / "qemu-system-aarch64")
    assert built == [True]


def test_an_arm64_guest_runs_on_rigs_own_qemu_build(monkeypatch: pytest.MonkeyPatch) -> None:
    from types import SimpleNamespace

    import rig.qemu.build
    from rig import vm

    asked: list[bool] = []

    def ensure_qemu(progress: bool = True) -> SimpleNamespace:
        asked.append(progress)
        return SimpleNamespace(binary=Path("/cache/qemu/qemu-system-aarch64"))

    monkeypatch.setattr(rig.qemu.build, "ensure_qemu", ensure_qemu)
    assert vm.qemu_binary(ARM64) == "/cache/qemu/qemu-system-aarch64" and asked == [False]


# ---------------------------------------------------------------- rig boot: nothing before the checks

@pytest.mark.parametrize("options, words", [(["--cpus", "0"], "--cpus 0"),
                                            (["--append", "a b"], "--append 'a b'"),
                                            (["--gpu", "bochs", "--arch", "arm64"], "not a GPU model on arm64"),
                                            (["--memory", "100"], "--memory 100")])
def test_rig_boot_refuses_a_bad_guest_before_building(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str], options: list[str],
                                                      words: str) -> None:
    import rig.build
    import rig.image
    from rig import cli

    def must_not_run(*args: object, **kwargs: object) -> object:
        raise AssertionError("something was built before the guest options were checked")

    monkeypatch.setattr(rig.build, "build", must_not_run)
    monkeypatch.setattr(rig.image, "ensure_image", must_not_run)
    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path / "cache"))
    out = tmp_path / "run"
    status = cli.main(["boot", "--kernel", "debian:6.1", *options, "--out", str(out), "--", "true"])
    assert status == 2
    assert words in capsys.readouterr().err
    assert not out.exists()  # not even the run directory


def test_rig_boot_builds_when_the_guest_is_fine(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The check above is not vacuous: with good options the same command reaches the build."""
    import rig.build
    from rig import cli

    class Built(BaseException):  # past cli.main's handlers, which turn an Exception into exit 4
        pass

    def build(*args: object, **kwargs: object) -> object:
        raise Built

    monkeypatch.setattr(rig.build, "build", build)
    monkeypatch.setattr("rig.commands.boot.qemu_binary", lambda target, progress=False: "/usr/bin/true")
    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path / "cache"))
    with pytest.raises(Built):
        cli.main(["boot", "--kernel", "debian:6.1", "--cpus", "1", "--out", str(tmp_path / "run"), "--", "true"])
