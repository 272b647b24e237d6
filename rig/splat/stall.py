"""Naming stalls and lockups by a representative frame.

A CPU stuck in a loop is caught at a random point inside the loop, so the innermost
frame changes from one report to the next. Like syzbot, rig walks outwards to the
first generic dispatcher (syscall entry, VFS/socket layer, softirq, workqueue, timer)
and names the frame just inside it: the syscall, the driver ioctl, the protocol handler.
"""

from __future__ import annotations

import re

from rig.splat.frames import SkipRule

# Frames that only dispatch work; the frame called by one of them identifies the loop.
_ANCHORS = re.compile(
    r"_*(?:kthread$|worker_thread$|process_one_work$|call_timer_fn$|expire_timers$|run_timers$|"
    r"run_timer_softirq$|do_softirq|irq_exit|irq_exit_rcu$|handle_softirqs$|net_rx_action$|"
    r"napi_poll$|process_backlog$|netif_receive_skb|sock_sendmsg$|sock_recvmsg$|sock_write_iter$|"
    r"sock_read_iter$|sys_sendmsg$|sys_recvmsg$|sys_sendto$|sys_recvfrom$|sys_connect$|"
    r"sys_bind$|sys_accept4?$|sys_setsockopt$|sys_getsockopt$|sock_setsockopt$|"
    r"vfs_read$|vfs_write$|new_sync_read$|new_sync_write$|vfs_iter_read$|vfs_iter_write$|"
    r"do_iter_read$|do_iter_write$|do_iter_readv_writev$|do_vfs_ioctl$|vfs_ioctl$|fput$|"
    r"task_work_run$|do_syscall|entry_SYSCALL|do_fast_syscall|do_int80|el0_svc|invoke_syscall|"
    r"ret_fast_syscall|ksys_ioctl$|ksys_read$|ksys_write$|smp_call_function|on_each_cpu|"
    r"exit_to_usermode_loop$|exit_to_user_mode|syscall_exit_to_user_mode|do_group_exit$|"
    r"get_signal$|do_signal$|ret_from_fork$|kernel_init$|do_one_initcall$)"
)
# The timer interrupt that fired the stall detector: frames below it are the detector itself.
_TIMER_IRQ = re.compile(r"_*(?:asm_)?(?:sysvec_|smp_)?apic_timer_interrupt$|_*hrtimer_interrupt$|"
                        r"_*arch_timer_handler")
_GRACE_PERIOD_DUMP = re.compile(r"RCU grace-period kthread stack dump|rcu_\w+ kthread starved")
_NMI = re.compile(r"NMI backtrace for cpu|Sending NMI from CPU")


def stall_frame(candidates: list[tuple[str, int]], msgs: list[str], skip: SkipRule) -> str | None:
    """The representative frame of a stall report, else its first frame that is not machinery."""
    frames = _looping_frames(candidates, msgs)
    prev: str | None = None
    for func in frames:
        if _ANCHORS.match(func):
            if func.lstrip("_").startswith("smp_call_function"):
                return "smp_call_function"
            if prev is not None:
                return prev
            continue
        if not skip.skips(func):
            prev = func
    for func in frames:
        if not skip.skips(func):
            return func
    return None


def _looping_frames(candidates: list[tuple[str, int]], msgs: list[str]) -> list[str]:
    """Frames of the stalled context, without the detector's own interrupt frames."""
    timer_at = next((i for i, (func, _) in enumerate(candidates) if _TIMER_IRQ.match(func)), -1)
    if timer_at >= 0:
        # the pc the timer interrupted comes first, then the frames below it
        return [func for func, _ in candidates[timer_at + 1:]]
    start_line = 0
    for i, msg in enumerate(msgs):
        if _NMI.search(msg):
            start_line = i
            break
        if _GRACE_PERIOD_DUMP.search(msg):
            start_line = i + 1
    return [func for func, line in candidates if line >= start_line]
