"""Bad input of every kind rig reads, each refused the same way: exit 2 when it is the
user's (the option, the file), 3 when it is the host's (a cache it cannot make, a full
disk); one message that names the input; no traceback; and nothing made before the check
(no run directory, no cache, no download).

Each case goes through rig's own entry point, `rig.cli.main`, as a user's command line
does. The tripwires below fail a case that gets past the checks into real work.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rig import cli
from rig.report.model import SCHEMA_VERSION

from .kernelimages import fake_kernel_image
from .test_build_fakes import fake_kernel

REPO = Path(__file__).resolve().parent.parent.parent

# A patch as git format-patch writes it (one hunk: 3 lines of the old file, 4 of the new).
PATCH = """\
From 0000000000000000000000000000000000000000 Mon Sep 17 00:00:00 2001
From: Ada Tester <ada@example.org>
Date: Sat, 21 Nov 2026 12:00:00 +0000
Subject: [PATCH] drv: say what it is

---
 drv.c | 1 +
 1 file changed, 1 insertion(+)

diff --git a/drv.c b/drv.c
index 1111111..2222222 100644
--- a/drv.c
+++ b/drv.c
@@ -1,3 +1,4 @@
 /* A driver. */
+/* It probes. */
 int drv_probe(void)
 {
--
2.39.5
"""

GOOD_MATRIX = '[axes]\ngpu = ["virtio-gpu", "bochs"]\n'
BINARY = bytes(range(256)) * 8  # not UTF-8, not a patch, not TOML, not a kernel
ELF = b"\x7fELF\x02\x01\x01" + bytes(0x400)


@dataclass(frozen=True)
class Case:
    argv: str  # the command line; {tmp} is the test's directory
    code: int  # 2: the user's input; 3: the host's
    names: tuple[str, ...]  # what the message must name (the option, the path, the value)
    files: dict[str, str | bytes] = field(default_factory=dict)  # made under {tmp} first; "x/" is a directory
    env: dict[str, str] = field(default_factory=dict)
    untouched: tuple[str, ...] = ("out", "cache")  # under {tmp}: must not exist afterwards
    kernel: bool = False  # a small real kernel-shaped git checkout at {tmp}/linux


def _report(**fields: object) -> str:
    import json

    return json.dumps({"schema": SCHEMA_VERSION, "findings": [], "tests": [], "exit_code": 0, **fields})


CASES: dict[str, Case] = {
    # ---- rig run's options: numbers, ranges, sizes, deadlines, combinations
    "repeat-zero": Case("run --repeat 0 --out {tmp}/out", 2, ("--repeat 0",)),
    "repeat-too-many": Case("run --repeat 21 --out {tmp}/out", 2, ("--repeat 21",)),
    "max-repeat-without-series": Case("run --max-repeat 3 --out {tmp}/out", 2, ("--max-repeat",)),
    "max-repeat-below-repeat": Case("run --series {tmp}/s.patch --repeat 3 --max-repeat 2 --out {tmp}/out", 2,
                                    ("--max-repeat 2",), {"s.patch": PATCH}),
    "retries-too-many": Case("run --retries 9 --out {tmp}/out", 2, ("--retries 9",)),
    "deadline-too-short": Case("run --deadline 10 --out {tmp}/out", 2, ("--deadline 10",)),
    "deadline-nan": Case("run --deadline nan --out {tmp}/out", 2, ("--deadline nan",)),
    "deadline-infinite": Case("run --deadline inf --out {tmp}/out", 2, ("--deadline inf",)),
    "ready-timeout-infinite": Case("run --ready-timeout inf --out {tmp}/out", 2, ("--ready-timeout inf",)),
    "ready-timeout-past-time-t": Case("run --ready-timeout 1e308 --out {tmp}/out", 2, ("--ready-timeout 1e+308",)),
    "cpus-zero": Case("run --cpus 0 --out {tmp}/out", 2, ("--cpus 0",)),
    "memory-too-small": Case("run --memory 100 --out {tmp}/out", 2, ("--memory 100",)),
    "gpu-of-another-arch": Case("run --arch arm64 --gpu bochs --out {tmp}/out", 2, ("--gpu bochs", "arm64")),
    "gpu-unknown": Case("run --gpu voodoo2 --out {tmp}/out", 2, ("--gpu voodoo2",)),
    "append-with-space": Case("run --append 'console=ttyS0 quiet' --out {tmp}/out", 2, ("--append",)),
    "bisect-without-series": Case("run --bisect --out {tmp}/out", 2, ("--bisect",)),
    "each-patch-in-run": Case("run --each-patch --out {tmp}/out", 2, ("--each-patch",)),
    # ---- memory pressure against the guest's memory
    "pressure-unknown": Case("run --pressure squeeze --out {tmp}/out", 2, ("--pressure squeeze", "'squeeze'")),
    "pressure-twice": Case("run --pressure balloon,balloon --out {tmp}/out", 2, ("'balloon' is given twice",)),
    "balloon-above-memory": Case("run --memory 1024 --pressure balloon=2048 --out {tmp}/out", 2,
                                 ("balloon=2048", "1024 MiB")),
    "memcg-above-memory": Case("run --memory 1024 --pressure memcg=4096 --out {tmp}/out", 2,
                               ("memcg=4096", "1024 MiB")),
    "stress-above-memory": Case("run --memory 1024 --pressure stress=64G --out {tmp}/out", 2,
                                ("stress=64G", "1024 MiB")),
    "stress-share-too-big": Case("run --pressure stress=95% --out {tmp}/out", 2, ("stress=95%",)),
    "balloon-unicode-digit": Case("run --pressure balloon=\u00b2 --out {tmp}/out", 2, ("balloon=\u00b2",)),
    "shrink-period-zero": Case("run --pressure shrink=0 --out {tmp}/out", 2, ("shrink=0",)),
    # ---- series in every form
    "series-empty-string": Case("run --series '' --out {tmp}/out", 2, ("--series is empty",)),
    "series-missing-file": Case("run --series {tmp}/nope.mbox --out {tmp}/out", 2,
                                ("{tmp}/nope.mbox", "no such file")),
    "series-empty-file": Case("run --series {tmp}/empty.mbox --out {tmp}/out", 2, ("{tmp}/empty.mbox", "no patch"),
                              {"empty.mbox": ""}),
    "series-binary-file": Case("build --series {tmp}/blob.mbox --out {tmp}/out", 2, ("{tmp}/blob.mbox",),
                               {"blob.mbox": BINARY}),
    "series-truncated-mbox": Case("run --series {tmp}/cut.mbox --out {tmp}/out", 2,
                                  ("{tmp}/cut.mbox", "damaged", "@@ -1,3 +1,4 @@"),
                                  {"cut.mbox": PATCH[:PATCH.index("+/* It probes")]}),
    "series-rewrapped-line": Case("run --series {tmp}/wrapped.mbox --out {tmp}/out", 2,
                                  ("{tmp}/wrapped.mbox", "damaged", "'probes. */'"),
                                  {"wrapped.mbox": PATCH.replace("+/* It probes. */", "+/* It\nprobes. */")}),
    "series-empty-directory": Case("run --series {tmp}/patches --out {tmp}/out", 2, ("{tmp}/patches", "*.patch"),
                                   {"patches/": ""}),
    "series-directory-without-patches": Case("build --series {tmp}/patches --out {tmp}/out", 2,
                                             ("{tmp}/patches",), {"patches/README": "notes\n"}),
    "series-directory-of-two-mboxes": Case("run --series {tmp}/patches --out {tmp}/out", 2,
                                           ("{tmp}/patches", "a.mbox, b.mbox"),
                                           {"patches/a.mbox": PATCH, "patches/b.mbox": PATCH}),
    "series-range-on-debian": Case("run --series v6.1..fix --out {tmp}/out", 2, ("v6.1..fix", "debian:6.1")),
    "series-range-bad-commit": Case("build --kernel {tmp}/linux --series no-such-tag..HEAD --out {tmp}/out", 2,
                                    ("no-such-tag", "{tmp}/linux"), kernel=True),
    "series-symmetric-range": Case("build --kernel {tmp}/linux --series HEAD~1...HEAD --out {tmp}/out", 2,
                                   ("HEAD~1...HEAD", "symmetric"), kernel=True),
    "series-msgid-two-ats": Case("run --series 2026.1-1-dev@@example.org --out {tmp}/out", 2,
                                 ("2026.1-1-dev@@example.org", "message-id")),
    "series-msgid-not-lore": Case("run --series https://example.org/x@y --out {tmp}/out", 2,
                                  ("https://example.org/x@y",)),
    "series-home-of-no-user": Case("run --series ~rig-no-such-user/fix.mbox --out {tmp}/out", 2,
                                   ("~rig-no-such-user/fix.mbox", "no such file")),
    "series-not-anything": Case("run --series fix-the-leak --out {tmp}/out", 2, ("'fix-the-leak'",)),
    # ---- the kernel, its base, profile and config fragments
    "kernel-unknown-debian": Case("run --kernel debian:9.9 --out {tmp}/out", 2, ("debian:9.9",)),
    "kernel-missing-path": Case("build --kernel {tmp}/linux-next --out {tmp}/out", 2, ("{tmp}/linux-next",)),
    "kernel-not-a-checkout": Case("build --kernel {tmp}/src --out {tmp}/out", 2, ("{tmp}/src", "git checkout"),
                                  {"src/Makefile": "all:\n"}),
    "kernel-home-of-no-user": Case("build --kernel ~rig-no-such-user/linux --out {tmp}/out", 2,
                                   ("~rig-no-such-user/linux",)),
    "kernel-a-file": Case("build --kernel {tmp}/linux.tar --out {tmp}/out", 2, ("{tmp}/linux.tar",),
                          {"linux.tar": BINARY}),
    "base-not-a-commit": Case("build --kernel {tmp}/linux --base v9.9 --out {tmp}/out", 2, ("--base v9.9",),
                              kernel=True),
    "base-with-debian": Case("build --base v6.1 --out {tmp}/out", 2, ("--base v6.1", "debian:6.1")),
    "each-patch-without-series": Case("build --each-patch --out {tmp}/out", 2, ("--each-patch",)),
    "profile-unknown": Case("build --profile ubsan --out {tmp}/out", 2, ("'ubsan'",)),
    "config-missing": Case("build --config {tmp}/debug.config --out {tmp}/out", 2, ("{tmp}/debug.config",)),
    "config-a-directory": Case("build --config {tmp}/configs --out {tmp}/out", 2, ("{tmp}/configs",),
                               {"configs/": ""}),
    "config-garbage-line": Case("run --config {tmp}/f.config --out {tmp}/out", 2, ("{tmp}/f.config:2", "lockdep on"),
                                {"f.config": "CONFIG_LOCKDEP=y\nlockdep on\n"}),
    "config-bad-value": Case("run --config {tmp}/f.config --out {tmp}/out", 2, ("{tmp}/f.config:1", "'maybe'"),
                             {"f.config": "CONFIG_KASAN=maybe\n"}),
    "config-unterminated-string": Case("build --config {tmp}/f.config --out {tmp}/out", 2,
                                       ("{tmp}/f.config:1", "CONFIG_CMDLINE"),
                                       {"f.config": 'CONFIG_CMDLINE="console=ttyS0\n'}),
    "config-binary": Case("build --config {tmp}/f.config --out {tmp}/out", 2, ("{tmp}/f.config", "not a text file"),
                          {"f.config": BINARY}),
    # ---- plans
    "plan-missing": Case("run --plan {tmp}/mine.toml --out {tmp}/out", 2, ("{tmp}/mine.toml",)),
    "plan-unknown-name": Case("run --plan nightly --out {tmp}/out", 2, ("'nightly'",)),
    "plan-toml-syntax": Case("run --plan {tmp}/p.toml --out {tmp}/out", 2, ("{tmp}/p.toml", "TOML"),
                             {"p.toml": "[igt\n"}),
    "plan-unknown-key": Case("run --plan {tmp}/p.toml --out {tmp}/out", 2, ("{tmp}/p.toml", "'colour'"),
                             {"p.toml": 'colour = "red"\n[kunit]\nsuites = ["drm_mm"]\n'}),
    "plan-bad-type": Case("run --plan {tmp}/p.toml --out {tmp}/out", 2, ("{tmp}/p.toml", "kunit.suites"),
                          {"p.toml": "[kunit]\nsuites = 5\n"}),
    "plan-binary": Case("run --plan {tmp}/p.toml --out {tmp}/out", 2, ("{tmp}/p.toml", "UTF-8"),
                        {"p.toml": BINARY}),
    # ---- baselines
    "baseline-missing": Case("run --baseline {tmp}/base-run --out {tmp}/out", 2, ("{tmp}/base-run",)),
    "baseline-directory-without-report": Case("run --baseline {tmp}/base-run --out {tmp}/out", 2,
                                              ("{tmp}/base-run/report.json",), {"base-run/console.log": "x\n"}),
    "baseline-not-a-report": Case("run --baseline {tmp}/b.json --out {tmp}/out", 2, ("{tmp}/b.json", "findings"),
                                  {"b.json": '{"cells": []}'}),
    "baseline-newer-schema": Case("run --baseline {tmp}/b.json --out {tmp}/out", 2, ("{tmp}/b.json", "schema 99"),
                                  {"b.json": _report(schema=99)}),
    "baseline-malformed-findings": Case("run --baseline {tmp}/b.json --out {tmp}/out", 2,
                                        ("{tmp}/b.json", "malformed"), {"b.json": _report(findings=[1, 2])}),
    "baseline-binary": Case("run --baseline {tmp}/b.json --out {tmp}/out", 2, ("{tmp}/b.json",), {"b.json": BINARY}),
    # ---- known-issue files
    "known-missing": Case("run --known {tmp}/virtio_gpu-none-fails.txt --out {tmp}/out", 2,
                          ("{tmp}/virtio_gpu-none-fails.txt",)),
    "known-unknown-kind": Case("run --known {tmp}/issues.txt --out {tmp}/out", 2, ("{tmp}/issues.txt", "-fails.txt"),
                               {"issues.txt": "kms_addfb_basic@too-high\n"}),
    "known-bad-status": Case("run --known {tmp}/v-fails.txt --out {tmp}/out", 2, ("{tmp}/v-fails.txt:2", "Pass"),
                             {"v-fails.txt": "# header\nkms_addfb_basic@too-high,Pass\n"}),
    "known-bad-regex": Case("run --known {tmp}/v-flakes.txt --out {tmp}/out", 2, ("{tmp}/v-flakes.txt:1", "'kms_('"),
                            {"v-flakes.txt": "kms_(\n"}),
    "known-toml-without-reason": Case("run --known {tmp}/k.toml --out {tmp}/out", 2, ("{tmp}/k.toml", "reason"),
                                      {"k.toml": '[[finding]]\ntitle = "WARNING in x"\n'}),
    "known-binary": Case("run --known {tmp}/v-skips.txt --out {tmp}/out", 2, ("{tmp}/v-skips.txt",),
                         {"v-skips.txt": BINARY}),
    # ---- kernel image files
    "bzimage-missing": Case("run --bzimage {tmp}/bzImage --out {tmp}/out", 2, ("--bzimage {tmp}/bzImage",)),
    "bzimage-not-a-kernel": Case("boot --bzimage {tmp}/bzImage --out {tmp}/out -- true", 2,
                                 ("--bzimage {tmp}/bzImage", "HdrS"), {"bzImage": BINARY}),
    "bzimage-a-vmlinux": Case("run --bzimage {tmp}/vmlinux --out {tmp}/out", 2, ("{tmp}/vmlinux", "ELF"),
                              {"vmlinux": ELF}),
    "bzimage-a-directory": Case("boot --bzimage {tmp}/build --out {tmp}/out -- true", 2,
                                ("{tmp}/build", "directory"), {"build/": ""}),
    "bzimage-of-another-arch": Case("boot --arch arm64 --gpu mali --bzimage {tmp}/bzImage --out {tmp}/out -- true",
                                    2, ("{tmp}/bzImage", "x86_64 kernel image"), {"bzImage": "@x86_64-kernel"}),
    "bzimage-too-short": Case("boot --bzimage {tmp}/bzImage --out {tmp}/out -- true", 2,
                              ("{tmp}/bzImage", "too short"), {"bzImage": "MZ"}),
    "boot-timeout-negative": Case("boot --timeout -5 --out {tmp}/out -- true", 2, ("--timeout -5",)),
    "boot-timeout-a-year": Case("boot --timeout 31536000 --out {tmp}/out -- true", 2, ("--timeout 3.1536e+07",)),
    "boot-timeout-nan": Case("boot --timeout nan --out {tmp}/out -- true", 2, ("--timeout nan",)),
    # ---- guest image recipes
    "image-recipe-unknown": Case("run --image bookworm --out {tmp}/out", 2, ("'bookworm'",)),
    "image-recipe-of-another-arch": Case("run --arch arm64 --gpu mali --image default --out {tmp}/out", 2,
                                         ("'default'", "arm64")),
    "image-recipe-toml-syntax": Case("boot --image {tmp}/r.toml --out {tmp}/out -- true", 2, ("'r'", "TOML"),
                                     {"r.toml": "suite = \n"}),
    "image-recipe-without-sshd": Case("image build {tmp}/r.toml", 2, ("'r'", "openssh-server"),
                                      {"r.toml": 'suite = "sid"\npackages = ["vim"]\n'}, untouched=("out",)),
    "image-recipe-unknown-key": Case("image build {tmp}/r.toml", 2, ("'r'", "colour"),
                                     {"r.toml": 'suite = "sid"\npackages = ["openssh-server"]\ncolour = 1\n'},
                                     untouched=("out",)),
    "image-recipe-binary": Case("image build {tmp}/r.toml", 2, ("{tmp}/r.toml",), {"r.toml": BINARY},
                                untouched=("out",)),
    # ---- matrix files
    "matrix-missing": Case("matrix run {tmp}/m.toml --out {tmp}/out", 2, ("{tmp}/m.toml",)),
    "matrix-toml-syntax": Case("matrix run {tmp}/m.toml --out {tmp}/out", 2, ("{tmp}/m.toml", "TOML"),
                               {"m.toml": "[axes\n"}),
    "matrix-bad-values": Case("matrix run {tmp}/m.toml --out {tmp}/out", 2,
                              ("{tmp}/m.toml", "'debian:9.9'", "'voodoo2'", "settings.cpus"),
                              {"m.toml": '[axes]\nkernel = ["debian:9.9"]\ngpu = ["voodoo2"]\n'
                                         '[settings]\ncpus = "two"\n'}),
    "matrix-pressure-above-memory": Case("matrix export {tmp}/m.toml", 2, ("{tmp}/m.toml", "memcg=4096"),
                                         {"m.toml": '[axes]\npressure = ["memcg=4096"]\n[settings]\nmemory = 2048\n'}),
    "matrix-series-truncated": Case("matrix run {tmp}/m.toml --out {tmp}/out", 2,
                                    ("{tmp}/m.toml", "axes.series = 'cut.mbox'", "damaged"),
                                    {"m.toml": '[axes]\nseries = ["cut.mbox"]\n',
                                     "cut.mbox": PATCH[:PATCH.index("+/* It probes")]}),
    "matrix-series-bad-message-id": Case("matrix export {tmp}/m.toml", 2, ("{tmp}/m.toml", "'x@@y'", "message-id"),
                                         {"m.toml": '[axes]\nseries = ["x@@y"]\n'}),
    "matrix-deadline-infinite": Case("matrix export {tmp}/m.toml", 2, ("{tmp}/m.toml", "settings.deadline = inf"),
                                     {"m.toml": '[axes]\ngpu = ["bochs"]\n[settings]\ndeadline = inf\n'}),
    "matrix-binary": Case("matrix export {tmp}/m.toml", 2, ("{tmp}/m.toml",), {"m.toml": BINARY}),
    "matrix-jobs-zero": Case("matrix run {tmp}/m.toml --jobs 0 --out {tmp}/out", 2, ("--jobs 0",),
                             {"m.toml": GOOD_MATRIX}),
    "matrix-unknown-cell": Case("matrix run {tmp}/m.toml --cell nosuch --out {tmp}/out", 2, ("--cell nosuch",),
                                {"m.toml": GOOD_MATRIX}),
    "matrix-unknown-build": Case("matrix run {tmp}/m.toml --build deadbeef --out {tmp}/out", 2, ("--build deadbeef",),
                                 {"m.toml": GOOD_MATRIX}),
    "matrix-report-nothing": Case("matrix report {tmp}/runs --out {tmp}/out", 2, ("{tmp}/runs",), {"runs/": ""}),
    "matrix-report-foreign-report": Case("matrix report {tmp}/run1 --out {tmp}/out", 2,
                                         ("{tmp}/run1/report.json", "exit_code"),
                                         {"run1/report.json": _report(exit_code="failed")}),
    "matrix-export-output-a-directory": Case("matrix export {tmp}/m.toml --output {tmp}/ci", 2,
                                             ("--output {tmp}/ci",), {"m.toml": GOOD_MATRIX, "ci/": ""}),
    "matrix-export-output-full": Case("matrix export {tmp}/m.toml --output /dev/full", 3,
                                      ("/dev/full", "No space left"), {"m.toml": GOOD_MATRIX}),
    # ---- logs, run and cache directories
    "splat-missing-log": Case("splat {tmp}/console.log", 2, ("{tmp}/console.log",)),
    "splat-a-directory": Case("splat {tmp}/run1", 2, ("{tmp}/run1", "directory"), {"run1/": ""}),
    # (the input is good up to the run directory: rig's cache, checked first, may exist)
    "out-is-a-file": Case("run --out {tmp}/out", 2, ("{tmp}/out",), {"out": "a file\n"}, untouched=()),
    "out-under-a-file": Case("build --out {tmp}/notes/out", 2, ("{tmp}/notes/out",), {"notes": "a file\n"},
                             untouched=()),
    "runs-dir-under-a-file": Case("build", 2, ("{tmp}/notes/runs",), {"notes": "a file\n"},
                                  env={"RIG_RUNS_DIR": "{tmp}/notes/runs"}, untouched=()),
    "cache-cannot-be-made": Case("run --out {tmp}/out", 3, ("/proc/rig-cache", "RIG_CACHE_DIR"),
                                 env={"RIG_CACHE_DIR": "/proc/rig-cache"}),
    "build-lock-cannot-be-made": Case("build --out {tmp}/out", 3, ("/proc/rig-locks/build.lock", "RIG_BUILD_LOCK"),
                                      env={"RIG_BUILD_LOCK": "/proc/rig-locks/build.lock"}, untouched=("out",)),
    "cache-under-a-file": Case("build --out {tmp}/out", 3, ("{tmp}/notes/cache",), {"notes": "a file\n"},
                               env={"RIG_CACHE_DIR": "{tmp}/notes/cache"}),
}


def _make(tmp: Path, files: dict[str, str | bytes]) -> None:
    for name, content in files.items():
        path = tmp / name
        if name.endswith("/"):
            path.mkdir(parents=True, exist_ok=True)
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        if content == "@x86_64-kernel":
            fake_kernel_image(path, "x86_64")
        elif isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)


@pytest.fixture
def tripwires(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real work a bad input must never reach: fetching a kernel source, building an image,
    starting a run's pipeline. Reaching one is a failed check, shown as rig's exit 4."""
    import rig.image
    import rig.pipeline
    import rig.source

    def tripped(what: str):  # type: ignore[no-untyped-def]
        def wire(*args: object, **kwargs: object) -> None:
            raise AssertionError(f"bad input got as far as {what}")
        return wire

    monkeypatch.setattr(rig.source, "resolve", tripped("fetching the kernel source"))
    monkeypatch.setattr(rig.image, "ensure_image", tripped("building the guest image"))
    monkeypatch.setattr(rig.pipeline, "run", tripped("the run's pipeline"))


def _argv(case: Case, tmp: Path) -> list[str]:
    import shlex

    return [word.replace("{tmp}", str(tmp)) for word in shlex.split(case.argv)]


@pytest.mark.parametrize("case", list(CASES.values()), ids=list(CASES))
def test_bad_input_is_named_with_its_exit_code_and_no_traceback(
        case: Case, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
        tripwires: None) -> None:
    _make(tmp_path, case.files)
    if case.kernel:
        fake_kernel(tmp_path / "linux")
    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("RIG_RUNS_DIR", str(tmp_path / "runs"))
    for name, value in case.env.items():
        monkeypatch.setenv(name, value.replace("{tmp}", str(tmp_path)))
    monkeypatch.chdir(tmp_path)

    code = cli.main(_argv(case, tmp_path))

    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == case.code, err
    label = {2: "rig: bad input: ", 3: "rig: host problem: "}[case.code]
    # One message: rig's own lines are that message's (no progress line before it).
    assert [line for line in err.splitlines() if line.startswith("rig: ")] == \
        [line for line in err.splitlines() if line.startswith(label)], err
    assert err.count(label) == 1 and "what to do:" in err, err
    for name in case.names:
        assert name.replace("{tmp}", str(tmp_path)) in err, err
    for name in case.untouched:
        if name in case.files:
            continue  # the case's own file (an --out that is a file) stays what it was
        assert not (tmp_path / name).exists(), f"{name} was made before the input was checked"


def test_there_are_at_least_thirty_distinct_bad_inputs() -> None:
    assert len(CASES) >= 30
    assert len({case.argv for case in CASES.values()} | set(CASES)) >= 30


def test_argparse_refuses_a_value_that_is_no_number_with_exit_2(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["run", "--memory", "2G"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "--memory" in err and "'2G'" in err and "Traceback" not in err


# ---- a disk that is full: a real one, a small tmpfs in a private mount namespace

def _unshare_works() -> bool:
    unshare = shutil.which("unshare")
    if unshare is None:
        return False
    probe = subprocess.run([unshare, "--map-root-user", "--mount", "true"], capture_output=True)
    return probe.returncode == 0


@pytest.mark.skipif(not _unshare_works(), reason="no unprivileged mount namespaces on this host")
@pytest.mark.parametrize("full_part", ["out", "made", "cache"],
                         ids=["out-on-a-full-disk", "metadata-on-a-full-disk", "cache-on-a-full-disk"])
def test_a_full_disk_is_the_host_s_problem(tmp_path: Path, full_part: str) -> None:
    """`rig build` with its --out directory (new, or made already and only its files not
    writable) or rig's cache on a filesystem with no space left: exit 3, no traceback."""
    full = tmp_path / "full"
    full.mkdir()
    kernel = fake_kernel(tmp_path / "linux")
    out = full / full_part if full_part != "cache" else tmp_path / "out"
    cache = full / "cache" if full_part == "cache" else tmp_path / "cache"
    script = (f'mount -t tmpfs -o size=64k tmpfs "{full}" && mkdir "{full}/made" && '
              f'(head -c 1000000 /dev/zero > "{full}/filler" 2>/dev/null; true) && '
              f'exec "{sys.executable}" -m rig build --quiet --kernel "{kernel}" --out "{out}"')
    env = {**os.environ, "PYTHONPATH": str(REPO), "RIG_CACHE_DIR": str(cache)}
    result = subprocess.run(["unshare", "--map-root-user", "--mount", "sh", "-c", script], env=env, cwd=tmp_path,
                            capture_output=True, text=True, timeout=300)
    assert "Traceback" not in result.stderr
    assert result.returncode == 3, result.stderr
    assert result.stderr.startswith("rig: host problem: "), result.stderr
    assert os.strerror(errno.ENOSPC) in result.stderr
    assert str(full if full_part == "cache" else out) in result.stderr  # where the disk is full


def test_a_patch_to_a_file_the_tree_lacks_names_the_patch_and_the_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """Known only once the tree is there: git am's refusal, as one message (exit 2)."""
    kernel = fake_kernel(tmp_path / "linux")
    patch = tmp_path / "gone.patch"
    patch.write_text(PATCH.replace("drv.c", "drivers/gpu/drm/gone.c"))
    monkeypatch.setenv("RIG_CACHE_DIR", str(tmp_path / "cache"))
    code = cli.main(["build", "--quiet", "--kernel", str(kernel), "--series", str(patch),
                     "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert code == 2, err
    assert err.count("rig: bad input: ") == 1 and "what to do:" in err
    assert 'patch 1 "drv: say what it is" does not apply' in err
    assert "drivers/gpu/drm/gone.c" in err and str(patch) in err
