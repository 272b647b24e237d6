"""The verdict over many runs, with guests faked at the attempt seam (rig.attempt.run_attempt)
and builds at the build seam (resolve, build_prefix): which kernel runs when, how each
finding and failure is counted per side, the base runs' cache, settling and bisection."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import pytest
from rich.console import Console

from rig import collect
from rig.attempt import AttemptPlan, AttemptResult
from rig.build import BuildRequest
from rig.guest_spec import GuestSpec
from rig.known import load_known
from rig.pipeline import Run, RunSpec
from rig.plan import parse_plan
from rig.report import junit, markdown, terminal
from rig.report.model import RunReport
from rig.results import TestResult
from rig.series import PatchInfo
from rig.workloads.pressure import parse_pressure

PLAN = parse_plan("""
description = "three tests"
[[igt.group]]
driver = "vgem"
tests = ["vgem_basic@dmabuf-fence", "vgem_basic@mmap"]
[[igt.group]]
driver = "virtio_gpu"
tests = ["dumb_buffer@create-valid-dumb"]
""", name="three", source="three.toml")

SUBJECTS = ("drm/shmem-helper: drop a duplicate include", "drm/shmem-helper: factor out the sg table teardown",
            "drm/vgem: drop signalled fences")


@dataclass
class Bug:
    """A WARNING in `function` during `test`, on every kernel with at least `first` patches
    (0: the base too), in the runs `shows` says (by the how-many-th run of that kernel)."""

    test: str
    function: str
    first: int
    shows: Callable[[int], bool] = lambda nth: True
    base_only: bool = False
    fails_test: bool = False  # the test fails instead of warning
    warns_test: bool = False  # the test passes with a kernel warning in dmesg (IGT's dmesg-warn), no report


def _report_lines(pid: int, binary: str, subtest: str, function: str | None) -> list[str]:
    lines = [f"[IGT] {binary}: executing", f"[IGT] {binary}: starting subtest {subtest}"]
    if function:
        lines += ["------------[ cut here ]------------",
                  f"WARNING: CPU: 0 PID: {pid} at drivers/gpu/drm/x.c:10 {function}+0x10/0x20",
                  "Modules linked in:", f"CPU: 0 PID: {pid} Comm: {binary} Not tainted 6.1.176 #1",
                  f"RIP: 0010:{function}+0x10/0x20", "Call Trace:", " <TASK>", " drm_ioctl+0x1/0x2", " </TASK>",
                  "---[ end trace 0000000000000000 ]---"]
    return lines + [f"[IGT] {binary}: finished subtest {subtest}, SUCCESS", f"[IGT] {binary}: exiting, ret=0"]


@dataclass
class World:
    """Guests that show these bugs; every attempt is logged as (kernel, tests run)."""

    bugs: list[Bug]
    calls: list[tuple[str, tuple[str, ...]]] = field(default_factory=list)
    per_kernel: dict[str, int] = field(default_factory=dict)

    def attempt(self, number: int, what: AttemptPlan, directory: Path, **_: object) -> AttemptResult:
        kernel = what.kernel.name  # "k0" .. "k3"
        k = int(kernel[1:])
        tests = tuple(t for group in what.plan.igt for t in group.tests)
        self.calls.append((kernel, tests))
        nth = self.per_kernel[kernel] = self.per_kernel.get(kernel, 0) + 1
        console: list[str] = []
        results = []
        for pid, test in enumerate(tests, 100):
            binary, subtest = test.split("@")
            bug = next((b for b in self.bugs if b.test == test and (k == 0 if b.base_only else k >= b.first)
                        and b.shows(nth)), None)
            console += [f"[{20 + pid + i * 0.001:12.6f}][  T{pid}] {line}" for i, line in enumerate(
                _report_lines(pid, binary, subtest,
                              bug.function if bug and not (bug.fails_test or bug.warns_test) else None))]
            failing = bug is not None and bug.fails_test
            status = "fail" if failing else "warn" if bug is not None and bug.warns_test else "pass"
            results.append(TestResult(test, "igt", status, "dmesg-warn" if status == "warn" else status, 0.1,
                                      "vgem" if binary == "vgem_basic" else "virtio_gpu",
                                      f"{bug.function}: vblank timer overrun" if status == "warn" else ""))
        (directory / "vm").mkdir(parents=True, exist_ok=True)
        (directory / "vm" / "console.log").write_text("\n".join(console) + "\n")
        collected = collect.after_guest(None, directory / "collect", directory / "vm" / "console.log", None)
        return AttemptResult(number, directory, tuple(results), None, collected, "tcg", {"boot": 1.0}, None)


def _patches(n: int) -> tuple[PatchInfo, ...]:
    return tuple(PatchInfo(i, SUBJECTS[i - 1], "A U Thor <a@example.org>", Path(f"{i}.patch"), f"digest{i}")
                 for i in range(1, n + 1))


def _run(tmp_path: Path, monkeypatch, world: World, *, name: str = "run", patches: int = 3, plan=PLAN,
         **spec: object) -> tuple[RunReport, Run]:
    import rig.pipeline

    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path / "cache"))
    resolved = SimpleNamespace(patches=_patches(patches))
    built: list[int] = []

    def build_prefix(resolved_: object, k: int, out: Path, **_: object) -> SimpleNamespace:
        built.append(k)
        return SimpleNamespace(kernel_image=Path(f"/kernels/k{k}"), cache_key=f"build-{k}", cache_hit=True,
                               kernel_release="6.1.176", base_commit="54cdf296c40b", patches=resolved.patches[:k],
                               sandbox_denials=())

    monkeypatch.setattr(rig.pipeline, "resolve", lambda *a, **kw: resolved)
    monkeypatch.setattr(rig.pipeline, "build_prefix", build_prefix)
    monkeypatch.setattr(rig.pipeline, "ensure_image", lambda *a, **kw: SimpleNamespace(recipe_hash="image-1"))
    monkeypatch.setattr(rig.pipeline, "run_attempt", world.attempt)
    run_spec = RunSpec(request=BuildRequest("debian:6.1", series="series/"), plan=plan,
                       pressure=parse_pressure("none", 2048), guest=GuestSpec(), command="rig run --series series/",
                       **spec)  # type: ignore[arg-type]
    run_dir = tmp_path / name
    run_dir.mkdir()
    run = Run(run_spec, run_dir)
    run.built = built  # type: ignore[attr-defined]
    return run.run(), run


DEADLOCK = Bug("vgem_basic@dmabuf-fence", "vgem_fence_signal_ioctl", 3)
LEAK = Bug("dumb_buffer@create-valid-dumb", "drm_gem_shmem_free", 2)


def _finding(data: dict, function: str) -> dict:
    return next(f for f in data["findings"] if f["title"] == f"WARNING in {function}")


def test_base_and_series_runs_interleave_and_each_finding_is_counted_per_side(tmp_path: Path, monkeypatch) -> None:
    world = World([DEADLOCK])
    report, run = _run(tmp_path, monkeypatch, world, repeat=3)
    assert [kernel for kernel, _ in world.calls] == ["k0", "k3"] * 3  # B S B S B S
    assert all(tests == world.calls[0][1] for _, tests in world.calls)  # the same plan on both sides
    assert report.exit_code == 1
    data = json.loads((run.run_dir / "report.json").read_text())
    finding = _finding(data, "vgem_fence_signal_ioctl")
    assert finding["status"] == "new" and finding["intermittent"] is False
    assert finding["seen"] == {"series": [3, 3], "base": [0, 3]} and finding["first_bad_patch"] is None
    assert data["verdict"]["runs"] == {"series": 3, "base": 3}
    assert [a["side"] for a in data["attempts"]].count("base") == 3
    assert {t["name"]: t["status"] for t in data["tests"]}["vgem_basic@mmap"] == "ok"
    assert {t["name"]: t["result"] for t in data["tests"]}["vgem_basic@mmap"] == "pass"


def test_pre_existing_fixed_and_intermittent(tmp_path: Path, monkeypatch) -> None:
    world = World([Bug("vgem_basic@mmap", "drm_gem_shmem_mmap", 0),  # both kernels
                   Bug("dumb_buffer@create-valid-dumb", "virtio_gpu_cleanup", 0, base_only=True),
                   Bug("vgem_basic@dmabuf-fence", "vgem_fence_signal_ioctl", 3, shows=lambda nth: nth != 2)])
    report, run = _run(tmp_path, monkeypatch, world, repeat=3)
    data = json.loads((run.run_dir / "report.json").read_text())
    both, fixed, flaky = (_finding(data, f) for f in ("drm_gem_shmem_mmap", "virtio_gpu_cleanup",
                                                       "vgem_fence_signal_ioctl"))
    assert (both["status"], both["seen"]) == ("pre-existing", {"series": [3, 3], "base": [3, 3]})
    assert (fixed["status"], fixed["seen"]) == ("fixed", {"series": [0, 3], "base": [3, 3]})
    assert (flaky["status"], flaky["intermittent"], flaky["seen"]) == ("new", True, {"series": [2, 3], "base": [0, 3]})
    assert report.exit_code == 1 and "1 new finding, 1 pre-existing, 1 fixed" in report.decision.summary
    console = Console(record=True, width=200, color_system=None)
    terminal.render(report, console)
    first = console.export_text().splitlines()[0]
    # a base as prone to it as the series would have shown it in 1 - (1/3)^3 = 96.3% of its triples of runs
    assert first == ("the series introduced: WARNING in vgem_fence_signal_ioctl "
                     "(2/3 runs; base 0/3, intermittent; new with 96% confidence)")
    assert flaky["confidence"] == 0.963 and both["confidence"] is None


def test_a_second_series_on_the_same_base_reuses_the_base_runs(tmp_path: Path, monkeypatch) -> None:
    first = World([DEADLOCK])
    _run(tmp_path, monkeypatch, first, name="one", repeat=2)
    again = World([DEADLOCK])
    report, run = _run(tmp_path, monkeypatch, again, name="two", repeat=2)
    assert [kernel for kernel, _ in again.calls] == ["k3", "k3"]  # the series side only
    assert "reused from rig's cache" in report.verdict.base_note and str(tmp_path / "one" / "base") in \
        report.verdict.base_note
    data = json.loads((run.run_dir / "report.json").read_text())
    assert _finding(data, "vgem_fence_signal_ioctl")["seen"] == {"series": [2, 2], "base": [0, 2]}
    # another repeat count, plan or machine is another key: the base runs again
    other = World([DEADLOCK])
    _run(tmp_path, monkeypatch, other, name="three", repeat=3)
    assert [kernel for kernel, _ in other.calls].count("k0") == 3
    smaller = World([DEADLOCK])
    from rig.narrow import narrow
    _run(tmp_path, monkeypatch, smaller, name="four", repeat=2, plan=narrow(PLAN, ["vgem_basic@dmabuf-fence"]))
    assert [kernel for kernel, _ in smaller.calls].count("k0") == 2


def test_bisection_names_each_first_bad_patch_with_targeted_runs_only(tmp_path: Path, monkeypatch) -> None:
    world = World([LEAK, DEADLOCK])
    report, run = _run(tmp_path, monkeypatch, world, repeat=2, bisect=True)
    data = json.loads((run.run_dir / "report.json").read_text())
    leak, deadlock = _finding(data, "drm_gem_shmem_free"), _finding(data, "vgem_fence_signal_ioctl")
    # seen 2/2, so taken to show in 3 of 4 runs (Laplace): a clean prefix is probed 3 times
    # (a miss of all three 1.6% likely), the steps stop at the first run that shows it;
    # the leak shows in the first run of k2, so of k2's three runs only that one was its
    assert leak["first_bad_patch"] == {"index": 2, "subject": SUBJECTS[1], "confidence": 0.984, "runs": 4}
    assert deadlock["first_bad_patch"]["runs"] == 6
    assert deadlock["first_bad_patch"]["index"] == 3 and deadlock["first_bad_patch"]["subject"] == SUBJECTS[2]
    probes = world.calls[4:]
    # the two searches share their probes: ceil(log2(3)) = 2 steps, each of the two tests only
    both = ("vgem_basic@dmabuf-fence", "dumb_buffer@create-valid-dumb")
    assert probes == [("k1", both)] * 3 + [("k2", both)] * 3
    assert sorted(set(run.built)) == [0, 1, 2, 3]  # type: ignore[attr-defined]
    # every format names the patch
    console = Console(record=True, width=200, color_system=None)
    terminal.render(report, console)
    lines = console.export_text().splitlines()
    assert lines[0] == (f"patch 2/3 '{SUBJECTS[1]}' introduced: WARNING in drm_gem_shmem_free (2/2 runs; base 0/2; "
                        "bisected with 98% confidence)")
    assert lines[1].startswith(f"patch 3/3 '{SUBJECTS[2]}' introduced: WARNING in vgem_fence_signal_ioctl")
    text = markdown.render(report)
    assert text.index(f"## [PATCH 2/3] {SUBJECTS[1]}") < text.index("### 1. WARNING in drm_gem_shmem_free") < \
        text.index(f"## [PATCH 3/3] {SUBJECTS[2]}") < text.index("### 2. WARNING in vgem_fence_signal_ioctl")
    root = ET.fromstring(junit.render(report))
    failure = next(c for c in root.iter("testcase") if c.get("name") == "WARNING in drm_gem_shmem_free")
    assert f"first bad patch: 2 '{SUBJECTS[1]}'" in failure.find("failure").text
    assert "2/2 runs; base 0/2" in (run.run_dir / "report.html").read_text()
    assert [f.first_bad_patch.index for f in RunReport.from_json(data).verdict.findings] == [3, 2]


def test_an_intermittent_finding_is_probed_for_its_rate_and_answered_with_a_confidence(tmp_path: Path,
                                                                                        monkeypatch) -> None:
    world = World([Bug("dumb_buffer@create-valid-dumb", "drm_gem_shmem_free", 2, shows=lambda nth: nth % 2 == 1)])
    _, run = _run(tmp_path, monkeypatch, world, repeat=4, bisect=True)
    bad = _finding(json.loads((run.run_dir / "report.json").read_text()), "drm_gem_shmem_free")
    assert bad["seen"]["series"] == [2, 4] and bad["intermittent"]
    assert bad["first_bad_patch"]["index"] == 2
    assert 0.8 < bad["first_bad_patch"]["confidence"] < 1.0  # the clean probe of patch 1 may have missed it
    assert [k for k, _ in world.calls[8:]].count("k1") == 4  # ceil(log 0.05 / log 0.5) = 5, at most --repeat


def test_a_one_patch_series_needs_no_search(tmp_path: Path, monkeypatch) -> None:
    world = World([Bug("vgem_basic@dmabuf-fence", "vgem_fence_signal_ioctl", 1)])
    report, _ = _run(tmp_path, monkeypatch, world, patches=1, bisect=True)
    assert [k for k, _ in world.calls] == ["k0", "k1"]
    assert report.verdict.new_findings[0].first_bad_patch.index == 1


def test_a_new_test_failure_is_bisected_too(tmp_path: Path, monkeypatch) -> None:
    world = World([Bug("vgem_basic@mmap", "", 2, fails_test=True)])
    report, run = _run(tmp_path, monkeypatch, world, bisect=True)
    data = json.loads((run.run_dir / "report.json").read_text())
    mmap = next(t for t in data["tests"] if t["name"] == "vgem_basic@mmap")
    assert (mmap["status"], mmap["result"], mmap["seen"]) == ("new", "fail", {"series": [1, 1], "base": [0, 1]})
    assert mmap["first_bad_patch"]["index"] == 2 and data["verdict"]["unexpected_failures"] == ["vgem_basic@mmap"]
    assert all(tests == ("vgem_basic@mmap",) for _, tests in world.calls[2:])


def test_settling_runs_only_the_tests_of_intermittent_findings(tmp_path: Path, monkeypatch) -> None:
    world = World([Bug("vgem_basic@dmabuf-fence", "vgem_fence_signal_ioctl", 3, shows=lambda nth: nth == 1)])
    _, run = _run(tmp_path, monkeypatch, world, repeat=2, max_repeat=4)
    assert world.calls[4:] == [(k, ("vgem_basic@dmabuf-fence",)) for k in ("k0", "k3", "k0", "k3")]
    data = json.loads((run.run_dir / "report.json").read_text())
    finding = _finding(data, "vgem_fence_signal_ioctl")
    assert finding["seen"] == {"series": [1, 4], "base": [0, 4]} and finding["status"] == "new"
    assert finding["confidence"] == round(1 - 0.75 ** 4, 3)  # never settled: the report says how sure it is
    note = data["verdict"]["settle_note"]
    assert note.startswith("2 targeted run(s) a side of vgem_basic@dmabuf-fence only after 2 whole-plan run(s), "
                           "stopped at --max-repeat 4: WARNING in vgem_fence_signal_ioctl: new, 1/4 runs; base 0/4, "
                           "intermittent; new with 68% confidence (after the whole-plan runs: 1/2 runs; base 0/2, "
                           "intermittent; new with 75% confidence)"), note


def test_settling_stops_once_the_series_is_to_blame_with_95_percent_confidence(tmp_path: Path, monkeypatch) -> None:
    # seen in the odd runs with the series: 1/2 after the whole plan (75% sure: a base as
    # prone to it shows it in 3 of 4 pairs of runs), 2/3 after one targeted pair (96%)
    world = World([Bug("vgem_basic@dmabuf-fence", "vgem_fence_signal_ioctl", 3, shows=lambda nth: nth % 2 == 1)])
    report, run = _run(tmp_path, monkeypatch, world, repeat=2, max_repeat=8)
    assert world.calls[4:] == [("k0", ("vgem_basic@dmabuf-fence",)), ("k3", ("vgem_basic@dmabuf-fence",))]
    data = json.loads((run.run_dir / "report.json").read_text())
    finding = _finding(data, "vgem_fence_signal_ioctl")
    assert (finding["seen"], finding["confidence"]) == ({"series": [2, 3], "base": [0, 3]}, 0.963)
    assert "1 targeted run(s) a side" in data["verdict"]["settle_note"]
    assert ", settled: WARNING in vgem_fence_signal_ioctl: new" in data["verdict"]["settle_note"]
    assert f"settling runs: {data['verdict']['settle_note']}" in markdown.render(report)
    assert report.costs["settle_runs"] >= 0


def test_settling_stops_when_the_base_shows_it_too(tmp_path: Path, monkeypatch) -> None:
    world = World([Bug("vgem_basic@dmabuf-fence", "vgem_fence_signal_ioctl", 3, shows=lambda nth: nth == 1),
                   Bug("vgem_basic@dmabuf-fence", "vgem_fence_signal_ioctl", 0, shows=lambda nth: nth == 3,
                       base_only=True)])
    report, run = _run(tmp_path, monkeypatch, world, repeat=2, max_repeat=8)
    assert [k for k, _ in world.calls[4:]] == ["k0", "k3"]  # the base's first targeted run showed it
    data = json.loads((run.run_dir / "report.json").read_text())
    finding = _finding(data, "vgem_fence_signal_ioctl")
    assert (finding["status"], finding["seen"], finding["confidence"]) == (
        "pre-existing", {"series": [1, 3], "base": [1, 3]}, None)
    assert "settled: WARNING in vgem_fence_signal_ioctl: pre-existing" in data["verdict"]["settle_note"]
    assert report.exit_code == 0


def test_a_finding_seen_in_most_runs_needs_no_settling(tmp_path: Path, monkeypatch) -> None:
    world = World([Bug("vgem_basic@dmabuf-fence", "vgem_fence_signal_ioctl", 3, shows=lambda nth: nth != 2)])
    report, run = _run(tmp_path, monkeypatch, world, repeat=4, max_repeat=8)
    assert len(world.calls) == 8  # 3/4 against 0/4: 1 - (1/4)^4 = 99.6%, settled by the whole-plan runs
    assert report.verdict.settle_note == ""


def test_a_warning_both_kernels_print_is_blamed_on_neither(tmp_path: Path, monkeypatch) -> None:
    world = World([Bug("dumb_buffer@create-valid-dumb", "vkms_vblank_simulate", 0, shows=lambda nth: nth != 2,
                       warns_test=True),  # both kernels, 2 runs in 3
                   Bug("vgem_basic@mmap", "vgem_gem_mmap", 3, shows=lambda nth: nth == 1, warns_test=True)])
    report, run = _run(tmp_path, monkeypatch, world, repeat=3)
    assert report.exit_code == 0, report.decision.summary  # a warning fails no run
    tests = {t["name"]: t for t in json.loads((run.run_dir / "report.json").read_text())["tests"]}
    both, mine = tests["dumb_buffer@create-valid-dumb"], tests["vgem_basic@mmap"]
    assert (both["status"], both["result"]) == ("ok", "warn")
    assert both["warned"] == {"series": [2, 3], "base": [2, 3]} and both["seen"] == {"series": [0, 3], "base": [0, 3]}
    assert "the base kernel warns too, not the series' doing" in both["note"]
    assert mine["warned"] == {"series": [1, 3], "base": [0, 3]} and "with the series only" in mine["note"]
    assert tests["vgem_basic@dmabuf-fence"]["warned"] is None
    console = Console(record=True, width=200, color_system=None)
    terminal.render(report, console)
    text = console.export_text()
    assert "1 of them warned on the base kernel too: not the series' doing" in text
    assert "- dumb_buffer@create-valid-dumb (virtio_gpu): vkms_vblank_simulate: vblank timer overrun " \
           "(warned in 2/3 runs; base 2/3: the base kernel warns too, not the series' doing)" in markdown.render(report)
    again = RunReport.from_json(json.loads((run.run_dir / "report.json").read_text()))
    assert next(t for t in again.verdict.judged_tests if t.name == "vgem_basic@mmap").warned_base.to_json() == [0, 3]


def test_no_base_runs_the_series_alone(tmp_path: Path, monkeypatch) -> None:
    world = World([DEADLOCK])
    report, run = _run(tmp_path, monkeypatch, world, repeat=2, base=False)
    assert [k for k, _ in world.calls] == ["k3", "k3"]
    data = json.loads((run.run_dir / "report.json").read_text())
    assert _finding(data, "vgem_fence_signal_ioctl")["seen"] == {"series": [2, 2], "base": None}


def test_known_lists_turn_failures_and_findings_into_known(tmp_path: Path, monkeypatch) -> None:
    lists = tmp_path / "lists"
    lists.mkdir()
    (lists / "virtio_gpu-none-fails.txt").write_text("# known on rig's 2D virtio-gpu\nvgem_basic@mmap,Fail\n"
                                                      "dumb_buffer@create-valid-dumb,Fail\n")
    (lists / "virtio_gpu-none-flakes.txt").write_text("vgem_basic@dmabuf.*\n")
    (lists / "known.toml").write_text('[[finding]]\ntitle = "WARNING in drm_gem_shmem_free"\n'
                                      'reason = "seen on every kernel"\nlink = "https://example.org/1"\n')
    known = load_known(sorted(lists.iterdir()))
    world = World([Bug("vgem_basic@mmap", "", 2, fails_test=True), Bug("vgem_basic@dmabuf-fence", "", 3,
                                                                       fails_test=True),
                   Bug("dumb_buffer@create-valid-dumb", "drm_gem_shmem_free", 1)])
    report, run = _run(tmp_path, monkeypatch, world, known=known)
    assert report.exit_code == 0, report.decision.summary
    data = json.loads((run.run_dir / "report.json").read_text())
    tests = {t["name"]: t for t in data["tests"]}
    assert tests["vgem_basic@mmap"]["status"] == "known" and "fails.txt:2 as Fail" in tests["vgem_basic@mmap"]["note"]
    assert tests["vgem_basic@dmabuf-fence"]["status"] == "known"  # a flake
    assert tests["dumb_buffer@create-valid-dumb"]["status"] == "fixed"
    assert "drop it from the list" in tests["dumb_buffer@create-valid-dumb"]["note"]
    leak = _finding(data, "drm_gem_shmem_free")
    assert leak["status"] == "known" and leak["link"] == "https://example.org/1"
    root = ET.fromstring(junit.render(report))
    case = next(c for c in root.iter("testcase") if c.get("name") == "vgem_basic@mmap")
    assert case.find("skipped") is not None and case.find("failure") is None


@pytest.mark.parametrize("name,text,needle", [
    ("x-fails.txt", "kms_addfb_basic@too-high\n", "is not 'test@subtest,Status'"),
    ("x-fails.txt", "kms_addfb_basic@too-high,Flaky\n", "Status one of Fail, Crash, Timeout"),
    ("x-skips.txt", "kms_(\n", "not a regular expression"),
    ("known.toml", '[[finding]]\nreason = "r"\n', "give a title or a signature"),
    ("known.toml", '[[finding]]\ntitle = "t"\n', "give a reason"),
    ("notes.txt", "x\n", "not a known-issues file"),
])
def test_bad_known_issue_files_are_named_line_by_line(tmp_path: Path, name: str, text: str, needle: str) -> None:
    from rig.errors import UserError

    (tmp_path / name).write_text(text)
    with pytest.raises(UserError, match="cannot read the known issues") as info:
        load_known([tmp_path / name])
    assert needle in info.value.message and name in info.value.message


def test_skips_are_dropped_from_the_expanded_plan() -> None:
    from rig.narrow import without_skipped

    known = load_known([])
    assert not known
    available = {"vgem_basic": ["dmabuf-fence", "mmap", "unload"], "dumb_buffer": ["create-valid-dumb"]}

    def skipped(name: str) -> str | None:
        return "skips unload" if name.endswith("@unload") else None

    plan, dropped = without_skipped(PLAN, available, skipped)
    assert [g.tests for g in plan.igt] == [("vgem_basic@dmabuf-fence", "vgem_basic@mmap"),
                                           ("dumb_buffer@create-valid-dumb",)]
    assert dropped == []
    wide = parse_plan('[[igt.group]]\ndriver = "vgem"\ntests = ["vgem_basic@*", "nope@x"]\n', name="w", source="w")
    plan, dropped = without_skipped(wide, available, skipped)
    assert plan.igt[0].tests == ("nope@x", "vgem_basic@dmabuf-fence", "vgem_basic@mmap")  # nope: the workload says
    assert dropped == [("vgem_basic@unload", "vgem", "skips unload")]


def test_run_options_for_the_verdict() -> None:
    from rig.cli import build_parser
    from rig.commands.run import spec_from_args
    from rig.errors import UserError

    def args(*argv: str):
        return build_parser().parse_args(["run", *argv])

    spec = spec_from_args(args("--series", "tests/data/series/three-patches", "--repeat", "3", "--bisect"))
    assert spec.repeat == 3 and spec.bisect and spec.base and spec.compares_base
    assert not spec_from_args(args("--series", "tests/data/series/lockdep", "--no-base")).compares_base
    with pytest.raises(UserError) as info:
        spec_from_args(args("--repeat", "0", "--bisect", "--max-repeat", "2"))
    for needle in ("--repeat 0", "--bisect needs --series", "--max-repeat"):
        assert needle in info.value.message
