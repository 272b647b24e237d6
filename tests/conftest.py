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
        pytest.skip(f"shared corpus not found at {path} (set RIG_CORPUS)")
    return path
