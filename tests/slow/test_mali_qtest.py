"""rig's Mali model (qemu-devices/hw/misc/mali_jm.c) at its registers, through qtest: no
guest, no CPU; the test writes page tables and job descriptors into guest RAM, drives
the registers as panfrost does and moves virtual time itself. Each test has its own
QEMU (well under a second to start under qtest)."""

from __future__ import annotations

import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from rig.qemu.qtest import Qmp, Qtest, QtestError, launch

BASE = 0x090C0000
RAM = 0x40000000
PATH = "/machine/gpu"

# register offsets (panfrost_regs.h)
GPU_ID, L2_FEATURES, TILER_FEATURES, MMU_FEATURES, AS_PRESENT, JS_PRESENT = 0x0, 0x4, 0xC, 0x14, 0x18, 0x1C
GPU_INT_RAWSTAT, GPU_INT_CLEAR, GPU_INT_MASK, GPU_INT_STAT, GPU_CMD = 0x20, 0x24, 0x28, 0x2C, 0x30
LATEST_FLUSH, CYCLE_COUNT_LO, TIMESTAMP_LO = 0x38, 0x90, 0x98
SHADER_PRESENT, TILER_PRESENT, L2_PRESENT = 0x100, 0x110, 0x120
SHADER_READY, TILER_READY, L2_READY = 0x140, 0x150, 0x160
SHADER_PWRON, TILER_PWRON, L2_PWRON = 0x180, 0x190, 0x1A0
SHADER_PWROFF, L2_PWROFF, SHADER_PWRTRANS = 0x1C0, 0x1E0, 0x200
JM_CONFIG = 0xF00
JOB_INT_RAWSTAT, JOB_INT_CLEAR, JOB_INT_MASK, JOB_INT_STAT, JS_STATE = 0x1000, 0x1004, 0x1008, 0x100C, 0x1010
MMU_INT_RAWSTAT, MMU_INT_CLEAR, MMU_INT_MASK = 0x2000, 0x2004, 0x2008

RESET_COMPLETED, POWER_CHANGED, POWER_CHANGED_ALL, CLEAN_CACHES_COMPLETED = 1 << 8, 1 << 9, 1 << 10, 1 << 17
SOFT_RESET, HARD_RESET, CYCLE_COUNT_START, CYCLE_COUNT_STOP, CLEAN_INV_CACHES = 1, 2, 5, 6, 8

# intercepted lines, in the order of the device tree's interrupt-names
IRQ_JOB, IRQ_MMU, IRQ_GPU = 0, 1, 2

# JS_COMMAND
SOFT_STOP, HARD_STOP, SOFT_STOP_0, HARD_STOP_0, SOFT_STOP_1, HARD_STOP_1 = 2, 3, 4, 5, 6, 7
CHAIN_FLAG = 1 << 11
# JS_STATUS / exception codes
DONE, STOPPED, TERMINATED, ACTIVE = 0x01, 0x03, 0x04, 0x08
JOB_CONFIG_FAULT, JOB_BUS_FAULT, DATA_INVALID_FAULT = 0x40, 0x48, 0x58
# AS_COMMAND
UPDATE, LOCK, UNLOCK, FLUSH_PT, FLUSH_MEM = 1, 2, 3, 4, 5
# job types and WRITE_VALUE types
NULL, WRITE_VALUE, CACHE_FLUSH, FRAGMENT = 1, 2, 3, 9
WV_CYCLES, WV_TIMESTAMP, WV_ZERO, WV_IMM8, WV_IMM16, WV_IMM32, WV_IMM64 = 1, 2, 3, 4, 5, 6, 7

HAP_READ, HAP_WRITE = 1 << 6, 1 << 7
SHARE_OUTER_READ_INNER_TABLE = (1 << 4) | (1 << 2) | 3


def js(slot: int, reg: int) -> int:
    return 0x1800 + 0x80 * slot + reg


JS_HEAD, JS_TAIL, JS_CONFIG, JS_COMMAND, JS_STATUS = 0x00, 0x08, 0x18, 0x20, 0x24
JS_HEAD_NEXT, JS_AFFINITY_NEXT, JS_CONFIG_NEXT, JS_COMMAND_NEXT = 0x40, 0x50, 0x58, 0x60


def as_reg(asn: int, reg: int) -> int:
    return 0x2400 + 0x40 * asn + reg


AS_TRANSTAB, AS_MEMATTR, AS_LOCKADDR, AS_COMMAND, AS_FAULTSTATUS, AS_FAULTADDRESS, AS_STATUS, AS_TRANSCFG = (
    0x00, 0x08, 0x10, 0x18, 0x1C, 0x20, 0x28, 0x30)

TICK_NS = 1_000_000  # comfortably more than the model's job latency and tick


@pytest.fixture(scope="session")
def qemu_binary(rig_qemu) -> Path:  # type: ignore[no-untyped-def]
    return rig_qemu.binary


