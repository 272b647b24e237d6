"""rig's pytest plugin: guest tests in pytest, judged by the kernel's own reports.

Loaded by pytest through the `pytest11` entry point of an installed rig (or with
`-p rig.pytest_plugin`). It is inert until a test asks for one of its fixtures: it adds
options, ini keys, a marker and fixtures, and its hooks look only at tests that use
`rig_guest`.

    def test_fence(rig_guest):
        card = rig_guest.dri_node("vgem")
        result = rig_guest.python(REPRODUCER, card)      # Python in the guest, or
        assert rig_guest.run(["uname", "-r"]).ok         # any command
        assert result.ok, result.stderr

Options (command line, or the ini key of the same name in pytest.ini / pyproject.toml):
    --rig-kernel / rig_kernel        debian:6.1 (default), debian:6.12, a kernel checkout
    --rig-series / rig_series        a series to build in (as `rig build --series`)
    --rig-profile / rig_profile      config profile (default: default)
    --rig-arch / rig_arch            x86_64 (default) or arm64
    --rig-bzimage / rig_bzimage      boot this kernel image as it is instead of building
    --rig-gpu / rig_gpu              GPU model of the machines (default: the target's)
    --rig-pressure / rig_pressure    memory pressure while each test runs (default: none)
    --rig-memory, --rig-cpus         machine size (default: 2048 MiB, 2 CPUs)
    --rig-scope / rig_scope          a guest per module (default), per session, or per test
    --rig-kmemleak / rig_kmemleak    scan kmemleak after each test (test, default) or not (off)
    --rig-out / rig_out              where run directories go (default: pytest's tmp dir)
    --rig-shell-on-failure           a shell in the guest when a test fails (with -s)

Marker: @pytest.mark.rig_machine(gpu=..., pressure=..., memory=..., cpus=...) on a test
gives that test a machine of its own; on a module (pytestmark), the module's machine.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from rig.errors import RigError

# rig's guest machinery is imported when a test first asks for it: a pytest run that
# uses none of the plugin's fixtures pays nothing for it (rig's own test suite, say).
if TYPE_CHECKING:
    from rig.pytest_guest import MachineWish, RigGuest, TestReports, TestWindow  # noqa: F401 (StashKey types)

SCOPES = ("module", "session", "function")
KMEMLEAK_MODES = ("test", "off")
MARKER = "rig_machine"
# Where the plugin keeps its state on the pytest objects.
_WINDOW = pytest.StashKey["tuple[RigGuest, TestWindow]"]()
_REPORTS = pytest.StashKey["TestReports"]()
_MACHINES = pytest.StashKey["Machines"]()

# option name -> (help, default); each is also an ini key rig_<name>
_SETTINGS: dict[str, tuple[str, str]] = {
    "kernel": ("kernel to build: debian:6.1, debian:6.12, debian:7.2 or a kernel git checkout", "debian:6.1"),
    "series": ("patch series to build into it (mbox, directory, A..B, message-id)", ""),
    "profile": ("config profile (default, kasan, kunit)", "default"),
    "arch": ("guest architecture: x86_64 or arm64", "x86_64"),
    "bzimage": ("boot this kernel image as it is instead of building --rig-kernel", ""),
    "gpu": ("GPU model of the guest machines (default: the architecture's)", ""),
    "pressure": ("memory pressure while each test runs: none, balloon, stress, memcg, shrink (comma-separated)",
                 "none"),
    "memory": ("guest memory in MiB", "2048"),
    "cpus": ("guest virtual CPUs", "2"),
    "scope": ("how long a guest lives: module, session or function", "module"),
    "kmemleak": ("scan kmemleak after each test (test) or not (off)", "test"),
    "out": ("directory for the kernel build and the guests' run directories (default: pytest's tmp dir)", ""),
}


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("rig", "rig: kernel guests for tests (rig's pytest plugin)")
    for name, (help_text, default) in _SETTINGS.items():
        group.addoption(f"--rig-{name}", dest=f"rig_{name}", default=None, metavar=name.upper(),
                        help=help_text + (f" (default: {default})" if default else ""))
        parser.addini(f"rig_{name}", help_text, default=default)
    group.addoption("--rig-shell-on-failure", dest="rig_shell_on_failure", action="store_true",
                    help="open a shell in the guest when a test fails, before the guest stops (needs -s)")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", f"{MARKER}(gpu=None, pressure=None, memory=None, cpus=None): the rig guest machine this test "
                   "(its own machine) or module (pytestmark) needs")


@dataclass(frozen=True)
class RigOptions:
    """The plugin's settings: command line first, then ini, then defaults; checked at once."""

    kernel: str
    series: str | None
    profile: str
    arch: str
    bzimage: Path | None
    gpu: str
    pressure: str
    memory_mib: int
    cpus: int
    scope: str
    kmemleak: bool
    out: Path | None
    shell_on_failure: bool

    @classmethod
    def from_config(cls, config: pytest.Config) -> RigOptions:
        from rig.target import TARGETS

        def value(name: str) -> str:
            given = config.getoption(f"rig_{name}")
            return str(given if given is not None else config.getini(f"rig_{name}")).strip()

        problems = []
        arch = value("arch")
        if arch not in TARGETS:
            problems.append(f"rig_arch {arch!r}: give one of {', '.join(TARGETS)}")
            arch = "x86_64"
        numbers: dict[str, int] = {}
        for name in ("memory", "cpus"):
            try:
                numbers[name] = int(value(name))
            except ValueError:
                problems.append(f"rig_{name} {value(name)!r}: give a whole number")
                numbers[name] = 1
        scope, kmemleak = value("scope"), value("kmemleak")
        if scope not in SCOPES:
            problems.append(f"rig_scope {scope!r}: give one of {', '.join(SCOPES)}")
        if kmemleak not in KMEMLEAK_MODES:
            problems.append(f"rig_kmemleak {kmemleak!r}: give one of {', '.join(KMEMLEAK_MODES)}")
        if problems:
            raise pytest.UsageError("rig plugin: " + "; ".join(problems))
        base = Path(config.rootpath)
        out, bzimage = value("out"), value("bzimage")
        return cls(
            kernel=value("kernel"), series=_path_or_spec(value("series"), base) or None, profile=value("profile"),
            arch=arch, bzimage=(base / bzimage) if bzimage else None,
            gpu=value("gpu") or TARGETS[arch].gpu_default, pressure=value("pressure") or "none",
            memory_mib=numbers["memory"], cpus=numbers["cpus"], scope=scope, kmemleak=kmemleak == "test",
            out=(base / out) if out else None, shell_on_failure=bool(config.getoption("rig_shell_on_failure")),
        )

    def wish(self, marker: pytest.Mark | None = None) -> MachineWish:
        """The machine the options ask for, with a rig_machine marker's changes."""
        from rig.pytest_guest import MachineWish

        wish = MachineWish(self.gpu, self.pressure, self.memory_mib, self.cpus)
        if marker is None:
            return wish
        unknown = set(marker.kwargs) - {"gpu", "pressure", "memory", "cpus"}
        if unknown or marker.args:
            raise pytest.UsageError(f"@pytest.mark.{MARKER} takes gpu=, pressure=, memory=, cpus= only "
                                    f"(got {', '.join(sorted(unknown)) or marker.args})")
        changes = {"gpu": marker.kwargs.get("gpu"), "pressure": marker.kwargs.get("pressure"),
                   "memory_mib": marker.kwargs.get("memory"), "cpus": marker.kwargs.get("cpus")}
        return replace(wish, **{k: v for k, v in changes.items() if v is not None})


