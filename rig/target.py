"""One frozen description per guest architecture: everything that differs between an
x86_64 and an arm64 guest lives here, as data, and nowhere else.

The build reads the make variables, the cross compiler, the kernel image path and the
Kconfig directory; the QEMU command line reads the binary, machine, CPU, console, bus
and GPU table; the verdict reads the known host faults. Adding an architecture is
adding a value to TARGETS (syzkaller's archConfigs and tuxmake's arch/*.ini have the
same shape).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

from rig.errors import UserError


@dataclass(frozen=True)
class FaultInjection:
    """How a GPU model takes injected faults and shows what it did: QOM properties of one
    device, set and read over QMP while the guest runs (rig.gpu_faults)."""

    qom_path: str  # the device in QEMU's object tree
    # what `--gpu-fault NAME=N` may name (the property inject-NAME), with the largest N each
    # takes: most are counts of events still to inject, fail-code is a value
    names: Mapping[str, int]
    counters: tuple[str, ...]  # read-only counters, read at the end of every attempt


@dataclass(frozen=True)
class GpuModel:
    """A GPU device model as rig names it: the QEMU devices that make it, and the DRM
    driver the guest kernel binds to it (None: no GPU)."""

    name: str
    devices: tuple[str, ...]
    driver: str | None
    # Options added to -machine: a GPU built into the board (rig's Mali on virt) is
    # switched on there, not plugged in with -device.
    machine_options: tuple[str, ...] = ()
    # Names the same driver has on other kernel versions (IGT_FORCE_DRIVER must give the
    # one the running kernel uses; the guest says which it has).
    other_driver_names: tuple[str, ...] = ()
    # QEMU's -display: "none" for every model that needs no OpenGL on the host; a model
    # that renders through the host's OpenGL (virgl) needs a display backend with gl=on.
    display: str = "none"
    # Environment variables QEMU runs with (the GL display's window system and renderer).
    environment: tuple[tuple[str, str], ...] = ()
    # Debian packages the model needs beyond QEMU itself (rig doctor's fix, the boot's hint).
    host_packages: tuple[str, ...] = ()
    faults: FaultInjection | None = None  # None: the model takes no injected faults

    @property
    def driver_names(self) -> tuple[str, ...]:
        return (self.driver, *self.other_driver_names) if self.driver else ()

    @property
    def uses_host_gl(self) -> bool:
        """Whether QEMU renders for it through the host's OpenGL (a display with gl=on)."""
        return "gl=on" in self.display.split(",")

    @property
    def screendump(self) -> bool:
        """Whether QMP's screendump can read its screen: not one QEMU shows through OpenGL
        (Debian's QEMU 7.2 keeps no surface for a scanout virglrenderer renders: "no
        surface")."""
        return self.has_display and not self.uses_host_gl

    @property
    def has_display(self) -> bool:
        """Whether QEMU shows a screen for it: only the plugged-in display devices do (a
        render-only GPU such as rig's Mali has no scanout of its own)."""
        return bool(self.devices)


