from __future__ import annotations

import shlex
from pathlib import Path

import pytest

from rig.errors import UserError
from rig.qemu.argv import GPU_DEVICES, MachineSpec, build_argv, kernel_cmdline, render


def spec(**changes: object) -> MachineSpec:
    base: dict[str, object] = dict(kernel=Path("/k/bzImage"), run_dir=Path("/run/r"), disk=Path("/run/r/overlay.qcow2"),
                                   ssh_port=2222)
    base.update(changes)
    return MachineSpec(**base)  # type: ignore[arg-type]


def options(argv: list[str], flag: str) -> list[str]:
    return [argv[i + 1] for i, word in enumerate(argv) if word == flag]


def test_every_device_rig_relies_on_is_there() -> None:
    argv = build_argv(spec())
    devices = options(argv, "-device")
    assert "virtio-balloon-pci,id=balloon0,deflate-on-oom=on" in devices
    assert "pvpanic-pci" in devices
    assert "virtio-rng-pci,rng=rng0" in devices
    assert "virtio-net-pci,netdev=net0" in devices
    assert "virtio-blk-pci,drive=root" in devices
    assert options(argv, "-machine") == ["q35"]
    for flag in ("-nodefaults", "-no-reboot"):
        assert flag in argv
    assert options(argv, "-display") == ["none"] and options(argv, "-vga") == ["none"]


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


@pytest.mark.parametrize("gpu, device", [("virtio-gpu", "virtio-gpu-pci"), ("virtio-vga", "virtio-vga"),
                                         ("bochs", "bochs-display"), ("cirrus", "cirrus-vga")])
def test_gpu_models(gpu: str, device: str) -> None:
    devices = options(build_argv(spec(gpu=gpu)), "-device")
    assert device in devices
    others = {d for g, ds in GPU_DEVICES.items() if g != gpu for d in ds} - {device}
    assert not others & set(devices)


def test_no_gpu_means_no_display_device_at_all() -> None:
    devices = options(build_argv(spec(gpu="none")), "-device")
    assert not {d for ds in GPU_DEVICES.values() for d in ds} & set(devices)


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
        build_argv(spec(gpu="voodoo", memory_mib=16, cpus=0, cmdline_extra=("a b",)))
    message = info.value.message
    assert "--gpu voodoo" in message and "--memory 16" in message and "--cpus 0" in message and "'a b'" in message


def test_render_round_trips() -> None:
    argv = build_argv(spec(run_dir=Path("/tmp/with space")))
    assert shlex.split(render(argv)) == argv


def test_rig_boot_dry_run_prints_the_command_line(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    from rig import cli

    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path / "cache"))
    kernel = tmp_path / "bzImage"
    kernel.write_bytes(b"not really a kernel")
    status = cli.main(["boot", "--bzimage", str(kernel), "--gpu", "cirrus", "--memory", "1024", "--accel", "tcg",
                       "--out", str(tmp_path / "run"), "--dry-run"])
    assert status == 0
    argv = shlex.split(capsys.readouterr().out.strip())
    assert argv[0] == "qemu-system-x86_64"
    assert options(argv, "-kernel") == [str(kernel)]
    assert "cirrus-vga" in options(argv, "-device") and options(argv, "-m") == ["1024"]
    assert not list((tmp_path / "run").glob("vm/*.qcow2"))  # nothing was started or created


def test_rig_boot_rejects_a_missing_kernel(tmp_path: Path) -> None:
    from rig import cli

    assert cli.main(["boot", "--bzimage", str(tmp_path / "nope"), "--out", str(tmp_path / "run"), "--", "true"]) == 2


def test_qmp_socket_can_live_outside_a_long_run_directory() -> None:
    argv = build_argv(spec(run_dir=Path("/r" * 80), socket_dir=Path("/tmp/rig-qmp-x")))
    assert "socket,id=qmp,path=/tmp/rig-qmp-x/qmp.sock" in options(argv, "-chardev")
