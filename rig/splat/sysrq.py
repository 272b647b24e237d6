"""What a hung guest kernel answers when rig asks it (rig.forensics): the blocked tasks of
sysrq w and the per-CPU stacks of sysrq l or of a panic's all-CPU backtrace.

    blocked_tasks(text) -> tuple[BlockedTask, ...]
        every task sysrq w (or t) showed, with its stack; kernel/sched/core.c
        sched_show_task() prints "task:<comm> state:<c> stack:<n> pid:<n> ..." and then
        the task's call trace
    cpu_backtraces(text) -> tuple[CpuBacktrace, ...]
        every "NMI backtrace for cpu N" block (lib/nmi_backtrace.c), which sysrq l and a
        panic with panic_print's all-CPU-backtrace bit print; an idle CPU's one-line
        "NMI backtrace for cpu N skipped: idling at ..." counts too

Pure functions over console text; the printk prefixes are taken off each line. These are
not kernel reports (no finding comes from them): they show what every task and CPU was
doing when the guest hung, beside the hung-task or stall reports the parser names.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from rig.splat.frames import COMMON_SKIP, parse_frame, pc_function
from rig.splat.stall import hang_frame
from rig.splat.text import decode, split_prefix

# sched_show_task(): the comm is padded to 15 characters ("%-15.15s"), so a comm with a
# space in it is read up to the padding before "state:".
_TASK = re.compile(r"^task:(?P<comm>.{1,16}?)\s+state:(?P<state>\S)(?:.*?\bpid:\s*(?P<pid>\d+))?")
# The answers that list tasks: sysrq w and t (drivers/tty/sysrq.c's action messages).
_SYSRQ_TASKS = re.compile(r"^sysrq: (?:Show Blocked State|Show State)\s*$")
_NMI = re.compile(r"^NMI backtrace for cpu (?P<cpu>\d+)(?P<idle> skipped: idling at (?P<at>\S+))?")
# Lines that belong to a stack dump without being frames: markers of the stack a frame is
# on, the register dump, the CPU and hardware lines, the "Call Trace:" header.
_DUMP_LINE = re.compile(r"^\s*(?:<(?:/?IRQ|/?TASK|/?NMI|/?SOFTIRQ|EOI)>|Call Trace:|Call trace:|"
                        r"CPU: \d+|Hardware name:|RIP:|RSP:|RAX:|RDX:|RBP:|R\d+:|FS:|CS:|CR2:|DR\d:|Code:|"
                        r"PKRU:|pc :|lr :|sp :|x\d+ ?:|pstate:|Workqueue:|Sending NMI|INFO: NMI handler)")
# How much of one stack the report keeps (a task list of a busy guest is long).
MAX_STACK_LINES = 60


@dataclass(frozen=True)
class BlockedTask:
    """A task as sysrq w showed it: its name, pid, state letter (D: uninterruptible) and stack."""

    comm: str
    pid: int | None
    state: str
    frames: tuple[str, ...]  # function names, innermost first
    text: str  # the task's lines as the kernel printed them, prefixes off

    @property
    def waits_in(self) -> str | None:
        """Where the task waits, named as a hung-task report's title names it."""
        return hang_frame([func for func in self.frames if not COMMON_SKIP.skips(func)])

    def to_json(self) -> dict[str, Any]:
        return {"comm": self.comm, "pid": self.pid, "state": self.state, "frames": list(self.frames),
                "text": self.text}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> BlockedTask:
        return cls(str(data.get("comm", "")), data.get("pid"), str(data.get("state", "")),
                   tuple(data.get("frames") or ()), str(data.get("text", "")))


