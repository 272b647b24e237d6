"""Fixtures of the slow tier: a really built kernel and a really built guest image,
made once per test session and shared by every slow test (the rig cache makes a second
session fast)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.layout import ARM64_FIXTURES, in_arm64_chain


def _needs_arm64(item: pytest.Item) -> bool:
    callspec = getattr(item, "callspec", None)
    if callspec is not None and callspec.params.get("any_arch") == "arm64":
        return True
    return bool(ARM64_FIXTURES & set(getattr(item, "fixturenames", ())))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark the slow tier and order it: the unit tier first, then the arm64 chain, then
    the rest, its `long` tests first (tests/layout.py says how the two workers share
    them). A long test left to the end would keep one worker busy while the other has
    nothing left to take. A test that needs an arm64 guest but would not be in the arm64
    chain is refused here, since the scheduler tells the chain by node id alone."""
    here = Path(__file__).parent
    arm64: list[pytest.Item] = []
    x86: list[pytest.Item] = []
    unit: list[pytest.Item] = []
    for item in items:
        if here not in Path(str(item.fspath)).parents:
            unit.append(item)
            continue
        item.add_marker(pytest.mark.slow)
        if in_arm64_chain(item.nodeid):
            arm64.append(item)
        elif _needs_arm64(item):
            raise pytest.UsageError(f"{item.nodeid} needs an arm64 guest but is not in the arm64 chain: "
                                    "put it in one of tests/layout.py's ARM64_FILES, or parametrize it with any_arch")
        else:
            x86.append(item)
    x86.sort(key=lambda item: item.get_closest_marker("long") is None)  # stable: file order otherwise
    items[:] = unit + arm64 + x86


@pytest.fixture(scope="session")
def kernel_6_1(tmp_path_factory: pytest.TempPathFactory):  # -> rig.build.BuildArtifacts
    """Debian's 6.1 kernel source, default profile, no series."""
    from rig.build import BuildRequest, build

    out = tmp_path_factory.mktemp("kernel-6.1")
    return build(BuildRequest(kernel="debian:6.1"), out, progress=False)


@pytest.fixture(scope="session")
def guest_image():  # -> rig.image.GuestImage
    """The default guest image (Debian sid with IGT, sshd and rig's init)."""
    from rig.image import ensure_image

    return ensure_image("default", progress=False)


@pytest.fixture(scope="session")
def kernel_6_1_arm64(tmp_path_factory: pytest.TempPathFactory):  # -> rig.build.BuildArtifacts
    """Debian's 6.1 kernel source cross-built for arm64, default profile, no series."""
    from rig.build import BuildRequest, build
    from rig.target import ARM64

    out = tmp_path_factory.mktemp("kernel-6.1-arm64")
    return build(BuildRequest(kernel="debian:6.1", target=ARM64), out, progress=False)


@pytest.fixture(scope="session")
def arm64_image():  # -> rig.image.GuestImage
    """The arm64 guest image (Debian sid without IGT, built under qemu-user)."""
    from rig.image import ensure_image

    return ensure_image("arm64", progress=False)


@dataclass(frozen=True)
class GuestKernel:
    """A kernel and the image it boots on, for tests that must hold on every architecture."""

    arch: str
    kernel: object  # rig.build.BuildArtifacts
    image: object  # rig.image.GuestImage

    @property
    def kernel_image(self) -> Path:
        return Path(self.kernel.kernel_image)  # type: ignore[attr-defined]

    @property
    def args(self) -> list[str]:
        """rig boot/run options that boot this kernel on this architecture."""
        return ["--arch", self.arch, "--bzimage", str(self.kernel_image)]

    def spec(self, **changes: object):  # -> rig.guest_spec.GuestSpec
        from rig.guest_spec import GuestSpec
        from rig.target import target

        return GuestSpec(target=target(self.arch), **changes)  # type: ignore[arg-type]


@pytest.fixture(scope="session", params=["x86_64", "arm64"])
def any_arch(request: pytest.FixtureRequest) -> GuestKernel:
    """The debian:6.1 default kernel and its image, once per architecture (arm64 builds
    rig's QEMU, the cross-built kernel and the arm64 image the first time)."""
    if request.param == "x86_64":
        return GuestKernel("x86_64", request.getfixturevalue("kernel_6_1"), request.getfixturevalue("guest_image"))
    request.getfixturevalue("rig_qemu")
    return GuestKernel("arm64", request.getfixturevalue("kernel_6_1_arm64"), request.getfixturevalue("arm64_image"))


@pytest.fixture(scope="session")
def rig_qemu():  # -> rig.qemu.build.QemuBuild
    """rig's own QEMU, which every arm64 guest runs on. A rig command builds it on first use
    (minutes, cold); built here, it is not charged to the first test's command and its
    timeout, whichever test the workers happen to start first."""
    from rig.qemu.build import ensure_qemu

    return ensure_qemu(progress=False)
