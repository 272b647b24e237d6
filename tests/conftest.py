"""Shared test setup. Tests marked `slow` build real kernels and boot real guests."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# The shared corpus of real kernel reports lives beside the repository, never inside it.
CORPUS = Path(os.environ.get("RIG_CORPUS", REPO.parent / "shared" / "corpus"))


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist's workers ignore SIGINT (Ctrl-C is the controller's to handle), and an
    # ignored signal stays ignored in every program they start: rig's own Ctrl-C handling,
    # which the tests send it, needs Python's default back.
    if os.environ.get("PYTEST_XDIST_WORKER") and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """The two workers' layout (tests/layout.py): the arm64 chain on one, the rest on the
    other. pytest-xdist's own `loadgroup` would do it from `xdist_group` marks, but it
    groups by a suffix it writes into each node id, which pytest 9.2 no longer keeps.
    Another --dist given on the command line is left to pytest-xdist."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    from tests.layout import scope_of

    class ChainScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return ChainScheduling(config, log)  # type: ignore[arg-type]


@pytest.fixture
def corpus_dir() -> Path:
    path = CORPUS / "syzkaller-linux-report"
    if not path.is_dir():
        # On a developer's machine the corpus may be absent; in CI a missing corpus would
        # turn the splat scores' tests into silent skips, so it fails.
        message = f"shared corpus not found at {path} (set RIG_CORPUS)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI is set, so the corpus tests must run")
        pytest.skip(message)
    return path
