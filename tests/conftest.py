"""Shared test setup. Tests marked `slow` build real kernels and boot real guests."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# The shared corpus of real kernel reports lives beside the repository, never inside it.
CORPUS = Path(os.environ.get("RIG_CORPUS", REPO.parent / "shared" / "corpus"))


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
