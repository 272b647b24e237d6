"""Test plans: what `rig run` runs in the guest, read from TOML.

A plan names IGT tests (patterns like `vgem_basic@*`, grouped by the DRM driver they
are forced onto), KUnit suites, extra guest scripts, and the failures that are expected
on rig's virtual hardware. Shipped plans live in rig/data/plans/<name>.toml; a user plan
is any path to a .toml file. Every problem in a plan is reported at once.

    description = "..."
    [igt]
    per_test_timeout_s = 60        # a test running longer is killed and counts as failed
    inactivity_timeout_s = 120     # no output from a test for this long: killed too
    [[igt.group]]
    driver = "vgem"                # IGT_FORCE_DRIVER for every test of the group
    tests = ["vgem_basic@*", "dumb_buffer@create-valid-dumb"]
    per_test_timeout_s = 30        # optional, overrides [igt]
    [kunit]
    suites = ["drm_gem_shmem"]     # run where this kernel has them
    [[script]]
    name = "gem-objects"
    argv = ["cat", "/sys/kernel/debug/dri/0/gem_names"]
    timeout_s = 30
    [[ktap]]                       # a program that prints KTAP: each of its cases is a test
    name = "panfrost"
    argv = ["/usr/local/bin/rig-panfrost"]
    timeout_s = 1800
    [[expected_failure]]
    test = "drm_virtgpu@get-caps"  # pattern over binary@subtest, kunit:suite.case, ktap:suite.case
    reason = "needs virgl"
    kernels = ">=6.12"             # optional: only on these kernel versions (">=A.B", "<A.B", both with ",")
    gpus = ["virtio-gpu"]          # optional: only on these GPU models (--gpu names)
    [kmemleak]
    scan = "end"                   # "end" (once after all tests) or "each" (after every IGT test)
"""

from __future__ import annotations

import fnmatch
import re
import tomllib
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from rig.errors import UserError
from rig.target import GPU_MODELS

PLANS_DIR = Path(__file__).resolve().parent / "data" / "plans"

# An IGT group's driver that stands for the machine's GPU, whichever --gpu chose: one plan
# then serves every GPU model (rig.gpu_plan resolves it before the run).
MACHINE_GPU = "@gpu"
# DRM drivers rig's guests have (IGT_FORCE_DRIVER names them as the kernel does).
KNOWN_DRIVERS = ("vgem", "vkms", "virtio_gpu", "bochs-drm", "cirrus", "cirrus-qemu", "panfrost", MACHINE_GPU)

# IGT test names: binary@subtest, optionally @dynamic; patterns may use * ? [].
_TEST_RE = re.compile(r"^[A-Za-z0-9_\-]+(@[A-Za-z0-9_\-*?\[\]]+){0,2}$")
_PATTERN_RE = re.compile(r"^[A-Za-z0-9_\-*?\[\]]+(@[A-Za-z0-9_\-*?\[\]]+){0,2}$")
_NAME_RE = re.compile(r"^[A-Za-z0-9_.\-]+$")

DEFAULT_PER_TEST_TIMEOUT_S = 120.0
DEFAULT_INACTIVITY_TIMEOUT_S = 120.0
DEFAULT_SCRIPT_TIMEOUT_S = 300.0
# A KTAP program runs many cases, each bounded by the program itself.
DEFAULT_KTAP_TIMEOUT_S = 1800.0
KMEMLEAK_MODES = ("end", "each", "off")


@dataclass(frozen=True)
class IgtGroup:
    driver: str | None  # IGT_FORCE_DRIVER; None: IGT picks the device; MACHINE_GPU: the machine's GPU
    tests: tuple[str, ...]  # binary@subtest patterns
    per_test_timeout_s: float
    # Other names of `driver` on other kernel versions: the guest's own decides (rig.workloads.igt).
    driver_aliases: tuple[str, ...] = ()

    @property
    def binaries(self) -> tuple[str, ...]:
        seen: dict[str, None] = {}
        for pattern in self.tests:
            seen.setdefault(pattern.split("@", 1)[0], None)
        return tuple(seen)


