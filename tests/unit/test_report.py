from __future__ import annotations

import json
import shutil
import struct
import subprocess
import xml.etree.ElementTree as ET
import zlib
from pathlib import Path

import pytest
from rich.console import Console

from rig.report import html, junit, markdown, terminal
from rig.report.model import RunReport
from tests.unit.rundata import report_data


def test_json_holds_findings_tests_timeline_and_phases(tmp_path: Path, monkeypatch) -> None:
    report, run_dir = report_data(tmp_path, monkeypatch)
    data = json.loads((run_dir / "report.json").read_text())
    assert data["exit_code"] == 1 and data["outcome"] == "fail" and data["schema"] == 3
    assert data["findings"][0]["title"] == "memory leak in drm_prime_pages_to_sg"
    assert data["timeline"]["samples"][0]["balloon_mib"] == 2048.0
    assert set(data["phases"]) >= {"report"}
    assert data["kernel"]["profile"] == "default" and data["pressure"] == "balloon"


def test_junit_is_valid_xml_with_tests_and_findings(tmp_path: Path, monkeypatch) -> None:
    report, _ = report_data(tmp_path, monkeypatch)
    root = ET.fromstring(junit.render(report))
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert {"igt", "kunit", "kernel-findings"} <= set(suites)
    igt = suites["igt"]
    cases = {c.get("name"): c for c in igt.iter("testcase")}
    assert igt.get("failures") == "0"  # too-high is expected on virtio-gpu
    assert cases["kms_addfb_basic@too-high"].find("failure") is None
    assert "expected failure" in cases["kms_addfb_basic@too-high"].find("system-out").text
    findings = suites["kernel-findings"]
    assert findings.get("failures") == "1"
    failure = next(c for c in findings.iter("testcase") if c.get("name") == "memory leak in drm_prime_pages_to_sg")
    assert "dumb_buffer@create-valid-dumb" in failure.find("failure").text


def test_markdown_is_ready_to_paste(tmp_path: Path, monkeypatch) -> None:
    report, _ = report_data(tmp_path, monkeypatch)
    text = markdown.render(report)
    assert text.startswith("rig found 1 new kernel report with this series applied.")
    assert "- series: tests/data/series/kmemleak" in text and "- config profile: default" in text
    assert "## 1. memory leak in drm_prime_pages_to_sg" in text
    assert "Triggered by: dumb_buffer@create-valid-dumb (by pid)" in text
    assert "Also triggered by: dumb_buffer@map-valid, kms_addfb_basic@basic" in text
    assert '    comm "kms_addfb_basic", pid 101' in text  # the full report, indented
    assert "Leaked: 9 objects, 10880 bytes" in text
    assert "Memory pressure (" in text and "- MemAvailable went from 1650 down to 770 MiB" in text
    assert "- most objects held by a shrinker: sb-ext4-11 900" in text
    assert "- memcg OOM kill: 1 between 9.5 s and 9.5 s" in text
    assert text.rstrip().endswith("    rig run --series tests/data/series/kmemleak --pressure balloon")


def test_terminal_shows_findings_before_totals(tmp_path: Path, monkeypatch) -> None:
    report, _ = report_data(tmp_path, monkeypatch)
    console = Console(record=True, width=120, color_system=None)
    terminal.render(report, console)
    out = console.export_text()
    assert out.index("memory leak in drm_prime_pages_to_sg") < out.index("Tests:")
    assert "during: dumb_buffer@create-valid-dumb" in out and "leaked: 9 x, 10880 bytes" in out
    assert "expected:" in out and out.rstrip().splitlines()[-1].startswith("FAIL")


def test_html_is_self_contained_with_plot_and_screendump(tmp_path: Path, monkeypatch) -> None:
    report, run_dir = report_data(tmp_path, monkeypatch)
    page = html.render(report, run_dir)
    assert "<svg" in page and page.count("<polyline") == 4  # available, balloon, free, shrinkers
    assert "data:image/png;base64," in page
    assert page.count("<details") == 1 and "virtio_gpu_object_create" in page
    assert "http://" not in page.replace('xmlns="http://www.w3.org/2000/svg"', "")  # nothing to fetch
    assert "comm &quot;dumb_buffer&quot;" in page  # report text escaped


def test_timeline_svg_without_samples() -> None:
    assert "No timeline" in html.timeline_svg({})


def _png_colours(png: bytes) -> int:
    """Distinct colours of an 8-bit RGB/RGBA non-interlaced PNG (what Chromium writes)."""
    pos, chunks, header = 8, [], b""
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        body = png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            header = body
        elif kind == b"IDAT":
            chunks.append(body)
        pos += 12 + length
    width, height, depth, colour_type = struct.unpack(">IIBB", header[:10])
    assert depth == 8 and colour_type in (2, 6)
    bpp = 3 if colour_type == 2 else 4
    raw = zlib.decompress(b"".join(chunks))
    stride = width * bpp
    previous = bytearray(stride)
    colours: set[bytes] = set()
    for row in range(height):
        kind = raw[row * (stride + 1)]
        line = bytearray(raw[row * (stride + 1) + 1:(row + 1) * (stride + 1)])
        for i in range(stride):
            left = line[i - bpp] if i >= bpp else 0
            up = previous[i]
            corner = previous[i - bpp] if i >= bpp else 0
            if kind == 1:
                line[i] = (line[i] + left) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + up) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (left + up) // 2) & 0xFF
            elif kind == 4:
                p = left + up - corner
                pa, pb, pc = abs(p - left), abs(p - up), abs(p - corner)
                line[i] = (line[i] + (left if pa <= pb and pa <= pc else up if pb <= pc else corner)) & 0xFF
        for i in range(0, stride, bpp * 7):
            colours.add(bytes(line[i:i + 3]))
        previous = line
    return len(colours)


