"""KUnit results (KTAP) from a console log: nesting, SKIP, parameterised cases, crashes."""

from __future__ import annotations

from pathlib import Path

from rig.splat.ktap import parse_ktap

LOG = Path(__file__).resolve().parent.parent / "data" / "splat" / "kunit-drm-6.1.log"


def _flat(run) -> list[tuple[str, str]]:  # noqa: ANN001 - a KtapRun
    return [(t.path, t.status) for t in run.leaves()]


def test_nested_suites_parameters_and_a_crash() -> None:
    run = parse_ktap(LOG.read_bytes())
    assert [(t.name, t.status) for t in run.tests] == [("drm_buddy", "fail"), ("drm_exec", "error")]
    assert _flat(run) == [
        ("drm_buddy.drm_test_buddy_alloc_limit", "pass"),
        ("drm_buddy.drm_test_buddy_alloc_range.size=4K", "pass"),
        ("drm_buddy.drm_test_buddy_alloc_range.size=8K", "skip"),
        ("drm_buddy.drm_test_buddy_alloc_contiguous", "fail"),
        ("drm_exec", "error"),
        ("drm_exec.sanitycheck", "pass"),
    ]
    skipped = run.leaves()[2]
    assert skipped.reason == "not supported on this configuration"
    failed = run.leaves()[3]
    assert any("EXPECTATION FAILED" in d for d in failed.diagnostics)
    assert run.counts() == {"pass": 3, "skip": 1, "fail": 1, "error": 1}
    assert not run.ok
    assert any("drm_exec" in e for e in run.errors)


def test_spans_hold_what_each_case_printed() -> None:
    text = LOG.read_text()
    run = parse_ktap(text)
    contiguous = run.leaves()[3]
    assert "Expected allocated == size" in text[contiguous.start:contiguous.end]
    assert "drm_test_buddy_alloc_limit" not in text[contiguous.start:contiguous.end]
    assert contiguous.end_time == 2.16001
    crashed = run.tests[1]
    assert "BUG: kernel NULL pointer dereference" in text[crashed.start:crashed.end]


def test_older_tap14_without_nested_headers() -> None:
    log = "\n".join([
        "TAP version 14",
        "1..1",
        "    # Subtest: drm_format_helper_test",
        "    1..2",
        "    ok 1 - drm_test_fb_xrgb8888_to_rgb332",
        "    not ok 2 - drm_test_fb_xrgb8888_to_rgb565 # TODO not done yet",
        "ok 1 - drm_format_helper_test",
    ])
    run = parse_ktap(log)
    assert _flat(run) == [("drm_format_helper_test.drm_test_fb_xrgb8888_to_rgb332", "pass"),
                          ("drm_format_helper_test.drm_test_fb_xrgb8888_to_rgb565", "todo")]
    assert run.tests[0].status == "pass" and run.ok


def test_crlf_prefixes_and_two_documents() -> None:
    one = "[    1.0][    T1] KTAP version 1\r\n[    1.1][    T1] 1..1\r\n" \
          "[    1.2][    T1]     KTAP version 1\r\n[    1.2][    T1]     # Subtest: a\r\n" \
          "[    1.2][    T1]     1..1\r\n[    1.3][    T1]     ok 1 a_case\r\n[    1.4][    T1] ok 1 a\r\n"
    two = one.replace("a_case", "b_case").replace("Subtest: a", "Subtest: b").replace("ok 1 a\r", "ok 1 b\r")
    run = parse_ktap(one + "[    2.0] random kernel line\r\n" + two)
    assert _flat(run) == [("a.a_case", "pass"), ("b.b_case", "pass")]
    assert not run.errors


def test_no_ktap_at_all() -> None:
    run = parse_ktap("[    0.0] Linux version 6.1.0\n[    1.0] ok 1 this is not ktap indented wrongly\n")
    assert run.tests == () or all(t.name for t in run.tests)
    assert parse_ktap(b"").tests == ()
