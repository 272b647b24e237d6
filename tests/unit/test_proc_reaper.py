"""proc.run(dies_with_rig=True): a program and its children do not outlive a SIGKILLed
rig, they get TERM before KILL, and the locks they were given stay held until the last of
them has ended (the build's make, its compilers and linkers)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from rig import proc
from rig.cache import is_locked

REPO = Path(__file__).resolve().parent.parent.parent

pytestmark = pytest.mark.skipif(shutil.which("setpriv") is None, reason="needs setpriv (util-linux)")

# A stand-in for rig: takes a lock, runs a "make" that starts a "compiler" child, and
# waits. The "make" writes a file when TERM reaches it and takes 2 s to end (make deletes
# its half-built targets then); the "compiler" ignores TERM, so only KILL ends it.
RIG = textwrap.dedent("""
    import sys
    from pathlib import Path
    from rig import cache, proc
    work = Path(sys.argv[1])
    script = (
        f'trap "echo term > {work}/make-got-term; sleep 2; exit 143" TERM; '
        f'sh -c \\'trap "" TERM; echo $$ > {work}/compiler.pid; while :; do sleep 0.1; done\\' & '
        f'echo $$ > {work}/make.pid; wait'
    )
    with cache.locked(work / "build.lock") as descriptor:
        proc.run(["sh", "-c", script], timeout=600, log=work / "make.log", dies_with_rig=True,
                 pass_fds=(descriptor,), check=False)
""")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # a zombie is gone for this purpose (its parent, the reaper shell, was killed)
    return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"


def _wait_for(check, seconds: float) -> bool:  # type: ignore[no-untyped-def]
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        if check():
            return True
        time.sleep(0.05)
    return False


def test_a_sigkilled_rig_takes_the_program_group_with_it_and_the_lock_lasts_until_it_is_gone(tmp_path: Path) -> None:
    rig = subprocess.Popen([sys.executable, "-c", RIG, str(tmp_path)], cwd=REPO,
                           env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert _wait_for(lambda: (tmp_path / "compiler.pid").is_file() and (tmp_path / "make.pid").is_file(), 30)
        make = int((tmp_path / "make.pid").read_text())
        compiler = int((tmp_path / "compiler.pid").read_text())
        rig.kill()
        rig.wait(timeout=10)
        # rig is gone, its program group not yet: the lock is still held for it
        assert _alive(compiler)
        assert is_locked(tmp_path / "build.lock")
        assert _wait_for(lambda: not _alive(make) and not _alive(compiler), 30), "rig's program outlived it"
    finally:
        if rig.poll() is None:
            rig.kill()
    assert (tmp_path / "make-got-term").read_text().strip() == "term"  # TERM first, so make could tidy up
    assert _wait_for(lambda: not is_locked(tmp_path / "build.lock"), 10)


def test_the_program_s_own_exit_status_and_output_come_through() -> None:
    result = proc.run(["sh", "-c", "echo made; exit 7"], timeout=30, dies_with_rig=True, check=False)
    assert result.returncode == 7 and result.stdout.strip() == "made"
    assert proc.run(["true"], timeout=30, dies_with_rig=True).ok


def test_a_timeout_still_kills_the_group(tmp_path: Path) -> None:
    marker = tmp_path / "child.pid"
    with pytest.raises(proc.Timeout):
        proc.run(["sh", "-c", f"sleep 600 & echo $! > {marker}; wait"], timeout=1, dies_with_rig=True)
    assert _wait_for(lambda: not _alive(int(marker.read_text())), 15)


def test_without_setpriv_the_program_runs_as_it_is(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(proc.shutil, "which", lambda name: None)
    assert proc._group_reaper(("make", "-j2")) == ("make", "-j2")
    monkeypatch.undo()
    wrapped = proc._group_reaper(("make", "-j2"))
    assert wrapped[-2:] == ("make", "-j2") and "--pdeathsig" in wrapped and "TERM" in wrapped
    assert signal.SIGTERM  # the shell traps TERM, the parent-death signal it is given
