from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

from rig.workloads import ABSENT, FAIL, PASS, SKIP, TestResult, WorkloadContext
from rig.workloads.kunit import _READ, KunitWorkload, parse_debugfs, results_for, results_from_console
from tests.unit.guestfake import FakeVM

CONSOLE = """\
[    2.101000][    T1] KTAP version 1
[    2.101100][    T1] 1..2
[    2.102000][    T1]     KTAP version 1
[    2.102100][    T1]     # Subtest: drm_mm
[    2.102200][    T1]     1..2
[    2.150000][    T1]     ok 1 drm_test_mm_init
[    2.190000][    T1]     not ok 2 drm_test_mm_debug
[    2.190100][    T1] not ok 1 drm_mm
[    2.200000][    T1]     KTAP version 1
[    2.200100][    T1]     # Subtest: drm_buddy
[    2.200200][    T1]     1..1
[    2.250000][    T1]     ok 1 drm_test_buddy_alloc_limit # SKIP too slow
[    2.250100][    T1] ok 2 drm_buddy
"""


def test_kunit_cases_from_the_console_and_absent_suites() -> None:
    results = {r.name: r for r in results_from_console(CONSOLE, ("drm_mm", "drm_buddy", "drm_gem_shmem"))}
    assert results["kunit:drm_mm.drm_test_mm_init"].status == PASS
    assert results["kunit:drm_mm.drm_test_mm_debug"].status == FAIL
    assert results["kunit:drm_buddy.drm_test_buddy_alloc_limit"].status == SKIP
    assert results["kunit:drm_gem_shmem"].status == ABSENT  # not in a 6.1 kernel


def test_no_suites_asked_means_no_results() -> None:
    assert results_from_console(CONSOLE, ()) == []


# What 6.1's /sys/kernel/debug/kunit/<suite>/results holds: the suite's KTAP without
# timestamps, each case's log as the kernel kept it.
KEPT_DRM_MM = """\
KTAP version 1
1..1
    KTAP version 1
    # Subtest: drm_mm
    1..2
    ok 1 drm_test_mm_init
    # drm_test_mm_debug: EXPECTATION FAILED at drivers/gpu/drm/tests/drm_mm_test.c:190
    Expected mm.head_node.allocated to be false
    not ok 2 drm_test_mm_debug
not ok 1 drm_mm
"""

# A case that printed more than the kernel keeps per case (512 bytes in 6.1) lost its own
# result line: the console has it.
KEPT_DRM_BUDDY_CUT = """\
KTAP version 1
1..1
    KTAP version 1
    # Subtest: drm_buddy
    1..1
    # drm_test_buddy_alloc_limit: a long message cut sho
ok 1 drm_buddy
"""

KEPT_DRM_FORMAT = """\
KTAP version 1
1..1
    KTAP version 1
    # Subtest: drm_format
    1..1
        KTAP version 1

        # Subtest: drm_test_format_block_width
        ok 1 param-0
        not ok 2 param-1
    not ok 1 drm_test_format_block_width
not ok 1 drm_format
"""


def _listing(**suites: str) -> str:
    return "".join(f"\n@@rig-kunit-suite {name}\n{text}" for name, text in suites.items())


def test_debugfs_listing_splits_into_suites() -> None:
    kept = parse_debugfs(_listing(drm_mm=KEPT_DRM_MM, drm_buddy=KEPT_DRM_BUDDY_CUT))
    assert list(kept) == ["drm_mm", "drm_buddy"] and kept["drm_mm"] == KEPT_DRM_MM
    assert parse_debugfs("") == {}


def test_debugfs_results_win_when_complete_and_take_durations_from_the_console() -> None:
    console = CONSOLE.replace("not ok 2 drm_test_mm_debug", "ok 2 drm_test_mm_debug")  # a console line lost its "not"
    results = {r.name: r for r in results_for(("drm_mm",), {"drm_mm": KEPT_DRM_MM}, console)}
    assert results["kunit:drm_mm.drm_test_mm_debug"].status == FAIL  # the kernel's own record
    assert results["kunit:drm_mm.drm_test_mm_init"].status == PASS
    from_console = {r.name: r for r in results_from_console(CONSOLE, ("drm_mm",))}
    duration = results["kunit:drm_mm.drm_test_mm_init"].duration_s
    assert duration is not None and duration == from_console["kunit:drm_mm.drm_test_mm_init"].duration_s


