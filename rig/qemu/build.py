"""rig's own QEMU: Debian trixie's QEMU 10.0 source package with rig's device models and
patches (`qemu-devices/`) on top, built for aarch64 once per machine and cached.

Why not Debian's binary: the emulated Mali GPU is a device model no QEMU release has, and
bookworm's QEMU is 7.2. x86_64 guests keep Debian's QEMU.

The source comes through a private apt state (rig.source.PrivateApt with a deb-src line),
so the host's apt configuration is only read. Debian's `+ds` repack strips two things
QEMU's own tarball carries, and the build works around both:
* python/wheels/*.whl: QEMU 10.0 needs meson >= 1.5 (bookworm ships 1.0.1), so meson
  comes from PyPI into a private venv in rig's cache;
* the firmware blobs in pc-bios/: configure gets --disable-install-blobs.

A build is cached under the hash of the .dsc (taken from the signed Sources index, so a
cache hit needs no download) and of rig's patches and device files; it is published
atomically under a lock, so two rigs never build it twice.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from rig import cache, proc
from rig.errors import InfraError, UserError
from rig.progress import Reporter
from rig.source import APT_LISTS_MAX_AGE_S, PrivateApt, host_mirror

SOURCE_PACKAGE = "qemu"
SUITE = "trixie"  # QEMU 10.0; the device models are written against its API
BINARY = "qemu-system-aarch64"

# QEMU 10.0's python/scripts/mkvenv.py accepts meson >= 1.5.0; 1.5.0 is the version its
# own (stripped) wheel would have installed, and the one verified here.
MESON = "meson==1.5.0"

DEVICES_DIR = Path(__file__).resolve().parent.parent.parent / "qemu-devices"

# Everything rig's guests need and nothing else: no tools, docs, user-mode emulators,
# optional libraries, or boards and devices other than those of
# qemu-devices/configs/devices/aarch64-softmmu/rig.mak (2,188 build steps instead of
# 2,760 with Debian's patches). pixman is for virtio-gpu.
CONFIGURE_ARGS: tuple[str, ...] = (
    "--target-list=aarch64-softmmu",
    "--without-default-features",
    "--without-default-devices",
    "--with-devices-aarch64=rig",
    "--enable-tcg",
    "--enable-fdt=system",
    "--enable-slirp",
    "--enable-pixman",
    "--enable-png",
    # QEMU's seccomp filter (-sandbox on), which rig turns on for every guest.
    "--enable-seccomp",
    "--disable-docs",
    # -g costs a cold build about a quarter of its compile time (measured: 36.5 s against
    # 26.7 s for every twelfth object of the binary, -j1). A crash of rig's QEMU still
    # names its functions in a backtrace: only line numbers are lost.
    "--disable-debug-info",
    "--disable-tools",
    "--disable-user",
    # The wheels and firmware blobs are stripped from Debian's source (see above).
    "--disable-download",
    "--disable-install-blobs",
    # A newer host compiler's new warning must not stop the build of a pinned source.
    "--disable-werror",
    # Debian's own search path: option ROMs such as efi-virtio.rom (ipxe-qemu) are found
    # where Debian's QEMU finds them, since rig's build installs no blobs of its own.
    "--firmwarepath=/usr/share/qemu:/usr/share/seabios:/usr/lib/ipxe/qemu",
)

# Deadlines. A cold build on 2 busy cores takes tens of minutes; three hours means stuck.
APT_TIMEOUT_S = 900.0
PIP_TIMEOUT_S = 900.0
EXTRACT_TIMEOUT_S = 900.0
CONFIGURE_TIMEOUT_S = 1800.0
NINJA_TIMEOUT_S = 3 * 3600.0
VERSION_TIMEOUT_S = 60.0
LOCK_TIMEOUT_S = NINJA_TIMEOUT_S + 3600.0

NINJA_LINE = re.compile(r"^\[(\d+)/(\d+)\]")
COMPILER_ERROR = re.compile(r"^(\.\./)?(\S+?):\d+(:\d+)?: (fatal )?error: ")

# What QEMU's build needs on the host, by the Debian package that has it.
BUILD_TOOLS: tuple[tuple[str, str], ...] = (
    ("ninja", "ninja-build"),
    ("pkg-config", "pkgconf"),
    ("cc", "gcc"),
    ("dpkg-source", "dpkg-dev"),
    ("patch", "patch"),
)
BUILD_LIBRARIES: tuple[tuple[str, str], ...] = (  # pkg-config module names
    ("glib-2.0", "libglib2.0-dev"),
    ("pixman-1", "libpixman-1-dev"),
    ("slirp", "libslirp-dev"),
    ("libpng", "libpng-dev"),  # QMP screendump writes PNG (rig keeps the guest's last screen)
)
BUILD_HEADERS: tuple[tuple[str, str], ...] = (("libfdt.h", "libfdt-dev"),)  # libfdt-dev has no .pc file


@dataclass(frozen=True)
class QemuBuild:
    binary: Path  # qemu-system-aarch64 in rig's cache
    version: str  # first line of `qemu-system-aarch64 --version`
    package_version: str  # Debian's source version, e.g. "1:10.0.6+ds-0+deb13u2"
    patches: tuple[str, ...]  # rig's patches, in the order they were applied
    device_files: tuple[str, ...]  # rig's files copied into QEMU's tree, relative paths
    cache_hit: bool
    cache_key: str
    entry: Path  # the cache entry holding the binary, build.log and entry.json
    build_log: Path
    built_at: str  # when the entry was built (UTC, ISO 8601)
    build_s: float  # how long that build took
    duration_s: float  # how long this call took


@dataclass(frozen=True)
class SourcePackage:
    """One version of Debian's qemu source package, as the Sources index lists it."""

    version: str
    dsc: str  # file name of the .dsc
    dsc_sha256: str


