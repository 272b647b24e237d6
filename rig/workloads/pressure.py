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
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from rig.errors import UserError
from rig.workloads import GUEST_DIR

if TYPE_CHECKING:
    from rig.vm import VM

SAMPLE_PERIOD_S = 1.0
# After the balloon gives memory back, keep sampling until the guest sees it again.
RECOVERY_WAIT_S = 20.0
# A guest command that only starts or stops something.
CONTROL_TIMEOUT_S = 30.0
# Below this the debug kernel, sshd and igt_runner no longer fit (measured: about 300 MiB
# used after boot with kmemleak's pool).
MIN_GUEST_MIB = 384
# The cgroup the workloads run in under `memcg` (cgroup v2 is mounted by rig-init).
CGROUP = "/sys/fs/cgroup/rig-workloads"

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


# ------------------------------------------------------------------ the kinds


# A size in MiB: ASCII digits only (str.isdigit also takes "²", which int() refuses).
_MIB = re.compile(r"[0-9]{1,7}")
MIB = 1024 * 1024
_SUFFIX = {"": 1, "K": 1024, "M": MIB, "G": 1024 * MIB}


def _bytes(size: str) -> int:
    """stress-ng's size "256M" (K, M, G or bytes) in bytes."""
    suffix = size[-1] if size[-1] in _SUFFIX else ""
    return int(size[:len(size) - len(suffix)]) * _SUFFIX[suffix]


class _Problem(Exception):
    """A `kind=value` that does not parse; parse_pressure collects them all."""


@dataclass(frozen=True)
class PressureKind:
    """One kind of pressure. Its class reads its `kind=value` option; an instance starts
    it, stops it (one kind failing to stop must not keep the others from stopping: the
    session runs each stop on its own) and may put the workloads under it (`wrap`)."""

    name: ClassVar[str]
    pressure: Pressure

    @staticmethod
    def option(value: str, memory_mib: int) -> dict[str, Any]:
        """The Pressure fields `kind=value` sets."""
        raise _Problem("takes no value")

    async def start(self, session: PressureSession) -> None:
        pass

    async def stop(self, session: PressureSession) -> None:
        pass

    @property
    def wrap(self) -> list[str] | None:
        """argv prefix for a guest command that should run under this pressure; each
        prefix ends by exec'ing the rest, so prefixes chain."""
        return None


class NoPressure(PressureKind):
    name = "none"


class Balloon(PressureKind):
    """Squeezes the guest through QMP; gives the memory back and waits until the guest
    sees it again, so the timeline ends with the recovered guest."""

    name = "balloon"

    @staticmethod
    def option(value: str, memory_mib: int) -> dict[str, Any]:
        if not _MIB.fullmatch(value) or int(value) < MIN_GUEST_MIB:
            raise _Problem(f"give a size in MiB of at least {MIN_GUEST_MIB}")
        if int(value) >= memory_mib:
            raise _Problem(f"the target must be below the guest's memory ({memory_mib} MiB)")
        return {"balloon_mib": int(value)}

    async def start(self, session: PressureSession) -> None:
        target = self.pressure.balloon_target(session.memory_mib)
        await session.vm.machine.balloon(target)
        session.note(f"balloon to {target} MiB")
        await session.wait_balloon(lambda size: size <= target + 16, RECOVERY_WAIT_S)

    async def stop(self, session: PressureSession) -> None:
        await session.vm.machine.balloon(session.memory_mib)
        session.note(f"balloon back to {session.memory_mib} MiB")
        await session.wait_balloon(lambda size: size >= session.memory_mib - 16, RECOVERY_WAIT_S)
        await asyncio.sleep(3 * SAMPLE_PERIOD_S)  # a few samples of the recovered guest


