"""Every parser of what users (or guests) hand rig, fed anything: it returns, or it raises
one of rig's own errors (a RigError, whose message the command line shows). Anything else
escaping is a bug that would end a run with a traceback.

Inputs are drawn three ways: arbitrary bytes or text; lines mixed from the formats' own
words (real console logs, KTAP, IGT output, patch mail), so the parsers' deeper paths are
reached; and TOML documents built from the formats' keys and values of every type.
Example counts stay moderate: the whole file runs in seconds in the unit tier.
"""

from __future__ import annotations

import contextlib
import email.header
import json
import math
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from rig import image, kconfig, known, plan, series, verdict
from rig.errors import RigError
from rig.kernel_image import format_problem
from rig.matrix import spec as matrix_spec
from rig.paths import user_path
from rig.plan import IgtGroup
from rig.splat import parse_log
from rig.splat.igt import parse_igt_output, parse_results_json
from rig.splat.ktap import parse_ktap
from rig.workloads import igt as igt_workload
from rig.workloads.pressure import parse_pressure

DATA = Path(__file__).resolve().parent.parent / "data"

# RIG_PROPERTY_EXAMPLES=5000 hunts longer (minutes) than the unit tier can afford.
EXAMPLES = int(os.environ.get("RIG_PROPERTY_EXAMPLES", "120"))
PROPERTY = settings(max_examples=EXAMPLES, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
FEW = settings(PROPERTY, max_examples=max(1, EXAMPLES // 2))  # parsers that touch the filesystem per example


def only_rig_errors(call: Any, *args: Any, **kwargs: Any) -> Any:
    """`call(...)`'s value, or None when it raised a RigError; anything else propagates."""
    with contextlib.suppress(RigError):
        return call(*args, **kwargs)
    return None


def lines_from(pool: list[str], max_lines: int = 30) -> st.SearchStrategy[str]:
    """Text whose lines come from `pool`, from arbitrary text, or from a pool line cut short."""
    line = st.one_of(st.sampled_from(pool), st.text(max_size=40),
                     st.tuples(st.sampled_from(pool), st.integers(0, 80)).map(lambda pair: pair[0][:pair[1]]))
    return st.lists(line, max_size=max_lines).map("\n".join)


def as_bytes(text: st.SearchStrategy[str]) -> st.SearchStrategy[bytes]:
    return st.one_of(text.map(lambda t: t.encode("utf-8", errors="surrogatepass")), st.binary(max_size=600))


# ---- TOML documents from structures (tomllib reads TOML; it does not write it)

def toml_string(text: str) -> str:
    # JSON's escapes are TOML basic-string escapes; TOML also wants DEL escaped.
    return json.dumps(text, ensure_ascii=False).replace("\x7f", "\\u007f")


def toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)  # 1.5, 1e+300, inf, -inf, nan are TOML too
    if isinstance(value, str):
        return toml_string(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    return "{" + ", ".join(f"{toml_string(k)} = {toml_value(v)}" for k, v in value.items()) + "}"


def toml_document(data: dict[str, Any]) -> str:
    return "".join(f"{toml_string(key)} = {toml_value(value)}\n" for key, value in data.items())


def toml_of(keys: list[str], words: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    """TOML-able structures whose keys and strings are mostly the format's own."""
    key = st.one_of(st.sampled_from(keys), st.text(min_size=1, max_size=8))
    scalar = st.one_of(st.booleans(), st.integers(-(2 ** 63), 2 ** 63 - 1), st.floats(),
                       st.sampled_from(words), st.text(max_size=16))
    value = st.recursive(scalar, lambda inner: st.one_of(st.lists(inner, max_size=4),
                                                         st.dictionaries(key, inner, max_size=4)), max_leaves=14)
    return st.dictionaries(key, value, max_size=6)


@given(toml_of(["a", "b"], ["x"]))
@settings(PROPERTY, max_examples=40)
def test_the_toml_writer_of_these_tests_writes_what_tomllib_reads(data: dict[str, Any]) -> None:
    def same(a: Any, b: Any) -> bool:
        if isinstance(a, float) and isinstance(b, float) and math.isnan(a):
            return math.isnan(b)
        if isinstance(a, dict):
            return a.keys() == b.keys() and all(same(a[k], b[k]) for k in a)
        if isinstance(a, list):
            return len(a) == len(b) and all(same(x, y) for x, y in zip(a, b))
        return bool(a == b)

    assert same(tomllib.loads(toml_document(data)), data)


def deeply_nested(opening: str, closing: str, depth: int = 5000) -> str:
    return opening * depth + closing * depth


# ---- series and mbox (rig/series.py)

MAIL_LINES = [
    "From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001",
    "From: Ada Tester <ada@example.org>", "From: =?utf-8?q?Ad=C3=A9?= <a@b>", "From: =?bogus-charset?q?x?= <a@b>",
    "Subject: [PATCH 1/2] drv: fix", "Subject: [PATCH v2 2/2] drv: more", "Subject: [PATCH 0/2] cover",
    "Subject: =?utf-8?b?w6k=?=", "Subject: =?unknown-8?b?!!!?=", "Subject: [RFC PATCH 03/12] x",
    "Content-Type: multipart/mixed; boundary=XX", "--XX", "--XX--", "Content-Transfer-Encoding: base64",
    "Content-Transfer-Encoding: quoted-printable", "Content-Type: text/plain; charset=bogus", "", "---",
    "diff --git a/drv.c b/drv.c", "--- a/drv.c", "+++ b/drv.c", "--- /dev/null", "Index: drv.c",
    "@@ -1,3 +1,4 @@", "@@ -1 +1 @@", "@@ -0,0 +1,2 @@ int f(void)", "@@ -9999999999999,1 +1,99999999999 @@",
    " context", "+added", "-removed", "\\ No newline at end of file", "-- ", "2.39.5", "GIT binary patch",
]


@given(st.lists(st.tuples(st.sampled_from(["a.mbox", "b.patch", ""]), as_bytes(lines_from(MAIL_LINES))),
                max_size=4))
@settings(PROPERTY)
@example([("x.mbox", b"Subject: =?bogus-charset?q?x?=\n\ndiff --git a/x b/x\n")])
def test_reading_patch_mail_raises_only_rig_errors(messages: list[tuple[str, bytes]]) -> None:
    found = only_rig_errors(series.read_patches, messages, "the-series")
    if found is not None:
        patches, skipped = found
        assert patches and all(p.damage is None for p in patches)


@given(as_bytes(lines_from(MAIL_LINES, 60)))
@settings(PROPERTY)
def test_damage_is_a_reason_or_none(body: bytes) -> None:
    assert series.damage(body) is None or isinstance(series.damage(body), str)


@given(as_bytes(lines_from(MAIL_LINES, 40)))
@settings(FEW)
def test_a_series_file_of_any_bytes_loads_or_is_bad_input(tmp_path_factory: pytest.TempPathFactory,
                                                          content: bytes) -> None:
    directory = tmp_path_factory.mktemp("series")
    mbox = directory / "series.mbox"
    mbox.write_bytes(content)
    only_rig_errors(series.check, str(mbox), kernel="debian:6.1")
    loaded = only_rig_errors(series.load, str(mbox), directory / "work")
    if loaded is not None:
        assert all(p.path.is_file() for p in loaded.patches)


@given(st.one_of(st.text(max_size=60), st.sampled_from([
    "a..b", "a...b", "..", "v6.1..", "<x@y>", "x@@y", "https://lore.kernel.org/all/x@y/", "https://lore.kernel.org/",
    "https://lore.kernel.org/%ZZ@x/", "<>", "@", "x@[1.2.3.4]", "<a@b", "a b@c"])))
@settings(PROPERTY)
@example("~0")  # no user "0": Path.expanduser raised RuntimeError
@example("~\x00")  # a NUL: the OS's ValueError
def test_a_series_spec_that_is_no_file_is_a_range_a_message_id_or_bad_input(spec: str) -> None:
    assert series.classify(spec) in ("range", "msgid", "")
    assert series.msgid_problem(spec) is None or isinstance(series.msgid_problem(spec), str)
    series.range_start(spec)
    exists = only_rig_errors(lambda: user_path(spec).exists())
    if not exists and series.classify(spec) != "range":  # a range would ask git in the current directory
        only_rig_errors(series.check, spec, kernel="debian:6.1")


# ---- test plans (rig/plan.py)

PLAN_KEYS = ["description", "igt", "kunit", "script", "ktap", "expected_failure", "kmemleak", "group", "driver",
             "tests", "per_test_timeout_s", "inactivity_timeout_s", "suites", "name", "argv", "timeout_s", "test",
             "reason", "kernels", "scan"]
PLAN_WORDS = ["vgem", "vkms", "virtio_gpu", "@gpu", "vgem_basic@*", "kms_addfb_basic@too-high", "a@b@c@d", "[",
              ">=6.12", "<6.13,>=6.1", ">=6", "end", "each", "off", "drm_mm", "x.y", "", "*", "/bin/true"]
PLAN_LINES = ["[igt]", "[[igt.group]]", "[kunit]", "[[script]]", "[[ktap]]", "[[expected_failure]]", "[kmemleak]",
              'driver = "vgem"', 'tests = ["vgem_basic@*"]', "per_test_timeout_s = 30", 'suites = ["drm_mm"]',
              'name = "x"', 'argv = ["true"]', 'test = "x@y"', 'reason = "r"', 'kernels = ">=6.12"', 'scan = "each"',
              "timeout_s = -1", "[igt", "tests = [", 'x = """', "a.b.c = 1", "[[igt]]"]


@given(st.one_of(lines_from(PLAN_LINES), toml_of(PLAN_KEYS, PLAN_WORDS).map(toml_document)))
@settings(PROPERTY)
@example(deeply_nested("a = [", "]"))
def test_a_plan_parses_or_is_bad_input(text: str) -> None:
    parsed = only_rig_errors(plan.parse_plan, text, name="p", source="p.toml")
    if parsed is not None:
        assert parsed.test_count_hint > 0
        parsed.for_kernel("6.12.1")


# ---- kernel config fragments (rig/kconfig.py)

FRAGMENT_LINES = ["CONFIG_LOCKDEP=y", "# CONFIG_KASAN is not set", "# rig: optional", "# rig: only x86_64",
                  "# rig: only arm64 x86_64", "CONFIG_NR_CPUS=64", "CONFIG_X=0x1f", "CONFIG_CMDLINE=\"a b\"",
                  'CONFIG_S="esc\\"aped"', "CONFIG_BAD=maybe", "CONFIG_=y", "CONFIG_Y=", "# a comment", "", "garbage",
                  "CONFIG_Z=-1", 'CONFIG_Q="open']


@given(as_bytes(lines_from(FRAGMENT_LINES)))
@settings(FEW)
def test_a_config_fragment_parses_or_is_bad_input(tmp_path_factory: pytest.TempPathFactory, content: bytes) -> None:
    fragment = tmp_path_factory.mktemp("fragment") / "extra.config"
    fragment.write_bytes(content)
    merged = only_rig_errors(kconfig.merge, [fragment], target="x86_64")
    if merged is not None:
        # What rig hands Kconfig reads back as what the fragment asked for.
        rendered = fragment.with_name("merged.config")
        rendered.write_text(kconfig.render(merged))
        assert kconfig.read_config(rendered) == {s: v.value for s, v in merged.items()}


# ---- kernel reports (rig/splat), KTAP (rig/splat/ktap.py)

def _golden_lines(pattern: str, limit: int = 400) -> list[str]:
    lines: list[str] = []
    for path in sorted(DATA.glob(pattern)):
        lines += path.read_text(errors="replace").splitlines()
    step = max(1, len(lines) // limit)
    return sorted(set(lines[::step])) or ["x"]


CONSOLE_LINES = _golden_lines("splat/*.log")
KTAP_LINES = _golden_lines("ktap/*.ktap") + [
    "KTAP version 1", "TAP version 14", "1..3", "1..999999999999", "ok 1 - a", "not ok 2 b # SKIP why", "ok 3 # TODO",
    "# Subtest: s", "    KTAP version 1", "    # Subtest: t", "    1..1", "    ok 1 t", "        not ok 1 deep",
    "ok 99999999999999999999 big", "[    1.234567] ok 1 x", "<6>[    2.000000][    T1] KTAP version 1", "\t ok 1",
    "# totals: pass:1 fail:0", "Bail out!"]


@given(as_bytes(lines_from(CONSOLE_LINES, 40)))
@settings(PROPERTY)
def test_the_kernel_report_parser_never_raises(log: bytes) -> None:
    for finding in parse_log(log):
        assert finding.title and finding.signature


@given(as_bytes(lines_from(KTAP_LINES, 40)))
@settings(PROPERTY)
def test_the_ktap_parser_never_raises(output: bytes) -> None:
    parse_ktap(output)


# ---- IGT results (rig/splat/igt.py, rig/workloads/igt.py)

IGT_LINES = ["IGT-Version: 1.28-g1234 (x86_64) (Linux: 6.1.0 x86_64)", "IGT-Version:", "Starting subtest: a",
             "Subtest a: SUCCESS (0.001s)", "Subtest a: FAIL (1.5s)", "Subtest a: CRASH", "Subtest b: SKIP",
             "Starting dynamic subtest: d", "Dynamic subtest d: SUCCESS (0.1s)", "Dynamic subtest d: WARN (x)",
             "Test requirement not met in function x", "Received signal SIGSEGV.", "Stack trace:", "(foo:123) WARN",
             "Subtest : ", "Starting subtest: ", "Subtest a: UNKNOWN-WORD (nans)"]
RESULT_WORDS = ["pass", "fail", "crash", "timeout", "skip", "warn", "notrun", "abort", "incomplete", "dmesg-warn",
                "dmesg-fail", "???"]


@given(as_bytes(lines_from(IGT_LINES)), st.sampled_from(["", "kms_addfb_basic", "a@b"]),
       st.one_of(st.none(), st.integers(-300, 300)))
@settings(PROPERTY)
def test_igt_output_parses_without_raising(stdout: bytes, binary: str, exit_code: int | None) -> None:
    parse_igt_output(stdout, binary=binary, exit_code=exit_code)


json_values = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10),
                                     st.sampled_from(RESULT_WORDS)),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.sampled_from(
                                                       ["tests", "result", "time", "start", "end", "out", "err",
                                                        "dmesg", "igt-version", "x"]), inner, max_size=4)),
                           max_leaves=12)
