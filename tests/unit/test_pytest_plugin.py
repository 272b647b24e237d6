"""rig's pytest plugin, driven by pytest itself (pytester) with one seam faked: the guest
machine. The test windows, the attribution of reports and the verdict on each test are
rig's own code over real kernel reports (tests/data/splat)."""

from __future__ import annotations

import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from rig.pytest_guest import marker_name, reports_of

pytest_plugins = ["pytester"]

DATA = Path(__file__).resolve().parent.parent / "data"
# A real lockdep report of the lockdep series on 6.1, without IGT's own lines around it.
LOCKDEP = "".join(line for line in (DATA / "splat" / "lockdep-dma-resv-fence-6.1.log").read_text().splitlines(True)
                  if "[IGT]" not in line)

# The guest seam: a RigGuest whose kernel log is a file the test writes (kmsg appends a
# printk line to it, as the console would show it). begin_test, end_test and the reports
# they return are the plugin's real code.
CONFTEST = f'''
from pathlib import Path

import pytest

from rig.pytest_guest import MachineWish, RigGuest
from rig.pytest_plugin import RigKernel
from rig.guest_spec import GuestSpec

LOCKDEP = {LOCKDEP!r}


class FakeGuest(RigGuest):
    clock = 100.0

    @property
    def alive(self):
        return True

    def kmsg(self, line):
        FakeGuest.clock += 0.5
        with self.console_log.open("a") as log:
            log.write(f"[{{FakeGuest.clock:12.6f}}][  T{{int(FakeGuest.clock)}}] {{line}}\\n")

    def shell(self):
        print("SHELL IN THE GUEST")
        return 0

    def splat(self):
        with self.console_log.open("a") as log:
            log.write(LOCKDEP)


class FakeMachines:
    def __init__(self, out):
        self.out = out
        self.booted = []
        self.options = None
        self.current = None
        self.kernel = RigKernel(Path("/k/bzImage"), "x86_64", "6.1.0-fake")

    def acquire(self, wish):
        if self.current is None or self.current.wish != wish:
            run_dir = self.out / f"guest-{{len(self.booted) + 1}}"
            (run_dir / "vm").mkdir(parents=True)
            (run_dir / "vm" / "console.log").write_text("[    0.000000][    T0] Linux version 6.1.0\\n")
            self.current = FakeGuest(Path("/k/bzImage"), None, GuestSpec(gpu=wish.gpu), run_dir, wish,
                                     kmemleak=False)
            self.booted.append(self.current)
        return self.current

    def release(self):
        self.current = None


@pytest.fixture(scope="session")
def rig_machines(tmp_path_factory, rig_options):
    machines = FakeMachines(tmp_path_factory.mktemp("rig"))
    machines.options = rig_options
    return machines
'''

TESTS = '''
import pytest


def test_quiet(rig_guest):
    assert rig_guest.wish.gpu == "virtio-gpu"


def test_passes_but_the_kernel_splats(rig_guest):
    rig_guest.splat()
    assert True


def test_fails_and_splats(rig_guest):
    rig_guest.splat()
    assert 1 == 2


@pytest.mark.rig_machine(gpu="bochs")
def test_own_machine(rig_guest):
    assert rig_guest.wish.gpu == "bochs"


def test_without_rig():
    assert True
'''


def test_a_passing_test_that_made_the_kernel_report_fails_with_the_title(pytester: pytest.Pytester,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")  # the summary line whole
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_guest=TESTS)
    result = pytester.runpytest("-p", "rig.pytest_plugin", "-rA", "--junitxml=junit.xml")
    result.assert_outcomes(passed=3, failed=2)
    out = result.stdout.str()
    assert "FAILED test_guest.py::test_passes_but_the_kernel_splats - kernel report: possible deadlock in " \
           "vgem_fence_signal_ioctl" in out
    assert "locks: fs_reclaim -> reservation_ww_class_mutex -> dma_fence_map" in out  # the lock chain
    assert "WARNING: possible circular locking dependency detected" in out  # the report itself
    # the test that failed on its own keeps its assertion, with the report beside it
    assert "assert 1 == 2" in out and "rig kernel reports" in out
    # after lockdep's report, the guest's later tests say lockdep no longer checked them
    assert "lockdep turned itself off after its report in test_guest.py::test_passes_but_the_kernel_splats" in out
    suite = ET.parse(pytester.path / "junit.xml").getroot()
    cases = {case.get("name"): case for case in suite.iter("testcase")}
    failure = cases["test_passes_but_the_kernel_splats"].find("failure")
    assert failure is not None
    assert failure.get("message") == "kernel report: possible deadlock in vgem_fence_signal_ioctl"
    assert "dma_fence_map" in (failure.text or "")
    props = {p.get("name"): p.get("value") for p in cases["test_fails_and_splats"].iter("property")}
    assert props["rig_kernel_report"] == "possible deadlock in vgem_fence_signal_ioctl"
    assert props["rig_note"].startswith("lockdep turned itself off")
    assert cases["test_quiet"].find("failure") is None and cases["test_own_machine"].find("failure") is None