class Stress(PressureKind):
    """stress-ng's vm stressor in the guest, bounded in time should rig lose the guest."""

    name = "stress"

    @staticmethod
    def option(value: str, memory_mib: int) -> dict[str, Any]:
        if not re.fullmatch(r"[0-9]{1,3}%|[0-9]+[KMG]?", value) or (value.endswith("%") and int(value[:-1]) > 90):
            raise _Problem("give a share of memory (25%) or a size (256M)")
        # stress-ng's --vm-bytes in bytes without a suffix; a size the guest does not have
        # only gets stress-ng (or the guest) killed by the OOM killer, not memory pressure.
        if not value.endswith("%") and _bytes(value) >= memory_mib * MIB:
            raise _Problem(f"the size must be below the guest's memory ({memory_mib} MiB); or give a share (25%)")
        return {"stress_bytes": value}

    async def start(self, session: PressureSession) -> None:
        await session.detach(f"{GUEST_DIR}/stress.pid",
                             ["stress-ng", "--vm", "1", "--vm-bytes", self.pressure.stress_bytes,
                              "--vm-keep", "--timeout", "3600s", "--quiet"])
        session.note(f"stress-ng --vm-bytes {self.pressure.stress_bytes}")

    async def stop(self, session: PressureSession) -> None:
        await session.vm.run(["sh", "-c", _STOP, f"{GUEST_DIR}/stress.pid"], timeout=CONTROL_TIMEOUT_S)
        session.note("stress-ng stopped")


class Memcg(PressureKind):
    """A cgroup v2 with memory.max that each workload's command enters (`wrap`)."""

    name = "memcg"

    @staticmethod
    def option(value: str, memory_mib: int) -> dict[str, Any]:
        if not _MIB.fullmatch(value) or int(value) < MIN_GUEST_MIB // 2:
            raise _Problem(f"give a size in MiB of at least {MIN_GUEST_MIB // 2}")
        if int(value) >= memory_mib:  # a limit above what the guest has never squeezes anything
            raise _Problem(f"the limit must be below the guest's memory ({memory_mib} MiB)")
        return {"memcg_mib": int(value)}

    async def start(self, session: PressureSession) -> None:
        limit = self.pressure.memcg_mib * 1024 * 1024
        await session.vm.run(["sh", "-c", 'echo +memory > /sys/fs/cgroup/cgroup.subtree_control; '
                              'mkdir -p "$0" && echo "$1" > "$0/memory.max"', CGROUP, str(limit)],
                             timeout=CONTROL_TIMEOUT_S, check=True)
        session.note(f"memcg memory.max {self.pressure.memcg_mib} MiB")

    # Nothing to stop: the cgroup empties when its workloads end, and the guest is shut down.

    @property
    def wrap(self) -> list[str] | None:
        return ["sh", "-c", _ENTER_CGROUP, CGROUP]


class Shrink(PressureKind):
    """A guest loop asking every shrinker to scan, then dropping caches, each period."""

    name = "shrink"

    @staticmethod
    def option(value: str, memory_mib: int) -> dict[str, Any]:
        try:
            period = float(value)
        except ValueError:
            period = 0.0
        if not 0.5 <= period <= 600:
            raise _Problem("give a period in seconds between 0.5 and 600")
        return {"shrink_period_s": period}

    async def start(self, session: PressureSession) -> None:
        shrink = await session.put_script("shrink.sh", SHRINK_SH)
        await session.detach(f"{GUEST_DIR}/shrink.pid",
                             [shrink, f"{GUEST_DIR}/shrink.stop", str(self.pressure.shrink_period_s)])
        session.note(f"shrinker scans every {self.pressure.shrink_period_s:g} s")

    async def stop(self, session: PressureSession) -> None:
        await session.vm.run(["touch", f"{GUEST_DIR}/shrink.stop"], timeout=CONTROL_TIMEOUT_S)


# Start and stop order. The balloon comes last both ways: it squeezes a guest whose other
# pressure already runs, and gives memory back once stress-ng has stopped, so the samples
# of the recovered guest show it idle.
ORDER: tuple[type[PressureKind], ...] = (Memcg, Shrink, Stress, Balloon)
KINDS = (NoPressure.name, *(kind.name for kind in (Balloon, Stress, Memcg, Shrink)))
_BY_NAME = {kind.name: kind for kind in (NoPressure, *ORDER)}