@dataclass
class Gpu:
    """The model as panfrost sees it, plus a bump allocator for guest RAM."""

    qt: Qtest
    qmp: Qmp
    next_free: int = RAM + 0x100000
    tables: dict[int, int] = field(default_factory=dict)  # AS root tables: asn -> PA

    def r(self, off: int) -> int:
        return self.qt.readl(BASE + off)

    def w(self, off: int, value: int) -> None:
        self.qt.writel(BASE + off, value)

    def r64(self, off: int) -> int:
        return self.r(off) | self.r(off + 4) << 32

    def w64(self, off: int, value: int) -> None:
        self.w(off, value & 0xFFFFFFFF)
        self.w(off + 4, value >> 32)

    def alloc(self, size: int = 0x1000, align: int = 0x1000) -> int:
        addr = (self.next_free + align - 1) & ~(align - 1)
        self.next_free = addr + size
        self.qt.memwrite(addr, bytes(size))
        return addr

    def step(self, ns: int = TICK_NS) -> None:
        self.qt.clock_step(ns)

    def counter(self, name: str) -> int:
        return int(self.qmp.qom_get(PATH, name))

    # --- power and reset as panfrost_gpu.c does them

    def soft_reset(self) -> None:
        self.w(GPU_INT_MASK, 0)
        self.w(GPU_INT_CLEAR, RESET_COMPLETED)
        self.w(GPU_CMD, SOFT_RESET)
        assert self.r(GPU_INT_RAWSTAT) & RESET_COMPLETED

    def power_on(self) -> None:
        self.w(L2_PWRON, 1)
        self.w(SHADER_PWRON, 0x3)
        self.w(TILER_PWRON, 1)

    def init(self) -> None:
        """Probe-time sequence: reset, unmask, power, job and MMU interrupts."""
        self.soft_reset()
        self.w(GPU_INT_CLEAR, 0xFFFFFFFF)
        self.w(GPU_INT_MASK, 0x30081)
        self.power_on()
        self.w(JOB_INT_CLEAR, 0xFFFFFFFF)
        self.w(JOB_INT_MASK, 0x70007)
        self.w(MMU_INT_CLEAR, 0xFFFFFFFF)
        self.w(MMU_INT_MASK, 0xFFFFFFFF)

    # --- the MMU: Mali-LPAE tables in guest RAM

    def enable_as(self, asn: int) -> int:
        if asn not in self.tables:
            self.tables[asn] = self.alloc()
        self.w64(as_reg(asn, AS_TRANSTAB), self.tables[asn] | SHARE_OUTER_READ_INNER_TABLE)
        self.w64(as_reg(asn, AS_MEMATTR), 0x888D88)
        self.w(as_reg(asn, AS_COMMAND), UPDATE)
        return self.tables[asn]

    def disable_as(self, asn: int) -> None:
        self.w(as_reg(asn, AS_COMMAND), FLUSH_MEM)
        self.w64(as_reg(asn, AS_TRANSTAB), 0)
        self.w64(as_reg(asn, AS_MEMATTR), 0)
        self.w(as_reg(asn, AS_COMMAND), UPDATE)

    def _entry(self, table: int, index: int) -> int:
        return struct.unpack("<Q", self.qt.memread(table + 8 * index, 8))[0]

    def map(self, asn: int, va: int, pa: int, *, level: int = 3, read: bool = True, write: bool = True) -> None:
        """One entry at `level` (3: 4 KiB page, 2: 2 MiB block, 1: 1 GiB block)."""
        table = self.tables[asn]
        for lvl in range(level):
            index = (va >> (39 - 9 * lvl)) & 0x1FF
            entry = self._entry(table, index)
            if entry & 3 != 3:
                entry = self.alloc() | 3
                self.qt.memwrite(table + 8 * index, struct.pack("<Q", entry))
            table = entry & 0x0000FFFFFFFFF000
        index = (va >> (39 - 9 * level)) & 0x1FF
        pte = pa | 1 | (HAP_READ if read else 0) | (HAP_WRITE if write else 0) | (2 << 8)
        self.qt.memwrite(table + 8 * index, struct.pack("<Q", pte))

    def flush(self, asn: int, va: int) -> None:
        """panfrost_mmu_flush_range(): LOCK the region, FLUSH_PT."""
        self.w64(as_reg(asn, AS_LOCKADDR), (va & ~0x7FFF) | 14)
        self.w(as_reg(asn, AS_COMMAND), LOCK)
        self.w(as_reg(asn, AS_COMMAND), FLUSH_PT)

    # --- jobs

    def job(self, va_of: int, kind: int, *, next_va: int = 0, payload: bytes = b"") -> bytes:
        header = struct.pack("<IIQBBHHHQ", 0, 0, 0, 1 | (kind << 1), 0, 1, 0, 0, next_va)
        return header + payload

    def write_job(self, pa: int, va: int, kind: int, *, next_va: int = 0, payload: bytes = b"") -> None:
        self.qt.memwrite(pa, self.job(va, kind, next_va=next_va, payload=payload))

    def submit(self, slot: int, head: int, asn: int = 0, flags: int = 0) -> None:
        """panfrost_job_hw_submit()."""
        assert self.r(js(slot, JS_COMMAND_NEXT)) == 0
        self.w64(js(slot, JS_HEAD_NEXT), head)
        self.w64(js(slot, JS_AFFINITY_NEXT), 0x3)
        self.w(js(slot, JS_CONFIG_NEXT), asn | (8 << 16) | (3 << 8) | (3 << 12) | (1 << 14) | flags)
        self.w(js(slot, JS_COMMAND_NEXT), 1)

    def status_word(self, pa: int) -> int:
        return struct.unpack("<I", self.qt.memread(pa, 4))[0]


