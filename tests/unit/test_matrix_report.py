"""The matrix reports from finished cells (a real run's report.json for the failing cells),
KCIDB validation with kcidb-io's schema, and the GitLab export."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from rig.matrix import cells as cells_mod
from rig.matrix import gitlab, report
from rig.matrix import spec as spec_mod
from rig.matrix.jobs import BuildJob, GuestJob, Job, JobOutcome
from rig.matrix.runner import MatrixRun, Status
from tests.unit.matrixfake import FakeLauncher
from tests.unit.rundata import report_data

REPO = Path(__file__).resolve().parent.parent.parent

THREE_KERNELS = """
[axes]
kernel = ["debian:6.1", "debian:6.12", "debian:7.2"]
gpu = ["virtio-gpu", "bochs"]
series = ["tests/data/series/kmemleak"]
[settings]
plan = "smoke"
compare_base = false
[[exclude]]
kernel = "debian:7.2"
gpu = "bochs"
"""


def run_matrix(tmp_path: Path, monkeypatch, text: str = THREE_KERNELS) -> tuple[Path, list[report.CellRecord]]:
    """The matrix through the fake launcher: the leak on 6.1 and 6.12, 7.2 does not take the series."""
    (tmp_path / "real").mkdir()
    _, run_dir = report_data(tmp_path / "real", monkeypatch)
    fail_report = json.loads((run_dir / "report.json").read_text())

    def script(job: Job) -> tuple[int, JobOutcome]:
        if isinstance(job, BuildJob) and job.kernel == "debian:7.2":
            return 1, JobOutcome(2, 'patch 1 "drm/shmem-helper: ..." does not apply; git am said:\n    error: '
                                    "patch failed: drivers/gpu/drm/drm_gem_shmem_helper.c:42", not_applicable=True)
        if isinstance(job, GuestJob):
            return 2, JobOutcome(1, "FAIL: 1 new finding")
        return 1, JobOutcome(0)

    parsed = spec_mod.parse(text, REPO / "matrix.toml")
    out = tmp_path / "matrix"
    cells = cells_mod.expand(parsed)
    MatrixRun(parsed, cells, out, FakeLauncher(script, fail_report=fail_report), poll_s=0).run()
    records = report.gather([out], order=[c.id for c in cells])
    report.write_all(records, out)
    return out, records


def test_matrix_json_holds_each_cell_and_findings_across_cells(tmp_path: Path, monkeypatch) -> None:
    out, records = run_matrix(tmp_path, monkeypatch)
    data = json.loads((out / "matrix.json").read_text())
    by_id = {c["id"]: c for c in data["cells"]}
    assert set(by_id) == {"6.1_virtio-gpu", "6.1_bochs", "6.12_virtio-gpu", "6.12_bochs", "7.2_virtio-gpu"}
    assert by_id["6.1_bochs"]["status"] == "fail" and by_id["6.1_bochs"]["exit_code"] == 1
    assert by_id["6.1_bochs"]["axes"]["gpu"] == "bochs" and by_id["6.1_bochs"]["run_dir"] == "cells/6.1_bochs"
    assert by_id["6.1_bochs"]["findings"][0]["title"] == "memory leak in drm_prime_pages_to_sg"
    assert by_id["7.2_virtio-gpu"]["status"] == "not-applicable"
    assert "does not apply" in by_id["7.2_virtio-gpu"]["summary"]
    assert data["exit_code"] == 1 and data["counts"] == {"fail": 4, "not-applicable": 1}
    leak = next(f for f in data["findings"] if f["title"] == "memory leak in drm_prime_pages_to_sg")
    assert set(leak["cells"]) == {"6.1_bochs", "6.1_virtio-gpu", "6.12_bochs", "6.12_virtio-gpu"}
    assert leak["where"] == "6.1/virtio-gpu, 6.1/bochs, 6.12/virtio-gpu, 6.12/bochs"


def test_where_names_the_axis_value_it_was_not_seen_on(tmp_path: Path, monkeypatch) -> None:
    _, records = run_matrix(tmp_path, monkeypatch)
    # the leak gone from 6.12's cells (as if 6.12 had fixed it)
    changed = [report.CellRecord(r.result, r.run_dir, {**r.report, "findings": []})
               if r.result.axes["kernel"] == "debian:6.12" and r.report else r for r in records]
    group = next(g for g in report.group_findings(changed) if g.kind == "kmemleak")
    assert report.where_line(group, changed) == "6.1/virtio-gpu, 6.1/bochs; not on 6.12"


def test_markdown_html_and_junit(tmp_path: Path, monkeypatch) -> None:
    out, _ = run_matrix(tmp_path, monkeypatch)
    md = (out / "matrix.md").read_text()
    assert "| 6.1/bochs | fail |" in md and "memory leak in drm_prime_pages_to_sg" in md
    assert "## Not applicable" in md and "7.2/virtio-gpu: patch 1" in md
    page = (out / "matrix.html").read_text()
    assert page.count('class="cell"') == 5 and 'class="none">excluded' in page
    assert 'href="cells/6.1_bochs/report.html"' in page
    root = ET.fromstring((out / "junit.xml").read_text())
    suites = {s.get("name"): s for s in root.iter("testsuite")}
    assert set(suites) == {"6.1_virtio-gpu", "6.1_bochs", "6.12_virtio-gpu", "6.12_bochs", "7.2_virtio-gpu"}
    assert suites["7.2_virtio-gpu"].get("skipped") == "1"
    assert int(suites["6.1_bochs"].get("failures")) >= 1
    assert any(c.find("failure") is not None and c.get("name") == "memory leak in drm_prime_pages_to_sg"
               for c in suites["6.1_bochs"].iter("testcase"))


def test_kcidb_json_validates_against_the_kcidb_schema(tmp_path: Path, monkeypatch) -> None:
    kcidb_io = pytest.importorskip("kcidb_io")
    out, _ = run_matrix(tmp_path, monkeypatch)
    data = json.loads((out / "kcidb.json").read_text())
    kcidb_io.schema.V5_3.validate(data)  # raises on any violation
    assert data["version"]["major"] == 5
    assert all(obj["id"].startswith("rig:") for key in ("checkouts", "builds", "tests", "issues", "incidents")
               for obj in data[key])
    paths = {t["path"] for t in data["tests"]}
    assert "rig.igt.vgem_basic.mmap" in paths and "rig" in paths
    assert not any("@" in p for p in paths)
    assert {c["valid"] for c in data["checkouts"]} == {True, False}  # 7.2 + the series does not apply
    assert len(data["issues"]) >= 1 and len(data["incidents"]) >= 4
    # and a test path with '@' would have been refused: the schema check is real
    broken = json.loads(json.dumps(data))
    broken["tests"][1]["path"] = "igt.vgem_basic@mmap"
    with pytest.raises(Exception):
        kcidb_io.schema.V5_3.validate(broken)


def test_kcidb_paths() -> None:
    assert report.kcidb_path("vgem_basic@mmap") == "igt.vgem_basic.mmap"
    assert report.kcidb_path("script:dri-clients") == "script.dri-clients"
    assert report.kcidb_path("kunit:drm_mm.drm_test_mm_init") == "kunit.drm_mm.drm_test_mm_init"
    assert report.kcidb_path("kms_addfb_basic@too-high") == "igt.kms_addfb_basic.too-high"


def test_report_merges_plain_run_directories(tmp_path: Path, monkeypatch) -> None:
    _, run_dir = report_data(tmp_path, monkeypatch)
    records = report.gather([run_dir])
    assert records[0].result.status == Status.FAIL and records[0].result.axes["gpu"] == "virtio-gpu"
    assert records[0].result.axes["series"] == "tests/data/series/kmemleak"
    with pytest.raises(Exception, match="holds no matrix cell"):
        report.gather([tmp_path / "nothing-here"])


def test_gitlab_export_has_a_build_per_kernel_a_job_per_cell_and_the_merge(tmp_path: Path) -> None:
    parsed = spec_mod.parse(THREE_KERNELS.replace("compare_base = false", "compare_base = true"),
                            REPO / "matrix.toml")
    cells = cells_mod.expand(parsed)
    options = gitlab.ExportOptions("matrix.toml", tags=("kvm",), image="debian:12",
                                   before_script=("./setup",))
    doc = gitlab.pipeline(parsed, cells, options)
    builds = [k for k in doc if k.startswith("build-")]
    assert len(builds) == 6  # 3 kernels, with and without the series
    cell_jobs = [k for k in doc if k.startswith("cell-")]
    assert len(cell_jobs) == 5
    job = doc["cell-6.1_bochs"]
    assert [n["job"] for n in job["needs"]] == [b for b in builds if b.startswith("build-6.1-")]
    assert job["artifacts"]["reports"]["junit"] == "matrix/cells/6.1_bochs/junit.xml"
    assert "--cell 6.1_bochs" in job["script"][0]
    merge = doc["matrix-report"]
    assert [n["job"] for n in merge["needs"]] == cell_jobs and merge["when"] == "always"
    assert doc["default"] == {"tags": ["kvm"], "image": "debian:12", "before_script": ["./setup"],
                              "cache": {"key": "rig", "paths": [".rig-cache/"], "when": "always"}}
    text = gitlab.export(parsed, cells, options)
    try:
        import yaml
    except ImportError:
        return
    assert yaml.safe_load(text) == doc


def test_matrix_html_renders_its_grid_in_headless_chromium(tmp_path: Path, monkeypatch) -> None:
    from tests.unit.test_report import _png_colours, screenshot

    out, _ = run_matrix(tmp_path, monkeypatch)
    shot = screenshot(out / "matrix.html", tmp_path / "matrix.png", size="900,700")
    png = shot.read_bytes()
    assert png.startswith(b"\x89PNG") and _png_colours(png) > 5  # the red and grey cells, text: not blank


def test_a_tests_end_is_read_from_either_report_schema() -> None:
    from rig.matrix.report import ended

    # schema 3: status is the verdict, result how the test ended; before it, status was that
    assert ended({"name": "a", "status": "new", "result": "fail"}) == "fail"
    assert ended({"name": "a", "status": "fail"}) == "fail"