def _path_or_spec(spec: str, base: Path) -> str:
    """A series given relative to the ini file's directory names a file there; a range or
    message-id stays as it is."""
    if spec and not Path(spec).is_absolute() and (base / spec).exists():
        return str(base / spec)
    return spec


@dataclass(frozen=True)
class RigKernel:
    """The kernel the guests boot."""

    image: Path
    arch: str
    release: str | None = None  # None for a --rig-bzimage rig did not build
    artifacts: Any = None  # rig.build.BuildArtifacts when rig built it


class Machines:
    """The guests of a session: one at a time, booted when a test first needs one, kept
    while the following tests ask for the same machine (per module, per session, or a
    test's own), stopped when the scope ends or another machine is asked for."""

    def __init__(self, options: RigOptions, kernel: RigKernel, out: Path) -> None:
        self.options = options
        self.kernel = kernel
        self.out = out
        self.current: RigGuest | None = None
        self.booted: list[RigGuest] = []

    def acquire(self, wish: MachineWish) -> RigGuest:
        current = self.current
        if current is not None and current.wish == wish and current.alive:
            return current
        self.release()
        from rig.guest_spec import GuestSpec
        from rig.image import default_recipe, ensure_image
        from rig.pytest_guest import RigGuest
        from rig.target import target

        spec = GuestSpec(target=target(self.options.arch), gpu=wish.gpu, memory_mib=wish.memory_mib,
                         cpus=wish.cpus, image=default_recipe(self.options.arch)).validate()
        image = ensure_image(spec.image, progress=False, arch=self.options.arch)
        guest = RigGuest(self.kernel.image, image, spec, self.out / f"guest-{len(self.booted) + 1}", wish,
                         kmemleak=self.options.kmemleak)
        self.booted.append(guest)
        try:
            self.current = guest.boot()
        except BaseException:
            guest.stop()  # its event loop thread, and whatever of QEMU is left
            raise
        return guest

    def release(self) -> None:
        if self.current is not None:
            self.current.stop()
            self.current = None


