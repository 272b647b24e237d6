"""Faults injected into rig's GPU model, its counters, and what the guest's GPU driver
says about hangs, timeouts and resets: so a run with `--gpu-fault hang-jobs=1` reports
the hang it asked for, the driver's timeout and reset that followed, the test they
happened in, and whether the tests after them still passed.

    inject(machine, guest)            set the model's fault injection (qom-set), once the
                                      guest is up: the boot itself runs no GPU job
    read_counters(machine, gpu)       the model's counters (qom-get), at the end of an attempt
    gpu_events(console, spans)        the driver's GPU messages, each with the test running
    GpuRecord                         all three for one attempt, in report.json and report.md

The model's names and limits are in rig.target (FaultInjection); GuestSpec checks
`--gpu-fault` against them before anything is built.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from rig.guest_spec import GuestSpec
from rig.splat.attribution import TestSpan, running_test
from rig.splat.text import split_prefix
from rig.target import GpuModel

INJECT_PREFIX = "inject-"  # the model's property for fault NAME is inject-NAME


class QmpMachine(Protocol):
    async def execute(self, command: str, arguments: dict[str, object] | None = None) -> Any: ...


async def inject(machine: QmpMachine, guest: GuestSpec) -> None:
    """Set the faults `guest` asks for on its GPU model (MachineError if QEMU refuses)."""
    faults = guest.gpu_model.faults
    if faults is None or not guest.gpu_faults:
        return
    # the code a failed job reports first, so the first failure already carries it
    for name, value in sorted(guest.gpu_faults, key=lambda f: f[0] != "fail-code"):
        await machine.execute("qom-set", {"path": faults.qom_path, "property": INJECT_PREFIX + name,
                                          "value": value})


async def read_counters(machine: QmpMachine, gpu: GpuModel) -> dict[str, int]:
    """The model's counters and the injections still pending ({} for a model without them)."""
    faults = gpu.faults
    if faults is None:
        return {}
    out: dict[str, int] = {}
    for name in (*faults.counters, *(INJECT_PREFIX + n for n in faults.names)):
        out[name] = int(await machine.execute("qom-get", {"path": faults.qom_path, "property": name}))
    return out


# ------------------------------------------------------------------ the driver's messages


@dataclass(frozen=True)
class GpuMessage:
    """A kernel message about the GPU's health, and how the report names it."""

    kind: str  # "timeout", "job fault", ...
    pattern: re.Pattern[str]  # matched against the message after its printk prefix
    source: str  # where the kernel prints it
    reset: bool = False  # the driver resets the GPU after it


# panfrost (6.1, 6.12, 7.2) prints no line of its own for a reset: it resets the GPU after
# each scheduler timeout it does not find spurious (7.2 says "unexpectedly high interrupt
# latency" for those), so a timeout counts as a reset unless that line follows it.
PANFROST = "panfrost"
MESSAGES = (
    GpuMessage("timeout", re.compile(r"^panfrost \S+: gpu sched timeout, js=(?P<js>\d+)"),
               "drivers/gpu/drm/panfrost/panfrost_job.c, panfrost_job_timedout()", reset=True),
    GpuMessage("spurious timeout", re.compile(r"^panfrost \S+: unexpectedly high interrupt latency"),
               "drivers/gpu/drm/panfrost/panfrost_job.c, panfrost_job_timedout() (6.12 and 7.2, not 6.1)"),
    GpuMessage("job fault", re.compile(r"^panfrost \S+: js fault, js=(?P<js>\d+), status=(?P<status>\w+)"),
               "drivers/gpu/drm/panfrost/panfrost_job.c, panfrost_job_handle_err()"),
    GpuMessage("mmu fault",
               re.compile(r"^panfrost \S+: Unhandled Page fault in AS(?P<as>\d+) at VA (?P<va>0x[0-9A-Fa-f]+)"),
               "drivers/gpu/drm/panfrost/panfrost_mmu.c, panfrost_mmu_irq_handler_thread()"),
    GpuMessage("gpu fault", re.compile(r"^panfrost \S+: GPU Fault (?P<code>0x[0-9a-f]+) \((?P<name>[^)]*)\)"),
               "drivers/gpu/drm/panfrost/panfrost_gpu.c, panfrost_gpu_irq_handler()"),
    GpuMessage("soft reset timeout", re.compile(r"^panfrost \S+: gpu soft reset timed out"),
               "drivers/gpu/drm/panfrost/panfrost_gpu.c, panfrost_gpu_soft_reset()"),
    GpuMessage("hard reset timeout", re.compile(r"^panfrost \S+: gpu hard reset timed out"),
               "drivers/gpu/drm/panfrost/panfrost_gpu.c, panfrost_gpu_soft_reset() (6.12 and 7.2, not 6.1)"),
    GpuMessage("AS stuck", re.compile(r"^panfrost \S+: AS_ACTIVE bit stuck"),
               "drivers/gpu/drm/panfrost/panfrost_mmu.c, wait_ready()"),
    GpuMessage("soft-stop failed", re.compile(r"^panfrost \S+: Soft-stop failed"),
               "drivers/gpu/drm/panfrost/panfrost_job.c, panfrost_job_suspend_irq() path"),
)
_QUICK = "panfrost "


