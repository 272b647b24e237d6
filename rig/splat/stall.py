"""Naming stalls, lockups and hung tasks by a representative frame.

A CPU stuck in a loop is caught at a random point inside the loop, so the innermost
frame changes from one report to the next. Like syzbot, rig walks outwards to the
first generic dispatcher (syscall entry, VFS/socket layer, softirq, workqueue, timer)
and names the frame just inside it: the syscall, the driver ioctl, the protocol handler.
A hung task sleeps in generic wait code; the title names what it waits for.
"""

from __future__ import annotations

import re

from typing import Protocol

from rig.splat.frames import parse_frame, pc_function
from rig.splat.symbols import canonical_function


class _Skip(Protocol):
    def skips(self, func: str) -> bool: ...

# Frames that only dispatch work; the frame called by one of them identifies the loop.
# Each pattern is searched for in the frame's title name (syscall prefixes removed, see
# rig.splat.symbols), so "vfs_write" also stands for __vfs_write and "ioctl" for the entry
# points of every architecture. From syzkaller's pkg/report (linux.go,
# linuxStallAnchorFrames) unless marked otherwise.
_ANCHOR_GROUPS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("generic dispatchers of work, and some of their callers in case a name changes",
     ("process_one_work", "do_syscall_", "do_fast_syscall_", "sysenter_dispatch", "tracesys_phase2",
      "el0_svc_handler", "invoke_syscall", "ret_fast_syscall", "netif_receive_skb", "do_softirq",
      "call_timer_fn", "_run_timers", "run_timer_softirq", "hrtimer_run", "run_ksoftirqd",
      "smpboot_thread_fn", "^kthread$", "start_secondary", "cpu_startup_entry", "ret_from_fork")),
    ("file operations: the driver or filesystem callback below them names the loop",
     ("vfs_write", "vfs_read", "vfs_iter_read", "vfs_iter_write", "do_iter_read", "do_iter_write",
      "call_read_iter", "call_write_iter", "new_sync_read", "new_sync_write", "vfs_ioctl", "ksys_ioctl",
      "compat_ioctl", "compat_sys_ioctl", "blkdev_driver_ioctl", "blkdev_ioctl", "do_iter_readv_writev",
      "^call_mmap", "mmap_region", "do_mmap", "do_dentry_open", "vfs_open")),
    ("socket operations: the protocol handler below them names the loop",
     ("^sock_sendmsg", "^sock_recvmsg", "^sock_release", "^__sock_release", "^setsockopt$",
      "kernel_setsockopt", "sock_common_setsockopt", "^listen$", "kernel_listen", "sk_common_release",
      "^sock_mmap", "^accept$", "kernel_accept", "^sock_do_ioctl", "^sock_ioctl", "^compat_sock_ioctl",
      "^nfnetlink_rcv_msg", "^rtnetlink_rcv_msg", "^netlink_dump", "^(?:sys_)?(?:socketpair|connect|ioctl)")),
    ("page fault entry points", ("__do_fault", "do_page_fault", "^page_fault$")),
    ("callbacks run on the way back to user space", ("__fput", "task_work_run", "exit_to_usermode")),
    ("cross-CPU calls and tasklets (a stall in smp_call_function is named by it)",
     ("smp_call_function", "tasklet_action", "tasklet_hi_action")),
    ("rig's own: newer kernels' names of the same dispatchers (5.x-7.x entry and irq code)",
     ("exit_to_user_mode", "handle_softirqs$", "irq_exit", "^el0_svc", "entry_SYSCALL", "do_int80")),
    ("rig's own: DRM's ioctl dispatch, so a stall in a DRM ioctl names the driver's handler",
     ("^drm_ioctl_kernel$", "^drm_ioctl$", "^drm_compat_ioctl$")),
)
_ANCHORS = re.compile("|".join(f"(?:{p})" for _, group in _ANCHOR_GROUPS for p in group))

# The timer interrupt that fired the stall detector: frames below it are the detector itself.
_TIMER_IRQ = re.compile(r"apic_timer_interrupt|hrtimer_interrupt|arch_timer_handler|timer_interrupt")
_GRACE_PERIOD_DUMP = re.compile(r"RCU grace-period kthread stack dump")
_PC = re.compile(r"\s*(?:RIP|IP|pc|PC is at|NIP|epc)\b")


def stall_frame(candidates: list[tuple[str, int]], msgs: list[str], skip: _Skip,
                *, own_cpu: bool = False, interrupted: bool = False) -> str | None:
    """The representative frame of a stall report (candidates: frames and pcs in line order).

    own_cpu: the detector ran on the stuck CPU itself (soft lockup), so the first pc is
    the looping code even when it was interrupted in softirq context.
    interrupted: the report shows the stalled code where the timer interrupt caught it
    (an RCU stall): read first from the first pc after that interrupt.
    """
    if interrupted:
        caught = [func for func in _after_timer_interrupt(msgs) if not skip.skips(func)]
        found = _representative(caught)
        if found is not None:
            return found
    frames = [func for func in _looping_frames(candidates, msgs, own_cpu) if not skip.skips(func)]
    if not frames:
        return None
    return _representative(frames) or frames[0]