results_docs = st.one_of(
    json_values.map(json.dumps),
    st.dictionaries(st.sampled_from(["igt@a@b", "igt@a", "igt@a@b@c", "x"]), json_values, max_size=4)
    .map(lambda tests: json.dumps({"tests": tests})),
    st.binary(max_size=200).map(lambda b: b.decode("latin-1")))


@given(st.one_of(results_docs, results_docs.map(str.encode), st.binary(max_size=200)),
       st.lists(st.sampled_from(["a@b", "a@*", "a", "c@d@e"]), min_size=1, max_size=3, unique=True))
@settings(PROPERTY)
@example(deeply_nested("[", "]"), ["a@*"])
@example('{"tests": {"igt@a@b": {"igt-version": "\\u0085"}}}', ["a@b"])  # a blank version: IndexError
def test_results_json_is_read_or_is_bad_input(document: str | bytes, tests: list[str]) -> None:
    run = only_rig_errors(parse_results_json, document)
    prepared = igt_workload.PreparedGroup(1, IgtGroup("vgem", tuple(tests), 60.0), tuple(tests))
    for result in igt_workload.results_from_run(run, prepared):
        assert result.name


@given(st.one_of(results_docs.map(str.encode), st.binary(max_size=300)))
@settings(FEW)
def test_a_results_directory_is_read_without_raising(tmp_path_factory: pytest.TempPathFactory,
                                                     content: bytes) -> None:
    # What the guest left: igt_runner's results.json, whole, cut short or garbage.
    directory = tmp_path_factory.mktemp("results")
    (directory / "results.json").write_bytes(content)
    prepared = igt_workload.PreparedGroup(1, IgtGroup(None, ("a@*",), 60.0), ("a@*",))
    assert igt_workload.results_from_dir(directory, prepared)  # "not run" at least, never an exception