def screenshot(page: Path, out: Path, size: str = "1200,2400") -> Path:
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("chromium is not installed (./setup installs it)")
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
                    f"--screenshot={out}", f"--window-size={size}", page.as_uri()],
                   check=True, timeout=120, capture_output=True)
    return out


def test_report_html_renders_in_headless_chromium(tmp_path: Path, monkeypatch) -> None:
    report, run_dir = report_data(tmp_path, monkeypatch)
    shot = screenshot(run_dir / "report.html", tmp_path / "shot.png")
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG")
    assert _png_colours(png) > 20  # text, plot lines, badges: not a blank page


def test_lock_chain_appears_in_every_human_report(tmp_path: Path, monkeypatch) -> None:
    report, run_dir = report_data(tmp_path, monkeypatch)
    data = json.loads((run_dir / "report.json").read_text())
    data["findings"][0].update(kind="lockdep", title="possible deadlock in vgem_fence_signal_ioctl",
                               lock_chain=["reservation_ww_class_mutex", "fs_reclaim", "dma_fence_map"],
                               leak_groups=[], also=[])
    report = RunReport.from_json(data)
    chain = "reservation_ww_class_mutex -> fs_reclaim -> dma_fence_map"
    assert f"Lock chain: {chain}" in markdown.render(report)
    assert html.html.escape(chain) in html.render(report, run_dir)
    console = Console(record=True, width=140, color_system=None)
    terminal.render(report, console)
    assert f"locks:  {chain}" in console.export_text()


def test_report_json_loads_back_into_the_same_report(tmp_path: Path, monkeypatch) -> None:
    report, run_dir = report_data(tmp_path, monkeypatch)
    data = json.loads((run_dir / "report.json").read_text())
    again = RunReport.from_json(data)
    assert json.loads(json.dumps(again.to_json(), default=str)) == data
    assert markdown.render(again) == (run_dir / "report.md").read_text()


def test_a_schema_1_report_still_loads_and_renders(tmp_path: Path, monkeypatch) -> None:
    report, run_dir = report_data(tmp_path, monkeypatch)
    data = json.loads((run_dir / "report.json").read_text())
    # what rig wrote before the report had a type: no outcome, errors as one line, bzimage
    old = {k: v for k, v in data.items() if k not in ("schema", "outcome", "summary", "error", "artifacts")}
    old["kernel"] = {**{k: v for k, v in data["kernel"].items() if k not in ("image", "arch")}, "bzimage": "bzImage"}
    old["attempts"] = [{"number": 1, "directory": "attempt-1", "host_fault": None, "error": "the guest stopped",
                        "boot_s": 20.0, "workloads_s": 60.0, "collect_s": 10.0}]
    old["collected"] = {"tainted": 512, "taint_flags": "W", "problems": []}
    # tests[].status was how the test ended; findings had no counts
    old["tests"] = [{k: (t["result"] if k == "status" else v) for k, v in t.items()
                     if k not in ("result", "intermittent", "seen", "first_bad_patch", "note")} for t in data["tests"]]
    old["findings"] = [{k: v for k, v in f.items() if k not in ("intermittent", "seen", "first_bad_patch")}
                       for f in data["findings"]]
    again = RunReport.from_json(old)
    assert again.kernel.image == "bzImage" and again.artifacts.tainted == 512
    assert again.attempts[0].error is not None and again.attempts[0].durations["boot"] == 20.0
    assert again.exit_code == 1 and "memory leak in drm_prime_pages_to_sg" in markdown.render(again)


def test_a_report_interrupted_while_written_leaves_no_half_file(tmp_path: Path, monkeypatch) -> None:
    """Ctrl-C halfway through writing report.md: report.json (written first) is whole, and
    report.md is either absent or the old one, never cut short; no staging file is left."""
    import rig.report

    report, run_dir = report_data(tmp_path, monkeypatch)
    before = (run_dir / "report.md").read_text()
    write_text = Path.write_text

    def interrupted(path: Path, text: str, *args, **kwargs) -> int:  # type: ignore[no-untyped-def]
        if "report.md" in path.name:  # half of it reaches the disk, then Ctrl-C
            write_text(path, text[: len(text) // 2], *args, **kwargs)
            raise KeyboardInterrupt
        return write_text(path, text, *args, **kwargs)

    monkeypatch.setattr(Path, "write_text", interrupted)
    with pytest.raises(KeyboardInterrupt):
        rig.report.write_all(report, run_dir)
    assert (run_dir / "report.md").read_text() == before
    assert json.loads((run_dir / "report.json").read_text())["exit_code"] == report.exit_code
    assert [p.name for p in run_dir.iterdir() if p.name.endswith(".tmp")] == []


def test_a_long_also_list_names_the_first_few_and_counts_the_rest() -> None:
    from rig.report.model import ALSO_SHOWN, also_text

    names = [f"vgem_basic@case-{i}" for i in range(43)]
    assert also_text(names) == ", ".join(names[:ALSO_SHOWN]) + f" and {43 - ALSO_SHOWN} more"
    # never "and 1 more": one more name costs no more than saying so
    assert also_text(names[:ALSO_SHOWN + 1]) == ", ".join(names[:ALSO_SHOWN + 1])
    assert also_text([]) == ""