def kinds_of(pressure: Pressure) -> tuple[PressureKind, ...]:
    """The pressure's kinds in ORDER; `none` when it has none."""
    chosen = tuple(kind(pressure) for kind in ORDER if kind.name in pressure.kinds)
    return chosen or (NoPressure(pressure),)


def parse_pressure(spec: str, memory_mib: int) -> Pressure:
    """`none`, or kinds joined by commas, each optionally `kind=value`:
    balloon=768 (MiB), stress=25% or stress=256M, memcg=512 (MiB), shrink=5 (s)."""
    problems: list[str] = []
    kinds: list[str] = []
    values: dict[str, Any] = {}
    for item in [s.strip() for s in spec.split(",") if s.strip()] or ["none"]:
        name, _, value = item.partition("=")
        kind = _BY_NAME.get(name)
        if kind is None:
            problems.append(f"'{name}' is not a pressure profile (known: {', '.join(KINDS)})")
            continue
        if value:
            try:
                values.update(kind.option(value, memory_mib))
            except _Problem as problem:
                problems.append(f"{item}: {problem}" if item != spec.strip() else str(problem))
        if kind is NoPressure:
            continue
        if name in kinds:
            problems.append(f"'{name}' is given twice")
        kinds.append(name)
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
    # Host timeline time minus guest uptime, when it was measured: places console lines.
    uptime_offset_s: float | None = None
    # What the guest kernel said it did under pressure (purges, OOM kills: rig.reclaim_events).
    kernel_events: tuple[tuple[float, str], ...] = ()

    def to_json(self) -> dict[str, Any]:
        return {"samples": [asdict(s) for s in self.samples], "events": [list(e) for e in self.events],
                "top_shrinkers": self.top_shrinkers, "uptime_offset_s": self.uptime_offset_s,
                "kernel_events": [list(e) for e in self.kernel_events]}