@dataclass(frozen=True)
class DeviceSources:
    """rig's additions to QEMU, from qemu-devices/ (see its README)."""

    root: Path
    patches: tuple[str, ...]  # names in patches/, applied in this (sorted) order
    files: tuple[str, ...]  # paths relative to root, copied to the same path in QEMU's tree

    def digest(self) -> str:
        items: list[str | bytes] = []
        for name in self.patches:
            items += [f"patches/{name}", (self.root / "patches" / name).read_bytes()]
        for rel in self.files:
            items += [rel, (self.root / rel).read_bytes()]
        return cache.digest(items)


def device_sources(root: Path | None = None) -> DeviceSources:
    """rig's patches and device files (qemu-devices/ unless `root` is given); the README
    and editor leftovers are not part of them."""
    root = root or DEVICES_DIR
    if not root.is_dir():
        raise InfraError(f"rig's QEMU device folder {root} is missing",
                         hint="run rig from its repository checkout (qemu-devices/ sits beside rig/)")
    patches = tuple(sorted(p.name for p in (root / "patches").glob("*.patch") if p.is_file()))
    files: list[str] = []
    for path in sorted(root.rglob("*")):
        rel = path.relative_to(root)
        if not path.is_file() or rel.parts[0] == "patches" or len(rel.parts) == 1:
            continue  # top-level files are documentation (README.md)
        if any(part.startswith(".") or part == "__pycache__" for part in rel.parts) or path.name.endswith("~"):
            continue
        files.append(rel.as_posix())
    return DeviceSources(root=root, patches=patches, files=tuple(files))


def build_key(package: SourcePackage, devices: DeviceSources) -> str:
    return cache.digest(["qemu-build-v1", package.dsc_sha256, devices.digest(), MESON, *CONFIGURE_ARGS])


def pkgversion(package: SourcePackage, devices: DeviceSources) -> str:
    """What `--version` shows in parentheses: which source and which rig additions."""
    return f"Debian {package.version}, rig qemu-devices {devices.digest()[:12]}"


# --- host dependencies --------------------------------------------------------------


def missing_build_packages(include_dir: Path = Path("/usr/include")) -> list[tuple[str, str]]:
    """(package, what is missing) for each Debian package QEMU's build needs and lacks."""
    missing: list[tuple[str, str]] = []
    for tool, package in BUILD_TOOLS:
        if shutil.which(tool) is None:
            missing.append((package, f"the program {tool}"))
    pkg_config = shutil.which("pkg-config")
    if pkg_config is not None:
        for module, package in BUILD_LIBRARIES:
            if not proc.run([pkg_config, "--exists", module], timeout=30, check=False).ok:
                missing.append((package, f"pkg-config module {module}"))
    for header, package in BUILD_HEADERS:
        if not (include_dir / header).exists():
            missing.append((package, f"the header {header}"))
    return missing


