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


class _Skip(Protocol):
    def skips(self, func: str) -> bool: ...

# Frames that only dispatch work; the frame called by one of them identifies the loop.
_ANCHORS = re.compile(
    r"_*(?:kthread$|worker_thread$|process_one_work$|call_timer_fn$|expire_timers$|run_timers$|"
    r"run_timer_softirq$|do_softirq|irq_exit|handle_softirqs$|net_rx_action$|tasklet_action|"
    r"hrtimer_run_queues$|napi_poll$|process_backlog$|netif_receive_skb|rtnetlink_rcv_msg$|"
    r"nfnetlink_rcv_msg$|sock_sendmsg$|sock_write_iter$|sock_read_iter$|sock_common_setsockopt$|"
    r"sock_common_getsockopt$|sock_setsockopt$|vfs_read$|vfs_write$|new_sync_read$|new_sync_write$|"
    r"vfs_iter_read$|vfs_iter_write$|do_iter_read$|do_iter_write$|do_iter_readv_writev$|"
    r"do_vfs_ioctl$|vfs_ioctl$|\w*compat_ioctl$|fput$|task_work_run$|do_syscall|entry_SYSCALL|"
    r"do_fast_syscall|do_int80|el0_svc|invoke_syscall|ret_fast_syscall|ksys_ioctl$|ksys_read$|"
    r"ksys_write$|smp_call_function|on_each_cpu|exit_to_usermode_loop$|exit_to_user_mode|"
    r"syscall_exit_to_user_mode|ret_from_fork$|kernel_init$|"
    r"do_one_initcall$|mmap_region$|do_mmap$|vm_mmap_pgoff$|do_fault$|"
    r"cpu_startup_entry$|do_idle$|start_secondary$|do_dentry_open$|vfs_open$|"
    # the ioctl/read/write entry points say nothing; the driver handler below them does
    r"(?:x64_|ia32_|arm64_|se_|do_)?sys_(?:ioctl|read|write)$|drm_ioctl_kernel$|drm_ioctl$|drm_compat_ioctl$)"
)
# The timer interrupt that fired the stall detector: frames below it are the detector itself.
_TIMER_IRQ = re.compile(r"apic_timer_interrupt|hrtimer_interrupt|arch_timer_handler|timer_interrupt")
_GRACE_PERIOD_DUMP = re.compile(r"RCU grace-period kthread stack dump")
_PC = re.compile(r"\s*(?:RIP|IP|pc|PC is at|NIP|epc)\b")


def stall_frame(candidates: list[tuple[str, int]], msgs: list[str], skip: _Skip,
                *, own_cpu: bool = False) -> str | None:
    """The representative frame of a stall report (candidates: frames and pcs in line order).

    own_cpu: the detector ran on the stuck CPU itself (soft lockup), so the first pc is
    the looping code even when it was interrupted in softirq context.
    """
    frames = [func for func in _looping_frames(candidates, msgs, own_cpu) if not skip.skips(func)]
    if not frames:
        return None
    prev = frames[0]
    for func in frames:
        if _ANCHORS.match(func):
            if func.lstrip("_").startswith("smp_call_function"):
                return "smp_call_function"
            return prev
        prev = func
    return frames[0]


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