def write_value(target: int, kind: int, imm: int = 0) -> bytes:
    return struct.pack("<QIIQ", target, kind, 0, imm)


@pytest.fixture
def gpu(qemu_binary: Path, tmp_path: Path) -> Iterator[Gpu]:
    with launch(qemu_binary, "virt,mali=on", log=tmp_path / "qemu.log") as session:
        session.qtest.irq_intercept_out(PATH, "sysbus-irq")
        yield Gpu(session.qtest, session.qmp)


@pytest.fixture
def mapped(gpu: Gpu) -> tuple[Gpu, int, int]:
    """An initialised GPU with AS0 enabled and one 4 KiB page at VA 0x1000000 (returned
    with its PA) for job descriptors."""
    gpu.init()
    gpu.enable_as(0)
    page = gpu.alloc()
    gpu.map(0, 0x1000000, page)
    return gpu, 0x1000000, page


# --- GPU control ----------------------------------------------------------------------


def test_identity_is_a_mali_g52(gpu: Gpu) -> None:
    assert gpu.r(GPU_ID) == 0x72120000
    assert gpu.r(L2_FEATURES) == 0x07110206
    assert gpu.r(TILER_FEATURES) == 0x809
    assert gpu.r(MMU_FEATURES) == 0x2830
    assert gpu.r(AS_PRESENT) == 0xFF
    assert gpu.r(JS_PRESENT) == 0x7
    assert gpu.r64(SHADER_PRESENT) == 0x3
    assert gpu.r64(TILER_PRESENT) == 0x1
    assert gpu.r64(L2_PRESENT) == 0x1


def test_soft_reset_restores_reset_values_and_reports_completion(gpu: Gpu) -> None:
    gpu.init()
    gpu.w(JM_CONFIG, 0xF0000)
    gpu.enable_as(3)
    gpu.w64(as_reg(3, AS_TRANSCFG), 1)
    assert gpu.r64(L2_READY) == 1 and gpu.r(MMU_INT_MASK) != 0
    gpu.w(GPU_INT_MASK, 0)
    gpu.w(GPU_INT_CLEAR, RESET_COMPLETED)
    gpu.w(GPU_CMD, SOFT_RESET)
    assert gpu.r(GPU_INT_RAWSTAT) == RESET_COMPLETED
    for reg in (GPU_INT_MASK, JOB_INT_MASK, MMU_INT_MASK, JM_CONFIG, JOB_INT_RAWSTAT, JS_STATE,
                as_reg(3, AS_TRANSTAB), as_reg(3, AS_MEMATTR), as_reg(3, AS_TRANSCFG)):
        assert gpu.r(reg) == 0, hex(reg)
    assert gpu.r64(SHADER_READY) == gpu.r64(TILER_READY) == gpu.r64(L2_READY) == 0
    assert gpu.counter("soft-resets") == 2  # init() reset once already
    gpu.w(GPU_CMD, HARD_RESET)
    assert gpu.counter("hard-resets") == 1 and gpu.r(GPU_INT_RAWSTAT) & RESET_COMPLETED


def test_power_on_and_off_set_ready_bits_and_raise_power_irqs(gpu: Gpu) -> None:
    gpu.w(GPU_INT_MASK, POWER_CHANGED_ALL)
    assert not gpu.qt.irq(IRQ_GPU)
    gpu.w(L2_PWRON, 1)
    assert gpu.r64(L2_READY) == 1
    assert gpu.r(GPU_INT_RAWSTAT) & (POWER_CHANGED | POWER_CHANGED_ALL) == POWER_CHANGED | POWER_CHANGED_ALL
    assert gpu.r(GPU_INT_STAT) == POWER_CHANGED_ALL and gpu.qt.irq(IRQ_GPU)
    gpu.w(GPU_INT_CLEAR, 0xFFFFFFFF)
    assert not gpu.qt.irq(IRQ_GPU)
    gpu.w(SHADER_PWRON, 0xFF)  # only present cores come up
    assert gpu.r64(SHADER_READY) == 0x3 and gpu.r(SHADER_PWRTRANS) == 0
    gpu.w(SHADER_PWROFF, 0x1)
    assert gpu.r64(SHADER_READY) == 0x2
    gpu.w(SHADER_PWROFF, 0x3)
    gpu.w(L2_PWROFF, 0x1)
    assert gpu.r64(SHADER_READY) == 0 and gpu.r64(L2_READY) == 0
    assert gpu.qt.irq(IRQ_GPU)
    # masking drops the line at once, without touching RAWSTAT
    gpu.w(GPU_INT_MASK, 0)
    assert not gpu.qt.irq(IRQ_GPU) and gpu.r(GPU_INT_RAWSTAT) & POWER_CHANGED_ALL


def test_cache_clean_completes_and_moves_the_flush_id(gpu: Gpu) -> None:
    gpu.w(GPU_INT_MASK, CLEAN_CACHES_COMPLETED)
    before = gpu.r(LATEST_FLUSH)
    gpu.w(GPU_CMD, CLEAN_INV_CACHES)
    assert gpu.r(GPU_INT_RAWSTAT) & CLEAN_CACHES_COMPLETED and gpu.qt.irq(IRQ_GPU)
    assert gpu.r(LATEST_FLUSH) != before


