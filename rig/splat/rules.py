"""What kernel reports look like and how syzbot names them.

Each report kind starts with a header line (found anywhere in a console line, since
reports from several CPUs interleave) and has title rules tried in order. A rule's
pattern is matched against the report head (the header line from the header onward
plus the next few lines); its title template takes the pattern's groups ({1}, {2}) and
`{frame}`, the function the report points at. Where that function comes from is a list
of places read in order through the report (the faulting pc, an `at:` line, the call
trace): the first function that is not reporting machinery wins.

The rules are written from how the kernel prints each report and from the conventions of
syzkaller's pkg/report (google/syzkaller, pkg/report/linux.go: its title formats, skip
lists and corruption checks), so that a title is the one syzbot gives the same bug; a
rule or table entry taken from there says so, the rest are rig's own.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from rig.splat.frames import SkipRule
from rig.splat.text import SYSLOG_PREFIX_PLAIN


@dataclass(frozen=True)
class Place:
    """Where to look for the function a title names.

    kind: "pc" (RIP/IP/pc/NIP line), "line" (first line from the cursor matching
    `pattern`, function in group "func", or the trace right after the line when the
    pattern has no such group), "trace" (stack frames from the cursor on, until `stop`).
    """

    kind: str
    pattern: re.Pattern[str] | None = None
    stop: re.Pattern[str] | None = None
    start: re.Pattern[str] | None = None  # trace: begin after the first such line, when there is one
    with_pc: bool = False  # trace: RIP/pc lines count as frames, in line order
    fallback: bool = False  # searched from the header, tried only after every other place


@dataclass(frozen=True)
class TitleRule:
    pattern: re.Pattern[str]
    title: str
    kind: str
    places: tuple[Place, ...] = ()
    skip: SkipRule = field(default_factory=lambda: SkipRule(()))
    stall: bool = False  # name the loop by a representative frame deeper in the stack
    hung: bool = False  # name a hang by what the task waits for
    alt: str = ""  # a second name, as syzbot lists it (e.g. "bad-access in {frame}")
    # the faulting function as the header line names it; the report's own stack is the one
    # that holds it (another CPU's stack may be printed in between when lines interleave)
    anchor: re.Pattern[str] | None = None
    # the kernel prints no stack trace for this report (so none missing is no damage)
    stackless: bool = False
    # the title itself says the report lost its beginning (a bare "BUG:", a panic's last line)
    corrupted: bool = False


@dataclass(frozen=True)
class ReportKind:
    name: str  # "leak", "bug", "warning", "info", ...: only for rig's own bookkeeping
    header: str  # regex fragment that starts a report
    rules: tuple[TitleRule, ...]
    ignore: re.Pattern[str] | None = None  # header lines that are no report
    boot: bool = False  # a boot banner: a report only when it is not the log's first boot


def _re(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


FUNC = r"(?P<func>[A-Za-z_][A-Za-z0-9_.]*)"
PC = Place("pc")
TRACE = Place("trace")
_CALL_TRACE_START = _re(r"^(?:Call Trace|Call trace|Backtrace)\s*:")
# The stack a report prints, not earlier lines such as "Preemption disabled at: [<..>] f+0x"
CALL_TRACE = Place("trace", start=_CALL_TRACE_START)
STALL_TRACE = Place("trace", with_pc=True)
KASAN_TRACE = Place("trace", start=_CALL_TRACE_START, stop=_re(r"^(?:Allocated by|Freed by|The buggy address|Memory state around|"
                                        r"Last potentially related|Second to last)"))
HUNG_TRACE = Place("trace", stop=_re(r"Showing all locks held|NMI backtrace|^\s*\d+ locks? held by"))


def AT(after: str = "") -> Place:
    """The function of the next lockdep `..., at: func+0x` line (after a line matching `after`)."""
    if after:
        return Place("line", _re(after))
    return Place("line", _re(r"at: (?:\[<[0-9a-f]+>\]\s*)?" + FUNC + r"\+0x"))


def AFTER(pattern: str) -> Place:
    """Move the cursor past the next line matching `pattern`."""
    return Place("line", _re(pattern))


# The skip lists syzkaller's pkg/report gives single report formats (linux.go,
# linuxOopses: each format's stack.skip), added to rig's own list for the same rule.
SYZ_FORMAT_SKIP: dict[str, tuple[str, ...]] = {
    # the workqueue functions take locks of the work items: a deadlock in them is theirs
    "circular": ("process_one_work", "flush_workqueue", "drain_workqueue", "destroy_workqueue"),
    "suspicious-rcu": ("rcu", "kmem", "slab"),
    "non-static-key": ("stack", "lock", "IRQ"),
    "locking-bug": ("lock_sock", "release_sock"),
    # KASAN_HW_TAGS reports carry the arm64 fault path on top
    "kasan": ("kernel_fault", "tag_check", "mem_abort", "^el1_", "^el1h_"),
    "kasan-free": ("slab_", "kfree", "vunmap", "vfree"),
    "kmsan-usb": ("alloc_skb", "usb_submit_urb", "usb_start_wait_urb", "usb_bulk_msg", "usb_interrupt_msg",
                  "usb_control_msg"),
    # generic crypto code is where an uninit value is used, not where it comes from
    "kmsan": ("alloc_skb", "netlink_ack", "netlink_rcv_skb", "_encrypt$", "^(?:crypto|cipher|drbg|rng)_"),
    "spinlock": ("spin_", "_lock", "_unlock"),
    "atomic-schedule": ("schedule",),
    "preemptible": ("dump_stack", "preemption", "preempt", "debug_", "processor_id", "this_cpu"),
    # rig anchors create_object (kmemleak's own): a driver's gem_create_object callback is
    # where the driver allocates its object, and names a leak better than the DRM core
    "leak": ("kmemleak", "mmap", "kmem", "slab", "alloc", "^_*create_object$", "idr_get", "list_lru_init",
             "kasprintf", "kvasprintf", "pcpu_create", "strdup", "strndup", "memdup"),
    "odebug": ("debug_", "rcu", "hrtimer_", "timer_", "work_", "percpu_", "vunmap", "vfree", "__free_",
               "debug_check", "kobject_"),
    "usercopy": ("usercopy", "__check"),
    "kobject": ("kobject_",),
    "proc": ("proc_",),
    "refcount": ("refcount", "kobject_"),
    "kmalloc": ("kmalloc", "krealloc", "slab", "kmem"),
    "usb-urb": ("usb_submit_urb", "usb_start_wait_urb", "usb_bulk_msg", "usb_interrupt_msg", "usb_control_msg"),
    "rcu-stall": ("apic_timer_interrupt", "rcu"),
    "cant-die": ("schedule",),
    # lots of skb wrappers BUG_ON(), the bug is almost always in the caller
    "kernel-bug": ("^skb_",),
    "stack-end": ("schedule", "retint_kernel"),
    "stack-overflow": ("bad_stack",),
    "ubsan": ("ubsan", "overflow"),
    "rust-panic": (r"__rustc::rust_begin_unwind",),
}


def SYZ(name: str) -> SkipRule:
    """syzkaller's skip list for one report format (see SYZ_FORMAT_SKIP)."""
    return SkipRule(SYZ_FORMAT_SKIP[name])