def timeline_from_json(data: dict[str, Any]) -> Timeline:
    offset = data.get("uptime_offset_s")
    return Timeline(tuple(Sample(**s) for s in data.get("samples", [])),
                    tuple((float(t), str(w)) for t, w in data.get("events", [])),
                    dict(data.get("top_shrinkers", {})),
                    float(offset) if offset is not None else None,
                    tuple((float(t), str(w)) for t, w in data.get("kernel_events", [])))


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
    """The sampler and the chosen kinds of pressure around the workloads:

        async with PressureSession(vm, pressure, out, memory_mib, t0) as session:
            session.note("IGT group 1-vgem")   # an event on the timeline
            ... run a workload with session.wrap ...
        session.timeline                       # always set once the block is left

    Leaving the block undoes every kind, each on its own, and brings the sampler's
    timeline back from the guest. A guest that died (or a stop that fails) leaves what
    the host knows without it: the balloon readings and the events."""

    def __init__(self, vm: VM, pressure: Pressure, out: Path, memory_mib: int, t0: float) -> None:
        self.vm = vm
        self.pressure = pressure
        self.out = out
        self.memory_mib = memory_mib
        self.t0 = t0
        self.kinds = kinds_of(pressure)
        self.offset_s: float | None = None  # host time minus guest uptime, once measured
        self.events: list[tuple[float, str]] = []
        self.balloon_samples: list[tuple[float, float]] = []
        self._balloon_task: asyncio.Task[None] | None = None
        self._sampling = True
        self.timeline: Timeline | None = None

    def now(self) -> float:
        return round(time.monotonic() - self.t0, 2)

    def note(self, what: str) -> None:
        self.events.append((self.now(), what))

    @property
    def wrap(self) -> list[str] | None:
        """argv prefix that puts a workload's guest command under the pressure (memcg)."""
        prefix = [word for kind in self.kinds for word in (kind.wrap or [])]
        return prefix or None

    async def __aenter__(self) -> PressureSession:
        try:
            await self.start()
        except BaseException:
            await self.stop()  # undo what started before the failure
            raise
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    # ---- what the kinds use

    async def put_script(self, name: str, text: str) -> str:
        local = self.out / name
        local.write_text(text)
        remote = f"{GUEST_DIR}/{name}"
        await self.vm.put(local, remote, mode=0o755)
        return remote

    async def detach(self, pidfile: str, argv: list[str]) -> None:
        await self.vm.run(["sh", "-c", _DETACH, pidfile, *argv], timeout=CONTROL_TIMEOUT_S, check=True)

    async def wait_balloon(self, reached: Callable[[float], bool], timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.balloon_samples and reached(self.balloon_samples[-1][1]):
                return
            await asyncio.sleep(SAMPLE_PERIOD_S)

    # ---- start and stop

    async def start(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)
        await self.vm.run(["mkdir", "-p", GUEST_DIR], timeout=CONTROL_TIMEOUT_S, check=True)
        sampler = await self.put_script("sampler.sh", SAMPLER_SH)
        before = time.monotonic()
        uptime = await self.vm.run(["cat", "/proc/uptime"], timeout=CONTROL_TIMEOUT_S, check=True)
        after = time.monotonic()
        # The guest read its clock somewhere inside the round trip: take the middle.
        self.offset_s = ((before + after) / 2 - self.t0) - float(uptime.stdout.split()[0])
        await self.detach(f"{GUEST_DIR}/sampler.pid",
                          [sampler, f"{GUEST_DIR}/timeline.txt", f"{GUEST_DIR}/sampler.stop", str(SAMPLE_PERIOD_S)])
        self._balloon_task = asyncio.create_task(self._sample_balloon())
        self.note("sampling started")
        for kind in self.kinds:
            await kind.start(self)

    async def _sample_balloon(self) -> None:
        # Ends on the flag as well as on cancel(): Python 3.11's wait_for can swallow a
        # cancellation that arrives as its inner call completes, and a sampler that missed
        # its cancel() would keep the session's stop() waiting for ever.
        while self._sampling:
            with contextlib.suppress(Exception):  # a busy or dying QMP only costs a sample
                async with asyncio.timeout(SAMPLE_PERIOD_S * 5):
                    size = await self.vm.machine.query_balloon()
                self.balloon_samples.append((self.now(), float(size)))
            await asyncio.sleep(SAMPLE_PERIOD_S)

    def _guest_gone(self) -> bool:
        return bool(self.vm.machine.exited or self.vm.machine.panicked)

    async def stop(self) -> Timeline:
        """Undo the pressure and return the timeline (once; later calls return it again).
        What could not be stopped or fetched is left out: stopping raises nothing but a
        cancellation, and even then the partial timeline is kept."""
        if self.timeline is not None:
            return self.timeline
        try:
            if not self._guest_gone():  # a dead guest has nothing to stop and no timeline to give
                self.timeline = await self._stop_in_guest()
        finally:
            await self._stop_balloon_sampling()
            if self.timeline is None:
                self.timeline = self.partial_timeline()
        return self.timeline

    async def _stop_balloon_sampling(self) -> None:
        self._sampling = False
        if self._balloon_task is not None:
            self._balloon_task.cancel()
            await asyncio.wait({self._balloon_task})  # its end, without taking its CancelledError

    async def _stop_in_guest(self) -> Timeline:
        for kind in self.kinds:
            with contextlib.suppress(Exception):  # each on its own: one failure does not skip the rest
                await kind.stop(self)
        with contextlib.suppress(Exception):
            await self.vm.run(["touch", f"{GUEST_DIR}/sampler.stop"], timeout=CONTROL_TIMEOUT_S)
        await self._stop_balloon_sampling()
        text = ""
        local = self.out / "timeline.txt"
        with contextlib.suppress(Exception):
            await self.vm.get(f"{GUEST_DIR}/timeline.txt", local)
            text = local.read_text(errors="replace")
        samples, top = parse_sampler(text, self.offset_s or 0.0)
        return Timeline(tuple(merge(samples, self.balloon_samples)), tuple(self.events), top, self.offset_s)

    def partial_timeline(self) -> Timeline:
        """What is known without the guest (after a crash): the balloon readings and events."""
        return Timeline(tuple(merge([], self.balloon_samples)), tuple(self.events), {}, self.offset_s)
