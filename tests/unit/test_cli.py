from __future__ import annotations

import platform
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rig import cli
from rig.errors import InfraError, KernelError, UserError


def test_help_lists_every_subcommand_with_examples(capsys: pytest.CaptureFixture[str]) -> None:
    for module in cli._command_modules():
        with pytest.raises(SystemExit) as exit_info:
            cli.main([module.NAME, "--help"])
        assert exit_info.value.code == 0
        out = capsys.readouterr().out
        assert "examples:" in out and "rig " + module.NAME in out


@pytest.mark.parametrize("error, code", [(UserError, 2), (InfraError, 3), (KernelError, 1)])
def test_exit_code_follows_whose_fault(error: type, code: int) -> None:
    assert error("x").exit_code == code


def test_python_dash_m_runs() -> None:
    proc = subprocess.run([sys.executable, "-m", "rig", "--version"], capture_output=True, text=True)
    assert proc.returncode == 0
    assert proc.stdout.startswith("rig ")


# ------------------------------------------------------------------ exit codes through main
# Each code provoked for real where that is cheap: a log with or without a kernel report,
# bad input, a cache directory that cannot exist, Ctrl-C in a running rig.

REPO = Path(__file__).resolve().parent.parent.parent

WARNING_LOG = """\
[   77.101000][  T512] ------------[ cut here ]------------
[   77.102000][  T512] WARNING: CPU: 0 PID: 512 at drivers/gpu/drm/drm_gem_shmem_helper.c:236 drm_gem_shmem_put_pages+0x4a/0x90
[   77.103000][  T512] Modules linked in:
[   77.105000][  T512] RIP: 0010:drm_gem_shmem_put_pages+0x4a/0x90
[   77.106000][  T512] Call Trace:
[   77.106100][  T512]  <TASK>
[   77.106200][  T512]  drm_gem_shmem_vm_close+0x2a/0x40
[   77.106300][  T512]  remove_vma+0x2c/0x60
[   77.106900][  T512]  </TASK>
[   77.107000][  T512] ---[ end trace 0000000000000000 ]---
"""

CLEAN_LOG = "[    1.000000][    T1] Run /sbin/rig-init as init process\n"


def test_exit_0_when_the_log_is_clean(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "console.log"
    log.write_text(CLEAN_LOG)
    assert cli.main(["splat", str(log)]) == cli.EXIT_OK == 0
    assert "no kernel reports found" in capsys.readouterr().out


def test_exit_1_when_the_kernel_reported_a_problem(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = tmp_path / "console.log"
    log.write_text(WARNING_LOG)
    assert cli.main(["splat", str(log)]) == cli.EXIT_KERNEL == 1
    assert "WARNING in drm_gem_shmem_put_pages" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["splat", "{tmp}/no-such.log"],
    ["run", "--pressure", "squeeze", "--out", "{tmp}/run"],
    ["run", "--plan", "{tmp}/no-such-plan.toml", "--out", "{tmp}/run"],
    ["run", "--retries", "9", "--out", "{tmp}/run"],
], ids=["missing-log", "bad-pressure", "missing-plan", "too-many-retries"])
def test_exit_2_on_bad_input_before_anything_starts(argv: list[str], tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main([arg.format(tmp=tmp_path) for arg in argv]) == cli.EXIT_USER == 2
    err = capsys.readouterr().err
    assert "rig: bad input:" in err and "what to do:" in err
    assert not (tmp_path / "run").exists()  # refused before a run directory was made


def test_exit_2_when_argparse_refuses_an_option() -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--retries", "several"])
    assert exit_info.value.code == 2


def test_exit_3_when_the_host_cannot_hold_rig_s_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("")
    monkeypatch.setenv("RIG_CACHE_DIR", str(not_a_dir / "rig"))
    assert cli.main(["build", "--quiet", "--out", str(tmp_path / "out")]) == cli.EXIT_HOST == 3
    err = capsys.readouterr().err
    assert "rig: host problem:" in err and "RIG_CACHE_DIR" in err


def test_exit_4_and_a_traceback_when_rig_itself_breaks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    import rig.commands.splat

    def broken_parser(text: bytes) -> list:  # the seam: the parser rig's command calls
        raise ZeroDivisionError("a bug")

    monkeypatch.setattr(rig.commands.splat, "parse_log", broken_parser)
    log = tmp_path / "console.log"
    log.write_text(CLEAN_LOG)
    assert cli.main(["splat", str(log)]) == cli.EXIT_BUG == 4
    err = capsys.readouterr().err
    assert "ZeroDivisionError: a bug" in err and "this is a bug in rig" in err


# read(2)'s number, as /proc/PID/syscall shows it.
READ_SYSCALL = {"x86_64": "0", "aarch64": "63"}


def _wait_until_reading_stdin(pid: int, deadline_s: float = 60.0) -> None:
    """Until the process sits in read(0, ...) (/proc/PID/syscall: read's number, then fd 0)."""
    read = READ_SYSCALL[platform.machine()]
    give_up = time.monotonic() + deadline_s
    while time.monotonic() < give_up:
        fields = Path(f"/proc/{pid}/syscall").read_text().split()
        if fields[:2] == [read, "0x0"]:
            return
        time.sleep(0.05)
    raise AssertionError(f"rig (pid {pid}) never started reading its standard input")


@pytest.mark.parametrize("signum,word", [(signal.SIGINT, "interrupted"), (signal.SIGTERM, "terminated (SIGTERM)")],
                         ids=["SIGINT", "SIGTERM"])
def test_exit_130_when_interrupted_or_terminated(signum: int, word: str) -> None:
    """Outside a guest's event loop as well (a build, an image, reading input): SIGTERM
    unwinds rig like Ctrl-C, so its clean-ups run, and exits 130; Python's default would
    end it on the spot (exit -15) with its programs left running."""
    proc = subprocess.Popen([sys.executable, "-m", "rig", "splat", "-"], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_until_reading_stdin(proc.pid)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
    assert proc.returncode == cli.EXIT_INTERRUPTED == 130, err
    assert word in err and "Traceback" not in err
