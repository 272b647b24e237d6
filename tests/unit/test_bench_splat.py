"""bench_splat --against: rig/splat of another git revision loaded beside the current one."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

import rig.splat
from rig.splat import parse_log

REPO = Path(__file__).resolve().parents[2]


def _bench() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_splat_under_test", REPO / "bench" / "bench_splat.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _git(repo: Path, *args: str) -> str:
    return subprocess.run(["git", "-C", str(repo), "-c", "user.name=t", "-c", "user.email=t@example.org", *args],
                          check=True, capture_output=True, text=True, timeout=60).stdout


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


@pytest.fixture
def toy_repo(tmp_path: Path) -> Path:
    """A repository whose rig/splat imports a module of rig outside rig/splat, in two commits."""
    repo = tmp_path / "repo"
    repo.mkdir()
    _git(repo, "init", "-q")
    _write(repo, {
        "rig/__init__.py": "",
        "rig/helper.py": "WORD = 'then'\n",
        "rig/splat/__init__.py": ("from rig.splat.inner import tag\n\n\n"
                                  "def parse_log(data):\n    return [tag(), data]\n"),
        "rig/splat/inner.py": "from rig import helper\n\n\ndef tag():\n    return 'inner:' + helper.WORD\n",
    })
    _git(repo, "add", "-A")
    _git(repo, "commit", "-q", "-m", "first")
    _write(repo, {"rig/helper.py": "WORD = 'now'\n"})
    _git(repo, "commit", "-q", "-am", "second")
    _write(repo, {"rig/helper.py": "WORD = 'uncommitted'\n"})  # the work tree is never read
    return repo


def test_loads_each_revision_with_what_it_imports_from_rig(toy_repo: Path) -> None:
    bench = _bench()
    then = bench.load_revision("HEAD~1", toy_repo)
    now = bench.load_revision("HEAD", toy_repo)
    assert then(b"log") == ["inner:then", b"log"]
    assert now(b"log") == ["inner:now", b"log"]
    # the current rig is back in place, and nothing of the revisions' is left importable
    assert sys.modules["rig.splat"] is rig.splat
    assert "rig.helper" not in sys.modules and "rig.splat.inner" not in sys.modules
    assert str(toy_repo) not in sys.path


def test_an_unknown_revision_is_refused(toy_repo: Path) -> None:
    with pytest.raises(SystemExit, match="no such git revision"):
        _bench().load_revision("no-such-branch", toy_repo)


def test_this_repository_head_loads_and_parses() -> None:
    if subprocess.run(["git", "-C", str(REPO), "rev-parse", "--verify", "--quiet", "HEAD"],
                      capture_output=True, timeout=60).returncode != 0:
        pytest.skip("not a git checkout")
    log = ("[   10.000000] ------------[ cut here ]------------\n"
           "[   10.000001] WARNING: CPU: 0 PID: 1 at drivers/gpu/drm/vkms/vkms_crtc.c:10 vkms_vblank+0x10/0x20\n"
           "[   10.000002] Call Trace:\n"
           "[   10.000003]  <TASK>\n"
           "[   10.000004]  vkms_vblank+0x10/0x20\n"
           "[   10.000005]  drm_ioctl+0x10/0x20\n"
           "[   10.000006]  </TASK>\n"
           "[   10.000007] ---[ end trace 0000000000000000 ]---\n").encode()
    head = _bench().load_revision("HEAD")
    found = head(log)
    # a plain WARNING is named alike by every revision with --against's loading (and by rig
    # in development, which may have uncommitted changes to rig/splat)
    assert [(f.kind, f.title) for f in found] == [(f.kind, f.title) for f in parse_log(log)]
    assert found and type(found[0]) is not type(parse_log(log)[0])  # a module of its own


def test_count_parses_once_more_when_warm(capsys: pytest.CaptureFixture[str]) -> None:
    bench = _bench()
    seen: list[bytes] = []

    def parser(data: bytes) -> list[str]:
        seen.append(data)
        return ["finding"]

    assert bench.count(parser, "line\n", warm=False) == 0
    assert seen == [b"line\n"]
    assert bench.count(parser, "line\n", warm=True) == 0
    assert seen == [b"line\n"] * 3
    assert "1 findings" in capsys.readouterr().out
