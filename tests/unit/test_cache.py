"""rig.cache.Store: the one API kernel builds and guest images keep their results with."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from rig import cache


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path / "cache"))


STORE = cache.Store("things", lambda entry: (entry / "done").is_file())


def publish(key: str, content: str) -> Path:
    staging = STORE.staging(key)
    (staging / "file").write_text(content)
    (staging / "done").touch()
    return STORE.publish(staging, key)


def test_an_entry_is_found_only_once_published_and_complete(tmp_path: Path) -> None:
    assert STORE.lookup("k1") is None
    staging = STORE.staging("k1")
    (staging / "file").write_text("half")
    (staging / "done").touch()
    assert STORE.lookup("k1") is None and STORE.entries() == []  # staging is nobody's entry
    entry = STORE.publish(staging, "k1")
    assert entry == tmp_path / "cache" / "things" / "k1" and not staging.exists()
    assert STORE.lookup("k1") == entry
    (entry / "done").unlink()
    assert STORE.lookup("k1") is None  # incomplete: as good as absent


def test_publishing_again_replaces_the_entry_whole() -> None:
    publish("k", "old")
    entry = publish("k", "new")
    assert (entry / "file").read_text() == "new"
    assert [e.name for e in STORE.entries()] == ["k"]


def test_an_alias_points_at_an_entry_and_survives_a_bad_index() -> None:
    assert STORE.resolve("cheap") is None
    entry = publish("full", "x")
    STORE.alias("cheap", "full")
    assert STORE.resolve("cheap") == entry
    assert [e.name for e in STORE.entries()] == ["full"]  # the index is not an entry
    (STORE.root() / "index" / "cheap.json").write_text("{not json")
    assert STORE.resolve("cheap") is None
    STORE.alias("dangling", "never-built")
    assert STORE.resolve("dangling") is None


def test_remove_deletes_the_entry_and_its_lock() -> None:
    publish("k", "x")
    with STORE.lock("k"):
        assert cache.is_locked(STORE.root() / "k.lock")  # beside the entry, where another rig looks
    assert not cache.is_locked(STORE.root() / "k.lock")
    STORE.remove("k")
    assert STORE.lookup("k") is None and not (STORE.root() / "k.lock").exists()


def test_staging_is_private_and_fresh() -> None:
    first = STORE.staging("k")
    (first / "leftover").touch()
    again = STORE.staging("k")
    assert again == first and not (again / "leftover").exists()
    assert str(os.getpid()) in again.name and again.stat().st_mode & 0o077 == 0