@given(lines_from(["@@rig-listed kms_addfb_basic 0", "@@rig-listed x 127", "@@rig-listed y 79",
                   "@@rig-listed z", "@@rig-listed ", "basic", "too-high", "has space", ""]))
@settings(PROPERTY)
@example("@@rig-listed vgem_basic")
def test_the_guest_s_subtest_listing_parses_without_raising(stdout: str) -> None:
    available, missing = igt_workload.parse_listing(stdout)
    assert not set(available) & set(missing) or True  # a binary listed twice may be both; no crash is the point


# ---- matrix files (rig/matrix/spec.py)

MATRIX_KEYS = ["axes", "settings", "include", "exclude", "kernel", "arch", "gpu", "series", "profile", "plan",
               "pressure", "deadline", "retries", "memory", "cpus", "accel", "image", "compare_base", "repeat", "known"]
MATRIX_WORDS = ["debian:6.1", "debian:9.9", "x86_64", "arm64", "virtio-gpu", "bochs", "mali", "default", "kasan",
                "smoke", "nosuch.toml", "balloon", "memcg=4096", "stress=25%", "auto", "kvm", "tcg", "a..b", "x@y",
                "patches/", "~/linux", "", "none"]
MATRIX_LINES = ["[axes]", "[settings]", "[[include]]", "[[exclude]]", 'kernel = ["debian:6.1", "debian:6.12"]',
                'gpu = ["bochs"]', 'arch = ["arm64"]', "memory = 4096", "cpus = 0", 'accel = "kvm"', "deadline = nan",
                'pressure = "memcg=4096"', "compare_base = 1", "repeat = 2", 'gpu = "mali"', "[axes", "x = ["]


