"""The guest a command asks for, as one frozen value checked before any side effect.

`rig boot` and `rig run` build a GuestSpec from their options and validate it before
anything is built or downloaded: a bad `--cpus` or `--append` is bad input found in a
second, not after a twenty-minute kernel build.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace

from rig.errors import UserError
from rig.target import DEFAULT_TARGET, TARGETS, GpuModel, Target

ACCELERATORS = ("kvm", "tcg")
MEMORY_MIB = (512, 65536)  # below 512 MiB the debug kernel, sshd and IGT do not fit
CPUS = (1, 64)
# Linux truncates longer command lines (COMMAND_LINE_SIZE is 2048 on x86 and arm64); rig's own
# arguments take about 300 characters, so the user's share is what is left below 1024.
USER_CMDLINE_MAX = 640
# The longest wait any option may ask for (--ready-timeout, rig boot's --timeout, rig run's
# --deadline): a week. More is a typo, and far more (1e308) overflows the time_t of the
# waits underneath (threading's, paramiko's) with an OverflowError mid-run.
MAX_WAIT_S = 7 * 24 * 3600.0


@dataclass(frozen=True)
class GuestSpec:
    """What the guest machine is: architecture, GPU model, size, accelerator, kernel
    arguments, image, and how long it may take to answer SSH."""

    target: Target = DEFAULT_TARGET
    gpu: str = "virtio-gpu"
    memory_mib: int = 2048
    cpus: int = 2
    accel: str | None = None  # None: probe KVM, fall back to TCG
    cmdline_extra: tuple[str, ...] = ()
    image: str = "default"
    ready_timeout_s: float = 300.0
    # faults the GPU model injects, set once the guest is up (rig.gpu_faults): (name, N)
    gpu_faults: tuple[tuple[str, int], ...] = ()

    def problems(self) -> list[str]:
        """Every problem at once, each naming the option to fix."""
        found = []
        if self.gpu not in self.target.gpus:
            elsewhere = [t.name for t in TARGETS.values() if self.gpu in t.gpus]
            where = f"; it is on {', '.join(f'--arch {a}' for a in elsewhere)}" if elsewhere else ""
            found.append(f"--gpu {self.gpu}: not a GPU model on {self.target.name} "
                         f"(give one of {', '.join(self.target.gpus)}{where})")
        if not MEMORY_MIB[0] <= self.memory_mib <= MEMORY_MIB[1]:
            found.append(f"--memory {self.memory_mib}: give MiB between {MEMORY_MIB[0]} and {MEMORY_MIB[1]}")
        if not CPUS[0] <= self.cpus <= CPUS[1]:
            found.append(f"--cpus {self.cpus}: give between {CPUS[0]} and {CPUS[1]}")
        if self.accel is not None and self.accel not in ACCELERATORS:
            found.append(f"--accel {self.accel}: give auto, {' or '.join(ACCELERATORS)}")
        elif self.accel == "kvm" and not self.target.native_on(host_machine()):
            found.append(f"--accel kvm: KVM runs {host_machine()} guests only on this host, not "
                         f"{self.target.name} (give --accel tcg or auto)")
        for extra in self.cmdline_extra:
            if not extra or any(c.isspace() for c in extra) or not extra.isprintable():
                found.append(f"--append {extra!r}: empty or has spaces; pass each kernel argument "
                             "with its own --append")
        if len(" ".join(self.cmdline_extra)) > USER_CMDLINE_MAX:
            found.append(f"--append: the extra kernel arguments are longer than {USER_CMDLINE_MAX} characters")
        if not self.image or "/" in self.image and not self.image.endswith(".toml"):
            found.append(f"--image {self.image!r}: give a recipe name from images/ or a .toml file")
        found += self._gpu_fault_problems()
        # nan compares false to everything, so it fails this test too
        if not 0 < self.ready_timeout_s <= MAX_WAIT_S:
            found.append(f"--ready-timeout {self.ready_timeout_s:g}: give a positive number of seconds, "
                         f"at most {MAX_WAIT_S:g}")
        return found

    def _gpu_fault_problems(self) -> list[str]:
        if not self.gpu_faults or self.gpu not in self.target.gpus:
            return []
        faults = self.target.gpus[self.gpu].faults
        if faults is None:
            able = [f"--gpu {name}" for name, model in self.target.gpus.items() if model.faults is not None]
            elsewhere = [f"--arch {t.name} --gpu {name}" for t in TARGETS.values() if t is not self.target
                         for name, model in t.gpus.items() if model.faults is not None]
            hint = "give " + " or ".join(able or elsewhere) if able or elsewhere else "no GPU model takes them"
            return [f"--gpu-fault: --gpu {self.gpu} takes no injected faults ({hint}, or leave out --gpu-fault)"]
        found = []
        seen: set[str] = set()
        for name, count in self.gpu_faults:
            if name not in faults.names:
                found.append(f"--gpu-fault {name}: not a fault --gpu {self.gpu} injects "
                             f"(give one of {', '.join(faults.names)})")
            elif not 1 <= count <= faults.names[name]:
                found.append(f"--gpu-fault {name}={count}: give a number from 1 to {faults.names[name]}")
            elif name in seen:
                found.append(f"--gpu-fault {name}: given twice (give each fault once)")
            seen.add(name)
        return found

    def validate(self) -> GuestSpec:
        problems = self.problems()
        if problems:
            raise UserError("cannot use this guest machine:\n    " + "\n    ".join(problems),
                            hint="see --help for the accepted values")
        return self

    @property
    def gpu_model(self) -> GpuModel:
        """The GPU model's QEMU devices and DRM driver (UserError if not on this target)."""
        return self.target.gpu(self.gpu)

    @property
    def driver(self) -> str | None:
        """The DRM driver the guest binds to the GPU model."""
        return self.gpu_model.driver

    def with_cmdline(self, *args: str) -> GuestSpec:
        """The same guest with more kernel arguments."""
        return replace(self, cmdline_extra=(*self.cmdline_extra, *args))

    def to_json(self) -> dict[str, object]:
        return {"arch": self.target.name, "gpu": self.gpu, "memory_mib": self.memory_mib, "cpus": self.cpus,
                "accel": self.accel, "cmdline_extra": list(self.cmdline_extra), "image": self.image,
                "ready_timeout_s": self.ready_timeout_s,
                # only when asked for: a run without injection keeps its base-run cache key
                **({"gpu_faults": [f"{name}={n}" for name, n in self.gpu_faults]} if self.gpu_faults else {})}


def host_machine() -> str:
    """The host's architecture as `uname -m` says it."""
    return os.uname().machine