def test_cycle_counter_runs_only_between_start_and_stop_and_timestamp_follows_time(gpu: Gpu) -> None:
    assert gpu.r64(CYCLE_COUNT_LO) == 0
    gpu.w(GPU_CMD, CYCLE_COUNT_START)
    gpu.step(5000)
    running = gpu.r64(CYCLE_COUNT_LO)
    assert running >= 5000
    gpu.w(GPU_CMD, CYCLE_COUNT_STOP)
    stopped = gpu.r64(CYCLE_COUNT_LO)
    gpu.step(5000)
    assert gpu.r64(CYCLE_COUNT_LO) == stopped
    t0 = gpu.r64(TIMESTAMP_LO)
    gpu.step(10_000)
    assert gpu.r64(TIMESTAMP_LO) - t0 == 10_000  # 1 GHz, as -cpu max's generic timer


# --- job slots ------------------------------------------------------------------------


def test_null_job_completes_with_done_irq_and_header_write_back(mapped) -> None:
    gpu, va, pa = mapped
    gpu.write_job(pa, va, NULL)
    gpu.submit(1, va)
    assert gpu.r(js(1, JS_COMMAND_NEXT)) == 0  # promoted at once: the slot was idle
    assert gpu.r(JS_STATE) == 1 << 1 and gpu.r(js(1, JS_STATUS)) == ACTIVE
    assert not gpu.qt.irq(IRQ_JOB)
    gpu.step()
    assert gpu.r(JOB_INT_RAWSTAT) == 1 << 1 and gpu.qt.irq(IRQ_JOB)
    assert gpu.r(js(1, JS_STATUS)) == DONE and gpu.r(JS_STATE) == 0
    assert gpu.status_word(pa) == DONE
    assert struct.unpack("<Q", gpu.qt.memread(pa + 8, 8))[0] == 0  # fault_pointer
    gpu.w(JOB_INT_CLEAR, 1 << 1)
    assert not gpu.qt.irq(IRQ_JOB)
    assert gpu.counter("jobs-run") == 1 and gpu.counter("chains-started") == 1


def test_next_is_promoted_without_an_ack_and_two_completions_share_one_done_bit(mapped) -> None:
    gpu, va, pa = mapped
    # chain A: three NULL jobs; chain B: one CACHE_FLUSH job
    for i in range(3):
        gpu.write_job(pa + 64 * i, va + 64 * i, NULL, next_va=va + 64 * (i + 1) if i < 2 else 0)
    gpu.write_job(pa + 256, va + 256, CACHE_FLUSH)
    gpu.submit(1, va)
    gpu.submit(1, va + 256)
    assert gpu.r(js(1, JS_COMMAND_NEXT)) == 1
    assert gpu.r(JS_STATE) == (1 << 1) | (1 << 17)
    gpu.step()
    assert gpu.r(JOB_INT_RAWSTAT) == 1 << 1
    assert gpu.r(JS_STATE) == 0 and gpu.r(js(1, JS_COMMAND_NEXT)) == 0
    assert [gpu.status_word(pa + off) for off in (0, 64, 128, 256)] == [DONE] * 4
    assert gpu.counter("jobs-run") == 4 and gpu.counter("chains-started") == 2


def test_nop_cancels_a_queued_start_and_keeps_the_next_registers(mapped) -> None:
    gpu, va, pa = mapped
    gpu.qmp.qom_set(PATH, "inject-hang-jobs", 1)
    gpu.write_job(pa, va, NULL)
    gpu.write_job(pa + 64, va + 64, NULL)
    gpu.submit(0, va)
    gpu.submit(0, va + 64)
    gpu.w(js(0, JS_COMMAND_NEXT), 0)
    assert gpu.r(JS_STATE) == 1 and gpu.r64(js(0, JS_HEAD_NEXT)) == va + 64
    gpu.w(js(0, JS_COMMAND_NEXT), 1)  # requeued without rewriting HEAD_NEXT
    assert gpu.r(JS_STATE) == 1 | 1 << 16


def test_a_failed_slot_holds_next_until_the_failure_is_acknowledged(mapped) -> None:
    gpu, va, pa = mapped
    gpu.write_job(pa, va, FRAGMENT)  # no shader cores: must fail, not pretend
    gpu.write_job(pa + 64, va + 64, NULL)
    gpu.submit(1, va)
    gpu.submit(1, va + 64)
    gpu.step()
    assert gpu.r(JOB_INT_RAWSTAT) == 1 << 17 and gpu.qt.irq(IRQ_JOB)
    assert gpu.r(js(1, JS_STATUS)) == JOB_CONFIG_FAULT
    assert gpu.r64(js(1, JS_HEAD)) == va and gpu.r64(js(1, JS_TAIL)) == va
    assert gpu.status_word(pa) == JOB_CONFIG_FAULT
    gpu.step()
    assert gpu.r(JS_STATE) == 1 << 17, "NEXT must wait for the FAILED bit to be cleared"
    assert gpu.status_word(pa + 64) == 0
    gpu.w(JOB_INT_CLEAR, 1 << 17)
    assert gpu.r(JS_STATE) == 1 << 1
    gpu.step()
    assert gpu.status_word(pa + 64) == DONE and gpu.r(JOB_INT_RAWSTAT) == 1 << 1
    assert gpu.counter("jobs-failed") == 1


