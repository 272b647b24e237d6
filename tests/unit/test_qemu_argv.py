from __future__ import annotations

import dataclasses
import shlex
from pathlib import Path

import pytest

from rig.errors import UserError
from rig.guest_spec import GuestSpec
from rig.qemu.argv import (DISPLAY_PROBE_INPUT, MachineSpec, build_argv, display_probe_argv, kernel_cmdline,
                           qemu_environment, render)
from rig.target import ARM64, TARGETS, X86_64, Target

from .kernelimages import fake_kernel_image


def spec(**changes: object) -> MachineSpec:
    """A machine spec; guest fields (gpu, cpus, target ...) go into its GuestSpec, except
    accel: the machine's is the one chosen, the guest's only the one asked for."""
    guest_fields = {f.name for f in dataclasses.fields(GuestSpec)} - {"accel"}
    guest = GuestSpec(**{k: v for k, v in changes.items() if k in guest_fields})  # type: ignore[arg-type]
    base: dict[str, object] = dict(kernel=Path("/k/bzImage"), run_dir=Path("/run/r"), disk=Path("/run/r/overlay.qcow2"),
                                   ssh_port=2222, guest=guest)
    if guest.target.qemu == "rig":
        base["binary"] = "/cache/qemu/qemu-system-aarch64"
    base.update({k: v for k, v in changes.items() if k not in guest_fields})
    return MachineSpec(**base)  # type: ignore[arg-type]


def options(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv) if word == flag]


def all_gpu_devices(target: Target) -> set[str]:
    return {d for model in target.gpus.values() for d in model.devices}


def test_every_device_rig_relies_on_is_there() -> None:
    argv = build_argv(spec())
    devices = options(argv, "-device")
    assert "virtio-balloon-pci,id=balloon0,deflate-on-oom=on" in devices
    assert "pvpanic-pci" in devices
    assert "virtio-rng-pci,rng=rng0" in devices
    assert "virtio-net-pci,netdev=net0" in devices
    assert "virtio-blk-pci,drive=root" in devices
    assert options(argv, "-machine") == ["q35"]
    assert options(argv, "-cpu") == []  # QEMU's default CPU: -cpu host aborts under this host's KVM
    assert argv[argv.index("-action") + 1] == "panic=none"  # the kernel's reboot ends QEMU, its report written
    for flag in ("-nodefaults", "-no-reboot"):
        assert flag in argv
    assert options(argv, "-display") == ["none"] and options(argv, "-vga") == ["none"]
    # QEMU's seccomp filter: no exec, no setuid, no obsolete calls from a compromised QEMU
    assert options(argv, "-sandbox") == ["on,obsolete=deny,elevateprivileges=deny,spawn=deny"]


def test_x86_64_comes_from_its_target() -> None:
    argv = build_argv(spec())
    assert argv[0] == "qemu-system-x86_64"  # by name on PATH when no binary is given
    words = kernel_cmdline(spec()).split()
    assert words[0] == "console=ttyS0,115200" and "8250.nr_uarts=1" in words


def test_arm64_comes_from_its_target() -> None:
    argv = build_argv(spec(target=ARM64))
    assert argv[0] == "/cache/qemu/qemu-system-aarch64"
    assert options(argv, "-machine") == ["virt,gic-version=3"]
    assert options(argv, "-cpu") == ["max,pauth-impdef=on"]
    devices = options(argv, "-device")
    for device in ("virtio-balloon-pci,id=balloon0,deflate-on-oom=on", "pvpanic-pci", "virtio-rng-pci,rng=rng0",
                   "virtio-net-pci,netdev=net0", "virtio-blk-pci,drive=root", "virtio-gpu-pci"):
        assert device in devices
    words = kernel_cmdline(spec(target=ARM64)).split()
    assert words[0] == "console=ttyAMA0"
    assert not [w for w in words if w.startswith("8250.") or "ttyS" in w]  # nothing of x86's on arm64


def test_arm64_under_kvm_runs_the_host_cpu() -> None:
    assert options(build_argv(spec(target=ARM64, accel="kvm")), "-cpu") == ["host"]


def test_a_target_built_by_rig_needs_its_binary() -> None:
    with pytest.raises(UserError, match="no QEMU binary given for arm64"):
        build_argv(spec(target=ARM64, binary=None))


def test_the_binary_given_is_used() -> None:
    assert build_argv(spec(binary="/opt/qemu/bin/qemu-system-x86_64"))[0] == "/opt/qemu/bin/qemu-system-x86_64"


def test_ssh_is_forwarded_on_loopback_only() -> None:
    (netdev,) = options(build_argv(spec(ssh_port=40123)), "-netdev")
    assert "hostfwd=tcp:127.0.0.1:40123-:22" in netdev


