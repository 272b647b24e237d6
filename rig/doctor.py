"""What this host has of what rig needs, each finding with its fix (`rig doctor`).

Each check is a small function over a `Host`: the one seam through which the checks
look at the machine (programs on PATH, files, the effective user, free space, the
network, the KVM probe, rig's QEMU build). `Host.real()` is this machine; tests give a
Host of fakes to reach the edge cases.

A finding is `ok`, `warn` (rig works, but slower or with less: no KVM, no screenshots)
or `missing` (a part of rig cannot run until it is fixed). rig doctor exits 0 unless
something is missing (then 3, a host problem).
"""

from __future__ import annotations

import os
import shutil
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path

from rig import proc
from rig.errors import RigError
from rig.target import ARM64, X86_64, GpuModel, Target

SETUP_HINT = "(./setup installs everything rig needs)"
VERSION_TIMEOUT_S = 15.0
# A QEMU that opens its display and quits takes a fraction of a second; a loaded host more.
DISPLAY_PROBE_TIMEOUT_S = 30.0
MIRROR_TIMEOUT_S = 10.0
# A first `rig run` fills the cache with a kernel source (~2 GiB for 6.1), its build and
# ccache (~1 GiB), a guest image (~1 GiB) and rig's QEMU for arm64 (~1 GiB).
MIN_FREE_GIB = 6.0
COMFORTABLE_FREE_GIB = 15.0
# The kernel build's programs, by the Debian package that has them (./setup's list).
BUILD_TOOLS: tuple[tuple[str, str], ...] = (
    ("git", "git"), ("make", "make"), ("gcc", "gcc"), ("flex", "flex"), ("bison", "bison"), ("bc", "bc"),
    ("cpio", "cpio"), ("pahole", "dwarves"), ("dpkg-source", "dpkg-dev"),
)
CHROMIUMS = ("chromium", "chromium-browser", "google-chrome")


class State(StrEnum):
    OK = "ok"
    WARN = "warn"
    MISSING = "missing"


@dataclass(frozen=True)
class Finding:
    check: str  # what was checked: "QEMU (x86_64)", "KVM", ...
    state: State
    detail: str  # what rig found
    fix: str = ""  # what to do about it (empty when all is well)


@dataclass(frozen=True)
class Host:
    """How the checks see the machine. Every field is a function, so a test can fake one."""

    which: Callable[[str], str | None] = shutil.which
    # first line of `argv` output, or None when it does not run
    version: Callable[[list[str]], str | None] = field(default=lambda argv: _first_line(argv))
    euid: Callable[[], int] = os.geteuid
    user: Callable[[], str] = field(default=lambda: _user_name())
    read_text: Callable[[Path], str | None] = field(default=lambda path: _read_text(path))
    exists: Callable[[Path], bool] = field(default=lambda path: path.exists())
    free_bytes: Callable[[Path], int] = field(default=lambda path: shutil.disk_usage(_existing(path)).free)
    cache_root: Callable[[], Path] = field(default=lambda: _cache_root())
    mirror: Callable[[], str] = field(default=lambda: _mirror())
    # None when the URL answers, else why not
    reach: Callable[[str], str | None] = field(default=lambda url: _reach(url))
    # (accelerator, reason) for a kernel of `target` on that QEMU, or None when no kernel was ever built
    kvm: Callable[[Target, str], tuple[str, str] | None] = field(default=lambda target, qemu: _kvm(target, qemu))
    # rig's own QEMU: its binary when built for the current sources, else None
    rig_qemu: Callable[[], Path | None] = field(default=lambda: _rig_qemu())
    # None when that QEMU opens the GPU model's display and devices, else why not
    gpu_display: Callable[[str, GpuModel], str | None] = field(default=lambda qemu, model: _gpu_display(qemu, model))

    @classmethod
    def real(cls) -> Host:
        return cls()


# ------------------------------------------------------------------ the real host


def _first_line(argv: list[str]) -> str | None:
    try:
        result = proc.run(argv, timeout=VERSION_TIMEOUT_S, check=False, what=" ".join(argv))
    except RigError:
        return None
    if not result.ok:
        return None
    lines = (result.stdout or result.stderr).strip().splitlines()
    return lines[0] if lines else ""


def _user_name() -> str:
    import pwd

    return pwd.getpwuid(os.geteuid()).pw_name


def _read_text(path: Path) -> str | None:
    try:
        return path.read_text()
    except OSError:
        return None


