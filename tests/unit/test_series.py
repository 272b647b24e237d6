from __future__ import annotations

import mailbox
import socket
from pathlib import Path

import pytest
from .test_build_fakes import commit_change, fake_kernel, format_patches, git

from rig import series
from rig.errors import InfraError, UserError

DATA = Path(__file__).resolve().parent.parent / "data" / "series"


@pytest.fixture
def repo_with_series(tmp_path: Path) -> Path:
    repo = fake_kernel(tmp_path / "linux")
    commit_change(repo, "drv: return one", "return 0;", "return 1;")
    commit_change(repo, "drv: say what it is", "/* A driver. */", "/* A driver that probes. */")
    return repo


def test_directory_of_patches_skips_the_cover_letter_and_keeps_order(tmp_path: Path) -> None:
    loaded = series.load(str(DATA / "build-second-breaks"), tmp_path / "work")
    assert [p.number for p in loaded.patches] == [1, 2, 3]
    assert [p.subject for p in loaded.patches] == [
        "drm/vgem: say why there is a single device",
        "drm/vgem: count the opens of the device",
        "drm/vgem: add the open counter",
    ]
    assert all(p.author == "Rig Tester <tester@example.org>" for p in loaded.patches)
    assert loaded.skipped == ("[PATCH 0/3] drm/vgem: count opens (not bisectable)",)
    assert all(p.path.read_bytes().startswith(b"From ") for p in loaded.patches)


def test_mbox_with_several_patches_in_mail_order_is_put_in_series_order(tmp_path: Path, repo_with_series: Path) -> None:
    files = format_patches(repo_with_series, "HEAD~2..HEAD", tmp_path / "fp", cover=True)
    box = mailbox.mbox(str(tmp_path / "series.mbox"))
    for f in reversed(files):  # mail clients do not keep the order
        box.add(mailbox.mboxMessage(f.read_bytes()))
    box.flush()
    loaded = series.load(str(tmp_path / "series.mbox"), tmp_path / "work")
    assert [p.subject for p in loaded.patches] == ["drv: return one", "drv: say what it is"]
    assert len(loaded.skipped) == 1


def test_series_digest_follows_the_content(tmp_path: Path, repo_with_series: Path) -> None:
    one = series.load(str(DATA / "build-second-breaks"), tmp_path / "a")
    again = series.load(str(DATA / "build-second-breaks"), tmp_path / "b")
    other = series.load(str(DATA / "harmless"), tmp_path / "c") if (DATA / "harmless").is_dir() else None
    assert one.digest == again.digest
    if other is not None:
        assert other.digest != one.digest


def test_a_mail_without_a_diff_is_not_a_series() -> None:
    with pytest.raises(UserError, match="holds no patch") as info:
        series.load(str(DATA / "build-not-a-patch" / "review.mbox"), Path("/nonexistent/work"))
    assert "review.mbox" in info.value.message and info.value.hint


def test_empty_directory_and_unknown_spec_are_user_errors(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match=r"no \*\.patch"):
        series.load(str(tmp_path / "empty"), tmp_path / "work")
    with pytest.raises(UserError, match="not a file, a directory"):
        series.load("no-such-thing", tmp_path / "work")


def test_git_range_is_read_from_the_kernel_checkout(tmp_path: Path, repo_with_series: Path) -> None:
    loaded = series.load("HEAD~2..HEAD", tmp_path / "work", repo=repo_with_series)
    assert loaded.kind == "range"
    assert [p.subject for p in loaded.patches] == ["drv: return one", "drv: say what it is"]
    assert loaded.patches[0].author == "Ada Tester <ada@example.org>"


def test_git_range_needs_a_local_checkout_and_valid_revisions(tmp_path: Path, repo_with_series: Path) -> None:
    with pytest.raises(UserError, match="needs a local kernel checkout"):
        series.load("v1..v2", tmp_path / "work", repo=None)
    with pytest.raises(UserError, match="not valid"):
        series.load("nope..HEAD", tmp_path / "work", repo=repo_with_series)
    with pytest.raises(UserError, match="holds no commits"):
        series.load("HEAD..HEAD", tmp_path / "work", repo=repo_with_series)


