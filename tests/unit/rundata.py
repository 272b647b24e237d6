"""A finished run on disk for the report and pipeline tests: the real console, kmemleak
report and IGT results of a `rig run --plan smoke` of the kmemleak series, with one
expected failure and a timeline added."""

from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

from rig.build import BuildRequest
from rig.collect import Collected, after_guest
from rig.attempt import AttemptResult
from rig.guest_spec import GuestSpec
from rig.pipeline import Run, RunSpec
from rig.report.model import RunReport
from rig.plan import load_plan
from rig.workloads.igt import PreparedGroup, results_from_dir
from rig.workloads.kunit import results_from_console
from rig.workloads.pressure import Sample, Timeline, parse_pressure

DATA = Path(__file__).resolve().parent.parent / "data" / "run"


def tiny_png(width: int = 4, height: int = 3) -> bytes:
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body) & 0xFFFFFFFF)
    rows = b"".join(b"\x00" + bytes([40, 80, 160]) * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


IGT_RESULTS = {"tests": {
    "igt@vgem_basic@create": {"result": "pass", "time": {"start": 0.0, "end": 0.04}},
    "igt@vgem_basic@mmap": {"result": "dmesg-warn", "time": {"start": 0.0, "end": 0.26}},
    "igt@dumb_buffer@create-valid-dumb": {"result": "pass", "time": {"start": 0.0, "end": 0.3}},
    "igt@dumb_buffer@map-valid": {"result": "pass", "time": {"start": 0.0, "end": 0.2}},
    "igt@kms_addfb_basic@too-high": {"result": "fail", "out": "Test assertion failure function too_high",
                                     "time": {"start": 0.0, "end": 0.1}},
}}


def finished_run(tmp_path: Path, *, screendump: bool = True) -> tuple[Run, AttemptResult]:
    """A Run whose first attempt left the kmemleak series' real material on disk."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    kernel_image = tmp_path / "bzImage"
    kernel_image.write_bytes(b"kernel")
    spec = RunSpec(request=BuildRequest(kernel="debian:6.1", series="tests/data/series/kmemleak"),
                   plan=load_plan("default"), pressure=parse_pressure("balloon", 2048), guest=GuestSpec(),
                   command="rig run --series tests/data/series/kmemleak --pressure balloon", kernel_image=kernel_image)
    run = Run(spec, run_dir)
    directory = run_dir / "attempt-1"
    vm_dir = directory / "vm"
    vm_dir.mkdir(parents=True)
    (vm_dir / "console.log").write_bytes((DATA / "console-kmemleak.log").read_bytes())
    (vm_dir / "qmp-events.jsonl").write_text('{"host_time": 1.0, "event": "BALLOON_CHANGE"}\n')
    collect_dir = directory / "collect"
    collect_dir.mkdir(parents=True)
    (collect_dir / "kmemleak.txt").write_bytes((DATA / "kmemleak.txt").read_bytes())
    (collect_dir / "lockdep_stats.txt").write_text(" debug_locks:                             1\n")
    shot = None
    if screendump:
        shot = collect_dir / "screendump.png"
        shot.write_bytes(tiny_png())
    collected = Collected(collect_dir, kmemleak=collect_dir / "kmemleak.txt",
                          lockdep_stats=collect_dir / "lockdep_stats.txt", tainted=512, screendump=shot)
    collected = after_guest(collected, collect_dir, vm_dir / "console.log", vm_dir / "qmp-events.jsonl")
    results = directory / "igt" / "group-1-vgem" / "results"
    results.mkdir(parents=True)
    (results / "results.json").write_text(json.dumps(IGT_RESULTS))
    group = PreparedGroup(1, spec.plan.igt[0], ("vgem_basic@create", "vgem_basic@mmap",
                                                 "dumb_buffer@create-valid-dumb", "dumb_buffer@map-valid",
                                                 "kms_addfb_basic@too-high"))
    timeline = Timeline(tuple(Sample(float(t), 1650.0 - 110 * min(t, 8) + 110 * max(0, t - 14),
                                     1400.0 - 100 * min(t, 8), 2048.0 if t < 2 or t > 14 else 819.0,
                                     3000 + 50 * t) for t in range(20)),
                        ((1.0, "balloon to 819 MiB"), (14.0, "balloon back to 2048 MiB")),
                        {"sb-ext4-11": 900}, -20.0, ((9.5, "memcg OOM kill"),))
    # the KUnit workload on this kernel without KUnit: every suite of the plan absent
    kunit = results_from_console((DATA / "console-kmemleak.log").read_text(), spec.plan.kunit_suites)
    tests = (*results_from_dir(results, group, started_s=1.0), *kunit)
    attempt = AttemptResult(1, directory, tests, timeline, collected,
                            "tcg", {"boot": 20.0, "workloads": 60.0, "collect": 10.0}, None)
    return run, attempt


def run_with(run: Run, monkeypatch, *attempts: AttemptResult) -> RunReport:
    """Run `run` with these attempts standing in for real guests (the attempt seam)."""
    import rig.pipeline

    queue = list(attempts)
    monkeypatch.setattr(type(run), "_image", lambda self: None)
    monkeypatch.setattr(rig.pipeline, "run_attempt", lambda number, *args, **kwargs: queue.pop(0))
    return run.run()


def report_data(tmp_path: Path, monkeypatch) -> tuple[RunReport, Path]:
    run, attempt = finished_run(tmp_path)
    report = run_with(run, monkeypatch, attempt)
    return report, run.run_dir
