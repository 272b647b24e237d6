"""rig doctor's checks over a faked host (the Host seam), and one real run."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from rig import cli
from rig.doctor import Host, State, diagnose
from rig.target import TARGETS, X86_64

GiB = 2**30
ALL_PROGRAMS = {"git", "make", "gcc", "flex", "bison", "bc", "cpio", "pahole", "dpkg-source", "qemu-system-x86_64",
                "qemu-img", "mmdebstrap", "newuidmap", "newgidmap", "chromium", "aarch64-linux-gnu-gcc",
                "qemu-aarch64-static", "bwrap"}


def host(programs: set[str] = ALL_PROGRAMS, **changes: object) -> Host:
    """A well set-up Debian host, as root, with KVM; `changes` replace single seams."""
    files = {Path("/dev/kvm"): ""}
    base = Host(
        which=lambda name: f"/usr/bin/{name}" if name in programs else None,
        version=lambda argv: f"{Path(argv[0]).name} 1.0",
        euid=lambda: 0,
        user=lambda: "root",
        read_text=lambda path: files.get(path),
        exists=lambda path: path in files,
        free_bytes=lambda path: 100 * GiB,
        cache_root=lambda: Path("/home/dev/.cache/rig"),
        mirror=lambda: "http://deb.debian.org/debian",
        reach=lambda url: None,
        kvm=lambda target, qemu: ("kvm", "a KVM test boot powered off in 1.2 s"),
        rig_qemu=lambda: Path("/cache/qemu/qemu-system-aarch64"),
        gpu_display=lambda qemu, model: None,
    )
    return dataclasses.replace(base, **changes)  # type: ignore[arg-type]


def by_check(findings: list) -> dict:
    return {f.check: f for f in findings}


def test_a_host_after_setup_has_everything() -> None:
    findings = diagnose(host(), arch="arm64")
    assert [f for f in findings if f.state is not State.OK] == []
    assert {"QEMU (qemu-system-x86_64)", "KVM", "mmdebstrap", "cache space", "package mirror", "chromium",
            "arm64 cross compiler", "rig's QEMU (arm64 guests)", "arm64 images"} <= set(by_check(findings))


def test_a_fresh_host_lists_each_missing_piece_with_its_package() -> None:
    findings = by_check(diagnose(host(programs={"git", "make"}), arch="arm64"))
    assert findings["QEMU (qemu-system-x86_64)"].state is State.MISSING
    assert "apt-get install qemu-system-x86" in findings["QEMU (qemu-system-x86_64)"].fix
    assert "apt-get install qemu-utils" in findings["QEMU (qemu-img)"].fix
    assert findings["mmdebstrap"].state is State.MISSING and "apt-get install mmdebstrap" in findings["mmdebstrap"].fix
    assert "gcc-aarch64-linux-gnu" in findings["arm64 cross compiler"].fix
    tools = findings["kernel build tools"]
    assert tools.state is State.MISSING and "bison" in tools.detail and "dwarves" in tools.fix
    assert findings["chromium"].state is State.WARN and "apt-get install chromium" in findings["chromium"].fix
    assert findings["sandbox"].state is State.WARN and "apt-get install bubblewrap" in findings["sandbox"].fix
    assert "./setup" in findings["mmdebstrap"].fix


def test_without_arm64_the_cross_compiler_and_rigs_qemu_are_not_asked_for() -> None:
    findings = by_check(diagnose(host(programs=ALL_PROGRAMS - {"aarch64-linux-gnu-gcc"}, rig_qemu=lambda: None)))
    assert "arm64 cross compiler" not in findings
    assert findings["rig's QEMU (arm64 guests)"].state is State.OK
    arm = by_check(diagnose(host(rig_qemu=lambda: None), arch="arm64"))["rig's QEMU (arm64 guests)"]
    assert arm.state is State.MISSING and "rig qemu build" in arm.fix


def test_kvm_that_fails_its_test_boot_or_is_absent_is_a_warning_not_a_failure() -> None:
    hung = by_check(diagnose(host(kvm=lambda t, q: ("tcg", "a KVM test boot did not power off within 8 s"))))["KVM"]
    assert hung.state is State.WARN and "did not power off" in hung.detail and hung.fix
    absent = by_check(diagnose(host(exists=lambda path: False)))["KVM"]
    assert absent.state is State.WARN and "no /dev/kvm" in absent.detail
    untried = by_check(diagnose(host(kvm=lambda t, q: None)))["KVM"]
    assert untried.state is State.OK and "first guest boot" in untried.detail


def test_virgl_is_tried_by_starting_qemu_with_its_display_and_a_failure_is_a_warning() -> None:
    tried: list[tuple[str, str]] = []

    def opens(qemu: str, model: object) -> None:
        tried.append((qemu, getattr(model, "name")))

    ok = by_check(diagnose(host(gpu_display=opens)))["--gpu virgl"]
    assert ok.state is State.OK and "sdl,gl=on" in ok.detail and "SDL_VIDEODRIVER=offscreen" in ok.detail
    assert tried == [("/usr/bin/qemu-system-x86_64", "virgl")]  # only the models that need host OpenGL
    broken = by_check(diagnose(host(gpu_display=lambda q, m: "egl: no drm render node available")))
    virgl = broken["--gpu virgl"]
    assert virgl.state is State.WARN and "no drm render node" in virgl.detail and "virtio-gpu-gl-pci" in virgl.detail
    assert "apt-get install qemu-system-gui libgl1-mesa-dri" in virgl.fix
    assert [f for f in broken.values() if f.state is State.MISSING] == []  # rig's main job still works
    no_qemu = by_check(diagnose(host(programs=ALL_PROGRAMS - {"qemu-system-x86_64"})))["--gpu virgl"]
    assert no_qemu.state is State.WARN and "qemu-system-x86" in no_qemu.fix


@pytest.mark.skipif(shutil.which("qemu-system-x86_64") is None, reason="needs Debian's QEMU")
def test_the_real_display_probe_tells_an_opening_display_from_a_failing_one() -> None:
    from rig.doctor import _gpu_display

    virgl = X86_64.gpu("virgl")
    # SDL's dummy video driver has no OpenGL: QEMU must fail, and the probe must say so.
    broken = dataclasses.replace(virgl, environment=(("SDL_VIDEODRIVER", "dummy"),))
    assert _gpu_display("qemu-system-x86_64", broken) is not None
    unknown = dataclasses.replace(virgl, devices=("no-such-device",))
    assert "no-such-device" in (_gpu_display("qemu-system-x86_64", unknown) or "")


def test_mmdebstrap_as_a_user_needs_uidmap_and_subordinate_ids() -> None:
    files = {Path("/etc/subuid"): "other:100000:65536\n", Path("/etc/subgid"): "dev:100000:65536\n",
             Path("/dev/kvm"): ""}
    user = host(programs=ALL_PROGRAMS - {"newuidmap"}, euid=lambda: 1000, user=lambda: "dev",
                read_text=lambda path: files.get(path))
    found = by_check(diagnose(user, arch="arm64"))
    mm = found["mmdebstrap"]
    assert mm.state is State.MISSING
    assert "newuidmap" in mm.detail and "/etc/subuid gives dev no range" in mm.detail
    assert "/etc/subgid" not in mm.detail  # dev has a subgid range
    assert "apt-get install uidmap" in mm.fix and "usermod --add-subuids 100000-165535 dev" in mm.fix
    assert found["arm64 images"].state is State.MISSING and "root" in found["arm64 images"].detail
    files[Path("/etc/subuid")] = "dev:100000:65536\n"
    ready = by_check(diagnose(dataclasses.replace(user, which=host().which)))["mmdebstrap"]
    assert ready.state is State.OK and "unshare mode" in ready.detail


def test_little_space_and_an_unreachable_mirror() -> None:
    found = by_check(diagnose(host(free_bytes=lambda path: 3 * GiB,
                                   reach=lambda url: "[Errno -3] Temporary failure in name resolution")))
    assert found["cache space"].state is State.MISSING and "3.0 GiB free" in found["cache space"].detail
    assert "RIG_CACHE_DIR" in found["cache space"].fix
    mirror = found["package mirror"]
    assert mirror.state is State.MISSING and "name resolution" in mirror.detail and "deb.debian.org" in mirror.detail
    tight = by_check(diagnose(host(free_bytes=lambda path: 10 * GiB)))["cache space"]
    assert tight.state is State.WARN


def test_the_command_exits_3_with_a_missing_piece_and_0_with_warnings_only(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import rig.commands.doctor as command

    monkeypatch.setattr(command.Host, "real", classmethod(lambda cls: host(programs=ALL_PROGRAMS - {"mmdebstrap"})))
    assert cli.main(["doctor"]) == 3
    out = capsys.readouterr().out
    assert "MISSING mmdebstrap" in out and "fix: sudo apt-get install mmdebstrap" in out
    monkeypatch.setattr(command.Host, "real", classmethod(lambda cls: host(programs=ALL_PROGRAMS - {"chromium"})))
    assert cli.main(["doctor", "--json"]) == 0
    states = {f["check"]: f["state"] for f in json.loads(capsys.readouterr().out)}
    assert states["chromium"] == "warn" and states["mmdebstrap"] == "ok"


def test_a_real_run_on_this_host(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    """The real seams, offline: the mirror is not asked (no network in the fast tier)."""
    import rig.doctor

    monkeypatch.setattr(rig.doctor, "_reach", lambda url: None)
    monkeypatch.setattr(rig.doctor, "_kvm", lambda target, qemu: None)  # no test boot in the fast tier
    status = cli.main(["doctor"])
    out = capsys.readouterr().out
    assert status in (0, 3)
    assert "cache space" in out and "mmdebstrap" in out and "KVM" in out and "--gpu virgl" in out
    assert ("all that rig needs is here" in out) == (status == 0)


def test_setup_installs_every_package_a_gpu_model_needs() -> None:
    setup = (Path(__file__).resolve().parents[2] / "setup").read_text().split()
    for target in TARGETS.values():
        for model in target.gpus.values():
            for package in model.host_packages:
                assert package in setup, (model.name, package)
    assert X86_64.gpu("virgl").host_packages  # the one model that needs more than QEMU