def endless_loop(gpu: Gpu, va: int, pa: int) -> None:
    """IGT's pan-reset loop: two WRITE_VALUE(Zero) jobs, each zeroing the other's
    exception_status, each one's next the other."""
    gpu.write_job(pa, va, WRITE_VALUE, next_va=va + 64, payload=write_value(va + 64, WV_ZERO))
    gpu.write_job(pa + 64, va + 64, WRITE_VALUE, next_va=va, payload=write_value(va, WV_ZERO))


def test_an_endless_chain_runs_in_batches_until_soft_stopped(mapped) -> None:
    gpu, va, pa = mapped
    endless_loop(gpu, va, pa)
    gpu.submit(1, va)
    gpu.step()
    first = gpu.counter("jobs-run")
    gpu.step()
    assert gpu.counter("jobs-run") > first > 0
    assert gpu.r(JS_STATE) == 1 << 1 and gpu.r(JOB_INT_RAWSTAT) == 0
    gpu.w(js(1, JS_COMMAND_NEXT), 0)
    gpu.w(js(1, JS_COMMAND), SOFT_STOP)
    assert gpu.r(JS_STATE) == 0
    assert gpu.r(js(1, JS_STATUS)) == STOPPED and gpu.r(JOB_INT_RAWSTAT) == 1 << 17
    assert gpu.r64(js(1, JS_TAIL)) in (va, va + 64)
    assert DONE in (gpu.status_word(pa), gpu.status_word(pa + 64))
    assert 0 in (gpu.status_word(pa), gpu.status_word(pa + 64))
    ran = gpu.counter("jobs-run")
    gpu.step()
    assert gpu.counter("jobs-run") == ran and gpu.counter("soft-stops") == 1


def test_hard_stop_acts_only_on_the_matching_chain_flag(mapped) -> None:
    gpu, va, pa = mapped
    endless_loop(gpu, va, pa)
    gpu.submit(1, va, flags=CHAIN_FLAG)
    gpu.step()
    gpu.w(js(1, JS_COMMAND), HARD_STOP_0)
    gpu.w(js(1, JS_COMMAND), SOFT_STOP_0)
    gpu.step()
    assert gpu.r(JS_STATE) == 1 << 1 and gpu.r(JOB_INT_RAWSTAT) == 0
    gpu.w(js(1, JS_COMMAND), HARD_STOP_1)
    assert gpu.r(js(1, JS_STATUS)) == TERMINATED and gpu.r(JOB_INT_RAWSTAT) == 1 << 17
    assert gpu.r(JS_STATE) == 0 and gpu.counter("hard-stops") == 1


def test_soft_reset_abandons_running_jobs_silently(mapped) -> None:
    gpu, va, pa = mapped
    endless_loop(gpu, va, pa)
    gpu.submit(2, va)
    gpu.step()
    gpu.soft_reset()
    assert gpu.r(JS_STATE) == 0 and gpu.r(JOB_INT_RAWSTAT) == 0
    ran = gpu.counter("jobs-run")
    gpu.step()
    assert gpu.counter("jobs-run") == ran


# --- the MMU ----------------------------------------------------------------------------


@pytest.mark.parametrize("level", [3, 2, 1])
def test_the_walk_maps_pages_and_blocks(mapped, level: int) -> None:
    gpu, va, pa = mapped
    size = {3: 0x1000, 2: 0x200000, 1: 0x40000000}[level]
    target_va = 0x80000000 + size  # aligned to the block size
    target_pa = RAM if level == 1 else gpu.alloc(size, align=size)
    offset = 0x238 if level == 3 else 0x12348
    gpu.map(0, target_va, target_pa, level=level)
    before = gpu.qt.memread(target_pa + offset, 8)
    gpu.write_job(pa, va, WRITE_VALUE, payload=write_value(target_va + offset, WV_IMM64, 0x1122334455667788))
    gpu.submit(1, va)
    gpu.step()
    assert gpu.r(js(1, JS_STATUS)) == DONE
    assert gpu.qt.memread(target_pa + offset, 8) == struct.pack("<Q", 0x1122334455667788) != before


def test_a_translation_fault_stalls_the_job_until_mapped_and_flushed(mapped) -> None:
    gpu, va, pa = mapped
    heap_va = 0x2000000
    gpu.write_job(pa, va, WRITE_VALUE, payload=write_value(heap_va + 8, WV_IMM32, 0xCAFE))
    gpu.submit(1, va)
    gpu.step()
    assert gpu.r(MMU_INT_RAWSTAT) == 1 and gpu.qt.irq(IRQ_MMU)
    status = gpu.r(as_reg(0, AS_FAULTSTATUS))
    assert status & 0xF8 == 0xC0 and status & 0x300 == 0x300  # translation fault, on a write
    assert gpu.r64(as_reg(0, AS_FAULTADDRESS)) == heap_va + 8
    assert gpu.r(JS_STATE) == 1 << 1 and gpu.r(js(1, JS_STATUS)) == ACTIVE
    # panfrost's IRQ thread: clear first, then map the page, then LOCK + FLUSH_PT
    gpu.w(MMU_INT_MASK, 0)
    gpu.w(MMU_INT_CLEAR, 1)
    gpu.step()
    assert gpu.r(JS_STATE) == 1 << 1, "no retry before the flush"
    heap_pa = gpu.alloc()
    gpu.map(0, heap_va, heap_pa)
    gpu.flush(0, heap_va)
    gpu.step()
    assert gpu.r(js(1, JS_STATUS)) == DONE and gpu.r(JOB_INT_RAWSTAT) == 1 << 1
    assert struct.unpack("<I", gpu.qt.memread(heap_pa + 8, 4))[0] == 0xCAFE
    assert gpu.counter("mmu-faults") == 1