def check_build_packages(include_dir: Path = Path("/usr/include")) -> None:
    missing = missing_build_packages(include_dir)
    if missing:
        names = sorted({package for package, _ in missing})
        detail = ", ".join(f"{package} ({what})" for package, what in missing)
        raise InfraError(f"building rig's QEMU needs Debian packages that are not installed: {detail}",
                         hint=f"install them with: apt-get install {' '.join(names)}   "
                              "(./setup installs everything rig needs)")


# --- the source package -------------------------------------------------------------


def qemu_root() -> Path:
    return cache.cache_dir("qemu")


def private_apt() -> PrivateApt:
    return PrivateApt(qemu_root() / "apt", host_mirror(), entries=(("deb-src", SUITE),))


def parse_showsrc(text: str, package: str = SOURCE_PACKAGE) -> list[SourcePackage]:
    """The versions of `package` in `apt-cache showsrc` output, each with its .dsc hash."""
    found: list[SourcePackage] = []
    for stanza in re.split(r"\n\s*\n", text):
        name = re.search(r"^Package:\s*(\S+)", stanza, re.M)
        version = re.search(r"^Version:\s*(\S+)", stanza, re.M)
        sums = re.search(r"^Checksums-Sha256:[ \t]*\n((?:[ \t]+.*\n?)+)", stanza, re.M)
        if not (name and version and sums) or name.group(1) != package:
            continue
        for line in sums.group(1).splitlines():
            fields = line.split()
            if len(fields) == 3 and fields[2].endswith(".dsc"):
                found.append(SourcePackage(version=version.group(1), dsc=fields[2], dsc_sha256=fields[0]))
    return found


def _newest(candidates: list[SourcePackage]) -> SourcePackage:
    best = candidates[0]
    for other in candidates[1:]:
        newer = proc.run(["dpkg", "--compare-versions", other.version, "gt", best.version], timeout=30, check=False)
        if newer.ok:
            best = other
    return best


def _showsrc(apt: PrivateApt) -> list[SourcePackage]:
    result = proc.run(["apt-cache", *apt.options(), "showsrc", "--only-source", SOURCE_PACKAGE], timeout=120,
                      check=False, what="apt-cache showsrc")
    return parse_showsrc(result.stdout) if result.ok else []


def resolve_source(apt: PrivateApt, reporter: Reporter, *, network: bool = True) -> SourcePackage | None:
    """The mirror's current qemu source package; offline, what rig's lists last said.

    With `network=False` rig's lists are used however old they are (for `rig qemu show`).
    """
    if network and apt.lists_age_s() > APT_LISTS_MAX_AGE_S:
        try:
            reporter.step(f"asking {apt.mirror} for Debian {SUITE}'s QEMU source package")
            apt.update()
        except InfraError as exc:
            known = _showsrc(apt)
            if known:
                newest = _newest(known)
                reporter.warn(f"cannot reach {apt.mirror}; using qemu {newest.version} from rig's package lists")
                return newest
            raise InfraError(f"cannot fetch Debian {SUITE}'s source lists from {apt.mirror}",
                             hint="check the network or the mirror in /etc/apt/sources.list "
                                  "(rig's QEMU is built from Debian's qemu source package)",
                             log=exc.log) from exc
    known = _showsrc(apt)
    if not known:
        if not network:
            return None
        raise InfraError(f"the Debian mirror {apt.mirror} lists no {SOURCE_PACKAGE} source package in {SUITE}",
                         hint=f"remove {apt.lists} to refresh rig's package lists")
    return _newest(known)