def test_an_incomplete_debugfs_suite_falls_back_to_the_console() -> None:
    results = {r.name: r for r in results_for(("drm_buddy",), {"drm_buddy": KEPT_DRM_BUDDY_CUT}, CONSOLE)}
    assert results == {"kunit:drm_buddy.drm_test_buddy_alloc_limit": results["kunit:drm_buddy.drm_test_buddy_alloc_limit"]}
    assert results["kunit:drm_buddy.drm_test_buddy_alloc_limit"].status == SKIP
    assert results["kunit:drm_buddy.drm_test_buddy_alloc_limit"].detail == "too slow"


def test_a_suite_only_debugfs_has_counts_without_durations() -> None:
    results = results_for(("drm_f*", "drm_gem_shmem"), {"drm_format": KEPT_DRM_FORMAT}, "")
    assert [(r.name, r.status, r.duration_s) for r in results] == [
        ("kunit:drm_format.drm_test_format_block_width.param-0", PASS, None),
        ("kunit:drm_format.drm_test_format_block_width.param-1", FAIL, None),
        ("kunit:drm_gem_shmem", ABSENT, None),
    ]


def test_the_workload_reads_debugfs_in_one_command_and_keeps_it(tmp_path: Path) -> None:
    vm = FakeVM(lambda argv: _listing(drm_mm=KEPT_DRM_MM), console=CONSOLE)
    workload = KunitWorkload(("drm_mm", "drm_buddy", "drm_gem_shmem"))
    ctx = WorkloadContext(vm, tmp_path, t0=0.0, budget_s=500.0)  # type: ignore[arg-type]

    async def scenario() -> list[TestResult]:
        await workload.prepare(vm)  # type: ignore[arg-type]
        return await workload.run(ctx)

    results = {r.name: r for r in asyncio.run(scenario())}
    assert vm.commands == [["sh", "-c", vm.commands[0][2], "/sys/kernel/debug/kunit", "drm_mm", "drm_buddy",
                            "drm_gem_shmem"]]
    assert results["kunit:drm_mm.drm_test_mm_debug"].status == FAIL
    assert results["kunit:drm_buddy.drm_test_buddy_alloc_limit"].status == SKIP  # no debugfs entry: the console
    assert results["kunit:drm_gem_shmem"].status == ABSENT
    assert (tmp_path / "kunit" / "debugfs.txt").read_text() == _listing(drm_mm=KEPT_DRM_MM)
    assert workload.label == "KUnit"


def test_the_guest_side_reader_lists_matching_suites(tmp_path: Path) -> None:
    """_READ run by the host's sh over a directory shaped like debugfs."""
    for suite, text in (("drm_mm", KEPT_DRM_MM), ("drm_buddy", KEPT_DRM_BUDDY_CUT), ("ext4_inode", "x\n")):
        (tmp_path / suite).mkdir()
        (tmp_path / suite / "results").write_text(text)
    out = subprocess.run(["sh", "-c", _READ, str(tmp_path), "drm_*", "nothing"], capture_output=True, text=True,
                         timeout=30, check=True).stdout
    assert parse_debugfs(out) == {"drm_buddy": KEPT_DRM_BUDDY_CUT, "drm_mm": KEPT_DRM_MM}
    missing = subprocess.run(["sh", "-c", _READ, str(tmp_path / "none"), "*"], capture_output=True, text=True,
                             timeout=30, check=True)
    assert missing.stdout == ""  # a kernel without KUNIT_DEBUGFS: the console decides


# Two suites as kernel sources define them: .name right after the opening line, or a
# few lines further down; and a struct that only declares a suite array (no name).
MM_TEST_C = """static struct kunit_suite drm_mm_test_suite = {
\t.name = "drm_mm",
\t.test_cases = drm_mm_tests,
};
"""
SHMEM_TEST_C = """static struct kunit_suite drm_gem_shmem_suite = {
\t.init = drm_gem_shmem_test_init,
\t.exit = drm_gem_shmem_test_exit,
\t.name = "drm_gem_shmem",
\t.test_cases = drm_gem_shmem_test_cases
};
kunit_test_suite(drm_gem_shmem_suite);
"""