def test_a_fault_level_names_the_missing_table(mapped) -> None:
    gpu, va, pa = mapped
    # VA 0x1001000 shares the L0-L2 tables with the job's page: the walk stops at level 3
    gpu.write_job(pa, va, WRITE_VALUE, payload=write_value(0x1001000, WV_ZERO))
    gpu.submit(0, va)
    gpu.step()
    assert gpu.r(as_reg(0, AS_FAULTSTATUS)) & 0xFF == 0xC3
    gpu.soft_reset()
    gpu.init()
    gpu.enable_as(0)
    gpu.write_job(pa, va, WRITE_VALUE, payload=write_value(0x8000000000, WV_ZERO))  # another L0 entry
    gpu.submit(0, va)
    gpu.step()
    assert gpu.r(as_reg(0, AS_FAULTSTATUS)) & 0xFF == 0xC0


def test_a_write_to_a_read_only_page_is_a_permission_fault(mapped) -> None:
    gpu, va, pa = mapped
    ro_va, ro_pa = 0x3000000, gpu.alloc()
    gpu.map(0, ro_va, ro_pa, write=False)
    gpu.write_job(pa, va, WRITE_VALUE, payload=write_value(ro_va, WV_IMM8, 0x5A))
    gpu.submit(1, va)
    gpu.step()
    assert gpu.r(as_reg(0, AS_FAULTSTATUS)) & 0x3FF == 0x300 | 0xCB
    assert gpu.qt.memread(ro_pa, 1) == b"\0"
    # granting write and flushing resumes the job
    gpu.w(MMU_INT_CLEAR, 1)
    gpu.map(0, ro_va, ro_pa)
    gpu.flush(0, ro_va)
    gpu.step()
    assert gpu.qt.memread(ro_pa, 1) == b"\x5a" and gpu.r(js(1, JS_STATUS)) == DONE


def test_switching_off_a_faulty_as_fails_the_stalled_job_without_write_back(mapped) -> None:
    gpu, va, pa = mapped
    gpu.write_job(pa, va, WRITE_VALUE, payload=write_value(0xDEADBEEF0000, WV_ZERO))
    gpu.submit(1, va)
    gpu.step()
    assert gpu.r(MMU_INT_RAWSTAT) == 1
    # "Unhandled Page fault": clear, then panfrost_mmu_disable()
    gpu.w(MMU_INT_CLEAR, 1)
    gpu.disable_as(0)
    gpu.step()
    assert gpu.r(js(1, JS_STATUS)) == JOB_BUS_FAULT and gpu.r(JOB_INT_RAWSTAT) == 1 << 17
    assert gpu.r(MMU_INT_RAWSTAT) == 0 and gpu.status_word(pa) == 0
    # the next job re-enables the AS and runs
    gpu.w(JOB_INT_CLEAR, 0xFFFFFFFF)
    gpu.enable_as(0)
    gpu.write_job(pa, va, NULL)
    gpu.submit(1, va)
    gpu.step()
    assert gpu.r(js(1, JS_STATUS)) == DONE and gpu.status_word(pa) == DONE


def test_a_job_on_a_disabled_as_fails_without_an_mmu_irq(mapped) -> None:
    gpu, va, pa = mapped
    gpu.write_job(pa, va, NULL)
    gpu.submit(1, va, asn=5)  # AS5 never enabled
    gpu.step()
    assert gpu.r(js(1, JS_STATUS)) == JOB_BUS_FAULT and gpu.r(MMU_INT_RAWSTAT) == 0
    assert gpu.status_word(pa) == 0


def test_as_status_is_idle_after_each_command(mapped) -> None:
    gpu, _, _ = mapped
    for cmd in (LOCK, FLUSH_PT, UNLOCK, FLUSH_MEM, UPDATE):
        gpu.w(as_reg(0, AS_COMMAND), cmd)
        assert gpu.r(as_reg(0, AS_STATUS)) == 0


# --- WRITE_VALUE ------------------------------------------------------------------------