def test_qmp_and_console_live_in_the_run_directory() -> None:
    argv = build_argv(spec())
    chardevs = options(argv, "-chardev")
    assert "file,id=console,path=/run/r/console.log" in chardevs
    assert "socket,id=qmp,path=/run/r/qmp.sock" in chardevs  # rig listens; QEMU connects
    assert options(argv, "-mon") == ["chardev=qmp,mode=control"]
    assert options(argv, "-serial") == ["chardev:console"]


@pytest.mark.parametrize("target, gpu, device", [(X86_64, "virtio-gpu", "virtio-gpu-pci"),
                                                 (X86_64, "virtio-vga", "virtio-vga"),
                                                 (X86_64, "bochs", "bochs-display"),
                                                 (X86_64, "cirrus", "cirrus-vga"),
                                                 (X86_64, "virgl", "virtio-gpu-gl-pci"),
                                                 (ARM64, "virtio-gpu", "virtio-gpu-pci")])
def test_gpu_models(target: Target, gpu: str, device: str) -> None:
    devices = options(build_argv(spec(target=target, gpu=gpu)), "-device")
    assert device in devices
    others = all_gpu_devices(target) - {device}
    assert not others & set(devices)


@pytest.mark.parametrize("target", TARGETS.values(), ids=list(TARGETS))
def test_no_gpu_means_no_display_device_at_all(target: Target) -> None:
    devices = options(build_argv(spec(target=target, gpu="none")), "-device")
    assert not all_gpu_devices(target) & set(devices)


def test_a_gpu_model_of_another_target_is_refused() -> None:
    with pytest.raises(UserError, match="--gpu bochs: not a GPU model on arm64"):
        build_argv(spec(target=ARM64, gpu="bochs"))


def test_accelerators() -> None:
    assert options(build_argv(spec(accel="tcg")), "-accel") == ["tcg,thread=multi"]
    assert options(build_argv(spec(accel="kvm")), "-accel") == ["kvm"]


def test_memory_and_cpus() -> None:
    argv = build_argv(spec(memory_mib=4096, cpus=1))
    assert options(argv, "-m") == ["4096"] and options(argv, "-smp") == ["1"]


def test_kernel_command_line() -> None:
    line = kernel_cmdline(spec(cmdline_extra=("kmemleak=on",)))
    words = line.split()
    for word in ("console=ttyS0,115200", "root=/dev/vda", "rw", "init=/sbin/rig-init", "panic=-1", "printk.time=1"):
        assert word in words
    assert words[-1] == "kmemleak=on"
    # eth0 for QEMU's user networking, set by the kernel itself where it can.
    assert "ip=10.0.2.15::10.0.2.2:255.255.255.0::eth0:off" in words and "rig_net=kernel" in words


def test_initramfs_boot_uses_rdinit() -> None:
    words = kernel_cmdline(spec(disk=None, initrd=Path("/i.cpio"), init="/init")).split()
    assert "rdinit=/init" in words and "root=/dev/vda" not in words


def test_commas_in_paths_are_escaped() -> None:
    argv = build_argv(spec(run_dir=Path("/tmp/a,b")))
    assert "file,id=console,path=/tmp/a,,b/console.log" in options(argv, "-chardev")


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(UserError) as info:
        build_argv(spec(gpu="voodoo", memory_mib=16, cpus=0, cmdline_extra=("a b",), accel="hvf", ssh_port=70000))
    message = info.value.message
    for part in ("--gpu voodoo", "--memory 16", "--cpus 0", "'a b'", "'hvf'", "SSH port 70000"):
        assert part in message


def test_a_too_long_command_line_is_refused() -> None:
    with pytest.raises(UserError, match="kernel command line is longer than 1024"):
        build_argv(spec(init="/" + "x" * 900))  # the user's arguments are fine; the whole line is not


def test_render_round_trips() -> None:
    argv = build_argv(spec(run_dir=Path("/tmp/with space")))
    assert shlex.split(render(argv)) == argv


def test_rig_boot_dry_run_prints_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from rig import cli

    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path / "cache"))
    kernel = fake_kernel_image(tmp_path / "bzImage")
    status = cli.main(["boot", "--bzimage", str(kernel), "--gpu", "cirrus", "--memory", "1024", "--accel", "tcg",
                       "--out", str(tmp_path / "run"), "--dry-run"])
    assert status == 0
    argv = shlex.split(capsys.readouterr().out.strip())
    assert argv[0] == "qemu-system-x86_64"
    assert options(argv, "-kernel") == [str(kernel)]
    assert "cirrus-vga" in options(argv, "-device") and options(argv, "-m") == ["1024"]
    assert not list((tmp_path / "run").glob("vm/*.qcow2"))  # nothing was started or created


