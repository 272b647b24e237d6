"""Every vCPU of a guest as QEMU sees it: where it runs (its program counter) and which
kernel functions its stack holds, read from the host without the guest's help.

This is what rig has of a CPU that takes neither interrupts nor NMIs (stuck with
interrupts off, or inside an NMI handler after a panic): QEMU's monitor shows its
registers (`info registers -a`) and reads its memory through its own page tables
(`x` with the CPU's index), and the kernel's System.map names the addresses. The stack
words that point into kernel text are the candidates a kernel's own unwinder marks with
"?": not a reliable call chain, but where the CPU has been.

The parsers are pure; `read_vcpus` drives QMP's human-monitor-command.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# x86: "RIP=ffffffff81e1c8ab RFL=..." and "RSP=ffffc90000003e58"; arm64: " PC=ffff8000..."
# and " SP=ffff8000..." (QEMU's cpu dump_state of each target).
_CPU = re.compile(r"^CPU#(\d+)", re.M)
_PC = re.compile(r"\b(?:RIP|PC|pc)=([0-9a-f]{8,16})\b")
_SP = re.compile(r"\b(?:RSP|SP)=([0-9a-f]{8,16})\b")
# `x /Ngx ADDR`: "ffffc90000003e58: 0xffffffff81e1c8ab 0x0000000000000000"
_WORDS = re.compile(r"0x([0-9a-f]{16})")
# How much of each stack rig reads: enough for a few frames of a deep kernel call chain.
STACK_WORDS = 128
TEXT_TYPES = frozenset("TtWw")


@dataclass(frozen=True)
class Registers:
    cpu: int
    pc: int
    sp: int


@dataclass(frozen=True)
class VcpuStack:
    """One vCPU: its program counter and the kernel text addresses found on its stack,
    each named "function+0xoffset" (or as a bare address when no System.map names it)."""

    cpu: int
    pc: str
    sp: int
    stack: tuple[str, ...]  # innermost first, as the words lie on the stack

    @property
    def frames(self) -> tuple[str, ...]:
        """Function names: the program counter's, then the stack's, each once, in order."""
        names = [name.split("+", 1)[0] for name in (self.pc, *self.stack) if "+0x" in name]
        return tuple(dict.fromkeys(names))

    def to_json(self) -> dict[str, Any]:
        return {"cpu": self.cpu, "pc": self.pc, "sp": f"{self.sp:#x}", "stack": list(self.stack),
                "frames": list(self.frames)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> VcpuStack:
        return cls(int(data.get("cpu", 0)), str(data.get("pc", "")), int(str(data.get("sp", "0")), 16),
                   tuple(data.get("stack") or ()))


def parse_registers(text: str) -> list[Registers]:
    """Each CPU's program counter and stack pointer from `info registers -a`."""
    out: list[Registers] = []
    starts = [(int(m.group(1)), m.start()) for m in _CPU.finditer(text)]
    for index, (cpu, start) in enumerate(starts):
        end = starts[index + 1][1] if index + 1 < len(starts) else len(text)
        block = text[start:end]
        pc, sp = _PC.search(block), _SP.search(block)
        if pc and sp:
            out.append(Registers(cpu, int(pc.group(1), 16), int(sp.group(1), 16)))
    return out


def parse_words(text: str) -> list[int]:
    """The 64-bit words of an `x /Ngx` dump, in address order."""
    words: list[int] = []
    for line in text.splitlines():
        if ":" in line:
            words += [int(w, 16) for w in _WORDS.findall(line.split(":", 1)[1])]
    return words


class Symbols:
    """Kernel text symbols from a System.map: address -> "function+0xoffset"."""

    def __init__(self, entries: list[tuple[int, str]]) -> None:
        entries.sort()
        self._addresses = [address for address, _ in entries]
        self._names = [name for _, name in entries]
        self._end = self._addresses[-1] if self._addresses else 0

    @classmethod
    def from_system_map(cls, path: Path | None) -> Symbols:
        entries: list[tuple[int, str]] = []
        end = 0
        try:
            text = path.read_text(errors="replace") if path is not None else ""
        except OSError:
            text = ""
        for line in text.splitlines():
            parts = line.split()
            if len(parts) != 3:
                continue
            address, kind, name = parts
            if name == "_etext":
                end = int(address, 16)
            if kind in TEXT_TYPES:
                entries.append((int(address, 16), name))
        symbols = cls(entries)
        symbols._end = end or symbols._end
        return symbols

    def name(self, address: int) -> str | None:
        """"func+0x1c" for an address in kernel text, None elsewhere."""
        if not self._addresses or not self._addresses[0] <= address < self._end:
            return None
        index = bisect.bisect_right(self._addresses, address) - 1
        return f"{self._names[index]}+{address - self._addresses[index]:#x}"


def system_map_near(kernel: Path) -> Path | None:
    """The System.map of a kernel image: beside it (rig's build output and cache), or at
    the top of the build tree it came from (arch/x86/boot/bzImage, arch/arm64/boot/Image)."""
    for directory in (kernel.parent, *kernel.parents[:4]):
        candidate = directory / "System.map"
        if candidate.is_file():
            return candidate
    return None


Monitor = Callable[[str, int | None], Awaitable[str]]  # (HMP command line, cpu index) -> its output


async def read_vcpus(monitor: Monitor, symbols: Symbols, *, words: int = STACK_WORDS) -> tuple[VcpuStack, ...]:
    """Every vCPU's program counter and the kernel text its stack points to."""
    out: list[VcpuStack] = []
    for regs in parse_registers(await monitor("info registers -a", None)):
        dump = await monitor(f"x /{words}gx {regs.sp:#x}", regs.cpu)
        stack = tuple(name for name in map(symbols.name, parse_words(dump)) if name is not None)
        out.append(VcpuStack(regs.cpu, symbols.name(regs.pc) or f"{regs.pc:#x}", regs.sp, stack))
    return tuple(out)