@dataclass(frozen=True)
class GpuEvent:
    kind: str
    message: str  # the kernel's line, without its printk prefix
    time: float | None  # printk time
    test: str | None  # the test running when the kernel printed it (the console's markers)

    def to_json(self) -> dict[str, Any]:
        return {"kind": self.kind, "message": self.message, "time": self.time, "test": self.test}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GpuEvent:
        return cls(str(data["kind"]), str(data.get("message", "")), data.get("time"), data.get("test"))


def gpu_events(console: str, spans: Sequence[TestSpan]) -> tuple[GpuEvent, ...]:
    """The GPU driver's messages on the console, in order, each with the test whose span
    holds it (the scheduler's timeout runs in a worker: its task names no test, its place
    on the console does)."""
    events: list[GpuEvent] = []
    offset = 0
    for line in console.splitlines(keepends=True):
        start, offset = offset, offset + len(line)
        if _QUICK not in line:
            continue
        message, uptime, _ = split_prefix(line.rstrip("\n"))
        for entry in MESSAGES:
            if entry.pattern.search(message):
                span = running_test(list(spans), offset=start)
                events.append(GpuEvent(entry.kind, message.strip(), uptime, str(span.test) if span else None))
                break
    return tuple(events)


# ------------------------------------------------------------------ one attempt's record


@dataclass(frozen=True)
class GpuRecord:
    """What the GPU model was told to do, what it counted, and what the driver said."""

    injected: tuple[tuple[str, int], ...] = ()
    counters: Mapping[str, int] = field(default_factory=dict)
    events: tuple[GpuEvent, ...] = ()

    @property
    def empty(self) -> bool:
        return not (self.injected or self.counters or self.events)

    def count(self, kind: str) -> int:
        return sum(1 for e in self.events if e.kind == kind)

    @property
    def resets(self) -> int:
        """The resets the driver did: a reset after each timeout it did not find spurious."""
        resetting = {m.kind for m in MESSAGES if m.reset}
        return max(0, sum(1 for e in self.events if e.kind in resetting) - self.count("spurious timeout"))

    def summary(self) -> list[str]:
        """A few lines: injected, what the model did with it, what the driver reported."""
        lines = []
        if self.injected:
            asked = ", ".join(f"{name}={n}" for name, n in self.injected)
            did = [f"{self.counters[c]} {what}" for c, what in (("jobs-hung", "jobs hung"),
                                                                 ("jobs-failed", "jobs failed"),
                                                                 ("irqs-dropped", "interrupts dropped"))
                   if c in self.counters]
            lines.append(f"injected: {asked}" + (f"; the model: {', '.join(did)}" if did else ""))
        if self.events or self.injected:
            kinds = list(dict.fromkeys(e.kind for e in self.events))
            said = ", ".join(f"{self.count(k)} {k}{'s' if self.count(k) != 1 else ''}" for k in kinds)
            lines.append(f"the driver reported {said or 'nothing'}; {self.resets} GPU "
                         f"reset{'s' if self.resets != 1 else ''} after timeouts")
        if self.counters:
            resets = {k: self.counters[k] for k in ("soft-resets", "hard-resets") if k in self.counters}
            if resets:
                lines.append("the model saw " + ", ".join(f"{n} {k.replace('-', ' ')}" for k, n in resets.items()))
        return lines

    def to_json(self) -> dict[str, Any]:
        return {"injected": {name: n for name, n in self.injected}, "counters": dict(self.counters),
                "events": [e.to_json() for e in self.events],
                "hangs_injected": dict(self.injected).get("hang-jobs", 0),
                "timeouts": self.count("timeout"), "resets": self.resets}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> GpuRecord:
        return cls(tuple((str(k), int(v)) for k, v in (data.get("injected") or {}).items()),
                   {str(k): int(v) for k, v in (data.get("counters") or {}).items()},
                   tuple(GpuEvent.from_json(e) for e in data.get("events") or ()))