@dataclass(frozen=True)
class Target:
    """A guest architecture."""

    name: str  # rig's name, as given to --arch
    uname_machine: str  # what `uname -m` says in the guest
    # QEMU
    qemu: str  # binary name (on PATH) or "rig" for rig's own build (see rig.qemu.build)
    qemu_package: str  # the Debian package with the binary, for the hint when it is missing
    machine: str  # -machine
    cpu: str | None  # -cpu under TCG (None: QEMU's default for the machine)
    console: str  # the kernel's console device (console=)
    virtio_bus: str  # how virtio devices attach: virtio-<kind>-<this> ("pci": virtio-blk-pci, ...)
    cmdline: tuple[str, ...]  # kernel arguments only this target needs
    gpus: Mapping[str, GpuModel]
    panic_device: str | None  # the pvpanic device, where the machine has one
    # Kernel build
    kernel_arch: str  # make ARCH=
    cross_compile: str  # make CROSS_COMPILE= ("" for a native build)
    compiler: str  # the C compiler binary, for the build cache key
    kernel_image: str  # the bootable image, relative to the build directory
    kconfig_arch: str  # arch/<this>/ holds the architecture's Kconfig files
    config_fragments: tuple[str, ...]  # kernel-configs/ fragments for this target, before the profile's
    # Guest image
    debian_arch: str  # Debian's name of the architecture (mmdebstrap --architectures)
    image_recipe: str  # the images/ recipe its guests boot by default
    # Known host faults (names in rig.verdict's table) that only happen on this target.
    host_faults: tuple[str, ...] = ()
    gpu_default: str = "virtio-gpu"
    extra_devices: tuple[str, ...] = field(default=())  # always on this target's command line
    kvm_cpu: str | None = None  # -cpu under KVM (None: QEMU's default for the machine)
    # Hang forensics (rig.forensics): sysrq through the board's keyboard (QMP send-key),
    # which the kernel answers from the keyboard interrupt while userspace is dead; and an
    # NMI through QMP inject-nmi, which the kernel turns into a panic (see cmdline).
    sysrq_keyboard: bool = False
    nmi: bool = False

    def gpu(self, name: str) -> GpuModel:
        try:
            return self.gpus[name]
        except KeyError:
            raise UserError(f"--gpu {name}: not a GPU model rig has on {self.name}",
                            hint=f"give one of {', '.join(self.gpus)}") from None

    def cpu_for(self, accel: str) -> str | None:
        """The -cpu value under `accel` ("kvm" or "tcg")."""
        return self.kvm_cpu if accel == "kvm" else self.cpu

    @property
    def qemu_system(self) -> str:
        """The QEMU system emulator's program name for this guest."""
        return f"qemu-system-{self.uname_machine}"

    def virtio(self, kind: str) -> str:
        """The QEMU device for a virtio `kind` ("blk", "net", "rng", "balloon") on this target's bus."""
        return f"virtio-{kind}-{self.virtio_bus}"

    def native_on(self, host_machine: str) -> bool:
        """Whether a host whose `uname -m` is `host_machine` can run this guest under KVM."""
        return host_machine == self.uname_machine

    def make_variables(self) -> list[str]:
        variables = [f"ARCH={self.kernel_arch}"]
        if self.cross_compile:
            variables.append(f"CROSS_COMPILE={self.cross_compile}")
        return variables


# virtio-gpu with 3D: the guest's OpenGL commands are run by virglrenderer in QEMU, on
# the host's OpenGL. QEMU gets that OpenGL from a display backend with gl=on; on a host
# without a GPU and without /dev/dri, egl-headless, spice and dbus cannot start (they
# need a DRM render node), but SDL's offscreen video driver makes an EGL context with no
# window system at all (Mesa's software EGL device), so no X server runs beside QEMU.
# LIBGL_ALWAYS_SOFTWARE keeps Mesa on llvmpipe even where the host has a GPU: the guest
# sees the same renderer, capability sets and limits on every host.
VIRGL_ENVIRONMENT: tuple[tuple[str, str], ...] = (
    ("SDL_VIDEODRIVER", "offscreen"),
    ("LIBGL_ALWAYS_SOFTWARE", "1"),
)
# QEMU's SDL display and virtio-gpu-gl modules (qemu-system-gui), Mesa's llvmpipe
# (libgl1-mesa-dri) and its EGL (libegl-mesa0, found through libglvnd's libegl1).
VIRGL_PACKAGES = ("qemu-system-gui", "libgl1-mesa-dri", "libegl1", "libegl-mesa0")

# rig's Mali model (qemu-devices/hw/misc/mali_jm.c) at /machine/gpu, the child the virt
# board patch adds. A count is of events still to inject: a thousand hung jobs already
# means a thousand scheduler timeouts, longer than any run.
_COUNT_MAX = 1000
MALI_FAULTS = FaultInjection(
    qom_path="/machine/gpu",
    names=MappingProxyType({"hang-jobs": _COUNT_MAX, "fail-jobs": _COUNT_MAX, "drop-irqs": _COUNT_MAX,
                            "stick-as-active": _COUNT_MAX, "ignore-soft-resets": _COUNT_MAX,
                            # the exception code a failed job reports (an 8-bit field)
                            "fail-code": 0xFF}),
    counters=("chains-started", "jobs-run", "jobs-failed", "jobs-hung", "mmu-faults", "soft-resets",
              "hard-resets", "soft-stops", "hard-stops", "irqs-raised", "irqs-dropped", "as-commands"),
)


def _gpus(*models: GpuModel) -> Mapping[str, GpuModel]:
    return MappingProxyType({model.name: model for model in models})


