"""Memory pressure beside the workloads, and the timeline that shows it.

Profiles combine (`balloon,shrink`): `balloon` squeezes the guest through QMP to a
target and gives the memory back afterwards; `stress` runs stress-ng in the guest,
bounded in time; `memcg` runs the workloads in a cgroup v2 with memory.max; `shrink`
asks every shrinker to scan and drops caches periodically; `none` does nothing.

The timeline samples once a second: the guest's MemAvailable/MemFree and shrinker
object counts (a small sampler loop inside the guest, so sampling costs no SSH round
trip) and the balloon size (QMP, from the host).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rig.errors import UserError
from rig.workloads import GUEST_DIR

if TYPE_CHECKING:
    from rig.vm import VM

KINDS = ("none", "balloon", "stress", "memcg", "shrink")
SAMPLE_PERIOD_S = 1.0
# After the balloon gives memory back, keep sampling until the guest sees it again.
RECOVERY_WAIT_S = 20.0
# A guest command that only starts or stops something.
CONTROL_TIMEOUT_S = 30.0
# Below this the debug kernel, sshd and igt_runner no longer fit (measured: about 300 MiB
# used after boot with kmemleak's pool).
MIN_GUEST_MIB = 384

SAMPLER_SH = r"""#!/bin/sh
# rig's timeline sampler: one line of memory facts per period until the stop file exists.
# Line: <uptime s> <MemAvailable kB> <MemFree kB> [<shrinker>=<objects> ...]
out=$1 stop=$2 period=${3:-1}
while [ ! -e "$stop" ]; do
    read up _ < /proc/uptime
    avail=0 free=0
    while read key value _; do
        case $key in
            MemAvailable:) avail=$value ;;
            MemFree:) free=$value ;;
        esac
    done < /proc/meminfo
    line="$up $avail $free"
    for d in /sys/kernel/debug/shrinker/*/; do
        [ -r "${d}count" ] || continue
        n=0
        while read _ c _; do n=$((n + ${c:-0})); done < "${d}count" 2>/dev/null
        name=${d%/}
        line="$line ${name##*/}=$n"
    done
    echo "$line" >> "$out"
    sleep "$period"