@given(st.one_of(lines_from(MATRIX_LINES), toml_of(MATRIX_KEYS, MATRIX_WORDS).map(toml_document)))
@settings(PROPERTY)
@example(deeply_nested("a = [", "]"))
def test_a_matrix_file_parses_or_is_bad_input(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    source = tmp_path_factory.getbasetemp() / "matrix.toml"
    parsed = only_rig_errors(matrix_spec.parse, text, source)
    if parsed is not None:
        from rig.matrix.cells import expand

        assert expand(parsed)


# ---- known-issue files (rig/known.py)

KNOWN_LINES = ["kms_addfb_basic@too-high,Fail", "igt@x@y,Crash", "x,Pass", ",Fail", "a,b,Timeout", "kms_.*",
               "(", "[", "a{99999999999}", "(?P<x", "# comment", "", '[[finding]]', 'title = "WARNING in x"',
               'signature = "abc"', 'reason = "r"', 'link = 5', "[other]", "finding = 1"]


@given(st.sampled_from(["v-fails.txt", "v-flakes.txt", "v-skips.txt", "k.toml", "other.txt"]),
       as_bytes(lines_from(KNOWN_LINES)))
@settings(FEW)
@pytest.mark.filterwarnings("ignore:Possible nested set:FutureWarning")  # re's note on "[[", no error
@example("k.toml", deeply_nested("finding = [", "]").encode())
@example("v-flakes.txt", b"a{99999999999}")  # re.compile raised OverflowError
def test_a_known_issues_file_loads_or_is_bad_input(tmp_path_factory: pytest.TempPathFactory, name: str,
                                                   content: bytes) -> None:
    path = tmp_path_factory.mktemp("known") / name
    path.write_bytes(content)
    only_rig_errors(known.load_known, [path])


# ---- the other files and values rig reads from users

@given(st.one_of(json_values.map(json.dumps), st.binary(max_size=200).map(lambda b: b.decode("latin-1")),
                 st.dictionaries(st.sampled_from(["schema", "findings", "kernel"]), json_values, max_size=3)
                 .map(json.dumps)))
@settings(FEW)
@example(deeply_nested("[", "]"))
def test_a_baseline_report_loads_or_is_bad_input(tmp_path_factory: pytest.TempPathFactory, text: str) -> None:
    path = tmp_path_factory.mktemp("baseline") / "report.json"
    path.write_text(text)
    only_rig_errors(verdict.load_baseline, path)


RECIPE_KEYS = ["suite", "variant", "mirror", "packages", "hostname", "headroom_mib", "arch", "programs"]
RECIPE_WORDS = ["sid", "minbase", "x86_64", "arm64", "ppc", "openssh-server", "a,b", "panfrost", "../../etc", ""]


@given(st.one_of(toml_of(RECIPE_KEYS, RECIPE_WORDS).map(toml_document), st.text(max_size=80)))
@settings(PROPERTY)
def test_an_image_recipe_parses_or_is_bad_input(text: str) -> None:
    only_rig_errors(image.parse_recipe, text, "r")


@given(st.lists(st.one_of(st.sampled_from(["balloon", "stress", "memcg", "shrink", "none", "balloon=768",
                                           "memcg=\u00b2", "stress=25%", "stress=9G", "shrink=nan", "shrink=1e9",
                                           "=", ""]), st.text(max_size=12)), max_size=4).map(",".join),
       st.integers(512, 65536))
@settings(PROPERTY)
def test_a_pressure_option_parses_or_is_bad_input(text: str, memory_mib: int) -> None:
    only_rig_errors(parse_pressure, text, memory_mib)


@given(st.binary(max_size=0x420), st.sampled_from(["x86_64", "arm64", "riscv64"]))
@settings(PROPERTY)
def test_a_kernel_image_header_is_judged_without_raising(head: bytes, arch: str) -> None:
    format_problem(head, arch)


def test_header_words_of_unknown_charsets_are_read_as_text() -> None:
    # email.header hands back charsets the mail names, known to Python or not.
    assert email.header.decode_header("=?bogus-charset?q?x?=")[0][1] == "bogus-charset"
    assert series._decode("=?bogus-charset?q?caf=C3=A9?=") == "café"
