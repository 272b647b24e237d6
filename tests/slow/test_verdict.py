"""What did my series break, for real, kept lean for CI (five guest runs of a two-test
plan without pressure): the 3-patch series against its base kernel with `--bisect`
names the patch of each finding in every report format; then a second series on the
same base runs only its own side, the base runs coming from rig's cache."""

from __future__ import annotations

import fnmatch
import tomllib
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.slow.test_run import rig_run

REPO = Path(__file__).resolve().parent.parent.parent
SERIES = REPO / "tests" / "data" / "series"
PLAN = REPO / "tests" / "data" / "plans" / "verdict.toml"


@pytest.mark.long
def test_three_patches_bisected_then_a_second_series_reuses_the_base(guest_image, tmp_path: Path) -> None:
    out = tmp_path / "three"
    done, data = rig_run("--series", str(SERIES / "three-patches"), "--plan", str(PLAN), "--pressure", "none",
                         "--bisect", out=out)
    expected = tomllib.loads((SERIES / "three-patches" / "expected.toml").read_text())
    assert done.returncode == expected["exit_code"], done.stdout[-3000:] + done.stderr[-3000:]
    subjects = {p["number"]: p["subject"] for p in data["series"]["patches"]}
    # one run of each side, the base without the series, the same plan and machine
    sides = [(a["side"], a["kernel"], a["scope"]) for a in data["attempts"]]
    # the base ran here, or an earlier session on this machine ran it and rig's cache kept it
    base_was_cached = sides[0] == ("base", "base (cached)", None)
    assert base_was_cached or sides[0] == ("base", None, None), sides
    assert ("series", None, None) in sides
    first_base_note = data["verdict"]["base_note"]
    assert data["verdict"]["runs"] == {"series": 1, "base": 1}
    markdown = (out / "report.md").read_text()
    junit = ET.parse(out / "junit.xml").getroot()
    page = (out / "report.html").read_text()
    first_lines = done.stdout.splitlines()[:6]
    for want in expected["finding"]:
        finding = next(f for f in data["findings"] if f["title"] == want["title"])
        assert (finding["kind"], finding["status"]) == (want["kind"], "new")
        assert fnmatch.fnmatchcase(finding["test"], want.get("test_pattern", want["test"])), finding["test"]
        assert finding["seen"] == {"series": [1, 1], "base": [0, 1]}
        index = want["first_bad_patch"]
        assert finding["first_bad_patch"]["index"] == index and finding["first_bad_patch"]["subject"] == subjects[index]
        # every format names the patch with its subject
        assert f"## [PATCH {index}/3] {subjects[index]}" in markdown
        case = next(c for c in junit.iter("testcase") if c.get("name") == want["title"])
        assert f"first bad patch: {index} '{subjects[index]}'" in case.find("failure").text
        assert f"first bad patch: {index} {subjects[index]}" in page
        assert any(line.startswith(f"patch {index}/3 ") for line in first_lines), first_lines
    # bisection ran only the findings' tests, on prefixes of the series: each seen once,
    # so a clean prefix is probed up to 3 times before it is called clean (two steps)
    bisect = [a for a in data["attempts"] if a["side"] == "bisect"]
    assert 2 <= len(bisect) <= 6 and all(a["scope"] for a in bisect)
    assert {a["kernel"] for a in bisect} == {"patch 1", "patches 1-2"}

    # a second series on the same base: only the series side runs
    again = tmp_path / "lockdep"
    done, data = rig_run("--series", str(SERIES / "lockdep"), "--plan", str(PLAN), "--pressure", "none", out=again)
    assert done.returncode == 1, done.stdout[-3000:] + done.stderr[-3000:]
    note = data["verdict"]["base_note"]
    assert "reused from rig's cache" in note
    # the runs the first series' base made (or found) are the ones reused
    assert note == first_base_note if base_was_cached else str(out / "base") in note
    assert [a["kernel"] for a in data["attempts"] if a["side"] == "base"] == ["base (cached)"]
    assert not (again / "base" / "attempt-1").exists()  # no guest ran the base kernel
    deadlock = next(f for f in data["findings"] if f["kind"] == "lockdep")
    assert deadlock["status"] == "new" and deadlock["seen"] == {"series": [1, 1], "base": [0, 1]}