@pytest.mark.parametrize("kind,imm,expect", [
    (WV_IMM8, 0x1234567890ABCDEF, b"\xef" + b"\xff" * 15),
    (WV_IMM16, 0x1234567890ABCDEF, b"\xef\xcd" + b"\xff" * 14),
    (WV_IMM32, 0x1234567890ABCDEF, b"\xef\xcd\xab\x90" + b"\xff" * 12),
    (WV_IMM64, 0x1234567890ABCDEF, struct.pack("<Q", 0x1234567890ABCDEF) + b"\xff" * 8),
    (WV_ZERO, 0x1234567890ABCDEF, b"\0" * 8 + b"\xff" * 8),
])
def test_write_value_stores_its_width(mapped, kind: int, imm: int, expect: bytes) -> None:
    gpu, va, pa = mapped
    gpu.qt.memwrite(pa + 0x800, b"\xff" * 16)
    gpu.write_job(pa, va, WRITE_VALUE, payload=write_value(va + 0x800, kind, imm))
    gpu.submit(1, va)
    gpu.step()
    assert gpu.r(js(1, JS_STATUS)) == DONE
    assert gpu.qt.memread(pa + 0x800, 16) == expect


def test_write_value_timestamp_and_cycle_counter(mapped) -> None:
    gpu, va, pa = mapped
    gpu.w(GPU_CMD, CYCLE_COUNT_START)
    gpu.write_job(pa, va, WRITE_VALUE, next_va=va + 64, payload=write_value(va + 0x800, WV_TIMESTAMP))
    gpu.write_job(pa + 64, va + 64, WRITE_VALUE, payload=write_value(va + 0x808, WV_CYCLES))
    before = gpu.r64(TIMESTAMP_LO)
    gpu.submit(1, va)
    gpu.step()
    stamp, cycles = struct.unpack("<QQ", gpu.qt.memread(pa + 0x800, 16))
    assert before < stamp <= gpu.r64(TIMESTAMP_LO)
    assert 0 < cycles <= gpu.r64(CYCLE_COUNT_LO)


def test_an_unknown_write_value_type_is_a_data_invalid_fault(mapped) -> None:
    gpu, va, pa = mapped
    gpu.write_job(pa, va, WRITE_VALUE, payload=write_value(va + 0x800, 9))
    gpu.submit(1, va)
    gpu.step()
    assert gpu.r(js(1, JS_STATUS)) == DATA_INVALID_FAULT == gpu.status_word(pa)


# --- fault injection and counters -------------------------------------------------------


def test_injected_failure_uses_the_given_code(mapped) -> None:
    gpu, va, pa = mapped
    gpu.qmp.qom_set(PATH, "inject-fail-code", JOB_CONFIG_FAULT)
    gpu.qmp.qom_set(PATH, "inject-fail-jobs", 1)
    gpu.write_job(pa, va, NULL)
    gpu.submit(1, va)
    gpu.step()
    assert gpu.r(js(1, JS_STATUS)) == JOB_CONFIG_FAULT and gpu.counter("jobs-failed") == 1
    assert gpu.qmp.qom_get(PATH, "inject-fail-jobs") == 0
    gpu.w(JOB_INT_CLEAR, 0xFFFFFFFF)
    gpu.submit(1, va)
    gpu.step()
    assert gpu.r(js(1, JS_STATUS)) == DONE  # only one


def test_an_injected_hang_never_completes_until_stopped(mapped) -> None:
    gpu, va, pa = mapped
    gpu.qmp.qom_set(PATH, "inject-hang-jobs", 1)
    gpu.write_job(pa, va, NULL)
    gpu.submit(1, va)
    for _ in range(5):
        gpu.step()
    assert gpu.r(JS_STATE) == 1 << 1 and gpu.r(JOB_INT_RAWSTAT) == 0 and gpu.counter("jobs-hung") == 1
    gpu.w(js(1, JS_COMMAND), SOFT_STOP)
    assert gpu.r(js(1, JS_STATUS)) == STOPPED and gpu.r64(js(1, JS_TAIL)) == va
    # resumed from JS_TAIL, as panfrost does after a reset
    gpu.w(JOB_INT_CLEAR, 0xFFFFFFFF)
    gpu.submit(1, gpu.r64(js(1, JS_TAIL)))
    gpu.step()
    assert gpu.r(js(1, JS_STATUS)) == DONE


def test_a_lost_interrupt_completes_the_job_but_raises_nothing(mapped) -> None:
    gpu, va, pa = mapped
    gpu.qmp.qom_set(PATH, "inject-drop-irqs", 1)
    gpu.write_job(pa, va, NULL)
    gpu.submit(1, va)
    gpu.step()
    assert gpu.r(js(1, JS_STATUS)) == DONE and gpu.status_word(pa) == DONE
    assert gpu.r(JOB_INT_RAWSTAT) == 0 and not gpu.qt.irq(IRQ_JOB)
    assert gpu.counter("irqs-dropped") == 1


def test_a_stuck_as_active_lasts_until_the_next_reset(mapped) -> None:
    gpu, _, _ = mapped
    gpu.qmp.qom_set(PATH, "inject-stick-as-active", 1)
    gpu.w(as_reg(2, AS_COMMAND), FLUSH_MEM)
    assert gpu.r(as_reg(2, AS_STATUS)) == 1 and gpu.r(as_reg(0, AS_STATUS)) == 0
    gpu.w(as_reg(2, AS_COMMAND), FLUSH_MEM)
    assert gpu.r(as_reg(2, AS_STATUS)) == 1
    gpu.soft_reset()
    assert gpu.r(as_reg(2, AS_STATUS)) == 0