@pytest.mark.parametrize("scope, guests", [("module", 3), ("session", 2), ("function", 5)])
def test_how_long_a_guest_lives(pytester: pytest.Pytester, scope: str, guests: int) -> None:
    pytester.makeconftest(CONFTEST + '''

def pytest_sessionfinish(session):
    print("guests booted:", len(session.config._rig_fake.booted))


@pytest.fixture(autouse=True)
def _keep(rig_machines, pytestconfig):
    pytestconfig._rig_fake = rig_machines
''')
    same = "def test_one(rig_guest):\n    pass\n\ndef test_two(rig_guest):\n    pass\n"
    pytester.makepyfile(test_a=same, test_b=same.replace("test_", "test_b_"),
                        test_c='import pytest\n\n@pytest.mark.rig_machine(gpu="bochs")\ndef test_own(rig_guest):\n'
                               '    pass\n')
    result = pytester.runpytest("-p", "rig.pytest_plugin", "-s", "--rig-scope", scope)
    result.assert_outcomes(passed=5)
    # module: one per module; session: modules a and b share one, c's test has its own;
    # function: one for each test
    result.stdout.fnmatch_lines([f"*guests booted: {guests}"])


def test_a_window_is_the_tests_stretch_of_the_console() -> None:
    from rig.pytest_guest import test_window

    log = (b"boot\n[ 1.0] rig: start pytest:a\nA1\n[ 2.0] rig: end pytest:a\n"
           b"[ 3.0] rig: start pytest:b\nB1\n[ 4.0] rig: end pytest:b\nafter\n")
    assert test_window(log, "pytest:a") == b"[ 1.0] rig: start pytest:a\nA1\n[ 2.0] rig: end pytest:a\n"
    assert test_window(log + b"[ 5.0] rig: start pytest:c\nC1 panic", "pytest:c") == \
        b"[ 5.0] rig: start pytest:c\nC1 panic"  # the guest died in it: to the end of the log
    assert test_window(log, "pytest:zzz") == b""


def test_a_shell_in_the_guest_of_each_failed_test_when_asked(pytester: pytest.Pytester,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    import rig.pytest_plugin

    monkeypatch.setattr(rig.pytest_plugin, "_interactive", lambda: True)  # a developer at a terminal
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_guest=TESTS)
    asked = pytester.runpytest("-p", "rig.pytest_plugin", "-s", "--rig-shell-on-failure")
    asked.assert_outcomes(passed=3, failed=2)
    assert asked.stdout.str().count("SHELL IN THE GUEST") == 2  # the two failed tests, the kernel's one too
    assert "test_passes_but_the_kernel_splats failed; a shell in its guest" in asked.stdout.str()
    not_asked = pytester.runpytest("-p", "rig.pytest_plugin", "-s")
    assert "SHELL IN THE GUEST" not in not_asked.stdout.str()


def test_the_plugin_is_inert_for_tests_that_do_not_use_it(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain='''
import sys

def test_plain():
    assert 1 + 1 == 2

def test_nothing_of_rigs_guest_machinery_was_imported():
    assert "rig.pytest_guest" not in sys.modules and "rig.vm" not in sys.modules
''')
    result = pytester.runpytest_subprocess("-p", "rig.pytest_plugin", "--strict-markers")
    result.assert_outcomes(passed=2)
    assert "rig guests" not in result.stdout.str()


