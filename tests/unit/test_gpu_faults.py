"""Faults injected into the GPU model: `--gpu-fault` checked before anything is built, set
and read over QMP, and the driver's timeouts and resets reported in the test they happened
in (rig.gpu_faults), on a real panfrost console."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest

from rig import cli
from rig.analysis import RawMaterial, analyse
from rig.errors import UserError
from rig.gpu_faults import GpuEvent, GpuRecord, gpu_events, inject, read_counters
from rig.guest_spec import GuestSpec
from rig.report.model import AttemptRecord
from rig.results import TestResult
from rig.splat.attribution import log_test_spans
from rig.target import ARM64, MALI_FAULTS
from tests.unit.test_guest_spec import parse

DATA = Path(__file__).resolve().parent.parent / "data" / "run"
# rig-panfrost on the Mali model, debian:6.1, a plain run (no injection): the scheduler
# timed out the endless chains of pan-reset, close-with-queued-jobs and
# endless-chain-timeout-reset, and pan-unhandled-pagefault faulted as it should
CONSOLE = DATA / "console-panfrost-6.1.log"


# ---------------------------------------------------------------- the option

def _spec(*argv: str) -> GuestSpec:
    from rig.commands._machine_options import guest_spec_from_args

    return guest_spec_from_args(parse(*argv))


def test_gpu_fault_values_become_the_spec() -> None:
    spec = _spec("--arch", "arm64", "--gpu", "mali", "--gpu-fault", "hang-jobs=2", "--gpu-fault", "fail-code=0x58")
    assert spec.gpu_faults == (("hang-jobs", 2), ("fail-code", 0x58))
    assert spec.to_json()["gpu_faults"] == ["hang-jobs=2", "fail-code=88"]
    # a guest without injection keeps the key it always had (base runs are cached by it)
    assert "gpu_faults" not in _spec("--arch", "arm64", "--gpu", "mali").to_json()


@pytest.mark.parametrize(("argv", "problem"), [
    (("--gpu-fault", "hang-jobs"), "--gpu-fault 'hang-jobs': give NAME=N, e.g. hang-jobs=1"),
    (("--gpu-fault", "hang-jobs=soon"), "--gpu-fault 'hang-jobs=soon': give NAME=N"),
    (("--gpu-fault", "melt=1"), "--gpu-fault melt: not a fault --gpu mali injects (give one of hang-jobs,"),
    (("--gpu-fault", "hang-jobs=0"), "--gpu-fault hang-jobs=0: give a number from 1 to 1000"),
    (("--gpu-fault", "fail-code=0x100"), "--gpu-fault fail-code=256: give a number from 1 to 255"),
    (("--gpu-fault", "drop-irqs=1", "--gpu-fault", "drop-irqs=2"), "--gpu-fault drop-irqs: given twice"),
])
def test_a_bad_gpu_fault_is_refused_naming_the_fix(argv: tuple[str, ...], problem: str) -> None:
    with pytest.raises(UserError) as info:
        _spec("--arch", "arm64", "--gpu", "mali", *argv)
    assert problem in info.value.message and info.value.exit_code == 2


def test_a_gpu_model_without_injection_is_refused() -> None:
    with pytest.raises(UserError, match=r"--gpu virtio-gpu takes no injected faults \(give --gpu mali"):
        _spec("--arch", "arm64", "--gpu-fault", "hang-jobs=1")
    with pytest.raises(UserError, match=r"takes no injected faults \(give --arch arm64 --gpu mali"):
        _spec("--gpu-fault", "hang-jobs=1")  # x86_64 has no such model


def test_rig_run_refuses_a_bad_fault_before_building(monkeypatch: pytest.MonkeyPatch,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    from rig import pipeline

    def no_run(*_: object, **__: object) -> None:
        raise AssertionError("the run started")

    monkeypatch.setattr(pipeline, "run", no_run)
    assert cli.main(["run", "--arch", "arm64", "--gpu", "mali", "--gpu-fault", "melt=1"]) == cli.EXIT_USER
    assert "--gpu-fault melt" in capsys.readouterr().err


# ---------------------------------------------------------------- QMP

class _Machine:
    """rig.qemu.machine.Machine at its QMP seam: qom-set stores, qom-get answers."""

    def __init__(self, values: dict[str, int]) -> None:
        self.values = values
        self.calls: list[tuple[str, dict[str, Any]]] = []

    async def execute(self, command: str, arguments: dict[str, object] | None = None) -> Any:
        args = dict(arguments or {})
        json.dumps(args)  # what goes over the socket must be JSON
        self.calls.append((command, args))
        assert args["path"] == "/machine/gpu"
        if command == "qom-set":
            self.values[str(args["property"])] = int(args["value"])  # type: ignore[call-overload]
            return {}
        return self.values[str(args["property"])]


def test_faults_are_set_over_qmp_the_fail_code_first_and_counters_read_back() -> None:
    machine = _Machine({})
    guest = GuestSpec(target=ARM64, gpu="mali", gpu_faults=(("fail-jobs", 1), ("fail-code", 0x58)))
    asyncio.run(inject(machine, guest))
    assert [(c, a["property"], a["value"]) for c, a in machine.calls] == [
        ("qom-set", "inject-fail-code", 0x58), ("qom-set", "inject-fail-jobs", 1)]
    machine.values.update({name: i for i, name in enumerate(MALI_FAULTS.counters)})
    machine.values.update({"inject-hang-jobs": 0, "inject-drop-irqs": 0, "inject-stick-as-active": 0,
                           "inject-ignore-soft-resets": 0})
    counters = asyncio.run(read_counters(machine, guest.gpu_model))
    assert counters["jobs-hung"] == MALI_FAULTS.counters.index("jobs-hung")
    assert counters["inject-fail-jobs"] == 1  # still pending: no job ran
    # a GPU model without injection is never asked
    plain = _Machine({})
    asyncio.run(inject(plain, GuestSpec(target=ARM64)))
    assert asyncio.run(read_counters(plain, GuestSpec(target=ARM64).gpu_model)) == {} and plain.calls == []


# ---------------------------------------------------------------- the driver's messages

def test_panfrost_timeouts_and_faults_land_in_the_test_that_ran() -> None:
    text = CONSOLE.read_text()
    events = gpu_events(text, log_test_spans(text))
    assert [(e.kind, e.test) for e in events] == [
        ("timeout", "ktap:panfrost_submit.pan-reset"),
        ("mmu fault", "ktap:panfrost_submit.pan-unhandled-pagefault"),
        ("job fault", "ktap:panfrost_submit.pan-unhandled-pagefault"),
        ("timeout", "ktap:panfrost_rig.close-with-queued-jobs"),
        ("timeout", "ktap:panfrost_rig.endless-chain-timeout-reset"),
    ]
    assert events[0].time == pytest.approx(17.081115)
    assert events[0].message.startswith("panfrost 90c0000.gpu: gpu sched timeout, js=1")
    assert events[2].message.endswith("status=JOB_BUS_FAULT, head=0x2000000, tail=0x2000000")


def test_the_analysis_carries_the_gpu_events() -> None:
    done = (TestResult("kunit:drm_mm.drm_test_mm_init", "kunit", "pass", "ok", None),)
    analysis = analyse(RawMaterial(console=CONSOLE, tests=done))
    assert [e.kind for e in analysis.gpu_events].count("timeout") == 3


def test_a_record_counts_the_hangs_injected_the_timeouts_and_the_resets() -> None:
    text = CONSOLE.read_text()
    record = GpuRecord((("hang-jobs", 1),), {"jobs-hung": 1, "soft-resets": 4, "hard-resets": 0},
                       gpu_events(text, log_test_spans(text)))
    assert record.resets == 3
    assert record.summary() == [
        "injected: hang-jobs=1; the model: 1 jobs hung",
        "the driver reported 3 timeouts, 1 mmu fault, 1 job fault; 3 GPU resets after timeouts",
        "the model saw 4 soft resets, 0 hard resets"]
    data = record.to_json()
    assert (data["hangs_injected"], data["timeouts"], data["resets"]) == (1, 3, 3)
    assert GpuRecord.from_json(json.loads(json.dumps(data))) == record
    # a spurious timeout (7.x: the job had finished) resets nothing
    spurious = GpuRecord(events=(GpuEvent("timeout", "", 1.0, None), GpuEvent("spurious timeout", "", 1.0, None)))
    assert spurious.resets == 0
    # carried by the attempt's record through report.json
    attempt = AttemptRecord(1, "attempt-1", "tcg", {}, gpu=record)
    assert AttemptRecord.from_json(json.loads(json.dumps(attempt.to_json()))).gpu == record
    assert AttemptRecord.from_json({"number": 1}).gpu is None  # reports from before


def test_report_md_lists_each_gpu_event_with_its_test(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import dataclasses

    from rig.report import markdown
    from tests.unit.rundata import report_data

    text = CONSOLE.read_text()
    record = GpuRecord((("hang-jobs", 1),), {"jobs-hung": 1}, gpu_events(text, log_test_spans(text)))
    base, _ = report_data(tmp_path, monkeypatch)
    attempts = (*base.attempts[:-1], dataclasses.replace(base.attempts[-1], gpu=record))
    md = markdown.render(dataclasses.replace(base, attempts=attempts))
    assert "GPU events:\n- injected: hang-jobs=1; the model: 1 jobs hung\n" in md
    assert ("| 17.081 | ktap:panfrost_submit.pan-reset | timeout | panfrost 90c0000.gpu: gpu sched timeout, js=1,"
            in md)
    assert dataclasses.replace(base, attempts=attempts).to_json()["gpu"]["timeouts"] == 3
    from rig.report import html

    page = html.render(dataclasses.replace(base, attempts=attempts))
    assert "<h2>GPU events</h2>" in page and "<td>ktap:panfrost_submit.pan-reset</td><td>timeout</td>" in page
    assert "GPU events" not in markdown.render(base) + html.render(base)  # nothing to say: no section