def _fail_setup(exc: RigError) -> None:
    pytest.fail(exc.render(), pytrace=False)


@pytest.fixture(scope="session")
def rig_options(pytestconfig: pytest.Config) -> RigOptions:
    """The plugin's settings (options and ini keys)."""
    return RigOptions.from_config(pytestconfig)


@pytest.fixture(scope="session")
def rig_out(rig_options: RigOptions, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Where the kernel build and the guests' run directories go."""
    if rig_options.out is not None:
        rig_options.out.mkdir(parents=True, exist_ok=True)
        return rig_options.out
    return tmp_path_factory.mktemp("rig")


@pytest.fixture(scope="session")
def rig_kernel(rig_options: RigOptions, rig_out: Path) -> RigKernel:
    """The kernel under test: --rig-bzimage as it is, else built by rig (cached)."""
    from rig.kernel_image import check_kernel_image

    try:
        if rig_options.bzimage is not None:
            return RigKernel(check_kernel_image(rig_options.bzimage, rig_options.arch, option="rig_bzimage"),
                             rig_options.arch)
        from rig.build import BuildRequest, build
        from rig.target import target

        request = BuildRequest(kernel=rig_options.kernel, series=rig_options.series, profile=rig_options.profile,
                               target=target(rig_options.arch))
        artifacts = build(request, rig_out / "build", progress=False)
    except RigError as exc:
        _fail_setup(exc)
        raise  # not reached: pytest.fail raises
    return RigKernel(artifacts.kernel_image, rig_options.arch, artifacts.kernel_release, artifacts)


@pytest.fixture(scope="session")
def rig_machines(request: pytest.FixtureRequest, rig_options: RigOptions, rig_kernel: RigKernel,
                 rig_out: Path) -> Iterator[Machines]:
    """The session's guests (rig_guest takes its machine from here)."""
    machines = Machines(rig_options, rig_kernel, rig_out)
    try:
        yield machines
    finally:
        machines.release()


@pytest.fixture
def rig_guest(request: pytest.FixtureRequest, rig_machines: Machines) -> Iterator[RigGuest]:
    """A booted guest for this test (shared by the module's tests unless the test has a
    rig_machine marker of its own); its kernel reports while the test runs are the test's."""
    options = rig_machines.options
    request.config.stash[_MACHINES] = rig_machines  # for the hooks: module ends, the summary
    marker = request.node.get_closest_marker(MARKER)
    own = any(m.name == MARKER for m in request.node.own_markers)
    try:
        if own or options.scope == "function":
            rig_machines.release()  # a machine of its own, fresh
        guest = rig_machines.acquire(options.wish(marker))
        window = guest.begin_test(request.node.nodeid)
    except RigError as exc:
        rig_machines.release()
        _fail_setup(exc)
        raise
    request.node.stash[_WINDOW] = (guest, window)
    try:
        yield guest
    finally:
        if not window.ended:  # the call phase never ran (a setup error after this fixture)
            request.node.stash[_REPORTS] = guest.end_test(window)
        if own or options.scope == "function" or not guest.alive:
            rig_machines.release()


@pytest.hookimpl(trylast=True)
def pytest_runtest_teardown(item: pytest.Item, nextitem: pytest.Item | None) -> None:
    """A module's guest stops when its last test is done (rig_scope = module)."""
    machines = item.config.stash.get(_MACHINES, None)
    if machines is None or machines.current is None or machines.options.scope != "module":
        return
    if nextitem is None or getattr(nextitem, "module", None) is not getattr(item, "module", None):
        machines.release()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[None]:
    outcome = yield
    if call.when != "call" or _WINDOW not in item.stash:
        return  # not a rig test: the plugin leaves it alone
    report: pytest.TestReport = outcome.get_result()
    from rig.pytest_guest import describe_reports

    guest, window = item.stash[_WINDOW]
    reports = guest.end_test(window)
    item.stash[_REPORTS] = reports
    for problem in reports.problems:  # what could not be checked: in the output and in JUnit
        report.sections.append(("rig", problem))
        item.user_properties.append(("rig_note", problem))
    if reports.findings:
        text = describe_reports(reports)
        for judged in reports.findings:
            item.user_properties.append(("rig_kernel_report", judged.finding.title))
        if report.passed:
            # The test's own checks passed; the kernel's report fails it.
            report.outcome = "failed"
            report.longrepr = KernelReportsRepr(item.nodeid, reports.findings[0].finding.title, text)
        else:
            report.sections.append(("rig kernel reports", text))
    if report.failed and guest.alive and item.config.getoption("rig_shell_on_failure"):
        _shell(item, guest)


def _interactive() -> bool:
    """Someone at a terminal to use the shell."""
    return sys.stdin.isatty() and sys.stdout.isatty()


def _shell(item: pytest.Item, guest: RigGuest) -> None:
    if not _interactive():
        return
    capture = item.config.pluginmanager.getplugin("capturemanager")
    with capture.global_and_fixture_disabled() if capture is not None else _nothing():
        print(f"\nrig: {item.nodeid} failed; a shell in its guest ({guest.describe()}). Exit it to go on.",
              flush=True)
        guest.shell()


class _nothing:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


@dataclass(frozen=True)
class _Crash:
    """What pytest's summary line and JUnit's failure message read (reprcrash)."""

    path: str
    lineno: int
    message: str


class KernelReportsRepr:
    """A test failed by the kernel: its reports as pytest shows them (longrepr)."""

    def __init__(self, nodeid: str, title: str, text: str) -> None:
        self.reprcrash = _Crash(nodeid.split("::")[0], 0, f"kernel report: {title}")
        self.text = text

    def toterminal(self, out: Any) -> None:
        for line in self.text.splitlines():
            out.line(line)

    def __str__(self) -> str:
        return self.text


def pytest_terminal_summary(terminalreporter: Any, config: pytest.Config) -> None:
    machines = config.stash.get(_MACHINES, None)
    if machines is None or not machines.booted:
        return
    terminalreporter.section("rig guests")
    kernel = machines.kernel
    terminalreporter.line(f"kernel: {kernel.release or kernel.image} ({kernel.arch})")
    for guest in machines.booted:
        terminalreporter.line(f"{guest.run_dir.name}: {guest.describe()}")