def download_source(apt: PrivateApt, package: SourcePackage, reporter: Reporter) -> Path:
    """The .dsc (with its tarballs beside it) in rig's cache, downloaded once."""
    final = qemu_root() / "src" / f"{SOURCE_PACKAGE}_{package.version.split(':')[-1]}"
    dsc = final / package.dsc
    if dsc.exists() and cache.file_digest(dsc) == package.dsc_sha256:
        return dsc
    with cache.locked(final.parent / f"{final.name}.lock", timeout_s=APT_TIMEOUT_S * 2, what="downloading QEMU"):
        if dsc.exists() and cache.file_digest(dsc) == package.dsc_sha256:
            return dsc
        staging = final.parent / f".{final.name}.staging"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        reporter.step(f"downloading Debian's {SOURCE_PACKAGE} {package.version} source package (about 40 MB)")
        proc.run(["apt-get", *apt.options(), "-q", "source", "--download-only", f"{SOURCE_PACKAGE}={package.version}"],
                 cwd=staging, timeout=APT_TIMEOUT_S, what=f"downloading {SOURCE_PACKAGE} {package.version}",
                 hint=f"check that the Debian mirror {apt.mirror} is reachable")
        got = staging / package.dsc
        if not got.exists() or cache.file_digest(got) != package.dsc_sha256:
            raise InfraError(f"the downloaded {package.dsc} does not match the hash in Debian's Sources index",
                             hint=f"remove {apt.lists} to refresh rig's package lists and try again")
        cache.publish(staging, final)
    return dsc


# --- meson from PyPI ---------------------------------------------------------------


def meson_venv(reporter: Reporter) -> Path:
    """The python of a private venv holding MESON (made once; a stamp marks it complete,
    since a venv cannot be moved into place after it is made)."""
    venv = qemu_root() / "venv" / MESON.replace("==", "-")
    python = venv / "bin" / "python3"
    stamp = venv / ".rig-complete"
    if stamp.exists():
        return python
    with cache.locked(venv.parent / f"{venv.name}.lock", timeout_s=PIP_TIMEOUT_S * 2, what="installing meson"):
        if stamp.exists():
            return python
        if venv.exists():
            shutil.rmtree(venv)
        reporter.step(f"installing {MESON} from PyPI into {venv}")
        made = proc.run([sys.executable, "-m", "venv", venv], timeout=300, check=False, what="python3 -m venv")
        if not made.ok:
            if "ensurepip" in made.stdout + made.stderr:
                raise InfraError("cannot make a Python venv for QEMU's meson: the venv module has no ensurepip",
                                 hint="install it with: apt-get install python3-venv   "
                                      "(./setup installs everything rig needs)")
            raise InfraError(f"python3 -m venv {venv} failed: {(made.stderr or made.stdout).strip()[-400:]}",
                             hint="check the disk space and permissions of rig's cache")
        proc.run([python, "-m", "pip", "install", "--disable-pip-version-check", "--no-input", "-q", MESON],
                 timeout=PIP_TIMEOUT_S, what=f"pip install {MESON}",
                 hint="check that PyPI (or your PIP_INDEX_URL) is reachable: Debian's qemu source has no "
                      "bundled meson and bookworm's is too old")
        stamp.touch()
    return python


# --- the cache of finished builds ---------------------------------------------------


def _entry_dir(key: str) -> Path:
    return qemu_root() / "builds" / key


def _load(entry: Path, *, cache_hit: bool, started: float) -> QemuBuild | None:
    try:
        facts = json.loads((entry / "entry.json").read_text())
    except (OSError, ValueError):
        return None
    binary = entry / BINARY
    if not binary.exists():
        return None
    return QemuBuild(
        binary=binary, version=facts["version"], package_version=facts["package_version"],
        patches=tuple(facts["patches"]), device_files=tuple(facts["device_files"]), cache_hit=cache_hit,
        cache_key=entry.name, entry=entry, build_log=entry / "build.log", built_at=facts["built_at"],
        build_s=float(facts["timings"]["total"]), duration_s=time.monotonic() - started,
    )


def short_version(version: str) -> str:
    """"10.0.13" from "QEMU emulator version 10.0.13 (Debian ...)"."""
    match = re.search(r"version (\S+)", version)
    return match.group(1) if match else version


def find_qemu() -> QemuBuild | None:
    """rig's QEMU for the current sources if it is built; no network, no building."""
    started = time.monotonic()
    devices = device_sources()
    package = resolve_source(private_apt(), Reporter(enabled=False), network=False)
    if package is None:
        return None
    return _load(_entry_dir(build_key(package, devices)), cache_hit=True, started=started)


