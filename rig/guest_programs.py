"""rig's own guest programs: C sources in images/programs/<name>/, each built into one
static binary, rig-<name>, for the guest image's architecture (cross-compiled for arm64)
and installed in the image as /usr/local/bin/rig-<name>.

    program_dir(name) -> Path                       the program's sources (UserError if none)
    sources_digest(names, arch) -> str              for the image's cache key: a change to a
                                                    program's sources rebuilds the image
    toolchain(arch) -> Toolchain                    the compiler and the Debian packages it needs
    build_program(name, arch, out) -> Path          the binary (InfraError: compiler, libc or
                                                    headers missing, or the build failed)

They exist because what the guests need is not in Debian for every architecture (IGT is
built for amd64 and i386 only): rig-panfrost carries IGT's panfrost subtests and rig's own
to the arm64 guests. Static binaries, so the image needs no matching -dev packages and
the program runs on whatever libc the guest's suite has.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from rig import cache, proc
from rig.errors import InfraError, UserError
from rig.target import TARGETS

PROGRAMS_DIR = Path(__file__).resolve().parent.parent / "images" / "programs"
INSTALL_DIR = "/usr/local/bin"
# -Wall -Wextra: the programs are kept warning-free (a unit test holds them to it).
CFLAGS = ("-static", "-O2", "-Wall", "-Wextra")
# A few C files; the cross compiler under a busy host needs seconds, not minutes.
BUILD_TIMEOUT_S = 300.0
# The parts of a program's directory that go into the build (and so into the digest).
_SOURCE_SUFFIXES = (".c", ".h")


@dataclass(frozen=True)
class Toolchain:
    arch: str  # rig's architecture name
    compiler: str  # the C compiler's program name
    compiler_package: str  # the Debian package that has it
    libc_package: str  # the Debian package with its static libc and the kernel's UAPI headers


# The compiler is the one rig's kernel builds use for the architecture (rig.target).
TOOLCHAINS = {
    "arm64": Toolchain("arm64", TARGETS["arm64"].compiler, "gcc-aarch64-linux-gnu",
                       # pulls linux-libc-dev-arm64-cross: <drm/*.h>, <linux/*.h> for arm64
                       "libc6-dev-arm64-cross"),
    # A native build, for an x86_64 image that names a program (Debian's linux-libc-dev
    # has no <drm/*.h>; libdrm-dev has them).
    "x86_64": Toolchain("x86_64", TARGETS["x86_64"].compiler, "gcc", "libc6-dev"),
}


def binary_name(name: str) -> str:
    return f"rig-{name}"


def available() -> list[str]:
    return sorted(p.name for p in PROGRAMS_DIR.iterdir() if p.is_dir()) if PROGRAMS_DIR.is_dir() else []


def program_dir(name: str) -> Path:
    """The directory of a program's sources; a UserError names the programs there are."""
    directory = PROGRAMS_DIR / name
    if not name or "/" in name or not any(directory.glob("*.c")):
        raise UserError(f"guest program '{name}' has no C sources in {directory}",
                        hint=f"name one of the programs in {PROGRAMS_DIR}: {', '.join(available()) or 'none'}")
    return directory


def sources(name: str) -> list[Path]:
    directory = program_dir(name)
    return sorted(p for p in directory.iterdir() if p.is_file() and p.suffix in _SOURCE_SUFFIXES)


def toolchain(arch: str) -> Toolchain:
    try:
        return TOOLCHAINS[arch]
    except KeyError:
        raise UserError(f"rig cannot build guest programs for {arch}",
                        hint=f"guest programs build for {', '.join(TOOLCHAINS)}") from None


def sources_digest(names: tuple[str, ...] | list[str], arch: str) -> str:
    """What the programs' binaries depend on: their sources, the compiler and its flags."""
    tool = toolchain(arch)
    parts: list[str | bytes] = [arch, tool.compiler, " ".join(CFLAGS)]
    for name in names:
        for path in sources(name):
            parts += [f"{name}/{path.name}", path.read_bytes()]
    return cache.digest(parts)


def check_toolchain(tool: Toolchain) -> str:
    """The compiler's path, once it is known to link static programs: an InfraError names
    the Debian package that is missing."""
    compiler = shutil.which(tool.compiler)
    if compiler is None:
        raise InfraError(f"'{tool.compiler}' (the C compiler for rig's {tool.arch} guest programs) is not installed",
                         hint=f"install it with: sudo apt-get install {tool.compiler_package} {tool.libc_package}"
                              "   (./setup installs everything rig needs)")
    # gcc answers with the full path of a file it would link, or the bare name if it has none
    found = proc.run([compiler, "-print-file-name=libc.a"], timeout=60, check=False,
                     what=f"{tool.compiler} -print-file-name").stdout.strip()
    if not Path(found).is_absolute():
        raise InfraError(f"{tool.compiler} has no static C library (libc.a) to link rig's {tool.arch} guest programs",
                         hint=f"install it with: sudo apt-get install {tool.libc_package}"
                              "   (./setup installs everything rig needs)")
    return compiler


def build_program(name: str, arch: str, out: Path) -> Path:
    """Build a program for `arch` into out/rig-<name> (the compiler's messages go to
    out/rig-<name>.log)."""
    tool = toolchain(arch)
    files = sources(name)
    compiler = check_toolchain(tool)
    out.mkdir(parents=True, exist_ok=True)
    binary = out / binary_name(name)
    log = out / f"{binary_name(name)}.log"
    log.unlink(missing_ok=True)  # proc.run appends
    # From the program's directory with relative names: __FILE__ in a failed check reads
    # "tests_igt.c:42", not a path of the host that built the image.
    proc.run([compiler, *CFLAGS, "-I.", "-o", binary.resolve(), *(f.name for f in files if f.suffix == ".c")],
             cwd=program_dir(name), timeout=BUILD_TIMEOUT_S, log=log, what=f"the build of rig's guest program {binary_name(name)} for {arch}",
             hint=f"read the compiler's messages in the log; a missing header comes from {tool.libc_package}")
    return binary