LOCKDEP_SKIP = SkipRule([
    "process_one_work", "worker_thread", "flush_workqueue", "flush_work", "start_flush_work",
    "fs_reclaim_acquire", "fs_reclaim_release", "dma_resv_lock", "dma_resv_unlock",
    "dma_fence_begin_signalling", "dma_fence_end_signalling", "lock_page", "lock_buffer",
    "spin_lock", "mutex_lock",
])
# kmemleak backtraces start inside the allocator; the leak is where the allocation was asked for.
LEAK_SKIP = SkipRule([
    "kmemleak", "mmap", "kmem", "slab", "alloc", "^_*create_object$", "idr_get", "list_lru_init",
    "kasprintf", "kvasprintf", "pcpu_create_chunk", "strdup", "strndup", "kstrdup",
    "kstrndup", "kmemdup", "kmemdup_nul", "kobject_set_name", "kobject_init_and_add",
    "kobject_add", "kvmalloc", "kmalloc", "kzalloc", "kcalloc", "vzalloc", "vmalloc",
    "krealloc", "kvrealloc", "mempool", "trace_kmalloc", "dup_", "__do_krealloc",
    "stack_depot", "new_slab", "get_page_from_freelist", "prep_new_page", "post_alloc_hook",
]) + SYZ("leak")
REFCOUNT_SKIP = SkipRule(["refcount", "kref_", "kobject_put", "sk_free"]) + SYZ("refcount")
ODEBUG_SKIP = SkipRule(["debug_object", "timer_", "hrtimer_", "mod_timer", "add_timer",
                        "del_timer", "__init_work", "init_timer", "free_obj_work"]) + SYZ("odebug")

# ---------------------------------------------------------------------------- lockdep

