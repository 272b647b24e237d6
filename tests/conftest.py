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