@dataclass(frozen=True)
class Script:
    name: str
    argv: tuple[str, ...]
    timeout_s: float
    driver: str | None = None


@dataclass(frozen=True)
class KtapProgram:
    """A guest program that prints KTAP (rig's own guest test programs): each case it
    reports is a test, named ktap:suite.case."""

    name: str
    argv: tuple[str, ...]
    timeout_s: float


_VERSION_BOUND = re.compile(r"^\s*(>=|<)\s*(\d+)\.(\d+)\s*$")
_RELEASE = re.compile(r"^(\d+)\.(\d+)")


def parse_kernel_range(text: str) -> tuple[tuple[str, tuple[int, int]], ...] | None:
    """">=6.12", "<6.13" or both joined by a comma, as (operator, (major, minor)) bounds;
    None if the text is not such a range."""
    bounds = []
    for part in text.split(","):
        found = _VERSION_BOUND.match(part)
        if found is None:
            return None
        bounds.append((found.group(1), (int(found.group(2)), int(found.group(3)))))
    return tuple(bounds)


@dataclass(frozen=True)
class ExpectedFailure:
    test: str  # pattern over binary@subtest (or kunit:suite.case, script:name, ktap:suite.case)
    reason: str
    # Kernel versions the failure is expected on (a bug fixed or brought in by a release),
    # as bounds on major.minor; empty: every kernel.
    kernels: tuple[tuple[str, tuple[int, int]], ...] = ()
    # GPU models (--gpu names) the failure is expected on: a test that fails for want of a
    # device feature (virtio-gpu's 2D model has no 3D) runs as any other where the model
    # has it (virgl). Empty: every GPU model.
    gpus: tuple[str, ...] = ()

    def matches(self, name: str) -> bool:
        return fnmatch.fnmatchcase(name, self.test)

    def applies_to(self, release: str) -> bool:
        """Whether the failure is expected on the kernel `release` ("6.12.117-g..."). A
        release rig cannot read keeps the entry: an expected failure too many is reported
        with its reason, one too few would fail a good run."""
        found = _RELEASE.match(release)
        if not self.kernels or found is None:
            return True
        version = (int(found.group(1)), int(found.group(2)))
        return all(version >= bound if op == ">=" else version < bound for op, bound in self.kernels)

    def applies_on(self, gpu: str) -> bool:
        """Whether the failure is expected on the GPU model `gpu` (a --gpu name)."""
        return not self.gpus or gpu in self.gpus


@dataclass(frozen=True)
class Plan:
    name: str
    description: str
    source: str  # the file the plan came from
    igt: tuple[IgtGroup, ...]
    inactivity_timeout_s: float
    kunit_suites: tuple[str, ...]
    scripts: tuple[Script, ...]
    expected_failures: tuple[ExpectedFailure, ...]
    kmemleak_scan: str = "end"
    ktap: tuple[KtapProgram, ...] = ()
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def expected_failure(self, test: str) -> ExpectedFailure | None:
        for expected in self.expected_failures:
            if expected.matches(test):
                return expected
        return None

    def for_kernel(self, release: str) -> Plan:
        """This plan on the kernel `release`: only the expected failures of that version."""
        return replace(self, expected_failures=tuple(e for e in self.expected_failures if e.applies_to(release)))

    def for_gpu(self, gpu: str) -> Plan:
        """This plan on the GPU model `gpu`: only the expected failures of that model."""
        return replace(self, expected_failures=tuple(e for e in self.expected_failures if e.applies_on(gpu)))

    @property
    def test_count_hint(self) -> int:
        return (sum(len(g.tests) for g in self.igt) + len(self.kunit_suites) + len(self.scripts)
                + len(self.ktap))


def shipped_plans() -> dict[str, str]:
    """Name -> TOML text of every plan shipped with rig."""
    return {path.stem: path.read_text() for path in sorted(PLANS_DIR.glob("*.toml"))}