_LOCKDEP_RULES = (
    TitleRule(_re(r"(?:WARNING|INFO): possible circular locking dependency detected"),
              "possible deadlock in {frame}", "lockdep", (AT(), AT(), TRACE), LOCKDEP_SKIP + SYZ("circular")),
    TitleRule(_re(r"(?:WARNING|INFO): possible recursive locking detected"),
              "possible deadlock in {frame}", "lockdep", (AT(), AT(), TRACE), LOCKDEP_SKIP),
    TitleRule(_re(r"(?:WARNING|INFO): possible irq lock inversion dependency detected"),
              "possible deadlock in {frame}", "lockdep", (AT(), TRACE), LOCKDEP_SKIP),
    TitleRule(_re(r"(?:WARNING|INFO): (?:SOFT|HARD)IRQ-(?:READ-)?safe -> (?:SOFT|HARD)IRQ-(?:READ-)?unsafe"
                  r" lock order detected"),
              "possible deadlock in {frame}", "lockdep",
              (AFTER(r"which became \S+-irq-safe at:"), TRACE, AT(), TRACE), LOCKDEP_SKIP),
    # named by the stack that took the lock in the other state; kernels before 4.15 printed
    # "INFO:" and the title named the "at:" function of the lock it takes (syzkaller's linux.go)
    TitleRule(_re(r"WARNING: inconsistent lock state"), "inconsistent lock state in {frame}", "lockdep",
              (AFTER(r"stack backtrace:"), CALL_TRACE), LOCKDEP_SKIP),
    TitleRule(_re(r"INFO: inconsistent lock state"), "inconsistent lock state in {frame}", "lockdep",
              (AFTER(r"\] takes:"), AT(), AFTER(r"stack backtrace:"), TRACE), LOCKDEP_SKIP),
    TitleRule(_re(r"(WARNING|INFO): suspicious RCU usage"),
              "{1}: suspicious RCU usage in {frame}", "lockdep", (AFTER(r"stack backtrace:"), TRACE),
              SkipRule(["rcu_read_lock_held", "rcu_dereference", "lockdep_rcu"]) + SYZ("suspicious-rcu")),
    TitleRule(_re(r"(WARNING|BUG): bad unlock balance detected!"),
              "{1}: bad unlock balance in {frame}", "lockdep", (TRACE,)),
    TitleRule(_re(r"(WARNING|BUG): lock held when returning to user space!"),
              "{1}: lock held when returning to user space in {frame}", "lockdep", (AT(), TRACE),
              stackless=True),
    # print_freed_lock_bug() names the lock still held and where it was taken ("at:"):
    # that function holds the lock across the free (syzkaller's linux.go takes the same line)
    TitleRule(_re(r"(WARNING|BUG): held lock freed!"),
              "{1}: held lock freed in {frame}", "lockdep", (AT(), TRACE)),
    TitleRule(_re(r"(WARNING|BUG): (?:\S+ )?still has locks held!"),
              "{1}: still has locks held in {frame}", "lockdep", (AT(), TRACE)),
    TitleRule(_re(r"(?i)(?:WARNING|BUG): nested lock was not taken"),
              "WARNING: nested lock was not taken in {frame}", "lockdep", (AT(), TRACE)),
    TitleRule(_re(r"(?:WARNING|BUG|INFO): trying to register non-static key"),
              "INFO: trying to register non-static key in {frame}", "lockdep", (CALL_TRACE,), SYZ("non-static-key")),
    TitleRule(_re(r"BUG: MAX_[A-Z_]+ too low!"), "{0}", "lockdep"),
    # lockdep's wait-context check (a spinning lock taken under a raw one): syzbot names it
    # as the other lockdep internal checks (syzkaller's linux.go, "BUG: Invalid wait context")
    TitleRule(_re(r"BUG: Invalid wait context"), "WARNING: locking bug in {frame}", "lockdep", (CALL_TRACE,),
              LOCKDEP_SKIP + SYZ("locking-bug")),
    TitleRule(_re(r"BUG: (?:looking up invalid subclass|key \S+ has not been registered|"
                  r"workqueue leaked lock or atomic)"),
              "{0} in {frame}", "lockdep", (Place("line", _re(r"last function: " + FUNC)), TRACE)),
)

# ---------------------------------------------------------------------------- memory

# the function on the header line only when the stack is lost
# The function on the header line first, then the stack when that one is machinery (a
# memcpy, a KASAN check): syzkaller's linux.go reads a KASAN report in this order.
_KASAN_TRACE_PLACES = (Place("line", _re(r"KASAN: [a-z\-]+ in " + FUNC + r"\+0x")), KASAN_TRACE)
_KASAN_FREE_SKIP = SkipRule(["kfree", "kmem_cache_free", "slab_free", "^_*free_"]) + SYZ("kasan-free")
_KASAN_ANCHOR = _re(r"KASAN: [a-z\-]+ in " + FUNC + r"\+0x")
_KASAN_RULES = (
    TitleRule(_re(r"BUG: KASAN: (?:double-free or invalid-free|double-free|invalid-free)"),
              "KASAN: invalid-free in {frame}", "kasan", _KASAN_TRACE_PLACES, _KASAN_FREE_SKIP,
              anchor=_KASAN_ANCHOR),
    TitleRule(_re(r"BUG: KASAN: ([a-z\-]+)(?: in| on address).*\n(?:.*\n){0,6}?.*?(Read|Write)"
                  r" (?:of size|at addr)"),
              "KASAN: {1} {2} in {frame}", "kasan", _KASAN_TRACE_PLACES, SYZ("kasan"),
              anchor=_KASAN_ANCHOR),
    TitleRule(_re(r"BUG: KASAN: ([a-z\-]+) in " + r"\S+? at addr ([0-9a-fx]+)"),
              "KASAN: {1} in {frame} at addr {2}", "kasan", _KASAN_TRACE_PLACES, anchor=_KASAN_ANCHOR),
    TitleRule(_re(r"BUG: KASAN: ([a-z\-]+)"), "KASAN: {1} in {frame}", "kasan", _KASAN_TRACE_PLACES,
              anchor=_KASAN_ANCHOR),
)

