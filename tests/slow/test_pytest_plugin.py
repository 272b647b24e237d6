"""rig's pytest plugin for real: `pytest examples/` boots the 6.1 guest and its tests
pass; the vgem example against the lockdep series fails the test whose fence signalling
made lockdep report, with the deadlock's title in pytest's output and in its JUnit XML.

Both reuse the session's kernels: the clean 6.1 build (kernel_6_1), and the lockdep
series' build that test_run.py makes (a cache hit here, or one incremental build)."""

from __future__ import annotations

import importlib.metadata
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent.parent
EXAMPLES = REPO / "examples"
DEADLOCK = "possible deadlock in vgem_fence_signal_ioctl"


def run_pytest(*args: str, junit: Path, timeout: float = 2400) -> subprocess.CompletedProcess[str]:
    """pytest in a fresh process, with rig's plugin as a user gets it: by its entry point
    when rig is installed, else named with -p (rig run from a checkout)."""
    installed = any(ep.value == "rig.pytest_plugin" for ep in importlib.metadata.entry_points(group="pytest11"))
    plugin = [] if installed else ["-p", "rig.pytest_plugin"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "250"}
    # -n 0: one process, as in a user's project (this checkout's pyproject asks for workers)
    return subprocess.run([sys.executable, "-m", "pytest", *plugin, "-n", "0", "-p", "no:cacheprovider", "-rA",
                           f"--junitxml={junit}", *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          env=env)


def cases(junit: Path) -> dict[str, ET.Element]:
    return {case.get("name", ""): case for case in ET.parse(junit).getroot().iter("testcase")}


def test_the_examples_pass_on_the_clean_kernel(kernel_6_1, guest_image, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    done = run_pytest(str(EXAMPLES), "--rig-bzimage", str(kernel_6_1.kernel_image), "--rig-out", str(tmp_path / "rig"),
                      junit=junit)
    output = done.stdout[-6000:] + done.stderr[-3000:]
    assert done.returncode == 0, output
    found = cases(junit)
    assert {"test_signal_fences_on_shared_buffers", "test_a_mapping_outlives_its_handle", "test_any_guest_command",
            "test_map_share_and_close_in_a_bad_order"} <= set(found), output
    assert not any(case.find("failure") is not None or case.find("error") is not None for case in found.values())
    # one guest per module: vgem's on the default machine, virtio-gpu's under the balloon
    assert sorted(p.name for p in (tmp_path / "rig").glob("guest-*")) == ["guest-1", "guest-2"]
    assert "rig guests" in done.stdout and "pressure balloon" in done.stdout


def test_the_vgem_example_fails_on_the_lockdep_series(guest_image, tmp_path: Path) -> None:
    junit = tmp_path / "junit.xml"
    done = run_pytest(str(EXAMPLES / "test_vgem.py"), "--rig-series", "tests/data/series/lockdep",
                      "--rig-out", str(tmp_path / "rig"), junit=junit)
    output = done.stdout[-8000:] + done.stderr[-3000:]
    assert done.returncode == 1, output
    # its own checks passed; the kernel's report failed it, by title
    assert f"FAILED examples/test_vgem.py::test_signal_fences_on_shared_buffers - kernel report: {DEADLOCK}" \
        in done.stdout, output
    assert "WARNING: possible circular locking dependency detected" in done.stdout
    found = cases(junit)
    failure = found["test_signal_fences_on_shared_buffers"].find("failure")
    assert failure is not None and failure.get("message") == f"kernel report: {DEADLOCK}"
    assert "dma_fence_map" in (failure.text or "")
    properties = {p.get("name"): p.get("value") for p in found["test_signal_fences_on_shared_buffers"].iter("property")}
    assert properties["rig_kernel_report"] == DEADLOCK
    # the other tests ran on the same guest and are not blamed for it
    for name in ("test_a_mapping_outlives_its_handle", "test_any_guest_command"):
        assert found[name].find("failure") is None, output
