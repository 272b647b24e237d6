"""`rig run` for real: rig's 6.1 kernel booted on the default image, IGT in the guest
under balloon pressure, the reports judged. Two runs keep CI's cost modest: the session's
clean kernel (exit 0, the timeline going down and back, the HTML page in Chromium) and
the lockdep series (one incremental build; exit 1 with the title, chain and subtest)."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.unit.test_report import _png_colours, screenshot

REPO = Path(__file__).resolve().parent.parent.parent

SERIES = REPO / "tests" / "data" / "series"


def rig_run(*args: str, out: Path, timeout: float = 2400) -> tuple[subprocess.CompletedProcess[str], dict]:
    done = subprocess.run([sys.executable, "-m", "rig", "run", "--quiet", "--plan", "smoke", "--out", str(out), *args],
                          capture_output=True, text=True, timeout=timeout, cwd=REPO)
    report = out / "report.json"
    assert report.is_file(), done.stderr[-3000:]
    return done, json.loads(report.read_text())


def test_clean_kernel_passes_with_the_timeline_and_the_page(kernel_6_1, guest_image, tmp_path: Path) -> None:
    out = tmp_path / "clean"
    done, data = rig_run("--bzimage", str(kernel_6_1.kernel_image), "--pressure", "balloon", out=out)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert data["findings"] == [] and data["verdict"]["unexpected_failures"] == []
    assert {t["name"] for t in data["tests"]} >= {"vgem_basic@mmap", "dumb_buffer@create-valid-dumb",
                                                   "script:dri-clients"}
    assert not any(t["result"] in ("fail", "timeout", "crash") for t in data["tests"])
    # the balloon took memory away and gave it back: MemAvailable went down and up again
    available = [s["mem_available_mib"] for s in data["timeline"]["samples"] if s["mem_available_mib"]]
    low = min(available)
    assert low < available[0] - 300 and available[-1] > low + 300
    assert min(s["balloon_mib"] for s in data["timeline"]["samples"] if s["balloon_mib"]) < 1000
    # the last line rig prints is the run directory; the page renders in a real browser
    assert done.stdout.strip().splitlines()[-1] == str(out.resolve())
    shot = screenshot(out / "report.html", tmp_path / "report.png")
    assert _png_colours(shot.read_bytes()) > 20
    page = (out / "report.html").read_text()
    assert "<polyline" in page and "data:image/png;base64," in page


def test_lockdep_series_is_caught_in_its_subtest(guest_image, tmp_path: Path) -> None:
    out = tmp_path / "lockdep"
    done, data = rig_run("--series", str(SERIES / "lockdep"), "--pressure", "none", "--no-base", out=out)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    lockdep = [f for f in data["findings"] if f["kind"] == "lockdep"]
    assert lockdep, [f["title"] for f in data["findings"]]
    expected = tomllib.loads((SERIES / "lockdep" / "expected.toml").read_text())["finding"][0]
    finding = lockdep[0]
    assert finding["title"] == expected["title"]
    assert finding["status"] == "new" and finding["test"] == expected["test"]
    assert finding["lock_chain"] == expected["lock_chain"]
    assert data["lockdep_debug_locks"] == 0  # lockdep reported, then switched itself off
    markdown = (out / "report.md").read_text()
    assert expected["title"] in markdown and " -> ".join(expected["lock_chain"]) in markdown