def _existing(path: Path) -> Path:
    """The nearest existing directory of `path` (the cache may not exist yet)."""
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def _cache_root() -> Path:
    # Not rig.cache.cache_root(): that creates the directory, and the doctor only looks.
    explicit = os.environ.get("RIG_CACHE_DIR")
    if explicit:
        return Path(explicit)
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rig"


def _mirror() -> str:
    from rig.source import host_mirror

    return host_mirror()


def _reach(url: str) -> str | None:
    request = urllib.request.Request(url, method="HEAD", headers={"User-Agent": "rig-doctor"})
    try:
        with urllib.request.urlopen(request, timeout=MIRROR_TIMEOUT_S) as answer:
            return None if answer.status < 400 else f"HTTP {answer.status}"
    except urllib.error.HTTPError as exc:
        return f"HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return str(reason)


def _kvm(target: Target, qemu: str) -> tuple[str, str] | None:
    """rig's own KVM decision (rig.accel: a short real boot, cached per host boot), made
    with a kernel rig built; None when there is none to boot yet."""
    from rig import cache
    from rig.accel import choose_accel
    from rig.kernel_image import FORMATS

    name = Path(target.kernel_image).name
    kernels = sorted((cache.cache_root() / "builds").glob(f"*/{name}"), key=lambda p: p.stat().st_mtime)
    fmt = FORMATS[target.name]
    for kernel in reversed(kernels):
        with kernel.open("rb") as f:
            head = f.read(0x400)
        if head[fmt.offset:fmt.offset + len(fmt.magic)] == fmt.magic:
            choice = choose_accel(kernel, target, qemu)
            return choice.accel, choice.reason
    return None


def _rig_qemu() -> Path | None:
    from rig.qemu.build import find_qemu

    try:
        built = find_qemu()
    except RigError:
        return None
    return built.binary if built is not None else None


def _gpu_display(qemu: str, model: GpuModel) -> str | None:
    """QEMU with the model's display first (a missing package shows there, in QEMU's own
    words), then, for virtio-gpu-gl, a 3D round trip driven as a guest would (QEMU starts
    virglrenderer only at a guest's first command)."""
    from rig.qemu import virgl
    from rig.qemu.argv import DISPLAY_PROBE_INPUT, display_probe_argv

    argv = display_probe_argv(qemu, X86_64, model)
    try:
        result = proc.run(argv, timeout=DISPLAY_PROBE_TIMEOUT_S, check=False, input=DISPLAY_PROBE_INPUT,
                          env=dict(model.environment), what=f"QEMU with --gpu {model.name}'s display")
    except RigError as exc:
        return exc.message
    if not result.ok:
        # QEMU's own complaint ("module ui-ui-sdl not found", an EGL or epoxy error) is its last line.
        said = [line.strip() for line in result.stderr.splitlines() if line.strip()]
        return said[-1] if said else f"QEMU exited with status {result.returncode}"
    if any(device.startswith(virgl.GL_DEVICES) for device in model.devices):
        problem = virgl.why_not(qemu, model)
        if problem is not None:
            return f"QEMU opens the display, but virgl does not work: {problem}"
    return None


# ------------------------------------------------------------------ the checks


def _install(package: str) -> str:
    return f"sudo apt-get install {package}   {SETUP_HINT}"


def check_qemu(host: Host) -> list[Finding]:
    findings = []
    for program, package in ((X86_64.qemu_system, X86_64.qemu_package), ("qemu-img", "qemu-utils")):
        path = host.which(program)
        if path is None:
            findings.append(Finding(f"QEMU ({program})", State.MISSING, f"{program} is not installed",
                                    _install(package)))
            continue
        version = host.version([path, "--version"])
        if version is None:
            findings.append(Finding(f"QEMU ({program})", State.MISSING, f"{path} does not run",
                                    f"reinstall it: sudo apt-get install --reinstall {package}"))
        else:
            findings.append(Finding(f"QEMU ({program})", State.OK, f"{path}: {version}"))
    return findings


def check_rig_qemu(host: Host, arm64: bool) -> Finding:
    """rig's own QEMU build: needed by arm64 guests only."""
    binary = host.rig_qemu()
    if binary is not None:
        return Finding("rig's QEMU (arm64 guests)", State.OK, f"built: {binary}")
    if arm64:
        return Finding("rig's QEMU (arm64 guests)", State.MISSING, "not built for the current sources",
                       "build it once (about 10 minutes on 2 cores): rig qemu build")
    return Finding("rig's QEMU (arm64 guests)", State.OK,
                   "not built; only arm64 guests need it (rig builds it then, or: rig qemu build)")