def ensure_qemu(progress: bool = True) -> QemuBuild:
    """rig's qemu-system-aarch64: from the cache, else built (tens of minutes on 2 cores)."""
    started = time.monotonic()
    reporter = Reporter(enabled=progress)
    devices = device_sources()
    apt = private_apt()
    package = resolve_source(apt, reporter)
    assert package is not None  # with the network allowed, no source is an error
    key = build_key(package, devices)
    entry = _entry_dir(key)
    found = _load(entry, cache_hit=True, started=started)
    if found is not None:
        reporter.step(f"cache hit: rig's QEMU {short_version(found.version)} in {entry}")
        return found
    lock = qemu_root() / "build.lock"
    if cache.is_locked(lock):
        reporter.step("another rig is building QEMU; waiting for it")
    with cache.locked(lock, timeout_s=LOCK_TIMEOUT_S, what="building QEMU"):
        found = _load(entry, cache_hit=True, started=started)
        if found is not None:
            return found
        check_build_packages()
        _Builder(apt, package, devices, key, reporter).run()
    built = _load(entry, cache_hit=False, started=started)
    if built is None:
        raise InfraError(f"rig's QEMU build finished but its cache entry {entry} is incomplete",
                         hint=f"remove {entry} and run: rig qemu build")
    return built


def _jobs() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def compiler_args() -> list[str]:
    """ccache when the host has it (not part of the key: the binary is the same).

    QEMU's configure writes the compiler into meson's native file, so meson's own ccache
    detection never runs; configure splits --cc on spaces into ['ccache', 'cc', ...].
    """
    return ["--cc=ccache cc"] if shutil.which("ccache") else []


def build_env() -> dict[str, str]:
    return {
        # rig's ccache is shared with the kernel builds.
        "CCACHE_DIR": str(cache.cache_dir("ccache")),
        "CCACHE_MAXSIZE": os.environ.get("CCACHE_MAXSIZE", "20G"),
        # One status line per finished step, parsed for the progress bar.
        "NINJA_STATUS": "[%f/%t] ",
        "LC_ALL": "C",
    }