def test_bad_settings_are_a_usage_error(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nrig_scope = forever\n")
    pytester.makepyfile(test_x="def test_x(rig_options):\n    pass\n")
    result = pytester.runpytest("-p", "rig.pytest_plugin", "--rig-memory", "lots")
    assert result.ret != 0
    result.stdout.fnmatch_lines(["*rig_memory 'lots': give a whole number*rig_scope 'forever'*"])


def test_options_override_ini_and_a_marker_overrides_both(pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nrig_gpu = bochs\nrig_pressure = balloon\nrig_memory = 1024\n")
    pytester.makepyfile(test_x='''
import pytest

def test_defaults(rig_options):
    assert rig_options.wish() .gpu == "cirrus" and rig_options.wish().pressure == "balloon"
    assert rig_options.memory_mib == 1024 and rig_options.kernel == "debian:6.1"

@pytest.mark.rig_machine(pressure="memcg=512", memory=4096)
def test_marker(rig_options, request):
    wish = rig_options.wish(request.node.get_closest_marker("rig_machine"))
    assert (wish.gpu, wish.pressure, wish.memory_mib) == ("cirrus", "memcg=512", 4096)
''')
    result = pytester.runpytest("-p", "rig.pytest_plugin", "--rig-gpu", "cirrus", "--strict-markers")
    result.assert_outcomes(passed=2)


def _console(tmp_path: Path, *lines: str) -> Path:
    path = tmp_path / "console.log"
    path.write_text("".join(line + "\n" for line in lines))
    return path


def test_reports_are_the_windows_own(tmp_path: Path) -> None:
    first, second = marker_name("t.py::test_a"), marker_name("t.py::test_b[x y]")
    assert second == "pytest:t.py::test_b[x_y]"  # printk lines and rig's spans have no spaces in names
    console = _console(tmp_path,
                       f"[   40.000000][  T300] rig: start {first}",
                       f"[   40.500000][  T301] rig: end {first}",
                       f"[   41.000000][  T302] rig: start {second}",
                       LOCKDEP.rstrip("\n"),
                       f"[   43.000000][  T303] rig: end {second}")
    assert reports_of(first, console, None) == ()
    (only,) = reports_of(second, console, None)
    assert only.finding.title == "possible deadlock in vgem_fence_signal_ioctl"


def test_a_report_before_any_test_belongs_to_none(tmp_path: Path) -> None:
    name = marker_name("t.py::test_a")
    console = _console(tmp_path, LOCKDEP.rstrip("\n"),
                       f"[   50.000000][  T300] rig: start {name}",
                       f"[   50.500000][  T301] rig: end {name}")
    assert reports_of(name, console, None) == ()


def test_a_leak_read_after_the_test_is_the_tests(tmp_path: Path) -> None:
    name = marker_name("t.py::test_leak")
    console = _console(tmp_path, f"[   50.000000][  T300] rig: start {name}", f"[   50.500000][  T301] rig: end {name}")
    (leak,) = reports_of(name, console, DATA / "run" / "kmemleak.txt")
    assert leak.finding.kind == "kmemleak"


if sys.version_info < (3, 11):  # pragma: no cover
    pytest.skip("rig needs Python 3.11", allow_module_level=True)


class _Machine:
    class state:  # noqa: N801 - stands for rig.qemu.machine.MachineState
        over = False


class _VM:
    """rig.vm.VM at its seam: commands answered from a table, kmsg onto a console file."""

    def __init__(self, console: Path, answers: dict[str, str]) -> None:
        self.machine = _Machine()
        self.console = console
        self.answers = answers
        self.calls: list[tuple[list[str], bytes | None]] = []
        self.files: dict[str, bytes] = {}

    async def run(self, argv, *, timeout, check=False, input=None, env=None):
        from rig.guest import GuestResult

        self.calls.append((list(argv), input))
        return GuestResult(tuple(argv), 0, self.answers.get(" ".join(argv), ""), "", 0.01)

    async def kmsg(self, line: str) -> None:
        with self.console.open("a") as log:
            log.write(f"[   60.000000][  T500] {line}\n")

    async def put(self, local: Path, remote: str, *, mode=None) -> None:
        self.files[remote] = local.read_bytes()


def _guest_on(vm: _VM, tmp_path: Path):
    import concurrent.futures

    from rig.guest_spec import GuestSpec
    from rig.pytest_guest import MachineWish, RigGuest

    guest = RigGuest(Path("/k/bzImage"), None, GuestSpec(), tmp_path, MachineWish("virtio-gpu"))  # type: ignore[arg-type]
    guest._vm, guest._held = vm, concurrent.futures.Future()  # booted, as far as the seam can tell
    return guest


def test_guest_calls_go_to_rigs_vm_and_a_window_reads_kmemleak(tmp_path: Path, monkeypatch) -> None:
    from rig import collect

    monkeypatch.setattr(collect, "KMEMLEAK_WAIT_S", 0.0)
    (tmp_path / "vm").mkdir()
    console = tmp_path / "vm" / "console.log"
    console.write_text("[    0.000000][    T0] Linux version 6.1.0\n")
    vm = _VM(console, {" ".join(collect.kmemleak_read_argv()): (DATA / "run" / "kmemleak.txt").read_text(),
                       "python3 - /dev/dri/card1": "ok\n"})
    guest = _guest_on(vm, tmp_path)
    try:
        window = guest.begin_test("examples/test_vgem.py::test_leak")
        # the boot's leaks and earlier tests' are not its: reported once (the boot's kept), then cleared
        assert vm.calls[0][0] == ["sh", "-c", 'echo scan > "$0" && cat "$0"', collect.KMEMLEAK]
        assert vm.calls[1][0] == ["sh", "-c", 'echo clear > "$0"', collect.KMEMLEAK]
        result = guest.python("print('ok')", "/dev/dri/card1")
        assert result.stdout == "ok\n" and vm.calls[-1] == (["python3", "-", "/dev/dri/card1"], b"print('ok')")
        assert guest.run("uname -r").argv == ("sh", "-c", "uname -r")
        reports = guest.end_test(window)
    finally:
        guest._held.set_result(None)
        guest.stop()
    assert [f.finding.kind for f in reports.findings] == ["kmemleak"]
    assert reports.kmemleak == tmp_path / "kmemleak-1.txt"
    assert reports.console_log.read_text().splitlines() == [
        "[   60.000000][  T500] rig: start pytest:examples/test_vgem.py::test_leak",
        "[   60.000000][  T500] rig: end pytest:examples/test_vgem.py::test_leak"]