_KFENCE_KMSAN_KCSAN_RULES = (
    TitleRule(_re(r"BUG: KFENCE: ([a-z\- ]+?) in "), "KFENCE: {1} in {frame}", "kfence",
              (Place("line", _re(r"KFENCE: [a-z\- ]+? in " + FUNC + r"\+0x")),
               Place("trace", stop=_re(r"^kfence-#|allocated by task|freed by task|^CPU:"))),
              SkipRule(["kfence", "kfree", "kmem_cache_free", "slab_free"])),
    TitleRule(_re(r"BUG: KMSAN: kernel-usb-infoleak"), "KMSAN: kernel-usb-infoleak in {frame}", "kmsan",
              (Place("trace", stop=_re(r"^(?:Uninit was|Local variable|Bytes \d|Memory access)")),),
              SYZ("kmsan-usb")),
    TitleRule(_re(r"BUG: KMSAN: ([a-z\-]+)"), "KMSAN: {1} in {frame}", "kmsan",
              (Place("trace", stop=_re(r"^(?:Uninit was|Local variable|Bytes \d|Memory access)")),), SYZ("kmsan")),
    TitleRule(_re(r"BUG: KCSAN: ([a-z\-]+) in " + FUNC + r"(?: / (?P<func2>[A-Za-z_][A-Za-z0-9_.]*))?"),
              "KCSAN: {1} in {header}", "kcsan"),
)

# kmemleak names what kind of object leaked when it is no slab object (7.x: " (percpu)",
# " (phys)"; mm/kmemleak.c __object_type_str)
KMEMLEAK_TYPE = r"(?: \((?:percpu|phys)\))?"
_MEMLEAK_RULES = (
    TitleRule(_re(r"unreferenced object" + KMEMLEAK_TYPE + r" 0x[0-9a-f]+"), "memory leak in {frame}", "kmemleak",
              (AFTER(r"backtrace"), Place("trace", stop=_re(r"^unreferenced object"))), LEAK_SKIP),
)

# ---------------------------------------------------------------------------- faults

_FAULT_PLACES = (PC, CALL_TRACE)

_BUG_RULES = (
    TitleRule(_re(r"BUG: unable to handle kernel paging request|BUG: unable to handle page fault|"
                  r"BUG: Unable to handle kernel (?:data access|instruction fetch)"),
              "BUG: unable to handle kernel paging request in {frame}", "oops", _FAULT_PLACES,
              alt="bad-access in {frame}"),
    TitleRule(_re(r"BUG: unable to handle kernel NULL pointer dereference|BUG: kernel NULL pointer dereference"),
              "BUG: unable to handle kernel NULL pointer dereference in {frame}", "oops", _FAULT_PLACES,
              alt="bad-access in {frame}"),
    TitleRule(_re(r"BUG: unable to handle kernel access to user memory|BUG: kernel access to user memory"),
              "BUG: unable to handle kernel access to user memory in {frame}", "oops", _FAULT_PLACES),
    # the kernel prints this header in two printk calls: a console that dies between them
    # leaves the first half (syzkaller's linux.go marks the form corrupted)
    TitleRule(_re(r"BUG: unable to handle kernel"), "BUG: unable to handle kernel", "oops", corrupted=True),
    TitleRule(_re(r"BUG: soft lockup"), "BUG: soft lockup in {frame}", "soft-lockup", (STALL_TRACE,), stall=True),
    TitleRule(_re(r"BUG: (spinlock|rwlock) ([a-z ]+?)(?: on CPU| on| in|$)"),
              "BUG: {1} {2} in {frame}", "lockdep", (CALL_TRACE,), SYZ("spinlock")),
    TitleRule(_re(r"BUG: sleeping function called from invalid context"),
              "BUG: sleeping function called from invalid context in {frame}", "atomic-sleep", (CALL_TRACE,)),
    TitleRule(_re(r"BUG: scheduling while atomic"), "BUG: scheduling while atomic in {frame}",
              "atomic-sleep", (CALL_TRACE,), SYZ("atomic-schedule")),
    TitleRule(_re(r"BUG: using ([a-z_]+\(\)) in preemptible"),
              "BUG: using {1} in preemptible code in {frame}", "preempt", (CALL_TRACE,), SYZ("preemptible")),
    TitleRule(_re(r"BUG: workqueue lockup"), "BUG: workqueue lockup", "hung-task"),
    # a bad page map names no function (syzkaller's linux.go): the pte it prints is the news
    TitleRule(_re(r"BUG: Bad page map"), "BUG: Bad page map", "bad-page"),
    TitleRule(_re(r"BUG: Bad page (state|cache)"), "BUG: Bad page {1} in {frame}", "bad-page",
              (Place("trace", stop=_re(r"^Modules linked in|^page_owner free")),),
              SkipRule(["post_alloc_hook", "get_page_from_freelist", "filemap_", "folio_",
                        "pagecache_get_page", "find_or_create_page", "grab_cache_page",
                        "free_pages", "free_unref", "bad_page", "free_page", "release_pages",
                        "__folio_put", "put_page", "unmap_", "zap_", "page_remove_rmap"])),
    TitleRule(_re(r"BUG: (?:TASK |IRQ )?stack guard page was hit"), "BUG: stack guard page was hit in {frame}",
              "stack-overflow", (STALL_TRACE,), stall=True),
    TitleRule(_re(r"BUG: Dentry .*still in use.*\[(\w+)"), "BUG: Dentry still in use in {1}", "bug"),
    TitleRule(_re(r"BUG: (?:\S+ )?\(Not tainted\)|BUG: (Object already free)"), "BUG: {1}", "slab"),
    TitleRule(_re(r"BUG: corrupted list"), "BUG: corrupted list in {frame}", "list", _FAULT_PLACES),
    TitleRule(_re(r"BUG: Bad rss-counter state"), "BUG: Bad rss-counter state", "bug"),
    # mm's page-table counters at exit: nr_ptes and nr_pmds before 4.16, pgtables_bytes since
    TitleRule(_re(r"BUG: non-zero (nr_ptes|nr_pmds|pgtables_bytes) on freeing mm"),
              "BUG: non-zero {1} on freeing mm", "bug"),
    # a header and nothing more: the console died, or another line cut in (syzkaller: "BUG: corrupted")
    TitleRule(_re(r"BUG:[ \t]*(?:\n|$)"), "BUG: corrupted", "bug", corrupted=True),
    TitleRule(_re(r"BUG: ([A-Za-z][A-Za-z_ \-]*?[A-Za-z])(?:[:!,(]| at | in |\s*$)"), "BUG: {1} in {frame}", "bug",
              _FAULT_PLACES),
)