def load_plan(spec: str) -> Plan:
    """A shipped plan by name ("default") or a plan file by path."""
    shipped = shipped_plans()
    if spec in shipped and not Path(spec).exists():
        return parse_plan(shipped[spec], name=spec, source=f"rig/data/plans/{spec}.toml")
    path = Path(spec)
    if not path.is_file():
        raise UserError(
            f"plan '{spec}' is neither a plan shipped with rig nor a file",
            hint=f"pass one of: {', '.join(sorted(shipped))}, or a path to a .toml plan file",
        )
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read plan {path}: {exc}", hint="pass a readable UTF-8 .toml file") from exc
    return parse_plan(text, name=path.stem, source=str(path))


def parse_plan(text: str, *, name: str, source: str) -> Plan:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise UserError(f"plan {source} is not valid TOML: {exc}", hint="fix the TOML syntax") from exc
    except RecursionError as exc:  # tomllib reads nested arrays and inline tables recursively
        raise UserError(f"plan {source} nests arrays or tables too deeply to read",
                        hint="a plan nests a few levels at most; fix the brackets") from exc
    problems: list[str] = []
    plan = _build(data, name, source, problems)
    if problems:
        raise UserError(
            f"plan {source} has {len(problems)} problem{'s' if len(problems) > 1 else ''}:\n    "
            + "\n    ".join(problems),
            hint="fix each listed entry; the plan format is described in `rig run --help`",
        )
    return plan


def _number(value: Any, where: str, problems: list[str], default: float) -> float:
    if value is None:
        return default
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        problems.append(f"{where}: must be a positive number of seconds, not {value!r}")
        return default
    return float(value)


def _array_of_tables(table: dict[str, Any], key: str, label: str,
                     problems: list[str]) -> Iterator[tuple[int, str, dict[str, Any]]]:
    """The tables of a TOML `[[label]]` array as (1-based index, "label #i", table); a value
    of the wrong shape becomes a problem, so every problem in a plan is listed at once."""
    raw = table.get(key, [])
    if not isinstance(raw, list):
        problems.append(f"{label}: must be an array of tables ([[{label}]])")
        return
    for index, entry in enumerate(raw, 1):
        where = f"{label} #{index}"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a table")
            continue
        yield index, where, entry


def _unknown_keys(table: dict[str, Any], allowed: set[str], where: str, problems: list[str]) -> None:
    for key in sorted(set(table) - allowed):
        problems.append(f"{where}: unknown key '{key}' (known: {', '.join(sorted(allowed))})")


def _gpu_models(value: Any, where: str, problems: list[str]) -> tuple[str, ...]:
    """An expected failure's `gpus`: a non-empty list of GPU model names (--gpu values)."""
    if value is None:
        return ()
    if not isinstance(value, list) or not value or not all(isinstance(name, str) for name in value):
        problems.append(f'{where}: must be a non-empty list of GPU models, like ["virtio-gpu"]')
        return ()
    unknown = [name for name in value if name not in GPU_MODELS]
    if unknown:
        problems.append(f"{where}: {', '.join(map(repr, unknown))} is not a GPU model "
                        f"(rig has {', '.join(sorted(GPU_MODELS))})")
        return ()
    return tuple(value)


def _driver(value: Any, where: str, problems: list[str]) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or value not in KNOWN_DRIVERS:
        problems.append(f"{where}: driver {value!r} is not one of {', '.join(KNOWN_DRIVERS)}")
        return None
    return value


