"""Is this file a kernel image QEMU can boot for the target? Asked before QEMU starts.

QEMU given some other file (a text file, a vmlinux, an arm64 Image on x86) fails in ways
that name neither the file nor the mistake (its QMP socket closes, or the guest prints
nothing); the formats' magic numbers say it in a few bytes:

- x86 boot protocol (Documentation/arch/x86/boot.rst): "HdrS" at offset 0x202 of a bzImage.
- arm64 (Documentation/arch/arm64/booting.rst): "ARM\\x64" at offset 0x38 of an Image.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rig.errors import UserError

# An ELF file (vmlinux) starts with this: the most common wrong choice.
ELF_MAGIC = b"\x7fELF"


@dataclass(frozen=True)
class ImageFormat:
    name: str  # what the format is called: "bzImage", "Image"
    offset: int
    magic: bytes
    made_by: str  # where a build leaves it, for the hint


FORMATS: dict[str, ImageFormat] = {
    "x86_64": ImageFormat("bzImage", 0x202, b"HdrS", "arch/x86/boot/bzImage"),
    "arm64": ImageFormat("Image", 0x38, b"ARM\x64", "arch/arm64/boot/Image"),
}


def format_problem(head: bytes, arch: str) -> str | None:
    """Why bytes starting a file are not a kernel image for `arch` (None: they are)."""
    fmt = FORMATS.get(arch)
    if fmt is None:
        return None  # a target rig knows no magic for: QEMU decides
    if head[fmt.offset:fmt.offset + len(fmt.magic)] == fmt.magic:
        return None
    others = [name for name, other in FORMATS.items()
              if name != arch and head[other.offset:other.offset + len(other.magic)] == other.magic]
    if others:
        return f"it is an {others[0]} kernel image ({FORMATS[others[0]].name}), not an {arch} one"
    if head.startswith(ELF_MAGIC):
        return f"it is an ELF file (a vmlinux?), not a {fmt.name}"
    if len(head) < fmt.offset + len(fmt.magic):
        return f"it is too short ({len(head)} bytes) for a kernel image"
    return f"it has no {fmt.name} header ({fmt.magic!r} at offset {fmt.offset:#x})"


def check_kernel_image(path: Path, arch: str, *, option: str = "--bzimage") -> Path:
    """`path`, resolved, when it is a bootable kernel image for `arch`; else a UserError
    naming the file, what it is, and where the build leaves the right one."""
    fmt = FORMATS.get(arch)
    made_by = fmt.made_by if fmt else "the build directory"
    if path.is_dir():
        raise UserError(f"{option} {path} is a directory, not a kernel image",
                        hint=f"give the path of a built kernel image ({made_by} in a build directory)")
    if not path.is_file():
        raise UserError(f"{option} {path}: no such file", hint=f"give the path of a built kernel image ({made_by})")
    try:
        with path.open("rb") as f:
            head = f.read(0x400)
    except OSError as exc:
        raise UserError(f"{option} {path}: cannot read it: {exc.strerror or exc}",
                        hint="check the path and its permissions") from None
    problem = format_problem(head, arch)
    if problem is not None:
        raise UserError(f"{option} {path} is not a kernel image rig can boot on {arch}: {problem}",
                        hint=f"give the {fmt.name if fmt else 'kernel image'} a kernel build leaves in {made_by} "
                             f"(or let rig build one: --kernel debian:6.1)")
    return path.resolve()