done
"""

SHRINK_SH = r"""#!/bin/sh
# rig's shrinker pressure: every period ask every shrinker to scan, then drop caches.
stop=$1 period=${2:-5} nr=${3:-1024}
while [ ! -e "$stop" ]; do
    for f in /sys/kernel/debug/shrinker/*/scan; do
        [ -w "$f" ] || continue
        while read ino _; do
            echo "$ino 0 $nr" > "$f" 2>/dev/null
        done < "${f%/scan}/count" 2>/dev/null
    done
    echo 3 > /proc/sys/vm/drop_caches
    sleep "$period"
done
"""

# Starts argv detached from the SSH session (its own session, no terminal, no open
# channel) and records its pid, so rig can stop exactly that process later.
_DETACH = 'setsid "$@" </dev/null >/dev/null 2>&1 & echo $! > "$0"'
_STOP = 'kill "$(cat "$0")" 2>/dev/null; true'
_ENTER_CGROUP = 'echo $$ > "$0/cgroup.procs" && exec "$@"'


@dataclass(frozen=True)
class Pressure:
    kinds: tuple[str, ...]  # without "none"
    balloon_mib: int | None = None  # balloon target; None: 40% of the guest's memory
    stress_bytes: str = "20%"  # stress-ng --vm-bytes
    memcg_mib: int = 512
    shrink_period_s: float = 5.0

    @property
    def label(self) -> str:
        return ",".join(self.kinds) or "none"

    def balloon_target(self, memory_mib: int) -> int:
        return self.balloon_mib if self.balloon_mib is not None else max(MIN_GUEST_MIB, memory_mib * 2 // 5)


def parse_pressure(spec: str, memory_mib: int) -> Pressure:
    """`none`, or kinds joined by commas, each optionally `kind=value`:
    balloon=768 (MiB), stress=25% or stress=256M, memcg=512 (MiB), shrink=5 (s)."""
    problems: list[str] = []
    kinds: list[str] = []
    values: dict[str, Any] = {}
    for item in [s.strip() for s in spec.split(",") if s.strip()] or ["none"]:
        kind, _, value = item.partition("=")
        if kind not in KINDS:
            problems.append(f"'{kind}' is not a pressure profile (known: {', '.join(KINDS)})")
            continue
        if kind == "none":
            if value:
                problems.append("'none' takes no value")
            continue
        if kind in kinds:
            problems.append(f"'{kind}' is given twice")
        kinds.append(kind)
        if not value:
            continue
        if kind in ("balloon", "memcg"):
            if not value.isdigit() or int(value) < MIN_GUEST_MIB // (2 if kind == "memcg" else 1):
                problems.append(f"{kind}={value}: give a size in MiB of at least "
                                f"{MIN_GUEST_MIB // (2 if kind == 'memcg' else 1)}")
            elif kind == "balloon" and int(value) >= memory_mib:
                problems.append(f"balloon={value}: the target must be below the guest's memory ({memory_mib} MiB)")
            else:
                values[f"{kind}_mib"] = int(value)
        elif kind == "stress":
            if not re.fullmatch(r"\d{1,3}%|\d+[KMG]?", value) or (value.endswith("%") and int(value[:-1]) > 90):
                problems.append(f"stress={value}: give a share of memory (25%) or a size (256M)")
            else:
                values["stress_bytes"] = value
        elif kind == "shrink":
            try:
                period = float(value)
            except ValueError:
                period = 0.0
            if not 0.5 <= period <= 600:
                problems.append(f"shrink={value}: give a period in seconds between 0.5 and 600")
            else:
                values["shrink_period_s"] = period
    if problems:
        raise UserError(f"--pressure {spec}: " + "; ".join(problems),
                        hint="for example --pressure balloon,shrink or --pressure balloon=768,memcg=512")
    return Pressure(tuple(kinds), **values)


# ------------------------------------------------------------------ timeline


@dataclass(frozen=True)
class Sample:
    t: float  # seconds since the workloads started (host clock)
    mem_available_mib: float | None = None
    mem_free_mib: float | None = None
    balloon_mib: float | None = None
    shrinker_objects: int | None = None


@dataclass(frozen=True)
class Timeline:
    samples: tuple[Sample, ...]
    events: tuple[tuple[float, str], ...] = ()  # (t, what happened): balloon set, tests started
    top_shrinkers: dict[str, int] = field(default_factory=dict)  # largest counts seen

    def to_json(self) -> dict[str, Any]:
        return {"samples": [asdict(s) for s in self.samples], "events": [list(e) for e in self.events],
                "top_shrinkers": self.top_shrinkers}


def timeline_from_json(data: dict[str, Any]) -> Timeline:
    return Timeline(tuple(Sample(**s) for s in data.get("samples", [])),
                    tuple((float(t), str(w)) for t, w in data.get("events", [])),
                    dict(data.get("top_shrinkers", {})))


def parse_sampler(text: str, offset_s: float) -> tuple[list[Sample], dict[str, int]]:
    """Sampler lines -> samples on the host's clock (`offset_s`: host time minus uptime)."""
    samples: list[Sample] = []
    top: dict[str, int] = {}
    for line in text.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        try:
            uptime, avail, free = float(parts[0]), int(parts[1]), int(parts[2])
        except ValueError:
            continue  # a line cut short when the guest stopped
        total = 0
        for item in parts[3:]:
            name, _, count = item.rpartition("=")
            if count.isdigit():
                total += int(count)
                top[name] = max(top.get(name, 0), int(count))
        samples.append(Sample(round(uptime + offset_s, 2), round(avail / 1024, 1), round(free / 1024, 1),
                              None, total if len(parts) > 3 else None))
    return samples, dict(sorted(top.items(), key=lambda kv: -kv[1])[:10])


def merge(guest: list[Sample], balloon: list[tuple[float, float]]) -> list[Sample]:
    """Put the host's balloon readings beside the guest samples closest in time."""
    merged: list[Sample] = []
    for sample in guest:
        nearest = min(balloon, key=lambda b: abs(b[0] - sample.t), default=None)
        size = nearest[1] if nearest is not None and abs(nearest[0] - sample.t) <= 1.5 * SAMPLE_PERIOD_S else None
        merged.append(Sample(sample.t, sample.mem_available_mib, sample.mem_free_mib, size, sample.shrinker_objects))
    guest_times = [s.t for s in guest]
    for t, size in balloon:  # balloon readings with no guest sample (guest too busy) still count
        if not any(abs(t - g) <= 0.5 * SAMPLE_PERIOD_S for g in guest_times):
            merged.append(Sample(t, None, None, size, None))
    return sorted(merged, key=lambda s: s.t)


# ------------------------------------------------------------------ running it


class PressureSession:
    """Starts the sampler and the chosen pressure; `stop()` undoes all of it and returns
    the timeline. Use as `async with PressureSession(...) as session:`."""

    def __init__(self, vm: VM, pressure: Pressure, out: Path, memory_mib: int, t0: float) -> None:
        self.vm = vm
        self.pressure = pressure
        self.out = out
        self.memory_mib = memory_mib
        self.t0 = t0
        self.offset_s = 0.0
        self.events: list[tuple[float, str]] = []
        self.balloon_samples: list[tuple[float, float]] = []
        self._balloon_task: asyncio.Task[None] | None = None
        self._stopped = False
        self.timeline: Timeline | None = None
        self.cgroup = f"/sys/fs/cgroup/rig-workloads"

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    def note(self, what: str) -> None:
        self.events.append((self.now(), what))

    @property
    def wrap(self) -> list[str] | None:
        """argv prefix that puts a workload into the memory cgroup (memcg pressure)."""
        if "memcg" not in self.pressure.kinds:
            return None
        return ["sh", "-c", _ENTER_CGROUP, self.cgroup]

    async def __aenter__(self) -> PressureSession:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    async def _put_script(self, name: str, text: str) -> str:
        local = self.out / name
        local.write_text(text)
        remote = f"{GUEST_DIR}/{name}"
        await self.vm.put(local, remote, mode=0o755)
        return remote

    async def _detach(self, pidfile: str, argv: list[str]) -> None:
        await self.vm.run(["sh", "-c", _DETACH, pidfile, *argv], timeout=CONTROL_TIMEOUT_S, check=True)

    async def start(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        await self.vm.run(["mkdir", "-p", GUEST_DIR], timeout=CONTROL_TIMEOUT_S, check=True)
        sampler = await self._put_script("sampler.sh", SAMPLER_SH)
        before = time.monotonic()
        uptime = await self.vm.run(["cat", "/proc/uptime"], timeout=CONTROL_TIMEOUT_S, check=True)
        after = time.monotonic()
        # The guest read its clock somewhere inside the round trip: take the middle.
        self.offset_s = ((before + after) / 2 - self.t0) - float(uptime.stdout.split()[0])
        await self._detach(f"{GUEST_DIR}/sampler.pid",
                           [sampler, f"{GUEST_DIR}/timeline.txt", f"{GUEST_DIR}/sampler.stop", str(SAMPLE_PERIOD_S)])
        self._balloon_task = asyncio.create_task(self._sample_balloon())
        self.note("sampling started")
        kinds = self.pressure.kinds
        if "memcg" in kinds:
            limit = self.pressure.memcg_mib * 1024 * 1024
            await self.vm.run(["sh", "-c", 'echo +memory > /sys/fs/cgroup/cgroup.subtree_control; '
                               'mkdir -p "$0" && echo "$1" > "$0/memory.max"', self.cgroup, str(limit)],
                              timeout=CONTROL_TIMEOUT_S, check=True)
            self.note(f"memcg memory.max {self.pressure.memcg_mib} MiB")
        if "shrink" in kinds:
            shrink = await self._put_script("shrink.sh", SHRINK_SH)
            await self._detach(f"{GUEST_DIR}/shrink.pid",
                               [shrink, f"{GUEST_DIR}/shrink.stop", str(self.pressure.shrink_period_s)])
            self.note(f"shrinker scans every {self.pressure.shrink_period_s:g} s")
        if "stress" in kinds:
            await self._detach(f"{GUEST_DIR}/stress.pid",
                               ["stress-ng", "--vm", "1", "--vm-bytes", self.pressure.stress_bytes,
                                "--vm-keep", "--timeout", "3600s", "--quiet"])
            self.note(f"stress-ng --vm-bytes {self.pressure.stress_bytes}")
        if "balloon" in kinds:
            target = self.pressure.balloon_target(self.memory_mib)
            await self.vm.machine.balloon(target)
            self.note(f"balloon to {target} MiB")
            await self._wait_balloon(lambda size: size <= target + 16, RECOVERY_WAIT_S)

    async def _sample_balloon(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a busy or dying QMP only costs a sample
                size = await asyncio.wait_for(self.vm.machine.query_balloon(), SAMPLE_PERIOD_S * 5)
                self.balloon_samples.append((self.now(), float(size)))
            await asyncio.sleep(SAMPLE_PERIOD_S)

    async def _wait_balloon(self, reached: Any, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.balloon_samples and reached(self.balloon_samples[-1][1]):
                return
            await asyncio.sleep(SAMPLE_PERIOD_S)

    async def stop(self) -> Timeline:
        """Undo the pressure (each step on its own, so one failure does not skip the rest)."""
        if self._stopped and self.timeline is not None:
            return self.timeline
        self._stopped = True
        kinds = self.pressure.kinds
        if "stress" in kinds:
            with contextlib.suppress(Exception):
                await self.vm.run(["sh", "-c", _STOP, f"{GUEST_DIR}/stress.pid"], timeout=CONTROL_TIMEOUT_S)
                self.note("stress-ng stopped")
        if "shrink" in kinds:
            with contextlib.suppress(Exception):
                await self.vm.run(["touch", f"{GUEST_DIR}/shrink.stop"], timeout=CONTROL_TIMEOUT_S)
        if "balloon" in kinds:
            with contextlib.suppress(Exception):
                await self.vm.machine.balloon(self.memory_mib)
                self.note(f"balloon back to {self.memory_mib} MiB")
                await self._wait_balloon(lambda size: size >= self.memory_mib - 16, RECOVERY_WAIT_S)
                await asyncio.sleep(3 * SAMPLE_PERIOD_S)  # a few samples of the recovered guest
        with contextlib.suppress(Exception):
            await self.vm.run(["touch", f"{GUEST_DIR}/sampler.stop"], timeout=CONTROL_TIMEOUT_S)
        if self._balloon_task is not None:
            self._balloon_task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await self._balloon_task
        text = ""
        local = self.out / "timeline.txt"
        with contextlib.suppress(Exception):
            await self.vm.get(f"{GUEST_DIR}/timeline.txt", local)
            text = local.read_text(errors="replace")
        samples, top = parse_sampler(text, self.offset_s)
        self.timeline = Timeline(tuple(merge(samples, self.balloon_samples)), tuple(self.events), top)
        return self.timeline

    def partial_timeline(self) -> Timeline:
        """What is known without the guest (after a crash): the balloon readings."""
        return Timeline(tuple(merge([], self.balloon_samples)), tuple(self.events), {})