# Where an interrupt frame shows the stalled code below it: x86's timer interrupt entry,
# an exception stack, arm64's el1 irq entry (syzkaller's linux.go, rcu stall parts2).
_INTERRUPT_LINE = re.compile(r"apic_timer_interrupt|Exception stack|el1h_64_irq")
_TRACE_START = re.compile(r"Call [Tt]race|Allocated by task|Freed by task|(?<!k) backtrace:|^Backtrace:")


def _after_timer_interrupt(msgs: list[str]) -> list[str]:
    """The stalled code as syzkaller reads an RCU stall: after the first line naming the
    timer interrupt, the next pc and the frames below it (else the frames below the first
    interrupt or exception stack line), up to the next trace header."""
    first = next((i for i, msg in enumerate(msgs) if "apic_timer_interrupt" in msg), None)
    if first is not None:
        for j in range(first + 1, len(msgs)):
            func = pc_function(msgs[j]) if _looks_like_pc(msgs[j]) else None
            if func is not None:
                return [func] + _frames_from(msgs, j + 1)
    first = next((i for i, msg in enumerate(msgs) if _INTERRUPT_LINE.search(msg)), None)
    return _frames_from(msgs, first + 1) if first is not None else []


def _frames_from(msgs: list[str], start: int) -> list[str]:
    out = []
    for msg in msgs[start:]:
        if _TRACE_START.search(msg):
            break
        parsed = parse_frame(msg)
        if parsed is not None and not parsed[1]:
            out.append(parsed[0])
    return out


def _representative(frames: list[str]) -> str | None:
    """The frame just inside the first dispatcher (walking outwards), None when no frame is one."""
    if not frames:
        return None
    prev = frames[0]
    for func in frames:
        if _ANCHORS.search(canonical_function(func)):
            if func.lstrip("_").startswith("smp_call_function"):
                return "smp_call_function"
            return prev
        prev = func
    return None


def _looping_frames(candidates: list[tuple[str, int]], msgs: list[str], own_cpu: bool) -> list[str]:
    """Frames of the stalled context: not the detector's interrupt, not the RCU kthread dump.

    Where the timer interrupt that ran the detector comes before the interrupted pc, the
    stalled code is what follows the interrupt frames; otherwise it starts at the first pc.
    """
    dump = _grace_period_dump(msgs)
    kept = [(func, line) for func, line in candidates if not dump[0] <= line < dump[1]]
    pc = next((i for i, (_, line) in enumerate(kept) if _looks_like_pc(msgs[line])), len(kept))
    timer = next((i for i, (func, _) in enumerate(kept) if _TIMER_IRQ.search(func)), -1)
    if timer > pc and (own_cpu or not _irq_between(msgs, kept[pc][1], kept[timer][1])):
        timer = -1  # the pc is the stalled task itself; the interrupt frames come after it
    if timer >= 0:
        while timer + 1 < len(kept) and _TIMER_IRQ.search(kept[timer + 1][0]):
            timer += 1
        return [func for func, _ in kept[timer + 1:]]
    if pc < len(kept):
        return [func for func, _ in kept[pc:]]
    return [func for func, _ in kept]


def _irq_between(msgs: list[str], first: int, last: int) -> bool:
    """The pc at line `first` was in interrupt context: an <IRQ> section opens in its own trace."""
    for i in range(first + 1, last):
        if msgs[i].strip() == "<IRQ>":
            return True
        if _looks_like_pc(msgs[i]):
            return False  # the next context's dump begins
    return False


def _looks_like_pc(msg: str) -> bool:
    return _PC.match(msg) is not None


def _grace_period_dump(msgs: list[str]) -> tuple[int, int]:
    """Line range of the RCU grace-period kthread's own stack, which names no bug."""
    for i, msg in enumerate(msgs):
        if _GRACE_PERIOD_DUMP.search(msg):
            j = i + 1
            seen = False
            while j < len(msgs):
                is_frame = "+0x" in msgs[j]
                if seen and not is_frame:
                    break
                seen = seen or is_frame
                j += 1
            return i, j
    return -1, -1


# A hang on RCU or on the RTNL is one bug however it is reached.
_HANG_BUCKETS = (("rtnl_lock", "rtnl_lock"), ("synchronize_rcu", "synchronize_rcu"),
                 ("synchronize_srcu", "synchronize_rcu"), ("synchronize_net", "synchronize_rcu"),
                 ("synchronize_sched", "synchronize_rcu"))
_HANG_SKIP = ("sched", "_lock", "_slowlock", "down", "rwsem", "completion", "kthread", "wait",
              "synchronize", "context_switch", "__switch_to", "cancel_delayed_work", "rcu_barrier",
              "rela_dyn_start")


def hang_frame(frames: list[str]) -> str | None:
    for func in frames:
        for needle, name in _HANG_BUCKETS:
            if needle in func:
                return name
    for func in frames:
        if not any(needle in func for needle in _HANG_SKIP):
            return func
    return None
