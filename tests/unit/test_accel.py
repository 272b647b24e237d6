from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from rig import accel
from rig.errors import UserError


@pytest.fixture(autouse=True)
def private_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("RIG_ACCEL", raising=False)


def fake_qemu(tmp_path: Path, body: str) -> str:
    script = tmp_path / "qemu-system-x86_64"
    script.write_text("#!/bin/sh\n" + body)
    script.chmod(0o755)
    return str(script)


def test_asked_for_accelerator_is_used_without_probe(tmp_path: Path) -> None:
    assert accel.choose_accel(tmp_path / "bzImage", "kvm") == accel.AccelChoice("kvm", "asked for")
    assert accel.choose_accel(tmp_path / "bzImage", "tcg").accel == "tcg"


def test_environment_can_ask(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("RIG_ACCEL", "tcg")
    assert accel.choose_accel(tmp_path / "bzImage").reason == "asked for by RIG_ACCEL"


def test_unknown_accelerator_is_bad_input(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="'hvf'"):
        accel.choose_accel(tmp_path / "bzImage", "hvf")


def test_no_kvm_device_means_tcg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(accel, "_kvm_usable", lambda: "/dev/kvm is not usable (No such file or directory)")
    choice = accel.probe_kvm(tmp_path / "bzImage")
    assert choice.accel == "tcg" and "/dev/kvm" in choice.reason


def test_hanging_kvm_boot_is_killed_and_means_tcg(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    monkeypatch.setattr(accel, "_kvm_usable", lambda: None)
    monkeypatch.setattr(accel, "QEMU", fake_qemu(tmp_path, f"echo $$ > {pid_file}\nexec sleep 60\n"))
    started = time.monotonic()
    choice = accel.probe_kvm(tmp_path / "bzImage", timeout_s=1)
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
    monkeypatch.setattr(accel, "QEMU", fake_qemu(tmp_path, body))
    assert accel.probe_kvm(tmp_path / "bzImage").accel == "kvm"


def test_kvm_boot_that_fails_means_tcg_with_the_reason(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(accel, "_kvm_usable", lambda: None)
    monkeypatch.setattr(accel, "QEMU", fake_qemu(tmp_path, 'echo "failed to set MSR 0x10a" >&2\nexit 1\n'))
    choice = accel.probe_kvm(tmp_path / "bzImage")
    assert choice.accel == "tcg" and "failed to set MSR 0x10a" in choice.reason


def test_probe_verdict_is_cached_per_host_boot(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[Path] = []

    def probe(kernel: Path) -> accel.AccelChoice:
        calls.append(kernel)
        return accel.AccelChoice("tcg", "a KVM test boot did not power off")

    monkeypatch.setattr(accel, "probe_kvm", probe)
    first = accel.choose_accel(tmp_path / "a")
    second = accel.choose_accel(tmp_path / "b")
    assert len(calls) == 1 and first.accel == second.accel == "tcg"
    assert "probed earlier" in second.reason