# ---------------------------------------------------------------------------- WARNING

# The source file a WARN sits in names the kind of bug better than the function does.
_WARN_FILES = (
    (r"lib/refcount\.c|lib/refcount_", "WARNING: refcount bug in {frame}", "refcount", REFCOUNT_SKIP),
    (r"lib/debugobjects\.c", "WARNING: ODEBUG bug in {frame}", "debugobjects", ODEBUG_SKIP),
    # lockdep's own consistency checks (DEBUG_LOCKS_WARN_ON in __lock_acquire, lock_release...);
    # a WARN elsewhere in kernel/locking/ is an ordinary "WARNING in" its caller
    (r"kernel/locking/lockdep\.c.*lock_", "WARNING: locking bug in {frame}", "lockdep",
     LOCKDEP_SKIP + SYZ("locking-bug")),
    # an allocation size the allocator refuses: a WARN in mm/ from a *malloc function
    (r"mm/\S*\.c\S* (?:at )?k?.?malloc", "WARNING: kmalloc bug in {frame}",
     "kmalloc", SkipRule(["kvmalloc", "kmalloc", "alloc_pages", "get_free_pages", "kvzalloc", "kvcalloc",
                          "warn_alloc", "alloc_page", "kmalloc_order", "kmalloc_large", "krealloc"])
     + SYZ("kmalloc")),
    (r"mm/vmalloc\.c\S* (?:at )?__vmalloc_node", "WARNING: zero-size vmalloc in {frame}", "vmalloc",
     SkipRule(["vmalloc", "vzalloc", "kvmalloc", "kvzalloc", "__vmalloc"])),
    (r"fs/proc/generic\.c", "WARNING: proc registration bug in {frame}", "warning",
     SkipRule(["proc_", "__xlate_proc_name", "xlate_proc_name"]) + SYZ("proc")),
    (r"lib/kobject\.c", "WARNING: kobject bug in {frame}", "warning", SkipRule(["kobject_"])),
    (r"mm/usercopy\.c", "WARNING: bad usercopy in {frame}", "usercopy",
     SkipRule(["usercopy", "check_object_size", "check_heap_object", "check_copy_size"]) + SYZ("usercopy")),
    (r"lib/list_debug\.c", "BUG: corrupted list in {frame}", "list", SkipRule([])),
    (r"drivers/usb/core/urb\.c", "WARNING in {frame}/usb_submit_urb", "warning", SkipRule(["^usb_"]) + SYZ("usb-urb")),
)

_WARNING_AT = r"WARNING: (?:CPU: -?\d+ PID: -?\d+ )?(?:at )?"
# The pc, the call trace, and last the function on the WARNING line itself.
_WARN_PLACES = (PC, CALL_TRACE, Place("line", _re(r"^WARNING: .*? at (?:\S+ )?" + FUNC + r"\+0x"), fallback=True))