@dataclass(frozen=True)
class CpuBacktrace:
    """One CPU's stack from an NMI backtrace; `idle` when the kernel skipped an idle CPU."""

    cpu: int
    frames: tuple[str, ...]
    text: str
    idle: bool = False

    @property
    def running(self) -> str | None:
        """What the CPU was running: the kernel function of its last register dump (the
        context the NMI or the asking interrupt came into), else the first frame of that
        context past the backtrace machinery's own."""
        lines = self.text.splitlines()
        kernel_pcs = [pc_function(line) for line in lines if line.startswith("RIP: 0010:") or line.startswith("pc :")]
        if kernel_pcs and kernel_pcs[-1]:
            return kernel_pcs[-1]
        ends = [i for i, line in enumerate(lines) if line.strip() in ("</NMI>", "</IRQ>", "</SOFTIRQ>", "<TASK>")]
        for line in lines[ends[-1] + 1:] if ends else lines:
            frame = parse_frame(line)
            if frame is not None and not frame[1] and not COMMON_SKIP.skips(frame[0]):
                return frame[0]
        return self.frames[0] if self.frames else None

    def to_json(self) -> dict[str, Any]:
        return {"cpu": self.cpu, "frames": list(self.frames), "text": self.text, "idle": self.idle}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> CpuBacktrace:
        return cls(int(data.get("cpu", 0)), tuple(data.get("frames") or ()), str(data.get("text", "")),
                   bool(data.get("idle", False)))


def _messages(text: str | bytes) -> list[str]:
    return [split_prefix(raw)[0] for raw in decode(text).split("\n")]


def _stack(lines: list[str], start: int) -> tuple[int, list[str], list[str]]:
    """From lines[start] on, the lines of one stack dump: (index after it, its lines, frames)."""
    kept: list[str] = []
    frames: list[str] = []
    index = start
    while index < len(lines):
        msg = lines[index]
        frame = parse_frame(msg)
        if frame is not None:
            if not frame[1]:  # "? func": a stale word on the stack, not a frame of this one
                frames.append(frame[0])
        elif not _DUMP_LINE.match(msg):
            break
        if len(kept) < MAX_STACK_LINES:
            kept.append(msg.rstrip())
        index += 1
    return index, kept, frames


def blocked_tasks(text: str | bytes) -> tuple[BlockedTask, ...]:
    """Every task sysrq w or t showed in `text`, in order, each once (by pid) with its
    stack. Only their answers count: a hung-task report shows its task the same way, but
    it is a finding of its own."""
    lines = _messages(text)
    out: list[BlockedTask] = []
    seen: set[int] = set()
    index = 0
    answering = False
    while index < len(lines):
        msg = lines[index]
        if _SYSRQ_TASKS.match(msg):
            answering = True
            index += 1
            continue
        m = _TASK.match(msg) if answering else None
        if m is None:
            answering = answering and msg.strip() == ""
            index += 1
            continue
        end, kept, frames = _stack(lines, index + 1)
        pid = int(m.group("pid")) if m.group("pid") else None
        if pid is None or pid not in seen:
            out.append(BlockedTask(m.group("comm").strip(), pid, m.group("state"), tuple(frames),
                                   "\n".join([msg.rstrip(), *kept])))
        if pid is not None:
            seen.add(pid)
        index = max(end, index + 1)
    return tuple(out)


def cpu_backtraces(text: str | bytes) -> tuple[CpuBacktrace, ...]:
    """Every CPU's NMI backtrace in `text`, in order (a CPU asked twice appears twice)."""
    lines = _messages(text)
    out: list[CpuBacktrace] = []
    index = 0
    while index < len(lines):
        m = _NMI.match(lines[index])
        if m is None:
            index += 1
            continue
        if m.group("idle"):
            at = parse_frame(" " + m.group("at"))
            out.append(CpuBacktrace(int(m.group("cpu")), (at[0],) if at else (), lines[index].rstrip(), idle=True))
            index += 1
            continue
        end, kept, frames = _stack(lines, index + 1)
        out.append(CpuBacktrace(int(m.group("cpu")), tuple(frames), "\n".join([lines[index].rstrip(), *kept])))
        index = max(end, index + 1)
    return tuple(out)
