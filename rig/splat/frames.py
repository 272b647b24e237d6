"""Stack frames in kernel reports, and which of them name a bug.

A title names the first frame that is not the reporting machinery itself: allocators,
locking primitives, sanitizer runtimes, printk/dump helpers and entry code are skipped,
as syzbot does, so the title points at the code that has the bug.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

# "func+0x1c/0x40", optionally after "[<ffffffff8123>]" addresses (old x86, kmemleak,
# powerpc "[c000..] [c000..]") and a "? " that marks a frame the unwinder is unsure of.
_FRAME = re.compile(
    r"\s*(?:(?:\[<?(?:0x)?[0-9a-fA-F]+>?\]|0x[0-9a-f]+)\s*)*"
    r"(?P<q>\?\s+)?(?P<func>[A-Za-z_$][A-Za-z0-9_.$]*)\+0x[0-9a-fA-F]+(?:/0x[0-9a-fA-F]+)?"
)
# A function the symbolizer placed inline: "  skb_put include/linux/skbuff.h:123 [inline]".
_INLINE = re.compile(r"\s*(?P<func>[A-Za-z_][A-Za-z0-9_.]*) \S+:\d+(?::\d+)? \[inline\]")
# 32-bit ARM: "[<c036a6dc>] (serial8250_console_write) from [<c0...>] (...)".
_ARM = re.compile(r"\s*\[<[0-9a-f]+>\]\s*\((?P<func>[A-Za-z_][A-Za-z0-9_.]*)(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?\) from")
# The faulting function: x86 RIP/IP, arm64 "pc :", arm "PC is at", powerpc NIP, riscv epc.
_PC_LINE = re.compile(
    r"\s*(?:RIP: [0-9a-f]{4}:|IP:|EIP: [0-9a-f]{4}:|NIP:?|pc\s*:|PC is at|epc\s*:|ip\s*:)\s*"
    r"(?:(?:\[<?[0-9a-f]+>?\]|\[[0-9a-f]+\]|0x[0-9a-f]+)\s*)*"
    r"(?P<func>[A-Za-z_][A-Za-z0-9_.]*)\+0x[0-9a-f]+"
)


def normalize_function(name: str) -> str:
    """Compiler suffixes (.isra.0, .cold, .constprop.3, .part.1) vary between builds."""
    return name.split(".", 1)[0]


def parse_frame(msg: str) -> tuple[str, bool] | None:
    """(function, questionable) when `msg` is a stack-trace line, else None."""
    if not msg or (msg[0] not in " \t[0?" and "+0x" not in msg):
        return None
    m = _FRAME.match(msg)
    if m is not None:
        # "func+0x" glued to a longer word ("RIP: 0010:func+0x") is no frame line.
        return normalize_function(m.group("func")), m.group("q") is not None
    m = _INLINE.match(msg) or _ARM.match(msg)
    if m is not None:
        return normalize_function(m.group("func")), False
    return None


def pc_function(msg: str) -> str | None:
    """The function a RIP/IP/pc/NIP line points into, None for user space or no symbol."""
    m = _PC_LINE.match(msg)
    return normalize_function(m.group("func")) if m else None


class SkipRule:
    """Function-name prefixes that never name a bug (a leading '_' run is ignored)."""

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        self._re = re.compile(r"_*(?:" + "|".join(self.patterns) + ")") if self.patterns else None

    def __add__(self, other: SkipRule) -> SkipRule:
        return SkipRule(self.patterns + other.patterns)

    def skips(self, func: str) -> bool:
        return self._re is not None and self._re.match(func) is not None


# Reporting machinery, allocators, locking primitives, string/copy helpers, entry code:
# they show up on top of nearly every trace and would make every title the same.
COMMON_SKIP = SkipRule([
    # sanitizers and their report paths
    "sanitizer", "asan", "kasan", "hwasan", "msan", "kmsan", "kcsan", "tsan", "ubsan",
    "check_memory_region", "check_heap_object", "check_object", "check_stack_object",
    "check_bytes", "print_address_description", "print_report", "report_", "kfence",
    "save_stack", "stack_trace_save", "arch_stack_walk", "stack_depot", "set_track",
    "read_word_at_a_time", "instrument_", "memory_is_", "metadata_access",
    # report output and trap handling
    "panic", "invalid_op", "do_invalid_op", "exc_", "asm_exc_", "do_error", "do_trap",
    "handle_bug", "fixup_bug", "report_bug", "bug_handler", "die$", "oops_",
    "show_stack", "show_regs", "show_trace", "dump_stack", "dump_backtrace", "walk_stack",
    "unwind_", "print_", "printk", "vprintk", "warn_slowpath", "warn_alloc", "warn_bogus",
    "warn$", "warn_printk",
    "debug_object", "debug_print_object", "debug_check_", "debug_lockdep",
    "page_fault", "do_page_fault", "do_user_addr_fault", "do_kern_addr_fault",
    "handle_page_fault", "no_context", "bad_area", "kernelmode_fixup", "page_fault_oops",
    "do_general_protection", "general_protection", "do_divide_error", "do_mem_abort",
    "do_translation_fault", "do_bad_area", "do_sect_fault", "el1_", "el0_", "__do_kernel_fault",
    "do_alignment", "trace_hardirqs", "lockdep_hardirqs", "ftrace", "fentry", "mcount",
    # lockdep and locking primitives
    "lockdep", "lock_acquire", "lock_release", "lock_acquired", "lock_contended", "lock_is_held",
    "lock_acquire_", "mark_lock", "mark_held_locks", "mark_usage", "mark_irqflags",
    "valid_state", "check_noncircular", "check_prev_add", "check_prevs_add", "validate_chain",
    "check_irq_usage", "check_deadlock", "check_flags", "check_wait_context",
    "might_sleep", "might_resched", "might_fault", "might_lock", "cant_sleep",
    "raw_spin", "_raw_spin", "_raw_read", "_raw_write", "do_raw_spin", "do_raw_read",
    "do_raw_write", "spin_lock", "spin_unlock", "spin_trylock", "spin_bug", "spin_dump",
    "queued_spin", "native_queued_spin", "pv_queued_spin", "queued_read", "queued_write",
    "read_lock", "read_unlock", "write_lock", "write_unlock", "rwlock_bug",
    "mutex_lock", "mutex_unlock", "mutex_trylock", "mutex_lock_", "ww_mutex_lock",
    "ww_mutex_unlock", "rt_mutex", "down_read", "down_write", "up_read", "up_write",
    "down$", "up$", "down_trylock", "down_interruptible", "down_killable", "rwsem_", "percpu_down", "percpu_up", "percpu_rwsem", "local_bh",
    "bh_enable", "bh_disable", "preempt_count", "preempt_schedule", "rcu_lock",
    "rcu_read_lock", "rcu_read_unlock", "lock_sock", "release_sock", "lock_timer_base",
    # allocators
    "kmem_cache", "kmalloc", "kzalloc", "kcalloc", "kvmalloc", "kvzalloc", "kvcalloc",
    "krealloc", "kvrealloc", "vmalloc", "vzalloc", "kmemdup", "kstrdup", "kstrndup",
    "slab_", "slob_", "slub_", "new_slab", "allocate_slab", "cache_alloc", "cache_grow",
    "alloc_pages", "alloc_page", "folio_alloc", "get_free_page", "get_free_pages",
    "free_pages", "free_page", "kfree", "kvfree", "vfree", "kmem_", "mempool_alloc",
    "page_alloc", "pcpu_alloc",
    # list, refcount and string/copy helpers
    "list_add", "list_del", "list_replace", "list_move", "hlist_", "refcount_",
    "memcpy", "memset", "memmove", "memcmp", "memchr", "strlen", "strnlen", "strcmp",
    "strncmp", "strcpy", "strncpy", "strscpy", "strlcpy", "strcat", "strncat", "strchr",
    "strrchr", "strstr", "copy_from_user", "copy_to_user", "copy_user", "copy_in_user",
    "_copy_from_user", "_copy_to_user", "raw_copy_", "strncpy_from_user", "strnlen_user",
    "clear_user", "get_user", "put_user", "csum_partial_copy", "fortify",
    "x86_indirect_thunk", "x86_return_thunk", "rcu_lockdep",
    "debug_smp_processor_id", "check_preemption_disabled", "this_cpu_preempt_check",
    "sysvec_", "apic_timer_interrupt", "smp_apic_timer_interrupt", "irq_exit",
    "do_softirq", "invoke_softirq", "softirqentry", "call_on_stack", "run_on_irqstack",
])


def first_unskipped(frames: Iterable[str], skip: SkipRule) -> str | None:
    for func in frames:
        if not skip.skips(func):
            return func
    return None
