"""How the test session is laid out on pytest-xdist's two workers (pyproject's addopts).

A guest test mostly waits on one emulated CPU, and the slow tier has two long chains of
builds: the arm64 one (rig's QEMU, the cross-built kernel, the arm64 image under
qemu-user) and the x86_64 one (the default kernel and image, the KASAN+KUnit kernel).
One worker takes every arm64 test as one unit, the other everything else, the unit tier
first: each chain's guests then run beside the other chain's builds instead of after
them.

The workers see each test's fixtures; the scheduler, in the controlling process, sees
only node ids, so the arm64 chain is told by node id (`in_arm64_chain`), and the slow
tier's collection checks that every test needing an arm64 fixture is one of them.
"""

from __future__ import annotations

from pathlib import PurePosixPath

ARM64_CHAIN = "arm64"

# Slow-tier files whose every test needs an arm64 guest or the parts of one.
ARM64_FILES = frozenset({"test_arm64.py", "test_image_arm64.py", "test_qemu_build.py", "test_mali_qtest.py",
                         "test_mali_boot.py", "test_panfrost.py"})
# The fixtures that build those parts.
ARM64_FIXTURES = frozenset({"kernel_6_1_arm64", "arm64_image", "rig_qemu"})


def in_arm64_chain(nodeid: str) -> bool:
    """A slow test in an arm64 file, or the arm64 instance of a test parametrized over
    architectures (`any_arch`, whose ids are the architectures' names)."""
    path, _, name = nodeid.partition("::")
    parts = PurePosixPath(path).parts
    if parts[:2] != ("tests", "slow"):
        return False
    if parts[-1] in ARM64_FILES:
        return True
    if not name.endswith("]") or "[" not in name:
        return False
    return ARM64_CHAIN in name[name.index("[") + 1 : -1].split("-")


def scope_of(nodeid: str) -> str:
    """The unit of work a worker takes at once: the whole arm64 chain, or one test."""
    return ARM64_CHAIN if in_arm64_chain(nodeid) else nodeid
