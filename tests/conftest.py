"""Shared test setup. Tests marked `slow` build real kernels and boot real guests."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

# The shared corpus of real kernel reports lives beside the repository, never inside it.
CORPUS = Path(os.environ.get("RIG_CORPUS", REPO.parent / "shared" / "corpus"))


def pytest_configure(config: pytest.Config) -> None:
    # pytest-xdist's workers ignore SIGINT (Ctrl-C is the controller's to handle), and an
    # ignored signal stays ignored in every program they start: rig's own Ctrl-C handling,
    # which the tests send it, needs Python's default back.
    if os.environ.get("PYTEST_XDIST_WORKER") and signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@pytest.hookimpl(optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: object) -> object:
    """The two workers' layout (tests/layout.py): the arm64 chain on one, the rest on the
    other. pytest-xdist's own `loadgroup` would do it from `xdist_group` marks, but it
    groups by a suffix it writes into each node id, which pytest 9.2 no longer keeps.
    Another --dist given on the command line is left to pytest-xdist."""
    if config.getvalue("dist") != "loadgroup":
        return None
    from xdist.scheduler import LoadScopeScheduling

    from tests.layout import scope_of

    class ChainScheduling(LoadScopeScheduling):
        def _split_scope(self, nodeid: str) -> str:
            return scope_of(nodeid)

    return ChainScheduling(config, log)  # type: ignore[arg-type]


_PHASES: list = []  # tests.timeline.Span of every test phase the controller heard of
_CPU_MARK = [0.0]  # the process's CPU seconds when the test started or its last phase ended


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):  # type: ignore[no-untyped-def]
    """Each phase's report carries the CPU time it used (`cpu_s`), with that of every
    program it ran and waited for (make, QEMU, rig itself): on two cores, the CPU a test
    takes, not its wall time, is what a cold run's time is made of. pytest-xdist sends
    the attribute to the controller with the report."""
    outcome = yield
    now = process_cpu_s()
    report = outcome.get_result()
    report.cpu_s, _CPU_MARK[0] = now - _CPU_MARK[0], now


def pytest_runtest_logstart() -> None:
    _CPU_MARK[0] = process_cpu_s()  # time between tests (collection, the scheduler) is no test's


def process_cpu_s() -> float:
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if os.environ.get("PYTEST_XDIST_WORKER") or not report.stop:
        return  # a worker's own report: the controller hears it too, with the worker's name
    from tests.timeline import Span

    node = getattr(report, "node", None)  # set by pytest-xdist's controller
    worker = node.gateway.id if node is not None else "main"
    _PHASES.append(Span(worker, report.nodeid, report.start, report.stop, getattr(report, "cpu_s", 0.0)))


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """How the workers were used: what a cold run's time is made of besides --durations."""
    from tests.timeline import summary

    lines = summary(_PHASES)
    if lines:
        terminalreporter.write_sep("=", "workers")
        for line in lines:
            terminalreporter.write_line(line)


@pytest.fixture
def corpus_dir() -> Path:
    path = CORPUS / "syzkaller-linux-report"
    if not path.is_dir():
        # On a developer's machine the corpus may be absent; in CI a missing corpus would
        # turn the splat scores' tests into silent skips, so it fails.
        message = f"shared corpus not found at {path} (set RIG_CORPUS)"
        if os.environ.get("CI"):
            pytest.fail(message + "; CI is set, so the corpus tests must run")
        pytest.skip(message)
    return path


@pytest.fixture
def small_disk(tmp_path: Path):  # type: ignore[no-untyped-def]
    """A directory on a tmpfs of its own, and a way to fill it: a real disk that fills up
    (size in bytes -> mount point). Needs root to mount, as CI has."""
    import subprocess

    if os.geteuid() != 0:
        pytest.fail("this test mounts a tmpfs: run the tests as root, as CI does")
    mounted: list[Path] = []

    def mount(size: int) -> Path:
        point = tmp_path / f"disk-{len(mounted)}"
        point.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size},mode=0700", "tmpfs", str(point)], check=True)
        mounted.append(point)
        return point

    yield mount
    for point in mounted:
        subprocess.run(["umount", "-l", str(point)], check=False)


def fill(directory: Path) -> None:
    """Take every free byte of `directory`'s file system: a filler file written until the
    disk refuses, in smaller and smaller pieces."""
    import errno

    fd = os.open(directory / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        for size in (1 << 20, 1 << 12, 1):
            while True:
                try:
                    os.write(fd, bytes(size))
                except OSError as exc:
                    assert exc.errno == errno.ENOSPC, exc
                    break
    finally:
        os.close(fd)