def check_gpu_displays(host: Host) -> list[Finding]:
    """The x86_64 GPU models that render through the host's OpenGL (virgl): QEMU started
    with the model's display and devices. A warning when it cannot: only that --gpu is
    out of reach."""
    qemu = host.which(X86_64.qemu_system)
    findings = []
    for model in X86_64.gpus.values():
        if not model.uses_host_gl:
            continue
        check = f"--gpu {model.name}"
        if qemu is None:
            findings.append(Finding(check, State.WARN, "cannot be tried without QEMU", _install(X86_64.qemu_package)))
            continue
        problem = host.gpu_display(qemu, model)
        if problem is None:
            findings.append(Finding(check, State.OK, f"QEMU opens its OpenGL display ({model.display}, "
                                                     f"{' '.join(f'{k}={v}' for k, v in model.environment)}) "
                                                     "and renders through virglrenderer"))
        else:
            findings.append(Finding(check, State.WARN, f"QEMU cannot start with {', '.join(model.devices)} and "
                                                       f"-display {model.display}: {problem}",
                                    _install(" ".join(model.host_packages))))
    return findings


def check_kvm(host: Host) -> Finding:
    qemu = host.which(X86_64.qemu_system)
    if not host.exists(Path("/dev/kvm")):
        return Finding("KVM", State.WARN, "no /dev/kvm: guests run under TCG (emulation), several times slower",
                       "enable virtualisation in the firmware (or nested virtualisation in the VM host) and "
                       "load kvm_intel or kvm_amd")
    if qemu is None:
        return Finding("KVM", State.WARN, "/dev/kvm is there; cannot test-boot without QEMU", _install("qemu-system-x86"))
    try:
        verdict = host.kvm(X86_64, qemu)
    except RigError as exc:
        return Finding("KVM", State.WARN, f"the KVM test boot failed: {exc.message}", exc.hint or "")
    if verdict is None:
        return Finding("KVM", State.OK, "/dev/kvm is there; rig test-boots it at the first guest boot (no kernel "
                                        "built yet to try it with)")
    accel, reason = verdict
    if accel == "kvm":
        return Finding("KVM", State.OK, f"usable: {reason}")
    return Finding("KVM", State.WARN, f"not usable, guests run under TCG (several times slower): {reason}",
                   "check the kvm module and /dev/kvm's permissions (the kvm group); under nested "
                   "virtualisation, enable it in the VM host; RIG_ACCEL=tcg skips the test boot")


def _subid_range(text: str | None, user: str, uid: int) -> bool:
    """Whether /etc/subuid or /etc/subgid (`name:start:count` lines) gives `user` a range."""
    for line in (text or "").splitlines():
        parts = line.strip().split(":")
        if len(parts) == 3 and parts[0] in (user, str(uid)) and parts[2].isdigit() and int(parts[2]) >= 65536:
            return True
    return False


def check_mmdebstrap(host: Host, arm64: bool) -> list[Finding]:
    """mmdebstrap and the mode it can use: root, else unshare (uidmap and subordinate ids)."""
    path = host.which("mmdebstrap")
    if path is None:
        return [Finding("mmdebstrap", State.MISSING, "not installed: rig cannot build guest images",
                        _install("mmdebstrap"))]
    version = host.version([path, "--version"]) or "version unknown"
    findings = []
    if host.euid() == 0:
        findings.append(Finding("mmdebstrap", State.OK, f"{version}; runs in root mode (rig runs as root)"))
    else:
        user, uid = host.user(), host.euid()
        problems, fixes = [], []
        if host.which("newuidmap") is None or host.which("newgidmap") is None:
            problems.append("newuidmap/newgidmap are missing")
            fixes.append("sudo apt-get install uidmap")
        for name in ("subuid", "subgid"):
            if not _subid_range(host.read_text(Path(f"/etc/{name}")), user, uid):
                problems.append(f"/etc/{name} gives {user} no range of 65536 ids")
                fixes.append(f"sudo usermod --add-sub{name[3:]}s 100000-165535 {user}")
        userns = host.read_text(Path("/proc/sys/kernel/unprivileged_userns_clone"))
        if userns is not None and userns.strip() == "0":
            problems.append("unprivileged user namespaces are switched off")
            fixes.append("sudo sysctl -w kernel.unprivileged_userns_clone=1")
        if problems:
            findings.append(Finding("mmdebstrap", State.MISSING,
                                    f"{version}; not root, and unshare mode cannot work: " + "; ".join(problems),
                                    "; ".join(fixes) + " (or run rig as root)"))
        else:
            findings.append(Finding("mmdebstrap", State.OK, f"{version}; unshare mode (uidmap and subordinate ids "
                                                            f"for {user})"))
    if arm64:
        interpreter = host.which("qemu-aarch64-static") or (
            "/usr/libexec/qemu-binfmt/aarch64-binfmt-P"
            if host.exists(Path("/usr/libexec/qemu-binfmt/aarch64-binfmt-P")) else None)
        if interpreter is None:
            findings.append(Finding("arm64 images", State.MISSING, "no static qemu-aarch64 to run the image's "
                                    "programs while mmdebstrap builds it", _install("qemu-user-static")))
        elif host.euid() != 0:
            findings.append(Finding("arm64 images", State.MISSING, "rig registers a binfmt_misc entry while it "
                                    "builds the arm64 image, which needs root", "build it as root: "
                                    "sudo rig image build --arch arm64"))
        else:
            findings.append(Finding("arm64 images", State.OK, f"qemu-user: {interpreter}"))
    return findings


