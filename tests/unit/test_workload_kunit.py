from __future__ import annotations

from rig.workloads import ABSENT, FAIL, PASS, SKIP
from rig.workloads.kunit import results_from_console

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