def _tree_with_suites(tmp_path: Path) -> tuple[Path, str]:
    from .test_build_fakes import fake_kernel, git

    repo = fake_kernel(tmp_path / "linux")
    tests = repo / "drivers" / "gpu" / "drm" / "tests"
    tests.mkdir(parents=True)
    (tests / "drm_mm_test.c").write_text(MM_TEST_C)
    (tests / "drm_gem_shmem_test.c").write_text(SHMEM_TEST_C)
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "tests")
    return repo, git(repo, "rev-parse", "HEAD").strip()


def test_the_suites_a_source_defines_are_found_with_git_grep(tmp_path: Path, monkeypatch) -> None:
    from rig.workloads.kunit import suites_in_source

    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path / "cache"))
    repo, commit = _tree_with_suites(tmp_path)
    found = suites_in_source(repo, commit)
    assert found == {"drm_mm": "drivers/gpu/drm/tests/drm_mm_test.c",
                     "drm_gem_shmem": "drivers/gpu/drm/tests/drm_gem_shmem_test.c"}
    assert suites_in_source(repo, "0" * 40) == {}  # git cannot look: nothing claimed


def test_absent_suites_say_not_built_or_not_in_this_kernel(tmp_path: Path, monkeypatch) -> None:
    from rig.workloads.kunit import NOT_BUILT, NOT_IN_SOURCE, explain_absent, suites_in_source

    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path / "cache"))
    repo, commit = _tree_with_suites(tmp_path)
    # a kernel without KUnit built in: the console has no KTAP at all
    rows = results_from_console("[    0.000000] Linux version 6.1.0\n", ("drm_gem_shmem", "drm_buddy", "drm_m*"))
    assert [r.raw_status for r in rows] == ["not in this kernel"] * 3
    explained = {r.name: r for r in explain_absent(rows, suites_in_source(repo, commit))}
    shmem = explained["kunit:drm_gem_shmem"]
    assert shmem.status == ABSENT and shmem.raw_status == NOT_BUILT
    assert "drivers/gpu/drm/tests/drm_gem_shmem_test.c" in shmem.detail and "--profile kunit" in shmem.detail
    assert explained["kunit:drm_m*"].raw_status == NOT_BUILT  # a pattern matches the source's suites too
    buddy = explained["kunit:drm_buddy"]
    assert buddy.status == ABSENT and buddy.raw_status == NOT_IN_SOURCE
    # no source to look in: the rows stay as they were
    assert explain_absent(rows, None) == rows


def test_a_run_of_a_built_kernel_tells_absent_suites_apart(tmp_path: Path, monkeypatch) -> None:
    from rig.build import BuildArtifacts

    from .rundata import finished_run, run_with

    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path / "cache"))
    repo, commit = _tree_with_suites(tmp_path)
    run, attempt = finished_run(tmp_path)
    built = BuildArtifacts(kernel_image=tmp_path / "bzImage", vmlinux=tmp_path / "vmlinux",
                           system_map=tmp_path / "System.map", config=tmp_path / ".config",
                           build_log=tmp_path / "build.log", kernel_release="6.1.0", cache_hit=True, patches=(),
                           source="git:" + commit, base_commit=commit, head_commit=commit, source_repo=repo)
    monkeypatch.setattr(type(run), "_kernel", lambda self: setattr(self, "artifacts", built) or built.kernel_image)
    report = run_with(run, monkeypatch, attempt)
    rows = {t.name: t.raw_status for t in report.verdict.tests if t.kind == "kunit"}
    assert rows["kunit:drm_gem_shmem"] == "in the source, not built"
    assert rows["kunit:drm_mm"] == "in the source, not built"
    assert rows["kunit:drm_buddy"] == "not in this kernel's source"
    import io

    from rich.console import Console

    from rig.report import terminal

    out = io.StringIO()
    terminal.render(report, Console(file=out, width=300, highlight=False))
    assert "kunit:drm_gem_shmem (in the source, not built)" in out.getvalue()
    assert "kunit:drm_buddy (not in this kernel's source)" in out.getvalue()