def _build(data: dict[str, Any], name: str, source: str, problems: list[str]) -> Plan:
    _unknown_keys(data, {"description", "igt", "kunit", "script", "ktap", "expected_failure", "kmemleak"}, "plan",
                  problems)
    description = data.get("description", "")
    if not isinstance(description, str):
        problems.append("description: must be a string")
        description = ""

    igt = data.get("igt", {})
    groups: list[IgtGroup] = []
    inactivity = DEFAULT_INACTIVITY_TIMEOUT_S
    if not isinstance(igt, dict):
        problems.append("igt: must be a table ([igt])")
        igt = {}
    _unknown_keys(igt, {"per_test_timeout_s", "inactivity_timeout_s", "group"}, "igt", problems)
    default_timeout = _number(igt.get("per_test_timeout_s"), "igt.per_test_timeout_s", problems,
                              DEFAULT_PER_TEST_TIMEOUT_S)
    inactivity = _number(igt.get("inactivity_timeout_s"), "igt.inactivity_timeout_s", problems,
                         DEFAULT_INACTIVITY_TIMEOUT_S)
    for index, where, group in _array_of_tables(igt, "group", "igt.group", problems):
        _unknown_keys(group, {"driver", "tests", "per_test_timeout_s"}, where, problems)
        driver = _driver(group.get("driver"), where, problems)
        tests = group.get("tests")
        if not isinstance(tests, list) or not tests or not all(isinstance(t, str) for t in tests):
            problems.append(f"{where}: tests must be a non-empty list of 'binary@subtest' patterns")
            tests = []
        for test in tests:
            if not _PATTERN_RE.match(test) or not _TEST_RE.match(test.split("@", 1)[0]):
                problems.append(f"{where}: '{test}' is not a test pattern like 'vgem_basic@*' or "
                                "'dumb_buffer@create-clear'")
        timeout = _number(group.get("per_test_timeout_s"), f"{where}.per_test_timeout_s", problems, default_timeout)
        groups.append(IgtGroup(driver, tuple(tests), timeout))

    kunit = data.get("kunit", {})
    suites: list[str] = []
    if not isinstance(kunit, dict):
        problems.append("kunit: must be a table ([kunit])")
        kunit = {}
    _unknown_keys(kunit, {"suites"}, "kunit", problems)
    raw_suites = kunit.get("suites", [])
    if not isinstance(raw_suites, list) or not all(isinstance(s, str) for s in raw_suites):
        problems.append("kunit.suites: must be a list of suite names")
        raw_suites = []
    for suite in raw_suites:
        if not _NAME_RE.match(suite.replace("*", "x")):
            problems.append(f"kunit.suites: '{suite}' is not a KUnit suite name")
        suites.append(suite)

    scripts: list[Script] = []
    names: set[str] = set()
    for index, where, script in _array_of_tables(data, "script", "script", problems):
        _unknown_keys(script, {"name", "argv", "timeout_s", "driver"}, where, problems)
        sname, argv = _named_argv(script, index, where, "script", names, problems)
        timeout = _number(script.get("timeout_s"), f"{where}.timeout_s", problems, DEFAULT_SCRIPT_TIMEOUT_S)
        driver = _driver(script.get("driver"), where, problems)
        scripts.append(Script(sname, tuple(argv), timeout, driver))

    ktap = _ktap_programs(data, problems)

    expected: list[ExpectedFailure] = []
    for _, where, entry in _array_of_tables(data, "expected_failure", "expected_failure", problems):
        _unknown_keys(entry, {"test", "reason", "kernels", "gpus"}, where, problems)
        test = entry.get("test")
        reason = entry.get("reason")
        if not isinstance(test, str) or not test:
            problems.append(f"{where}: test must be a test name or pattern")
            continue
        if not isinstance(reason, str) or not reason.strip():
            problems.append(f"{where} ({test}): give a reason, so the next reader knows why it may fail")
            reason = ""
        kernels: tuple[tuple[str, tuple[int, int]], ...] = ()
        if "kernels" in entry:
            parsed = parse_kernel_range(entry["kernels"]) if isinstance(entry["kernels"], str) else None
            if parsed is None:
                problems.append(f"{where}.kernels ({test}): {entry['kernels']!r} is not a version range; "
                                'write ">=6.12", "<6.13" or ">=6.12,<7.0"')
            else:
                kernels = parsed
        gpus = _gpu_models(entry.get("gpus"), f"{where}.gpus ({test})", problems)
        expected.append(ExpectedFailure(test, reason, kernels, gpus))

    kmemleak = data.get("kmemleak", {})
    scan = "end"
    if not isinstance(kmemleak, dict):
        problems.append("kmemleak: must be a table ([kmemleak])")
    else:
        _unknown_keys(kmemleak, {"scan"}, "kmemleak", problems)
        scan = kmemleak.get("scan", "end")
        if scan not in KMEMLEAK_MODES:
            problems.append(f"kmemleak.scan: {scan!r} is not one of {', '.join(KMEMLEAK_MODES)}")
            scan = "end"

    if not groups and not suites and not scripts and not ktap:
        problems.append("the plan runs nothing: add an [[igt.group]], [kunit] suites, a [[script]] or a [[ktap]]")

    return Plan(
        name=name,
        description=description,
        source=source,
        igt=tuple(groups),
        inactivity_timeout_s=inactivity,
        kunit_suites=tuple(suites),
        scripts=tuple(scripts),
        expected_failures=tuple(expected),
        kmemleak_scan=scan,
        ktap=tuple(ktap),
    )