class _Builder:
    def __init__(self, apt: PrivateApt, package: SourcePackage, devices: DeviceSources, key: str,
                 reporter: Reporter) -> None:
        self.apt = apt
        self.package = package
        self.devices = devices
        self.key = key
        self.reporter = reporter
        self.timings: dict[str, float] = {}
        upstream = package.version.split(":")[-1].split("+")[0].split("-")[0]
        # A fixed path per upstream version, not per key: QEMU compiles with -g, so ccache
        # hashes the directory, and a rebuild after a device change should hit for the rest.
        self.work = qemu_root() / "work" / f"qemu-{upstream}"
        self.tree = self.work / "src"
        self.build_dir = self.tree / "build"
        self.log = self.work / "build.log"

    def _timed(self, name: str, started: float) -> None:
        self.timings[name] = round(time.monotonic() - started, 1)

    def run(self) -> None:
        started = time.monotonic()
        load = os.getloadavg()[0]
        t = time.monotonic()
        dsc = download_source(self.apt, self.package, self.reporter)
        python = meson_venv(self.reporter)
        self._timed("fetch", t)
        if self.work.exists():
            shutil.rmtree(self.work)
        self.work.mkdir(parents=True)
        self.log.write_text("")
        t = time.monotonic()
        self.reporter.step(f"extracting {dsc.name} with Debian's patches")
        proc.run(["dpkg-source", "--no-copy", "-x", dsc, self.tree], cwd=self.work, timeout=EXTRACT_TIMEOUT_S,
                 log=self.log, what=f"dpkg-source -x {dsc.name}",
                 hint=f"remove {dsc.parent} so rig downloads the source package again")
        self._add_devices()
        self._timed("extract", t)
        t = time.monotonic()
        self.build_dir.mkdir()
        with self.reporter.task("configuring QEMU"):
            proc.run([self.tree / "configure", f"--python={python}", *compiler_args(),
                      f"--with-pkgversion={pkgversion(self.package, self.devices)}", *CONFIGURE_ARGS],
                     cwd=self.build_dir, env=build_env(), timeout=CONFIGURE_TIMEOUT_S,
                     log=self.log, what="QEMU's configure",
                     hint="read the end of the log: a missing library names its Debian -dev package "
                          "(./setup installs what rig's QEMU needs)")
        self._timed("configure", t)
        t = time.monotonic()
        units = self._ninja()
        self._timed("compile", t)
        binary = self.build_dir / BINARY
        version = proc.run([binary, "--version"], timeout=VERSION_TIMEOUT_S, what=f"{BINARY} --version").stdout
        self.timings["total"] = round(time.monotonic() - started, 1)
        self._publish(binary, version.strip().splitlines()[0], units, load)
        shutil.rmtree(self.work)  # about a gigabyte; ccache keeps what a rebuild needs

    def _add_devices(self) -> None:
        for rel in self.devices.files:
            target = self.tree / rel
            if target.exists():
                raise UserError(f"qemu-devices/{rel} would replace QEMU's own {rel}",
                                hint="change QEMU's files with a patch in qemu-devices/patches/; "
                                     "qemu-devices/hw/... is for new files only")
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(self.devices.root / rel, target)
        for name in self.devices.patches:
            self.reporter.step(f"applying rig's QEMU patch {name}")
            patch = self.devices.root / "patches" / name
            # --fuzz=0: a patch whose context moved must fail, not land somewhere nearby.
            proc.run(["patch", "-p1", "--batch", "--forward", "--fuzz=0", "-i", patch], cwd=self.tree, timeout=120,
                     log=self.log, error=UserError, what=f"applying qemu-devices/patches/{name}",
                     hint=f"refresh the patch against Debian's qemu {self.package.version} "
                          f"(the tree it failed on is {self.tree})")

    def _ninja(self) -> int:
        ninja = ["ninja", "-C", str(self.build_dir), f"-j{_jobs()}", BINARY]
        planned = proc.run([*ninja, "-n"], env=build_env(), timeout=300, what="ninja -n")
        totals = [int(m.group(2)) for m in map(NINJA_LINE.match, planned.stdout.splitlines()) if m]
        units = 0
        first_error: list[str] = []
        with self.reporter.task(f"building {BINARY}", total=float(totals[-1]) if totals else None) as bar:
            def on_line(line: str) -> None:
                nonlocal units
                if NINJA_LINE.match(line):
                    units += 1
                    bar.advance()
                elif not first_error and COMPILER_ERROR.match(line):
                    first_error.append(line.strip())

            result = proc.run(ninja, env=build_env(), timeout=NINJA_TIMEOUT_S, log=self.log, on_line=on_line,
                              check=False, what="ninja")
            if result.ok:
                bar.finish()
        if result.ok:
            return units
        where = first_error[0] if first_error else (result.stdout.strip().splitlines() or ["(no output)"])[-1]
        ours = first_error and any(rel in first_error[0] for rel in self.devices.files)
        if ours:
            raise UserError(f"rig's QEMU device sources do not build:\n    {where}", log=self.log,
                            hint="fix the error above in qemu-devices/ (the full output is in the log)")
        raise InfraError(f"QEMU {self.package.version} does not build on this host:\n    {where}", log=self.log,
                         hint="read the log; a missing header names its Debian -dev package "
                              "(./setup installs what rig's QEMU needs)")

    def _publish(self, binary: Path, version: str, units: int, load: float) -> None:
        entry = _entry_dir(self.key)
        staging = entry.parent / f".{self.key}.staging"
        if staging.exists():
            shutil.rmtree(staging)
        staging.mkdir(parents=True)
        shutil.copy2(binary, staging / BINARY)
        shutil.copy2(self.log, staging / "build.log")
        (staging / "entry.json").write_text(json.dumps({
            "version": version, "package": SOURCE_PACKAGE, "package_version": self.package.version,
            "suite": SUITE, "dsc": self.package.dsc, "dsc_sha256": self.package.dsc_sha256,
            "patches": list(self.devices.patches), "device_files": list(self.devices.files),
            "devices_digest": self.devices.digest(), "meson": MESON, "configure_args": list(CONFIGURE_ARGS),
            "ninja_steps": units, "jobs": _jobs(), "load_at_start": round(load, 2),
            "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "timings": self.timings,
        }, indent=2))
        cache.publish(staging, entry)