def check_space(host: Host) -> Finding:
    root = host.cache_root()
    free = host.free_bytes(root) / 2**30
    what = f"{free:.1f} GiB free for rig's cache ({root})"
    if free < MIN_FREE_GIB:
        return Finding("cache space", State.MISSING, what + f"; a first run needs about {MIN_FREE_GIB:.0f} GiB "
                                                          "(kernel source, build, guest image)",
                       "free some space, or point RIG_CACHE_DIR at a larger disk")
    if free < COMFORTABLE_FREE_GIB:
        return Finding("cache space", State.WARN, what + "; enough for one kernel, tight for several",
                       "rig image prune removes stale images; RIG_CACHE_DIR can point at a larger disk")
    return Finding("cache space", State.OK, what)


def check_mirror(host: Host) -> Finding:
    mirror = host.mirror().rstrip("/")
    url = f"{mirror}/dists/sid/Release"
    problem = host.reach(url)
    if problem is None:
        return Finding("package mirror", State.OK, f"{mirror} answers")
    return Finding("package mirror", State.MISSING, f"{url}: {problem}: rig cannot fetch kernel sources or "
                                                    "build guest images (cached ones still work)",
                   "check the network or proxy (http_proxy), or name a reachable mirror in /etc/apt/sources.list")


def check_build_tools(host: Host, arm64: bool) -> list[Finding]:
    missing = sorted({package for tool, package in BUILD_TOOLS if host.which(tool) is None})
    findings = [Finding("kernel build tools", State.MISSING if missing else State.OK,
                        f"missing: {', '.join(missing)}" if missing else "git, make, gcc, flex, bison, bc, ...",
                        _install(" ".join(missing)) if missing else "")]
    if arm64:
        compiler = f"{ARM64.cross_compile}gcc"
        package = f"gcc-{ARM64.cross_compile.rstrip('-')}"
        if host.which(compiler) is None:
            findings.append(Finding("arm64 cross compiler", State.MISSING, f"{compiler} is not installed",
                                    _install(package)))
        else:
            version = host.version([compiler, "--version"]) or compiler
            findings.append(Finding("arm64 cross compiler", State.OK, version))
    return findings


def check_chromium(host: Host) -> Finding:
    found = next((path for name in CHROMIUMS if (path := host.which(name)) is not None), None)
    if found is None:
        return Finding("chromium", State.WARN, "not installed: report.html cannot be rendered to a screenshot "
                                               "(the reports themselves are written)", _install("chromium"))
    return Finding("chromium", State.OK, found)


def check_sandbox(host: Host) -> Finding:
    """bubblewrap, which --sandbox (the default for a series fetched by message-id) needs."""
    path = host.which("bwrap")
    if path is None:
        return Finding("sandbox", State.WARN, "bubblewrap is not installed: --sandbox, and a series fetched by "
                                              "message-id, cannot be built", _install("bubblewrap"))
    return Finding("sandbox", State.OK, f"bubblewrap at {path}")


def diagnose(host: Host, *, arch: str = "x86_64") -> list[Finding]:
    """Every check, in the order a first run needs them."""
    arm64 = arch == "arm64"
    return [
        *check_build_tools(host, arm64),
        *check_qemu(host),
        check_rig_qemu(host, arm64),
        check_kvm(host),
        *check_gpu_displays(host),
        *check_mmdebstrap(host, arm64),
        check_space(host),
        check_mirror(host),
        check_sandbox(host),
        check_chromium(host),
    ]