_WARNING_RULES = (
    *(TitleRule(_re(_WARNING_AT + r"(?:" + files + r")"), title, kind, _WARN_PLACES, skip)
      for files, title, kind, skip in _WARN_FILES),
    # the register is named only when the kernel printed real addresses (not "(ptrval)")
    TitleRule(_re(r"WARNING: kernel stack (regs|frame pointer) at [0-9a-f]+ in \S+ has bad ('\w+' )?value"),
              "WARNING: kernel stack {1} has bad {2}value", "warning"),
    TitleRule(_re(r"WARNING: kernel stack (regs|frame pointer) at .*? has bad"),
              "WARNING: kernel stack {1} has bad value", "warning"),
    TitleRule(_re(_WARNING_AT + r"\S+:\d+"), "WARNING in {frame}", "warning", _WARN_PLACES),
    TitleRule(_re(r"WARNING:[ \t]*(?:\n|$)"), "WARNING: corrupted", "warning", corrupted=True),
    TitleRule(_re(_WARNING_AT + r"[A-Za-z_][A-Za-z0-9_.]*\+0x"), "WARNING in {frame}", "warning", _WARN_PLACES),
)

# ---------------------------------------------------------------------------- INFO / hangs

_STALL_HEADER = (r"INFO: rcu_(?:preempt|sched|bh) (?:self-)?detected(?: expedited)? stall|"
                 r"INFO: rcu_(?:preempt|sched|bh) detected stalls")

_INFO_RULES = (
    TitleRule(_re(r"INFO: task [\s\S]{0,100}? blocked (?:in I/O wait )?for more than \d+ seconds"), "INFO: task hung in {frame}",
              "hung-task", (HUNG_TRACE,), hung=True),
    TitleRule(_re(r"INFO: task .* can't die for more than \d+ seconds"), "INFO: task can't die in {frame}",
              "hung-task", (HUNG_TRACE,), SYZ("cant-die"), hung=True),
    TitleRule(_re(_STALL_HEADER), "INFO: rcu detected stall in {frame}", "rcu-stall", (STALL_TRACE,),
              SYZ("rcu-stall"), stall=True),
    TitleRule(_re(r"INFO: Allocated in (?P<func>[A-Za-z0-9_.]+)\S* (age=\d+ cpu=\d+ pid=\d+)"),
              "INFO: Allocated in {header} {2}", "slab", corrupted=True),  # an old KASAN report's tail
    TitleRule(_re(r"INFO:[ \t]*(?:\n|$)"), "INFO: corrupted", "bug", corrupted=True),
)

_UBSAN_SKIP = SkipRule(["^_*handle_", "val_to_string"]) + SYZ("ubsan")

# ---------------------------------------------------------------------------- the kinds

