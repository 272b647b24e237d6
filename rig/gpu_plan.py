"""A plan fitted to the machine's GPU model, so that one plan serves every `--gpu`.

A plan's IGT group may name the machine's GPU (`driver = "@gpu"`) instead of a driver:
its tests (dumb buffers, framebuffers, modesets) then run on whatever display GPU the
machine has: virtio_gpu, bochs-drm (gem-vram), cirrus. A group that names the driver of
some other GPU model (`driver = "virtio_gpu"` on a `--gpu bochs` machine) cannot run
there: its tests are skipped with the reason instead of failing one by one for a device
the guest does not have. Groups for drivers every guest has (vgem, vkms) and groups with
no driver are kept as they are. A plan's scripts follow the same rules by their `driver`
(a script for gem-vram's VRAM eviction names bochs-drm and runs on bochs only).
"""

from __future__ import annotations

from dataclasses import replace

from rig.plan import MACHINE_GPU, IgtGroup, Plan, Script
from rig.target import GPU_DRIVERS, GpuModel

# (test pattern, driver, reason), as rig.narrow's dropped tests
Dropped = tuple[str, str | None, str]


def fit_to_gpu(plan: Plan, gpu: GpuModel) -> tuple[Plan, list[Dropped]]:
    """`plan` with its GPU groups and scripts resolved for `gpu`, and the tests left out, with why."""
    groups: list[IgtGroup] = []
    dropped: list[Dropped] = []
    for group in plan.igt:
        reason = _why_not(group.driver, gpu)
        if reason is not None:
            dropped += [(test, group.driver, reason) for test in group.tests]
        elif group.driver == MACHINE_GPU:
            assert gpu.driver is not None  # _why_not keeps such a group only for a GPU with a driver
            groups.append(replace(group, driver=gpu.driver, driver_aliases=gpu.other_driver_names))
        else:
            groups.append(group)
    scripts: list[Script] = []
    for script in plan.scripts:
        reason = _why_not(script.driver, gpu)
        if reason is not None:
            dropped.append((f"script:{script.name}", script.driver, reason))
        elif script.driver == MACHINE_GPU:
            # the script reads IGT_FORCE_DRIVER to find the machine's GPU, as IGT does
            scripts.append(replace(script, driver=gpu.driver))
        else:
            scripts.append(script)
    if tuple(groups) == plan.igt and tuple(scripts) == plan.scripts:
        return plan, dropped
    return replace(plan, igt=tuple(groups), scripts=tuple(scripts)), dropped


def _why_not(driver: str | None, gpu: GpuModel) -> str | None:
    if driver == MACHINE_GPU:
        if gpu.driver is None:
            return f"not run: the machine has no GPU (--gpu {gpu.name})"
        if not gpu.has_display:
            return f"not run: the machine's GPU ({gpu.name}, {gpu.driver}) has no display for these tests"
        return None
    if driver in GPU_DRIVERS and driver not in gpu.driver_names:
        has = f"{gpu.name} ({gpu.driver})" if gpu.driver else f"none (--gpu {gpu.name})"
        return f"not run: needs a {driver} GPU; the machine's GPU is {has}"
    return None
