from __future__ import annotations

from pathlib import Path

import pytest
from .test_build_fakes import commit_change, fake_kernel, git

from rig import source
from rig.errors import UserError


@pytest.fixture(autouse=True)
def private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path / "cache"))


def test_mirror_from_deb822_sources(tmp_path: Path) -> None:
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d" / "debian.sources").write_text("""\
Types: deb
URIs: http://mirror.example.org/debian-security
Suites: bookworm-security
Components: main

Types: deb-src deb
URIs: http://mirror.example.org/debian/
Suites: bookworm
Components: main
""")
    assert source.host_mirror(apt) == "http://mirror.example.org/debian"


def test_mirror_from_one_line_sources_and_default(tmp_path: Path) -> None:
    apt = tmp_path / "apt"
    apt.mkdir()
    assert source.host_mirror(apt) == source.DEFAULT_MIRROR
    (apt / "sources.list").write_text(
        "# deb http://commented.example.org/debian bookworm main\n"
        "deb [arch=amd64 signed-by=/k.gpg] https://ftp.example.org/debian bookworm main\n")
    assert source.host_mirror(apt) == "https://ftp.example.org/debian"


@pytest.mark.parametrize("spec", ["debian:5.10", "ubuntu:24.04", "linux-6.1", "/no/such/tree"])
def test_unknown_kernel_spec_lists_the_accepted_forms(spec: str) -> None:
    with pytest.raises(UserError, match="unknown kernel") as info:
        source.resolve(spec)
    assert "debian:6.1" in (info.value.hint or "") and "git checkout" in (info.value.hint or "")


def test_base_is_only_for_local_checkouts() -> None:
    with pytest.raises(UserError, match="--base v6.1"):
        source.resolve("debian:6.1", "v6.1")


def test_local_path_must_be_a_kernel_git_checkout(tmp_path: Path) -> None:
    (tmp_path / "plain").mkdir()
    with pytest.raises(UserError, match="is not a git checkout"):
        source.resolve(str(tmp_path / "plain"))
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    with pytest.raises(UserError, match="not a Linux kernel tree"):
        source.resolve(str(other))


def test_local_checkout_resolves_base_and_version(tmp_path: Path) -> None:
    repo = fake_kernel(tmp_path / "linux")
    first = git(repo, "rev-parse", "HEAD").strip()
    second = commit_change(repo, "drv: change", "return 0;", "return 1;")
    src = source.resolve(str(repo))
    assert (src.kind, src.base_commit, src.version) == ("git", second, "6.99.1")
    assert src.source_id == f"git:{second}"
    assert source.resolve(str(repo), "HEAD~1").base_commit == first
    with pytest.raises(UserError, match="--base nope is not a commit"):
        source.resolve(str(repo), "nope")


def test_worktree_is_rigs_own_and_leaves_the_users_tree_alone(tmp_path: Path) -> None:
    repo = fake_kernel(tmp_path / "linux")
    commit_change(repo, "drv: change", "return 0;", "return 1;")
    (repo / "drv.c").write_text("/* the user's uncommitted work */\n")
    src = source.resolve(str(repo), "HEAD~1")
    tree = source.worktree(src)
    assert tree != repo and "return 0;" in (tree / "drv.c").read_text()
    assert git(tree, "rev-parse", "HEAD").strip() == src.base_commit
    # The user's branch, HEAD and uncommitted work are as they were.
    assert git(repo, "rev-parse", "--abbrev-ref", "HEAD").strip() == "main"
    assert (repo / "drv.c").read_text() == "/* the user's uncommitted work */\n"

    # Reused on the next run, reset to the base whatever the last run left behind.
    (tree / "drv.c").write_text("garbage")
    (tree / "stray.o").write_text("object")
    again = source.worktree(src)
    assert again == tree
    assert "return 0;" in (tree / "drv.c").read_text() and not (tree / "stray.o").exists()


def test_makefile_version(tmp_path: Path) -> None:
    (tmp_path / "Makefile").write_text("VERSION = 6\nPATCHLEVEL = 12\nSUBLEVEL = 7\nEXTRAVERSION = -rc1\n")
    assert source.makefile_version(tmp_path) == "6.12.7-rc1"
    assert source.makefile_version(tmp_path / "none") == "unknown"


def test_worktree_is_recreated_when_its_directory_was_removed(tmp_path: Path) -> None:
    import shutil

    repo = fake_kernel(tmp_path / "linux")
    src = source.resolve(str(repo))
    shutil.rmtree(source.worktree(src))
    tree = source.worktree(src)
    assert git(tree, "rev-parse", "HEAD").strip() == src.base_commit


def test_private_apt_state_never_reads_the_hosts_lists(tmp_path: Path) -> None:
    apt = source.PrivateApt(tmp_path / "apt", "http://mirror.example.org/debian")
    assert apt.sources.read_text() == (
        "deb http://mirror.example.org/debian bookworm main\n"
        "deb http://mirror.example.org/debian sid main\n"
        "deb http://mirror.example.org/debian trixie main\n")
    options = apt.options()
    for key in ("Dir::Etc::SourceList", "Dir::Etc::SourceParts", "Dir::State::Lists", "Dir::State::status",
                "Dir::Cache"):
        value = next(o.split("=", 1)[1] for o in options if o.startswith(key + "="))
        assert value.startswith(str(tmp_path / "apt")), key
    # Real apt-cache with the private state: nothing known until rig's own update,
    # whatever the host has in its lists.
    assert source.shutil.which("apt-cache")
    assert apt.candidate("linux-source-6.1") is None
    assert apt.lists_age_s() == float("inf")