def test_message_id_fails_fast_when_lore_is_unreachable(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # A real port that refuses connections: the same failure as a host with no route to lore.
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    monkeypatch.setattr(series, "LORE_HOST", "127.0.0.1")
    monkeypatch.setattr(series, "LORE_PORT", closed.getsockname()[1])
    monkeypatch.setattr(series, "B4_TIMEOUT_S", 0.001)  # b4 must not even start
    try:
        with pytest.raises(InfraError, match="cannot reach 127.0.0.1 .*: Connection refused") as info:
            series.load("<20261121.1234-1-ada@example.org>", tmp_path / "work")
    finally:
        closed.close()
    assert "b4 am" in (info.value.hint or "")


def test_apply_commits_each_patch_in_a_clean_tree(tmp_path: Path, repo_with_series: Path) -> None:
    loaded = series.load("HEAD~2..HEAD", tmp_path / "work", repo=repo_with_series)
    target = fake_kernel(tmp_path / "target")
    for patch in loaded.patches:
        series.apply(patch, target)
    log = git(target, "log", "--format=%s", "-3").splitlines()
    assert log == ["drv: say what it is", "drv: return one", "base"]
    assert "return 1;" in (target / "drv.c").read_text()


def test_a_patch_that_does_not_apply_names_patch_file_and_git_message(tmp_path: Path, repo_with_series: Path) -> None:
    loaded = series.load("HEAD~2..HEAD", tmp_path / "work", repo=repo_with_series)
    target = fake_kernel(tmp_path / "target")
    commit_change(target, "drv: diverge", "return 0;", "return 2;")
    with pytest.raises(series.SeriesDoesNotApply) as info:  # a UserError: exit 2 for `rig run`
        series.apply(loaded.patches[0], target)
    assert isinstance(info.value, UserError)
    message = info.value.message
    assert 'patch 1 "drv: return one" does not apply' in message
    assert "(conflicting files: drv.c)" in message
    assert "git am --continue" not in message  # rig has aborted: git's advice would mislead
    assert "patch does not apply" in message  # git's own words
    # rig aborted the half-done `git am`: the tree is as before.
    assert not (target / git(target, "rev-parse", "--git-path", "rebase-apply").strip()).exists()
    assert git(target, "status", "--porcelain") == ""


def test_conflicting_files_reads_git_am_output() -> None:
    output = """Applying: drm: change
error: patch failed: drivers/gpu/drm/a.c:10
error: drivers/gpu/drm/a.c: patch does not apply
error: drivers/gpu/drm/b.c: does not exist in index
Patch failed at 0001 drm: change"""
    assert series.conflicting_files(output) == ["drivers/gpu/drm/a.c", "drivers/gpu/drm/b.c"]


@pytest.mark.parametrize("spec, start", [("v6.12..topic", "v6.12"), ("HEAD~3..HEAD", "HEAD~3"),
                                         ("a...b", None), ("series.mbox", None)])
def test_range_start(spec: str, start: str | None) -> None:
    assert series.range_start(spec) == start


def _mbox_of(repo: Path, rev_range: str, out: Path) -> Path:
    """The patches of `rev_range` as one mbox file, as b4 am or a mail client saves them."""
    files = format_patches(repo, rev_range, out / "fp")
    mbox = out / "series.mbox"
    mbox.write_bytes(b"".join(f.read_bytes() for f in files))
    for f in files:
        f.unlink()
    return mbox


def test_a_series_directory_holding_one_mbox_is_taken(tmp_path: Path, repo_with_series: Path) -> None:
    directory = tmp_path / "from-b4"
    directory.mkdir()
    _mbox_of(repo_with_series, "HEAD~2..HEAD", tmp_path).rename(directory / "v2_20250101_someone.mbx")
    loaded = series.load(str(directory), tmp_path / "work")
    assert [p.subject for p in loaded.patches] == ["drv: return one", "drv: say what it is"]
    assert all(p.origin == str(directory / "v2_20250101_someone.mbx") for p in loaded.patches)
    target = fake_kernel(tmp_path / "target")
    for patch in loaded.patches:
        series.apply(patch, target)
    assert "return 1;" in (target / "drv.c").read_text()


def test_a_series_directory_with_two_mboxes_asks_which(tmp_path: Path, repo_with_series: Path) -> None:
    directory = tmp_path / "two"
    directory.mkdir()
    mbox = _mbox_of(repo_with_series, "HEAD~2..HEAD", tmp_path)
    (directory / "a.mbox").write_bytes(mbox.read_bytes())
    (directory / "b.mbox").write_bytes(mbox.read_bytes())
    with pytest.raises(UserError, match="several mboxes") as info:
        series.load(str(directory), tmp_path / "work")
    assert "a.mbox, b.mbox" in info.value.message


def test_a_corrupt_mbox_is_said_to_be_damaged_when_it_is_read(tmp_path: Path, repo_with_series: Path) -> None:
    mbox = _mbox_of(repo_with_series, "HEAD~1..HEAD", tmp_path)
    # A mail client that rewrapped a long line: the hunk now has a line that is no diff line.
    mbox.write_text(mbox.read_text().replace("-/* A driver. */\n", "-/* A driver. */\nwrapped by the mailer\n"))
    with pytest.raises(UserError) as info:
        series.load(str(mbox), tmp_path / "work")  # before any kernel source is fetched
    message = info.value.message
    assert 'patch 1 "drv: say what it is" is damaged' in message and "'wrapped by the mailer'" in message
    assert str(mbox) in message and str(mbox) in (info.value.hint or "")
    assert not (tmp_path / "work").exists()


def test_a_truncated_mbox_is_said_to_be_cut_short(tmp_path: Path, repo_with_series: Path) -> None:
    mbox = _mbox_of(repo_with_series, "HEAD~1..HEAD", tmp_path)
    text = mbox.read_text()
    mbox.write_text(text[:text.index("-/* A driver. */")])  # a download that stopped inside the hunk
    with pytest.raises(UserError, match=r"is damaged: the mail ends inside the hunk '@@ -1,4 \+1,4 @@'"):
        series.load(str(mbox), tmp_path / "work")


def test_a_damaged_patch_file_is_said_to_be_damaged_by_git_am(tmp_path: Path, repo_with_series: Path) -> None:
    mbox = _mbox_of(repo_with_series, "HEAD~1..HEAD", tmp_path)
    loaded = series.load(str(mbox), tmp_path / "work")
    # The patch file changed after rig read the series: git am's own words say it is damaged.
    patch = loaded.patches[0].path
    patch.write_text(patch.read_text().replace("-/* A driver. */\n", "-/* A driver. */\nwrapped by the mailer\n"))
    target = fake_kernel(tmp_path / "target")
    commit_change(target, "drv: return one", "return 0;", "return 1;")
    with pytest.raises(UserError) as info:
        series.apply(loaded.patches[0], target)
    message = info.value.message
    assert 'patch 1 "drv: say what it is" is damaged' in message
    assert str(mbox) in message and str(mbox) in (info.value.hint or "")
    assert "corrupt patch at line" in message  # git's own words
    assert "rebase" not in (info.value.hint or "")  # rebasing cannot fix a damaged file
    assert git(target, "status", "--porcelain") == ""


def test_a_patch_that_does_not_apply_names_the_file_it_came_from(tmp_path: Path, repo_with_series: Path) -> None:
    files = format_patches(repo_with_series, "HEAD~2..HEAD", tmp_path / "dir")
    loaded = series.load(str(tmp_path / "dir"), tmp_path / "work")
    target = fake_kernel(tmp_path / "target")
    commit_change(target, "drv: diverge", "return 0;", "return 2;")
    with pytest.raises(UserError) as info:
        series.apply(loaded.patches[0], target)
    assert f"it comes from {files[0]}" in info.value.message