def test_an_ignored_soft_reset_leaves_only_the_hard_reset(gpu: Gpu) -> None:
    gpu.qmp.qom_set(PATH, "inject-ignore-soft-resets", 1)
    gpu.w(GPU_INT_CLEAR, RESET_COMPLETED)
    gpu.w(GPU_CMD, SOFT_RESET)
    gpu.step(20_000_000)
    assert gpu.r(GPU_INT_RAWSTAT) & RESET_COMPLETED == 0
    gpu.w(GPU_CMD, HARD_RESET)
    assert gpu.r(GPU_INT_RAWSTAT) & RESET_COMPLETED
    assert (gpu.counter("soft-resets"), gpu.counter("hard-resets")) == (0, 1)


def test_injection_from_the_command_line(qemu_binary: Path, tmp_path: Path) -> None:
    with launch(qemu_binary, "virt,mali=on", ["-global", "mali-jm.inject-fail-jobs=2"],
                log=tmp_path / "qemu.log") as session:
        assert session.qmp.qom_get(PATH, "inject-fail-jobs") == 2


def test_counters_are_read_only(gpu: Gpu) -> None:
    with pytest.raises(QtestError):
        gpu.qmp.qom_set(PATH, "jobs-run", 5)


def test_irq_lines_follow_rawstat_and_mask(mapped) -> None:
    gpu, va, pa = mapped
    raised = gpu.counter("irqs-raised")
    gpu.w(JOB_INT_MASK, 0)
    gpu.write_job(pa, va, NULL)
    gpu.submit(0, va)
    gpu.step()
    assert gpu.r(JOB_INT_RAWSTAT) == 1 and gpu.r(JOB_INT_STAT) == 0 and not gpu.qt.irq(IRQ_JOB)
    gpu.w(JOB_INT_MASK, 0x70007)
    assert gpu.qt.irq(IRQ_JOB) and gpu.r(JOB_INT_STAT) == 1
    assert gpu.counter("irqs-raised") == raised + 1
    assert not gpu.qt.irq(IRQ_MMU) and not gpu.qt.irq(IRQ_GPU)


# --- the device tree panfrost probes from -------------------------------------------------


def fdt_nodes(blob: bytes) -> dict[str, dict[str, bytes]]:
    """Every node of a flattened device tree by path, with its raw property values."""
    magic, _, off_struct, off_strings = struct.unpack_from(">IIII", blob)
    assert magic == 0xD00DFEED
    nodes: dict[str, dict[str, bytes]] = {}
    path: list[str] = []
    pos = off_struct
    while True:
        (token,) = struct.unpack_from(">I", blob, pos)
        pos += 4
        if token == 1:  # FDT_BEGIN_NODE
            end = blob.index(b"\0", pos)
            path.append(blob[pos:end].decode())
            nodes["/" + "/".join(p for p in path if p)] = {}
            pos = (end + 4) & ~3
        elif token == 2:  # FDT_END_NODE
            path.pop()
        elif token == 3:  # FDT_PROP
            length, name_off = struct.unpack_from(">II", blob, pos)
            name = blob[off_strings + name_off:blob.index(b"\0", off_strings + name_off)].decode()
            nodes["/" + "/".join(p for p in path if p)][name] = blob[pos + 8:pos + 8 + length]
            pos = (pos + 8 + length + 3) & ~3
        elif token == 9:  # FDT_END
            return nodes


def dump_dtb(qemu_binary: Path, machine: str, tmp_path: Path) -> dict[str, dict[str, bytes]]:
    from rig import proc

    dtb = tmp_path / "virt.dtb"
    proc.run([qemu_binary, "-machine", f"{machine},dumpdtb={dtb}", "-cpu", "max", "-display", "none",
              "-nodefaults"], timeout=60, what="qemu dumpdtb")
    return fdt_nodes(dtb.read_bytes())


@pytest.mark.parametrize("coherent", [False, True])
def test_the_gpu_node_is_what_panfrost_probes(qemu_binary: Path, tmp_path: Path, coherent: bool) -> None:
    machine = "virt,gic-version=3,mali=on" + (",mali-coherent=on" if coherent else "")
    nodes = dump_dtb(qemu_binary, machine, tmp_path)
    gpu = nodes["/gpu@90c0000"]
    assert gpu["compatible"] == b"arm,mali-bifrost\0"
    assert struct.unpack(">4I", gpu["reg"]) == (0, 0x090C0000, 0, 0x4000)
    # three level-high SPIs 10, 11, 12 named job, mmu, gpu
    assert struct.unpack(">9I", gpu["interrupts"]) == (0, 10, 4, 0, 11, 4, 0, 12, 4)
    assert gpu["interrupt-names"] == b"job\0mmu\0gpu\0"
    clock = struct.unpack(">I", gpu["clocks"])[0]
    assert struct.unpack(">I", nodes["/apb-pclk"]["phandle"])[0] == clock
    assert ("dma-noncoherent" in gpu) == (not coherent)
    assert "dma-coherent" in nodes["/"]  # what the GPU inherits when coherent


def test_no_gpu_node_without_mali(qemu_binary: Path, tmp_path: Path) -> None:
    assert not any(path.startswith("/gpu@") for path in dump_dtb(qemu_binary, "virt", tmp_path))