KINDS: tuple[ReportKind, ...] = (
    ReportKind("leak", r"unreferenced object" + KMEMLEAK_TYPE + r" 0x", _MEMLEAK_RULES),
    ReportKind(
        "bug", r"(?<![A-Za-z])BUG:",
        _LOCKDEP_RULES + _KASAN_RULES + _KFENCE_KMSAN_KCSAN_RULES + _BUG_RULES,
        # syz-manager's own line before a leak, and slab debug chatter are no reports
        ignore=_re(r"BUG: memory leak$|BUG: \S+ \(Not tainted\): kasan:|BUG: KASAN: \S+ on address$"),
    ),
    ReportKind("warning", r"(?<![A-Za-z])WARNING:", _LOCKDEP_RULES + _WARNING_RULES,
               # WARNING: also starts plenty of harmless messages; reports have one of these forms
               ignore=_re(r"WARNING: (?!\s*$|CPU:|at |possible|suspicious|inconsistent|bad unlock|lock held|"
                          r"held lock|\S+ still has|still has|[Nn]ested lock|kernel stack|[A-Z]+IRQ-|"
                          r"trying to|[\w./-]+\.[ch]:\d+ at )")),
    ReportKind("info", r"(?<![A-Za-z])INFO:", _LOCKDEP_RULES + _INFO_RULES,
               ignore=_re(r"INFO: (?:lockdep is turned off|NMI handler|Stall ended|Slab 0x|Object 0x|"
                          r"Freed in)")),
    # SLUB's own consistency checks: "BUG kmalloc-8 (Tainted: G B): Object already free"
    ReportKind("slub", r"BUG [\w.-]+ \((?:Not tainted|Tainted: [^)]*)\): ", (
        TitleRule(_re(r"BUG \S+ \([^)]*\): ([A-Za-z][\w ]*?[a-z])(?:[:.,]|\s*(?:\n|$))"), "BUG: {1}", "slab"),),
        ignore=_re(r"BUG \S+ \([^)]*\): kasan")),
    # a boot in the middle of a log: the guest rebooted behind rig's back
    ReportKind("boot", r"(?m:^" + SYSLOG_PREFIX_PLAIN + r"(?:\[[ TC\d]+\] ?)?"
               r"(?:SeaBIOS \(version|Booting the kernel|Linux version \d))", (
        TitleRule(_re(r""), "unexpected kernel reboot", "reboot"),), boot=True),
    ReportKind("gpf", r"general protection fault", (
        TitleRule(_re(r"general protection fault"), "general protection fault in {frame}", "gpf",
                  _FAULT_PLACES, alt="bad-access in {frame}"),),
               # a user-space program's fault as the kernel logs it ("traps: Xorg[812] general
               # protection fault ip:... error:0 in libc.so.6"), no kernel report (syzkaller's ignore)
               ignore=_re(r"general protection fault .* error:\d+ in ")),
    ReportKind("unable", r"Unable to handle kernel", (
        TitleRule(_re(r"Unable to handle kernel NULL pointer dereference"),
                  "BUG: unable to handle kernel NULL pointer dereference in {frame}", "oops", _FAULT_PLACES),
        TitleRule(_re(r"Unable to handle kernel access to user memory"),
                  "BUG: unable to handle kernel access to user memory in {frame}", "oops", _FAULT_PLACES),
        TitleRule(_re(r"Unable to handle kernel paging request"),
                  "BUG: unable to handle kernel paging request in {frame}", "oops", _FAULT_PLACES),
        TitleRule(_re(r"Unable to handle kernel ([a-z ]+?)(?: at|$)"),
                  "BUG: unable to handle kernel {1} in {frame}", "oops", _FAULT_PLACES),
    )),
    ReportKind("kernel-bug", r"kernel BUG at", (
        TitleRule(_re(r"kernel BUG at (?:\S*/)?(?:list_debug\.c)"), "BUG: corrupted list in {frame}", "list",
                  _FAULT_PLACES),
        TitleRule(_re(r"kernel BUG at (?:\S*/)?(?:usercopy\.c)"), "BUG: bad usercopy in {frame}", "usercopy",
                  _FAULT_PLACES, SkipRule(["usercopy", "check_object_size", "check_heap_object",
                                           "check_copy_size", "check_bogus_address", "check_kernel_text"])),
        TitleRule(_re(r"kernel BUG at"), "kernel BUG in {frame}", "bug", _FAULT_PLACES, SYZ("kernel-bug")),
    )),
    ReportKind("panic", r"Kernel panic - not syncing", (
        TitleRule(_re(r"Kernel panic - not syncing: stack-protector: Kernel stack is corrupted"),
                  "kernel panic: stack is corrupted in {frame}", "panic",
                  (Place("line", _re(r"corrupted in: " + FUNC + r"\+0x")), TRACE),
                  SkipRule(["stack_chk_fail"])),
        TitleRule(_re(r"Kernel panic - not syncing: corrupted stack end"),
                  "kernel panic: corrupted stack end in {frame}", "panic", (TRACE,), SYZ("stack-end"), stall=True),
        TitleRule(_re(r"Kernel panic - not syncing: (Attempted to kill init!)"), "kernel panic: {1}", "panic"),
        # The last line of a panic after a BUG, a WARNING (panic_on_warn) or a hung task
        # (hung_task_panic): the report that caused it is lost, so the title is a guess
        # (syzkaller's linux.go marks these formats corrupted).
        TitleRule(_re(r"Kernel panic - not syncing: (Fatal exception|panic_on_warn set|hung_task: blocked tasks)"),
                  "kernel panic: {1}", "panic", corrupted=True),
        # arch/x86/kernel/traps.c handle_stack_overflow(): named like a stall, by the frame just
        # inside the first dispatcher (syzkaller's linux.go)
        TitleRule(_re(r"Kernel panic - not syncing: kernel stack overflow"), "kernel stack overflow in {frame}",
                  "stack-overflow", (TRACE,), SYZ("stack-overflow"), stall=True),
        TitleRule(_re(r"Kernel panic - not syncing: (Couldn't open N_TTY ldisc) for"), "kernel panic: {1}", "panic"),
        TitleRule(_re(r"Kernel panic - not syncing: (VFS: Unable to mount root fs on [^\s]+)"),
                  "kernel panic: {1}", "panic"),
        TitleRule(_re(r"Kernel panic - not syncing: ([^\n]*?)[\s.]*(?:\n|$)"), "kernel panic: {1}", "panic"),
    )),
    # A Rust panic (rust/kernel/lib.rs's panic handler, pr_emerg with the "rust_kernel: "
    # prefix) prints where and why, then BUG()s: the title is the message and the Rust
    # function that panicked (syzkaller's linux.go, "rust_kernel: panicked"). Rust since
    # 1.81 prints "panicked at FILE:LINE:COL:" and the message on the next line; older
    # compilers "panicked at 'MESSAGE', FILE:LINE:COL".
    ReportKind("rust-panic", r"rust_kernel: panicked at", (
        TitleRule(_re(r"rust_kernel: panicked at '(.+?)', \S+:\d+"), "{1} in {frame}", "panic", (CALL_TRACE,),
                  SYZ("rust-panic")),
        TitleRule(_re(r"rust_kernel: panicked at [^\n]*\n\s*([^\n]*\S)"), "{1} in {frame}", "panic", (CALL_TRACE,),
                  SYZ("rust-panic")),
    )),
    # x86 printed "divide_error:" for a while (5.9's IDTENTRY conversion)
    ReportKind("divide", r"divide[ _]error:", (
        TitleRule(_re(r"divide[ _]error:"), "divide error in {frame}", "oops", _FAULT_PLACES),)),
    ReportKind("opcode", r"invalid opcode:", (
        TitleRule(_re(r"invalid opcode:"), "invalid opcode in {frame}", "oops", _FAULT_PLACES),)),
    # a breakpoint trap in kernel code: under multi-threaded TCG, a static key being patched
    ReportKind("int3", r"int3: [0-9a-f]{4} \[#\d+\]", (
        TitleRule(_re(r"int3:"), "int3 in {frame}", "oops", _FAULT_PLACES),)),
    ReportKind("stackseg", r"stack segment:", (
        TitleRule(_re(r"stack segment:"), "stack segment fault in {frame}", "oops", _FAULT_PLACES),)),
    ReportKind("doublefault", r"PANIC: double fault", (
        TitleRule(_re(r"PANIC: double fault"), "PANIC: double fault in {frame}", "oops", _FAULT_PLACES),)),
    ReportKind("internal", r"Internal error:", (
        TitleRule(_re(r"Internal error:"), "Internal error in {frame}", "oops", _FAULT_PLACES),)),
    ReportKind("unhandled", r"Unhandled fault:", (
        TitleRule(_re(r"Unhandled fault:"), "Unhandled fault in {frame}", "oops", _FAULT_PLACES),)),
    ReportKind("alignment", r"Alignment trap:", (
        TitleRule(_re(r"Alignment trap:"), "Alignment trap in {frame}", "oops", _FAULT_PLACES),)),
    ReportKind("ubsan", r"UBSAN:", (
        TitleRule(_re(r"UBSAN: Undefined behaviour in"), "UBSAN: undefined-behaviour in {frame}", "ubsan",
                  (TRACE,), _UBSAN_SKIP),
        TitleRule(_re(r"UBSAN: ([a-z\-]+) in"), "UBSAN: {1} in {frame}", "ubsan", (TRACE,), _UBSAN_SKIP),
    )),
    ReportKind("netdev", r"unregister_netdevice: waiting for", (
        TitleRule(_re(r"unregister_netdevice: waiting for \S+ to become free"),
                  "unregister_netdevice: waiting for DEV to become free", "hung-task"),)),
    ReportKind("vfs", r"VFS: (?:Close: file count is |Busy inodes after unmount)", (
        TitleRule(_re(r"VFS: Close: file count is (?:zero|0)"), "VFS: Close: file count is zero (use-after-free)",
                  "bug"),
        TitleRule(_re(r"VFS: Busy inodes after unmount"), "VFS: Busy inodes after unmount (use-after-free)", "bug"),)),
)

