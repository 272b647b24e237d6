"""`rig matrix` for real on the session's 6.1 kernel with the scripts plan (no IGT, a
minute a guest): Ctrl-C in the middle and the same command again runs only the unfinished
cell; the GitLab export of a 2-cell matrix runs green under gitlab-ci-local and its merge
job's matrix.json holds both cells."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent.parent

TWO_CELLS = f"""
[axes]
gpu = ["virtio-gpu", "bochs"]
[settings]
kernel = "debian:6.1"
plan = "{REPO / 'tests/data/plans/scripts.toml'}"
pressure = "none"
compare_base = false
"""


def rig(*args: str, **kwargs) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, "-m", "rig", *args], cwd=REPO, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


def test_ctrl_c_then_the_same_command_runs_only_the_unfinished_cell(kernel_6_1, guest_image, tmp_path: Path) -> None:
    matrix = tmp_path / "matrix.toml"
    matrix.write_text(TWO_CELLS)
    out = tmp_path / "out"
    command = ["matrix", "run", str(matrix), "--out", str(out), "--jobs", "1"]
    first = rig(*command)
    done = out / "cells" / "virtio-gpu" / "matrix-cell.json"
    give_up = time.monotonic() + 1200
    while not done.exists() and first.poll() is None and time.monotonic() < give_up:
        time.sleep(1)
    assert done.exists(), first.communicate()[1][-3000:] if first.poll() is not None else "no cell finished"
    time.sleep(15)  # the second cell's guest is booting
    first.send_signal(signal.SIGINT)
    _, stderr = first.communicate(timeout=300)
    assert first.returncode == 130, stderr[-3000:]
    assert "run the same command again to resume" in stderr
    assert not (out / "cells" / "bochs" / "matrix-cell.json").exists()
    kept = (out / "cells" / "virtio-gpu" / "report.json").stat().st_mtime_ns

    second = rig(*command)
    _, stderr = second.communicate(timeout=1800)
    assert second.returncode == 0, stderr[-3000:]
    assert "virtio-gpu: pass kept from an earlier run" in stderr
    assert (out / "cells" / "virtio-gpu" / "report.json").stat().st_mtime_ns == kept
    data = json.loads((out / "matrix.json").read_text())
    assert {c["id"]: c["status"] for c in data["cells"]} == {"virtio-gpu": "pass", "bochs": "pass"}
    bochs = json.loads((out / "cells" / "bochs" / "report.json").read_text())
    assert bochs["machine"]["gpu"] == "bochs" and bochs["tests"]


def test_gitlab_export_runs_green_under_gitlab_ci_local(kernel_6_1, guest_image, tmp_path: Path) -> None:
    gcl = shutil.which("gitlab-ci-local")
    if gcl is None:
        pytest.skip("gitlab-ci-local is not installed (./setup installs it from npm)")
    project = tmp_path / "project"
    project.mkdir()
    (project / "matrix.toml").write_text(TWO_CELLS)
    exported = rig("matrix", "export", str(project / "matrix.toml"), "--to", "gitlab-ci", "--cache", "none",
                   "--rig", f"env PYTHONPATH={REPO} {sys.executable} -m rig")
    pipeline, stderr = exported.communicate(timeout=120)
    assert exported.returncode == 0, stderr
    # the jobs see the matrix file by its path in the project
    (project / ".gitlab-ci.yml").write_text(pipeline.replace(str(project / "matrix.toml"), "matrix.toml"))
    for argv in (["init", "-q"], ["add", "."], ["-c", "user.name=rig", "-c", "user.email=rig@localhost",
                                                  "commit", "-qm", "matrix"]):
        subprocess.run(["git", *argv], cwd=project, check=True, timeout=60)
    done = subprocess.run([gcl, "--shell-isolation", "--concurrency", "1"], cwd=project, capture_output=True,
                          text=True, timeout=2400)
    assert done.returncode == 0, done.stdout[-5000:] + done.stderr[-3000:]
    merged = project / "matrix" / "matrix.json"
    if not merged.exists():  # isolated jobs: the merge job's files are in its own copy of the project
        merged = next(project.glob(".gitlab-ci-local/builds/matrix-report/matrix/matrix.json"))
    data = json.loads(merged.read_text())
    assert {c["id"]: c["status"] for c in data["cells"]} == {"virtio-gpu": "pass", "bochs": "pass"}
    assert "matrix-report" in done.stdout and "PASS" in done.stdout
