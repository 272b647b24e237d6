"""Stack frames in kernel reports, and which of them name a bug.

A title names the first frame that is not the reporting machinery itself: allocators,
locking primitives, sanitizer runtimes, printk/dump helpers and entry code are skipped,
as syzbot does, so the title points at the code that has the bug.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from rig.splat.anymatch import compile_any
from rig.splat.symbols import demangle

# "func+0x1c/0x40", optionally after "[<ffffffff8123>]" addresses (old x86, kmemleak,
# powerpc "[c000..] [c000..]") and a "? " that marks a frame the unwinder is unsure of.
_FRAME = re.compile(
    r"\s*(?:(?:\[<?(?:0x)?[0-9a-fA-F]+>?\]|0x[0-9a-f]+)\s*)*"
    r"(?P<q>\?\s+)?(?P<func>[A-Za-z_$][A-Za-z0-9_.$]*)\+0x[0-9a-fA-F]+(?:/0x[0-9a-fA-F]+)?"
)
# Frames a symbolizer adds for inlined code ("skb_put include/linux/skbuff.h:123 [inline]")
# are not frames of the machine stack; titles ignore them, as syzbot's do.
# 32-bit ARM: "[<c036a6dc>] (serial8250_console_write) from [<c0...>] (...)".
_ARM = re.compile(r"\s*\[<[0-9a-f]+>\]\s*\((?P<func>[^()]*?)(?:\+0x[0-9a-f]+/0x[0-9a-f]+)?\) from "
                  r"\[<[0-9a-f]+>\]\s*\((?P<caller>[A-Za-z_][A-Za-z0-9_.]*)")
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*$")
# The faulting function: x86 RIP/IP, arm64 "pc :", arm "PC is at", powerpc NIP, riscv epc.
_PC_LINE = re.compile(
    r"\s*(?:RIP: [0-9a-f]{4}:|IP:|EIP: [0-9a-f]{4}:|NIP:?|pc\s*:|PC is at|epc\s*:)\s*"
    r"(?:(?:\[<?[0-9a-f]+>?\]|\[[0-9a-f]+\]|0x[0-9a-f]+)\s*)*"
    r"(?P<func>[A-Za-z_][A-Za-z0-9_.]*)\+0x[0-9a-f]+"
)


def normalize_function(name: str) -> str:
    """Compiler suffixes (.isra.0, .cold, .constprop.3, .part.1, .llvm.123) vary between
    builds; mangled Rust and C++ names are demangled, so skip rules read them as titles do."""
    name = name.split(".", 1)[0]
    return demangle(name) if name[:2] in ("_R", "_Z") else name


@lru_cache(maxsize=8192)  # a report's lines are read several times: cutting, naming, tracing
def parse_frame(msg: str) -> tuple[str, bool] | None:
    """(function, questionable) when `msg` is a stack-trace line, else None."""
    if not msg or (msg[0] not in " \t[0?" and "+0x" not in msg):
        return None
    m = _FRAME.match(msg)
    if m is not None:
        # "func+0x" glued to a longer word ("RIP: 0010:func+0x") is no frame line.
        return normalize_function(m.group("func")), m.group("q") is not None
    m = _ARM.match(msg)
    if m is not None and _NAME.match(m.group("func")):
        return normalize_function(m.group("func")), False
    return None


def arm_caller(msg: str) -> str | None:
    """The caller on a 32-bit ARM "(callee) from (caller+off)" line."""
    m = _ARM.match(msg) if "from" in msg else None
    return normalize_function(m.group("caller")) if m else None


def pc_function(msg: str) -> str | None:
    """The function a RIP/IP/pc/NIP line points into, None for user space or no symbol."""
    m = _PC_LINE.match(msg)
    return normalize_function(m.group("func")) if m else None


class SkipRule:
    """Patterns that mark a function as machinery rather than the bug.

    A pattern matches anywhere in the name (as syzbot's do: "alloc" skips
    sk_prot_alloc); anchor it with ^ and $ where a short word would match too much.
    """

    def __init__(self, patterns: Iterable[str]) -> None:
        self.patterns = tuple(patterns)
        # one test for the whole list, as a prefix tree (rig.splat.anymatch): a name not
        # seen before is tried against hundreds of patterns, as every frame of a hung
        # task's stack is
        self._test = compile_any(self.patterns)
        # even so a test costs microseconds, and a log names the same few thousand
        # functions over and over
        self._known: dict[str, bool] = {}

    def __add__(self, other: SkipRule) -> SkipRule:
        return SkipRule(self.patterns + other.patterns)

    def skips(self, func: str) -> bool:
        known = self._known.get(func)
        if known is None:
            known = self._test(func)
            if len(self._known) >= _MAX_KNOWN:
                self._known.clear()
            self._known[func] = known
        return known


_MAX_KNOWN = 1 << 16  # function names remembered per rule: bounds the memory of a long-lived process


# Reporting machinery, allocators, locking primitives, generic library code (lists,
# trees, strings, printf, kobjects), entry code: they show up in traces of bugs that
# are elsewhere, and would make every title the same. rig's own list, written from
# kernel traces; syzkaller's (below) is added to it.
RIG_SKIP: tuple[str, ...] = (
    # sanitizers and their report paths
    "__sanitizer", "__asan", "kasan", "hwasan", "__msan", "kmsan", "kcsan", "__tsan", "ubsan",
    "check_memory_region", "check_heap_object", "check_object", "check_stack_object",
    "print_address_description", "print_report", "print_usage_bug", "^kfence_", "save_stack", "stack_trace",
    "stack_depot", "set_track", "read_word_at_a_time", "(?:read|write)_once_.*nocheck",
    "^instrument_", "memory_is_", "metadata_access", "do_tag_check_fault",
    # report output and trap handling
    "panic", "invalid_op", "report_bug", "fixup_bug", "^_*handle_bug$", "bug_handler",
    "do_error", "_trap$", "do_trap", "^_*die$", "oops_end", "^_*exc_", "asm_exc_",
    "show_stack", "show_regs", "show_trace", "dump_stack", "dump_backtrace", "walk_stack",
    "^_*unwind_get", "^_*unwind_next", "^_*printk", "vprintk", "warn_slowpath",
    "warn_alloc", "warn_bogus", "^_*warn$", "warn_printk", "^_*report_bug",
    "debug_object", "timer_is_static_object", "work_is_static_object", "debug_print_object",
    "debug_check_no_", "print_tainted", "get_taint", "try_to_grab_pending",
    "^_*(?:do_)?page_fault$", "do_user_addr_fault", "do_kern_addr_fault", "handle_page_fault",
    "^_*no_context$", "kernelmode_fixup", "page_fault_oops", "^_*do_general_protection",
    "^_*general_protection", "do_divide_error", "do_mem_abort", "do_translation_fault",
    "do_bad_area", "do_sect_fault", "^_*el1_", "el1h_", "do_kernel_fault", "do_alignment",
    "^_*do_slb_fault", "data_access_slb", "^_*raw_(?:read|write)[bwlq]$", "^logic_(?:in|out)[bwl]$",
    "program_check_", "trace_hardirqs", "lockdep_hardirqs", "^_*ftrace", "^_*fentry", "mcount",
    "nmi_cpu_backtrace", "nmi_trigger_cpumask_backtrace", "rela_dyn_start",
    # lockdep and locking primitives
    "lockdep", "lock_acquire", "lock_release", "lock_acquired", "lock_contended",
    "lock_is_held", "lock_class", "mark_lock", "mark_held_locks", "mark_usage",
    "reacquire_held_locks", "valid_state", "check_noncircular", "check_prev_add",
    "validate_chain", "check_irq_usage", "check_deadlock", "check_flags", "check_wait_context",
    "print_unlock", "imbalance_bug", "might_sleep", "might_resched", "might_fault",
    "might_lock", "cant_sleep", "perf_trace", "raw_spin", "_raw_", "spin_lock", "spin_unlock",
    "spin_trylock", "spin_bug", "spin_dump", "queued_spin", "queued_read", "queued_write",
    "read_lock", "read_unlock", "read_trylock", "write_lock", "write_unlock",
    "write_trylock", "rwlock_bug", "mutex", "^_*down_read", "^_*down_write", "^_*up_read",
    "^_*up_write", "^_*down$", "^_*up$", "down_trylock", "down_interruptible", "down_killable",
    "rwsem", "percpu_down", "percpu_up", "local_bh", "bh_enable", "bh_disable",
    "^_*finish_wait$", "^_*prepare_to_wait", "^_*wait_for_completion", "^_*lock_timer_base$",
    "^_*mod_timer$", "timer_delete", "sk_stop_timer",
    "preempt_count", "^_*rcu_read_lock", "^_*rcu_read_unlock", "owner_on_cpu", "osq_lock",
    "lock_sock", "release_sock", "task_rq_lock", "^_*rq_lock", "atomic_dec_and",
    "^_*wake_up$", "^_*wake_up_common", "^_*wake_up_locked", "^_*wake_up_sync",
    "seqprop", "seqcount",
    # allocators
    "kmem_cache", "k?v?(?:m|z|c)alloc", "krealloc", "kvrealloc", "vmalloc", "vzalloc",
    "kmemdup", "kstrdup", "kstrndup", "slab_", "slob_", "slub_", "new_slab", "allocate_slab",
    "cache_alloc", "cache_grow", "alloc_pages", "alloc_page", "folio_alloc", "folio_unlock",
    "get_free_page", "^_*free_pages", "^_*free_page$", "kfree", "kvfree", "vfree", "mempool_alloc",
    "filemap_alloc_folio", "find_or_create_page", "phys_addr", "_noprof$", "alloc_frozen_pages",
    "memdup_user", "do_read_cache_folio", "read_cache_page", "pagecache_get_page",
    "grab_cache_page_write_begin", "__filemap_get_folio", "^_*mark_buffer_dirty$",
    # generic library code: lists, trees, refcounts, kobjects, strings, printf
    "list_add", "list_del", "list_replace", "list_move", "hlist_", "^_*klist_", "^_*rb_",
    "^_*xas_", "^_*xa_", "radix_tree", "^_*idr_", "rhashtable", "refcount", "^_*kref_",
    "ref_tracker", "^_*kobject_", "uevent", "sysfs_remove", "sysfs_create", "^_*device_del$",
    "^_*device_unregister$", "^_*device_add$", "^_*device_destroy$", "^_*put_device$",
    "^_*get_device_parent$", "kthread_stop", "queue_work", "queue_delayed_work", "insert_work",
    "flush_work", "cancel_work", "stack_walk", "^_*iput$", "^_*skb_(?:put|push|pull)$",
    "^usb_(?:control|bulk|interrupt)_msg$", "^usb_start_wait_urb$", "copy_to_iter", "^_*copyout",
    "cancel_delayed_work", "drain_workqueue", "destroy_workqueue", "del_timer", "timer_sync",
    "memcpy", "memset", "memmove", "memcmp", "memchr", "strlen", "strnlen", "strcmp",
    "strncmp", "strcpy", "strncpy", "strscpy", "strlcpy", "strcat", "strncat", "strchr",
    "strrchr", "strstr", "strnstr", "copy_from_user", "copy_to_user", "copy_user",
    "copy_in_user", "raw_copy_", "strncpy_from_user", "strnlen_user", "^_*clear_user",
    "^_*get_user", "^_*put_user", "csum_partial_copy", "fortify", "^_*test_and_(?:set|clear)_bit",
    "^_*(?:set|clear|change)_bit$", "hex_dump", "^_*hex_string$", "^_*string$", "^_*pointer$",
    "vsnprintf", "vscnprintf", "snprintf", "scnprintf", "sprintf", "va_format",
    "dev_vprintk", "dev_printk", "^_*dev_(?:err|warn|info|notice|dbg|emerg|crit|alert)$",
    "^_*crc", "_nlink$", "^_*(?:fast_)?dput$", "^_*iput_final$", "^_*ihold$",
    # teardown helpers that free or wait on the object of the driver that calls them
    "hwrng_unregister", "i2c_del_adapter", "__unregister_client", "rollback_registered",
    "unregister_netdevice", "devres_release_all", "device_for_each_child", "find_lock_entries",
    "truncate_inode_pages_range", "^_*ida_free$", "^_*idr_find$",
    # atomics and bit operations, instrumented or not
    "atomic(?:64|_long)?_(?:dec|inc|read|set|or|xor|and|add|sub|fetch|xchg|cmpxchg|try)",
    "(?:set|clear|change|test)_bit", "copy_from_iter", "copy_page_to_iter", "copy_page_from_iter",
    "^_*copyin$", "strdup", "strndup", "kasprintf", "^_*rcu_read_(?:un)?lock", "^_*(?:un)?lock_page", "cleanup_srcu_struct", "assertfail",
    "x86_indirect_thunk", "x86_return_thunk", "debug_smp_processor_id",
    "check_preemption_disabled", "this_cpu_preempt_check",
    "^_*sysvec_", "apic_timer_interrupt", "^_*irq_exit", "^_*do_softirq_own_stack",
    "^_*call_on_stack", "run_on_irqstack",
)

# syzkaller's guilty-frame skip list, verbatim (pkg/report/linux.go, linuxStackParams.skipPatterns,
# google/syzkaller 1e72964b): searched for anywhere in the name, like rig's own above.
SYZKALLER_SKIP: tuple[str, ...] = (
    # sanitizers, report and trap paths
    '__sanitizer', '__asan', 'kasan', 'hwasan', '__msan', 'kmsan', 'kcsan_setup_watchpoint',
    'check_memory_region', 'check_heap_object', 'check_object', 'read_word_at_a_time',
    '(read|write)_once_.*nocheck', 'print_address_description', 'panic', 'invalid_op', 'report_bug',
    'fixup_bug', 'print_report', 'print_usage_bug', 'do_error', 'invalid_op', '_trap$|do_trap', 'show_stack',
    'dump_stack', 'walk_stack', 'dump_backtrace', 'warn_slowpath', 'warn_alloc', 'warn_bogus', '__warn',
    # allocators and the page cache's allocation helpers
    'alloc_page', 'k?v?(?:m|z|c)alloc', 'krealloc', 'kmem_cache', 'allocate_slab',
    '__alloc_frozen_pages_noprof', 'folio_(?:alloc|unlock)', 'filemap_alloc_folio', '__filemap_get_folio',
    'find_or_create_page', 'do_read_cache_folio', 'read_cache_page', 'pagecache_get_page',
    'grab_cache_page_write_begin', 'slab_',
    # debugobjects, lockdep and locking primitives
    'debug_object', 'timer_is_static_object', 'work_is_static_object', '__might_fault', 'print_unlock',
    'imbalance_bug', 'lockdep', 'bh_enable', 'bh_disable', 'perf_trace', 'lock_acquire', 'lock_release',
    'lock_class', 'mark_lock', '(reacquire|mark)_held_locks', 'raw_spin_rq', 'spin_lock', 'spin_trylock',
    'spin_unlock', 'read_lock', 'read_trylock', 'write_lock', 'write_trylock', 'read_unlock', 'write_unlock',
    '^down$', 'down_read', 'down_write', 'down_read_trylock', 'down_write_trylock', 'down_trylock', 'up_read',
    'up_write', '^mutex_', '^__mutex_', '^rt_mutex_', 'owner_on_cpu', 'osq_lock', 'osq_unlock',
    'atomic(64)?_(dec|inc|read|set|or|xor|and|add|sub|fetch|xchg|cmpxchg|try)', '(set|clear|change|test)_bit',
    '__wake_up',
    # refcounts, string and memory helpers, user copies, lists, trees, printf
    '^refcount_', '^kref_', 'ref_tracker', 'seqprop_assert', 'memcpy', 'memcmp', 'memset', 'memchr', 'memmove',
    'memdup', 'strcmp', 'strncmp', 'strcpy', 'strlcpy', 'strncpy', 'strscpy', 'strlen', 'strstr', 'strnstr',
    'strnlen', 'strchr', 'strdup', 'strndup', 'copy_to_user', 'copy_from_user', 'copy_to_iter',
    'copy_from_iter', 'copy_page_to_iter', 'copy_page_from_iter', 'copy_folio_to_iter', '^copyin$', '^copyout$',
    'put_user', 'get_user', 'might_fault', 'might_sleep', 'list_add', 'list_del', 'list_replace', 'list_move',
    'list_splice', '^rb_', '^__rb_', '_indirect_thunk_', 'string', 'pointer', 'snprintf', 'scnprintf',
    'kasprintf', 'kvasprintf', 'printk', 'va_format', 'dev_info', 'dev_notice', 'dev_warn', 'dev_err',
    'dev_alert', 'dev_crit', 'dev_emerg',
    # powerpc's trap path
    'program_check_exception', 'program_check_common',
    # timers and workqueues: a bug in them is a misuse by their caller
    'del_timer', 'flush_work', '__cancel_work_timer', 'cancel_work_sync', 'try_to_grab_pending',
    'flush_workqueue', 'drain_workqueue', 'destroy_workqueue', 'queue_work', 'finish_wait',
    # the driver core, tty and USB core: the driver that calls them has the bug
    'kthread_stop', 'kobject_', 'add_uevent_var', 'get_device_parent', 'device_add', 'device_del',
    'device_unregister', 'device_destroy', 'device_release', 'devres_release_all', 'hwrng_unregister',
    'i2c_del_adapter', '__unregister_client', 'device_for_each_child', 'rollback_registered',
    'unregister_netdev', 'sysfs_remove', 'device_remove_file', 'tty_unregister_device', 'dummy_urb_enqueue',
    'usb_kill_urb', 'usb_kill_anchored_urbs', 'usb_control_msg', 'usb_hcd_submit_urb', 'usb_submit_urb',
    # completions, frees, MMIO accessors, checksums, inode and dentry helpers, unwinding
    '^complete$', 'wait_for_completion', '^kv?free$', 'kfree_skb', 'readb$', 'readw$', 'readl$', 'readq$',
    'writeb$', 'writew$', 'writel$', 'writeq$', 'logic_in', 'logic_out', '^crc\\d+', 'crc_itu_t',
    '__might_resched', 'assertfail', '^iput$', '^iput_final$', '^ihold$', 'hex_dump_to_buffer',
    'print_hex_dump', '^klist_', '(trace|lockdep)_(hard|soft)irq', '^(un)?lock_page',
    'stack_trace_consume_entry', 'arch_stack_walk', 'stack_trace_save', 'insert_work', '__queue_delayed_work',
    'queue_delayed_work_on', 'ida_free',
    # arm64's fault path, and helpers found in callers' bugs
    'do_(kernel|translation)_fault', 'do_mem_abort', 'el1_abort', 'el1h_64_sync(?:_handler)?', 'print_tainted',
    'xas_(?:start|load|find)', 'find_lock_entries', 'truncate_inode_pages_range', '__phys_addr',
    '__fortify_report', 'cleanup_srcu_struct', 'rhashtable_lookup', 'extract_(user|iter)_to_sg', 'drop_nlink',
    '^get_taint$', '^put_device$', 'lock_timer_base', '__timer_delete_sync', 'sk_stop_timer_sync',
    '__mod_timer', 'fast_dput', 'dput', 'mark_buffer_dirty',
)

COMMON_SKIP = SkipRule(RIG_SKIP + SYZKALLER_SKIP)
