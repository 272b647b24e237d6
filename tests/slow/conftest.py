"""Fixtures of the slow tier: a really built kernel and a really built guest image,
made once per test session and shared by every slow test (the rig cache makes a second
session fast)."""

from __future__ import annotations

from pathlib import Path

import pytest


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.slow)


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