def _ktap_programs(data: dict[str, Any], problems: list[str]) -> list[KtapProgram]:
    programs: list[KtapProgram] = []
    names: set[str] = set()
    for index, where, entry in _array_of_tables(data, "ktap", "ktap", problems):
        _unknown_keys(entry, {"name", "argv", "timeout_s"}, where, problems)
        pname, argv = _named_argv(entry, index, where, "ktap", names, problems)
        timeout = _number(entry.get("timeout_s"), f"{where}.timeout_s", problems, DEFAULT_KTAP_TIMEOUT_S)
        programs.append(KtapProgram(pname, tuple(argv), timeout))
    return programs


def _named_argv(entry: dict[str, Any], index: int, where: str, kind: str, names: set[str],
                problems: list[str]) -> tuple[str, list[str]]:
    """The name and argv of a [[script]] or [[ktap]] entry (`kind`), problems noted.

    A ktap program is stricter in two ways: its name may not hold a dot, because its cases
    are reported as `ktap:SUITE.CASE` beside the program's own `ktap:NAME` markers; and no
    argv word may be empty, because the program is started with exactly those words.
    """
    strict = kind == "ktap"
    name = entry.get("name")
    if not isinstance(name, str) or not _NAME_RE.match(name) or (strict and "." in name):
        allowed = "letters, digits, _ -" if strict else "letters, digits, . _ -"
        problems.append(f"{where}: name must be a word ({allowed})")
        name = f"{kind}{index}"
    elif name in names:
        problems.append(f"{where}: name '{name}' is used twice")
    names.add(name)
    argv = entry.get("argv")
    if not isinstance(argv, list) or not argv or not all(isinstance(a, str) and (a or not strict) for a in argv):
        problems.append(f"{where} ({name}): argv must be a non-empty list of strings (no shell string)")
        argv = []
    return name, argv


def expand(patterns: tuple[str, ...], available: dict[str, list[str]]) -> tuple[list[str], list[str]]:
    """Expand binary@subtest patterns against what the guest's IGT has.

    `available` maps a test binary to its subtests (empty list: a binary without
    subtests). Returns (tests in plan order without duplicates, problems).
    """
    tests: dict[str, None] = {}
    problems: list[str] = []
    for pattern in patterns:
        binary_pattern, _, rest = pattern.partition("@")
        binaries = [b for b in available if fnmatch.fnmatchcase(b, binary_pattern)]
        if not binaries:
            problems.append(f"'{pattern}': no IGT test binary '{binary_pattern}' in the guest image")
            continue
        matched = 0
        for binary in binaries:
            subtests = available[binary]
            if not rest:
                tests.setdefault(binary if not subtests else f"{binary}@*", None)
                matched += 1
                continue
            subtest_pattern = rest.split("@", 1)[0]
            for subtest in subtests:
                if fnmatch.fnmatchcase(subtest, subtest_pattern):
                    tests.setdefault(f"{binary}@{subtest}", None)
                    matched += 1
        if not matched:
            problems.append(f"'{pattern}': matches no subtest of {', '.join(binaries)}")
    return list(tests), problems