X86_64 = Target(
    name="x86_64",
    uname_machine="x86_64",
    qemu="qemu-system-x86_64",
    qemu_package="qemu-system-x86",
    machine="q35",
    cpu=None,
    console="ttyS0,115200",
    virtio_bus="pci",
    # One 8250 port: the console. Probing the legacy ports that QEMU does not emulate
    # costs boot time.
    # unknown_nmi_panic + panic_print=64 (PANIC_PRINT_ALL_CPU_BT, 0x40; kernel/panic.c of
    # 6.1 to 7.2, where it is deprecated for panic_sys_info but still read): the NMI rig
    # injects into a guest whose CPUs are all stuck becomes a panic that prints every
    # CPU's backtrace, and a panic of any other cause prints them too. QEMU raises no NMI
    # of its own, so nothing else makes a guest panic on one.
    cmdline=("8250.nr_uarts=1", "unknown_nmi_panic", "panic_print=64"),
    gpus=_gpus(
        GpuModel("virtio-gpu", ("virtio-gpu-pci",), "virtio_gpu"),
        GpuModel("virtio-vga", ("virtio-vga",), "virtio_gpu"),
        GpuModel("virgl", ("virtio-gpu-gl-pci",), "virtio_gpu", display="sdl,gl=on",
                 environment=VIRGL_ENVIRONMENT, host_packages=VIRGL_PACKAGES),
        GpuModel("bochs", ("bochs-display",), "bochs-drm"),
        # 7.x renamed the driver (drivers/gpu/drm/tiny/cirrus-qemu.c, DRIVER_NAME).
        GpuModel("cirrus", ("cirrus-vga",), "cirrus", other_driver_names=("cirrus-qemu",)),
        GpuModel("none", (), None),
    ),
    panic_device="pvpanic-pci",
    kernel_arch="x86_64",
    cross_compile="",
    compiler="gcc",
    kernel_image="arch/x86/boot/bzImage",
    kconfig_arch="x86",
    config_fragments=(),
    debian_arch="amd64",
    image_recipe="default",
    # The MTTCG int3 in __x64_sys_getrandom (cross-modifying code under multi-threaded TCG).
    host_faults=("int3-in-getrandom",),
    # q35's i8042 (atkbd, CONFIG_KEYBOARD_ATKBD in base.config); inject-nmi reaches every vCPU.
    sysrq_keyboard=True,
    nmi=True,
)

ARM64 = Target(
    name="arm64",
    uname_machine="aarch64",
    qemu="rig",  # the Mali model is in rig's own QEMU build only
    qemu_package="",  # built by rig (rig.qemu.build), not installed from a package
    machine="virt,gic-version=3",
    # Plain `max` emulates pointer authentication in full and boots about 2.5 times slower.
    cpu="max,pauth-impdef=on",
    console="ttyAMA0",
    # virt has a PCIe host bridge: the same virtio-*-pci devices as on x86_64.
    virtio_bus="pci",
    cmdline=(),
    gpus=_gpus(
        GpuModel("virtio-gpu", ("virtio-gpu-pci",), "virtio_gpu"),
        # rig's emulated Mali-G52 (qemu-devices/), part of the virt board: panfrost
        # finds it through the device tree QEMU generates.
        GpuModel("mali", (), "panfrost", machine_options=("mali=on",), faults=MALI_FAULTS),
        GpuModel("none", (), None),
    ),
    panic_device="pvpanic-pci",
    kernel_arch="arm64",
    cross_compile="aarch64-linux-gnu-",
    compiler="aarch64-linux-gnu-gcc",
    kernel_image="arch/arm64/boot/Image",
    kconfig_arch="arm64",
    config_fragments=("arm64.config",),
    debian_arch="arm64",
    image_recipe="arm64",
    # KVM on an arm64 host runs the host's own CPU; pauth-impdef is a TCG-only property.
    kvm_cpu="host",
)

TARGETS: Mapping[str, Target] = MappingProxyType({t.name: t for t in (X86_64, ARM64)})

# Every DRM driver some GPU model binds, under every name it has had.
GPU_DRIVERS = frozenset(name for t in TARGETS.values() for model in t.gpus.values() for name in model.driver_names)
# Every GPU model's name, on any architecture (what --gpu accepts somewhere).
GPU_MODELS = frozenset(name for t in TARGETS.values() for name in t.gpus)
DEFAULT_TARGET = X86_64


def target(name: str) -> Target:
    """The target for an --arch value."""
    try:
        return TARGETS[name]
    except KeyError:
        raise UserError(f"--arch {name}: rig has no such guest architecture",
                        hint=f"give one of {', '.join(TARGETS)}") from None
