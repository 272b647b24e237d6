from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rig import accel
from rig.errors import UserError
from rig.target import ARM64, X86_64

QEMU = "/usr/bin/qemu-system-x86_64"  # only a name here: the probe's stand-ins are given explicitly


@pytest.fixture(autouse=True)
def private_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("RIG_ACCEL", raising=False)
    monkeypatch.setattr(accel, "host_machine", lambda: "x86_64")


def fake_qemu(tmp_path: Path, body: str) -> str:
    script = tmp_path / "qemu-system-x86_64"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return str(script)


def test_asked_for_accelerator_is_used_without_probe(tmp_path: Path) -> None:
    assert accel.choose_accel(tmp_path / "bzImage", X86_64, QEMU, "kvm") == accel.AccelChoice("kvm", "asked for")
    assert accel.choose_accel(tmp_path / "bzImage", X86_64, QEMU, "tcg").accel == "tcg"


def test_environment_can_ask(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RIG_ACCEL", "tcg")
    assert accel.choose_accel(tmp_path / "bzImage", X86_64, QEMU).reason == "asked for by RIG_ACCEL"


def test_unknown_accelerator_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="'hvf'"):
        accel.choose_accel(tmp_path / "bzImage", X86_64, QEMU, "hvf")


def test_no_kvm_device_means_tcg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(accel, "_kvm_usable", lambda: "/dev/kvm is not usable (No such file or directory)")
    choice = accel.probe_kvm(tmp_path / "bzImage", X86_64, QEMU)
    assert choice.accel == "tcg" and "/dev/kvm" in choice.reason


def test_hanging_kvm_boot_is_killed_and_means_tcg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    monkeypatch.setattr(accel, "_kvm_usable", lambda: None)
    qemu = fake_qemu(tmp_path, f"echo $$ > {pid_file}\nexec sleep 60\n")
    started = time.monotonic()
    choice = accel.probe_kvm(tmp_path / "bzImage", X86_64, qemu, timeout_s=1)
    assert choice.accel == "tcg" and "did not power off within 1 s" in choice.reason
    assert time.monotonic() - started < 8
    with pytest.raises(ProcessLookupError):
        os.kill(int(pid_file.read_text()), 0)


def test_kvm_boot_that_powers_off_means_kvm(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    # A stand-in QEMU that writes the probe's marker to the console file it was given.
    body = (
        'for a in "$@"; do case "$a" in file,id=console,path=*) out="${a#file,id=console,path=}";; esac; done\n'
        f'echo "{accel.PROBE_MARKER}" > "$out"\nexit 0\n'
    )
    monkeypatch.setattr(accel, "_kvm_usable", lambda: None)
    assert accel.probe_kvm(tmp_path / "bzImage", X86_64, fake_qemu(tmp_path, body)).accel == "kvm"


def test_kvm_boot_that_fails_means_tcg_with_the_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(accel, "_kvm_usable", lambda: None)
    qemu = fake_qemu(tmp_path, 'echo "failed to set MSR 0x10a" >&2\nexit 1\n')
    choice = accel.probe_kvm(tmp_path / "bzImage", X86_64, qemu)
    assert choice.accel == "tcg" and "failed to set MSR 0x10a" in choice.reason


def test_probe_verdict_is_cached_per_host_boot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[Path] = []

    def probe(kernel: Path, target: object, qemu: str) -> accel.AccelChoice:
        calls.append(kernel)
        return accel.AccelChoice("tcg", "a KVM test boot did not power off")

    monkeypatch.setattr(accel, "probe_kvm", probe)
    first = accel.choose_accel(tmp_path / "a", X86_64, QEMU)
    second = accel.choose_accel(tmp_path / "b", X86_64, QEMU)
    assert len(calls) == 1 and first.accel == second.accel == "tcg"
    assert "probed earlier" in second.reason


def test_a_foreign_guest_uses_tcg_without_a_probe(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def probe(*args: object) -> accel.AccelChoice:
        raise AssertionError("KVM was probed for an arm64 guest on an x86_64 host")

    monkeypatch.setattr(accel, "probe_kvm", probe)
    choice = accel.choose_accel(tmp_path / "Image", ARM64, "/cache/qemu-system-aarch64")
    assert choice.accel == "tcg" and "arm64" in choice.reason and "x86_64" in choice.reason


@pytest.mark.parametrize("requested, env", [("kvm", None), (None, "kvm")])
def test_kvm_asked_for_a_foreign_guest_is_bad_input(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                    requested: str | None, env: str | None) -> None:
    if env is not None:
        monkeypatch.setenv("RIG_ACCEL", env)
    with pytest.raises(UserError, match="KVM cannot run arm64 guests on this x86_64 host") as info:
        accel.choose_accel(tmp_path / "Image", ARM64, "/cache/qemu-system-aarch64", requested)
    assert ("--accel" if requested else "RIG_ACCEL") in info.value.message


def test_the_host_architectures_own_guest_is_probed(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """On an arm64 host, the arm64 target is native: probed like x86_64 is here."""
    probed: list[str] = []

    def probe(kernel: Path, target: object, qemu: str) -> accel.AccelChoice:
        probed.append(qemu)
        return accel.AccelChoice("kvm", "a KVM test boot powered off in 1.0 s")

    monkeypatch.setattr(accel, "host_machine", lambda: "aarch64")
    monkeypatch.setattr(accel, "probe_kvm", probe)
    assert accel.choose_accel(tmp_path / "Image", ARM64, "/cache/qemu-system-aarch64").accel == "kvm"
    assert probed == ["/cache/qemu-system-aarch64"]


def test_probe_boots_the_targets_machine_on_its_console(tmp_path: Path) -> None:
    argv = accel.probe_argv("/q", ARM64, tmp_path / "Image", tmp_path / "i.cpio", tmp_path / "c.log")
    assert argv[:3] == ["/q", "-machine", "virt,gic-version=3"]
    assert argv[argv.index("-cpu") + 1] == "host"
    assert "console=ttyAMA0" in argv[argv.index("-append") + 1]
    x86 = accel.probe_argv("/q", X86_64, tmp_path / "bzImage", tmp_path / "i.cpio", tmp_path / "c.log")
    assert "-cpu" not in x86 and "console=ttyS0,115200" in x86[x86.index("-append") + 1]