def test_rig_boot_dry_run_for_arm64_builds_no_qemu(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    from rig import cli

    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path / "cache"))
    kernel = fake_kernel_image(tmp_path / "Image", "arm64")
    status = cli.main(["boot", "--arch", "arm64", "--bzimage", str(kernel), "--out", str(tmp_path / "run"),
                       "--dry-run"])
    assert status == 0
    argv = shlex.split(capsys.readouterr().out.strip())
    assert argv[0] == "<rig's qemu-system-aarch64 build>"
    assert options(argv, "-machine") == ["virt,gic-version=3"]
    assert options(argv, "-accel") == ["tcg,thread=multi"]  # a foreign guest: no KVM probe
    assert "console=ttyAMA0" in options(argv, "-append")[0].split()


def test_mali_is_switched_on_in_the_board_not_plugged_in() -> None:
    argv = build_argv(spec(target=ARM64, gpu="mali"))
    assert options(argv, "-machine") == ["virt,gic-version=3,mali=on"]
    assert not all_gpu_devices(ARM64) & set(options(argv, "-device"))  # no virtio-gpu beside it
    assert ARM64.gpu("mali").driver == "panfrost"
    assert not ARM64.gpu("mali").has_display and ARM64.gpu("virtio-gpu").has_display


def test_mali_is_arm64_only() -> None:
    with pytest.raises(UserError, match=r"--gpu mali: not a GPU model on x86_64 .*it is on --arch arm64"):
        build_argv(spec(gpu="mali"))


def test_rig_boot_rejects_a_missing_kernel(tmp_path: Path) -> None:
    from rig import cli

    assert cli.main(["boot", "--bzimage", str(tmp_path / "nope"), "--out", str(tmp_path / "run"), "--", "true"]) == 2


def test_qmp_socket_can_live_outside_a_long_run_directory() -> None:
    argv = build_argv(spec(run_dir=Path("/r" * 80), socket_dir=Path("/tmp/rig-qmp-x")))
    assert "socket,id=qmp,path=/tmp/rig-qmp-x/qmp.sock" in options(argv, "-chardev")


def test_virgl_renders_through_an_opengl_display_without_a_window_system() -> None:
    virgl = spec(gpu="virgl")
    argv = build_argv(virgl)
    assert options(argv, "-display") == ["sdl,gl=on"]  # virtio-gpu-gl refuses to start without gl=on
    assert "virtio-gpu-gl-pci" in options(argv, "-device")
    env = qemu_environment(virgl)
    assert env["SDL_VIDEODRIVER"] == "offscreen"  # EGL without X or Wayland: nothing to start beside QEMU
    assert env["LIBGL_ALWAYS_SOFTWARE"] == "1"  # llvmpipe on every host, a GPU or not
    assert X86_64.gpu("virgl").uses_host_gl and X86_64.gpu("virgl").driver == "virtio_gpu"


@pytest.mark.parametrize("gpu", ["virtio-gpu", "virtio-vga", "bochs", "cirrus", "none"])
def test_models_without_host_opengl_keep_no_display_and_rigs_environment(gpu: str) -> None:
    assert options(build_argv(spec(gpu=gpu)), "-display") == ["none"]
    assert qemu_environment(spec(gpu=gpu)) == {}
    assert not X86_64.gpu(gpu).uses_host_gl


def test_render_puts_the_environment_before_the_command() -> None:
    argv = build_argv(spec(gpu="virgl", run_dir=Path("/tmp/with space")))
    words = shlex.split(render(argv, {"SDL_VIDEODRIVER": "offscreen", "ODD": "a b"}))
    assert words[:2] == ["SDL_VIDEODRIVER=offscreen", "ODD=a b"] and words[2:] == argv


def test_display_probe_opens_the_models_display_and_devices_and_nothing_else() -> None:
    argv = display_probe_argv("/usr/bin/qemu-system-x86_64", X86_64, X86_64.gpu("virgl"))
    assert argv[0] == "/usr/bin/qemu-system-x86_64"
    assert options(argv, "-display") == ["sdl,gl=on"] and options(argv, "-device") == ["virtio-gpu-gl-pci"]
    assert "-kernel" not in argv and "-S" in argv  # no guest runs: paused, without a kernel
    assert options(argv, "-sandbox") == options(build_argv(spec(gpu="virgl")), "-sandbox")  # as strict as a boot
    assert options(argv, "-qmp") == ["stdio"] and b'"quit"' in DISPLAY_PROBE_INPUT  # it quits when told


def test_rig_boot_dry_run_for_virgl_shows_qemus_environment(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from rig import cli

    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path / "cache"))
    kernel = fake_kernel_image(tmp_path / "bzImage")
    status = cli.main(["boot", "--bzimage", str(kernel), "--gpu", "virgl", "--accel", "tcg",
                       "--out", str(tmp_path / "run"), "--dry-run"])
    assert status == 0
    words = shlex.split(capsys.readouterr().out.strip())
    assert words[:2] == ["SDL_VIDEODRIVER=offscreen", "LIBGL_ALWAYS_SOFTWARE=1"]
    assert words[2] == "qemu-system-x86_64" and options(words, "-display") == ["sdl,gl=on"]