# What a console shows before the kernel's first line; anything else before a boot banner
# means the machine was already running.
BOOT_PREAMBLE = _re(r"\s*$|SeaBIOS|iPXE|Booting from|Booting the kernel|Decompressing Linux|early console|"
                    r"input_data|input_len|output:|output_len|kernel_total_size|trampoline_|Parsing ELF|"
                    r"Performing relocations|Machine UUID|Press (?:ESC|Ctrl)|Total RAM|CPUs found|"
                    r"found virtio|virtio-|drive 0x|Failed to get|Probing EDD|\x1b|Linux version|"
                    r"Command line|KASLR|Memory:|Booting paravirtualized|BIOS-|e820|Linux version|"
                    # arm and arm64 print these before the banner (arch/arm64/kernel/setup.c,
                    # drivers/firmware/efi/libstub)
                    r"Booting Linux on physical CPU|EFI stub: ")

# Plain strings of which every header line holds one: cheap to look for in a huge log.
# Each is one scan of the whole log and a longer string scans faster, so each is as long
# as its header allows ("fault" and "error:" stand for several: one short scan costs less
# than two or three long ones).
HEADER_HINTS = (
    "BUG", "WARNING:", "INFO:", "fault",  # fault: general protection, double, Unhandled
    "unreferenced object ",  # a space follows in every form, " (percpu) 0x" and " 0x"
    "Unable to handle kernel", "Kernel panic - not syncing", "error:",  # divide error:, Internal error:
    "invalid opcode:", "stack segment:", "Alignment trap:", "int3:", "UBSAN:",
    "unregister_netdevice: waiting for", "VFS: Close: file count is ", "VFS: Busy inodes after unmount",
    "SeaBIOS (version", "Linux version ",
    "rust_kernel: panicked at",
)

# Lines that carry on a report already open rather than start a new one.
FOLLOW_ON = _re(r"Kernel panic - not syncing|invalid opcode:|Oops:|general protection fault|"
                r"Internal error:")

# Lines just above a header that belong to the report.
PREAMBLE = _re(r"^(?:-+\[ cut here \]-+|=+|list_(?:add|del) corruption|refcount_t: |ODEBUG: |"
               r"DEBUG_LOCKS_WARN_ON|usercopy: |kasan: |BUG: KASAN|watchdog: |\s*$)")

# The last line of a report, when the kernel prints one.
END_MARKER = _re(r"^-+\[ end (?:trace|Kernel panic)|^Kernel Offset:|^Rebooting in \d+ seconds|"
                 r"^=+$")
