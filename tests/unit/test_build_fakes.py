"""Small real git repositories shaped like a kernel tree, for the fast tier.

The only fake is the tree's Makefile: it answers `allnoconfig` and `bzImage vmlinux` (or `Image`)
the way Kbuild does (files under O=, "  CC" lines, gcc's own errors) in milliseconds.
Everything else (git, git am, gcc, rig's cache) is real.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

GIT_ENV = {
    "GIT_AUTHOR_NAME": "Ada Tester",
    "GIT_AUTHOR_EMAIL": "ada@example.org",
    "GIT_COMMITTER_NAME": "Ada Tester",
    "GIT_COMMITTER_EMAIL": "ada@example.org",
    "GIT_AUTHOR_DATE": "2026-01-01T00:00:00Z",
    "GIT_COMMITTER_DATE": "2026-01-01T00:00:00Z",
    "GIT_CONFIG_GLOBAL": "/dev/null",
    "GIT_CONFIG_NOSYSTEM": "1",
}

FAKE_MAKEFILE = """\
VERSION = 6
PATCHLEVEL = 99
SUBLEVEL = 1
EXTRAVERSION =
# A stand-in for Kbuild: same targets, same output shape, real gcc.
# Like Kconfig, drop what this "kernel" does not know (here: anything named RIG_*).
allnoconfig:
\tmkdir -p $(O)
\tgrep -v '^CONFIG_RIG_' $(KCONFIG_ALLCONFIG) > $(O)/.config
\t@echo "  CONF    allnoconfig"

vmlinux:
\tmkdir -p $(O)/include/config
\t@echo "  CC      drv.o"
\t$(CC) -Werror=implicit-function-declaration -c drv.c -o $(O)/drv.o
\tcp $(O)/drv.o $(O)/vmlinux
\techo "0000000000000000 T drv_probe" > $(O)/System.map
\techo "6.99.1-fake" > $(O)/include/config/kernel.release

bzImage: vmlinux
\tmkdir -p $(O)/arch/x86/boot
\tcp $(O)/vmlinux $(O)/arch/x86/boot/bzImage

# arm64's image, where Kbuild leaves it for ARCH=arm64.
Image: vmlinux
\tmkdir -p $(O)/arch/$(ARCH)/boot
\tcp $(O)/vmlinux $(O)/arch/$(ARCH)/boot/Image

.PHONY: allnoconfig bzImage Image vmlinux
"""

DRV_C = """\
/* A driver. */
int drv_probe(void)
{
\treturn 0;
}
"""


def git(repo: Path, *args: str) -> str:
    result = subprocess.run(["git", *args], cwd=repo, env={**os.environ, **GIT_ENV}, check=True,
                            capture_output=True, text=True)
    return result.stdout


def fake_kernel(path: Path, kconfig: str = "config DRM\n\tbool \"DRM\"\n") -> Path:
    """A git repository with a kernel's shape (Makefile, Kconfig, arch/x86) and one commit."""
    path.mkdir(parents=True)
    (path / "Makefile").write_text(FAKE_MAKEFILE)
    (path / "Kconfig").write_text(kconfig)
    (path / "arch" / "x86").mkdir(parents=True)
    (path / "arch" / "x86" / "Kconfig").write_text("config X86\n\tdef_bool y\n")
    (path / "drv.c").write_text(DRV_C)
    git(path, "init", "-q", "-b", "main")
    git(path, "add", "-A")
    git(path, "commit", "-q", "-m", "base")
    return path


def commit_change(repo: Path, subject: str, old: str, new: str, file: str = "drv.c") -> str:
    """Replace `old` with `new` in `file` and commit; returns the commit id."""
    target = repo / file
    text = target.read_text()
    assert old in text, f"{old!r} not in {file}"
    target.write_text(text.replace(old, new, 1))
    git(repo, "commit", "-q", "-a", "-m", subject)
    return git(repo, "rev-parse", "HEAD").strip()


def format_patches(repo: Path, rev_range: str, out: Path, *, cover: bool = False) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    args = ["format-patch", "-q", "--zero-commit", "-o", str(out)]
    if cover:
        args.append("--cover-letter")
    git(repo, *args, rev_range)
    return sorted(out.glob("*.patch"))
