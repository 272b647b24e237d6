#!/usr/bin/env python3
"""Soak rig with faults: N short `rig run`s, each with a random fault at a random moment,
and a count of what must never happen.

Faults come from outside rig, as a host or a user would cause them (QEMU killed or
frozen, rig interrupted, terminated or killed, the disk under the run directory filled
up), or from the guest through the plan (a kernel panic, the OOM killer, the guest's sshd
killed, a plan longer than the run's deadline: rig cuts its script to the time left
before the deadline, less what collection needs, so the script times out and the run
fails with its report). Each fault is drawn with its weight: the long plan may take
minutes under the shortest --deadline rig accepts (300 s), so it is drawn less often.
Each fault has the exit codes it may end with (a fault that lands after the run finished
leaves a clean exit). After every run the soak looks for:

- hung: the run still going past its deadline plus a grace (it is then killed);
- orphans: a QEMU of that run, or an ssh or make process of rig's, still alive;
- lost logs: a run directory without its console log, or without report.json where rig
  had the chance to write one (not after SIGKILL);
- wrong exit codes;
- a stale lock: after a SIGKILLed rig, the next run must not wait on its locks (it is
  timed like every run).

    .venv/bin/python tools/soak.py --runs 100 [--kernel debian:6.1] [--seed 1] [--out DIR]

The disk-full fault mounts a tmpfs for its run directory, so it needs root; run
directories of that fault are copied out of it before it is unmounted.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PLANS = REPO / "tests" / "data" / "plans"
RUN_DEADLINE_S = 420  # --deadline of each run: build and image are cached, the plan is short
GRACE_S = 120  # what rig may take past its deadline to stop the guest and write the report


@dataclass(frozen=True)
class Fault:
    name: str
    plan: str  # a plan in tests/data/plans
    exits: frozenset[int]  # the exit codes this fault may end with
    act: Callable[[subprocess.Popen[str], Path, random.Random], None] | None = None  # done from outside
    deadline_s: int = RUN_DEADLINE_S
    report_expected: bool = True
    args: tuple[str, ...] = ()  # more `rig run` options
    weight: float = 1.0  # how often it is drawn, against the others
    disk_mib: int | None = None  # the run directory on a tmpfs of this size


def _processes() -> list[tuple[int, list[bytes]]]:
    """(pid, argv) of every process that can be read."""
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                found.append((int(entry.name), (entry / "cmdline").read_bytes().split(b"\0")))
            except OSError:
                continue
    return found


def _of_run(argv: list[bytes], run_dir: Path) -> bool:
    return any(str(run_dir).encode() in part for part in argv)


def _qemu_pids(run_dir: Path) -> list[int]:
    return [pid for pid, argv in _processes() if argv[0] and b"qemu-system-" in argv[0] and _of_run(argv, run_dir)]


def _children_named(names: tuple[str, ...], run_dir: Path) -> list[str]:
    """ssh or make processes that mention the run directory (rig's own, not the user's)."""
    left = []
    for pid, argv in _processes():
        program = os.path.basename(argv[0].decode(errors="replace")) if argv[0] else ""
        if program in names and _of_run(argv, run_dir):
            left.append(f"{pid} {program}")
    return left


def _after_qemu_starts(run_dir: Path, proc: subprocess.Popen[str], rng: random.Random,
                       most_s: float) -> list[int] | None:
    """Wait for the run's QEMU, then a random moment; its pids, or None if the run ended."""
    while not _qemu_pids(run_dir):
        if proc.poll() is not None:
            return None
        time.sleep(0.2)
    time.sleep(rng.uniform(0, most_s))
    pids = _qemu_pids(run_dir)
    return pids if pids and proc.poll() is None else None


def _signal_qemu(signum: int, most_s: float) -> Callable[[subprocess.Popen[str], Path, random.Random], None]:
    def act(proc: subprocess.Popen[str], run_dir: Path, rng: random.Random) -> None:
        for pid in _after_qemu_starts(run_dir, proc, rng, most_s) or []:
            os.kill(pid, signum)
    return act


def _signal_rig(signum: int, most_s: float) -> Callable[[subprocess.Popen[str], Path, random.Random], None]:
    def act(proc: subprocess.Popen[str], run_dir: Path, rng: random.Random) -> None:
        time.sleep(rng.uniform(0, most_s))
        if proc.poll() is None:
            proc.send_signal(signum)
    return act


def _fill_disk(most_s: float) -> Callable[[subprocess.Popen[str], Path, random.Random], None]:
    """Once QEMU runs, a random moment later, take every free byte of the run directory's
    disk (the tmpfs the fault mounted)."""
    def act(proc: subprocess.Popen[str], run_dir: Path, rng: random.Random) -> None:
        if _after_qemu_starts(run_dir, proc, rng, most_s) is None:
            return
        fd = os.open(run_dir.parent / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            for size in (1 << 20, 1 << 12, 1):
                while True:
                    try:
                        os.write(fd, bytes(size))
                    except OSError:
                        break
        finally:
            os.close(fd)
    return act


FAULTS = (
    Fault("none", "scripts.toml", frozenset({0})),
    Fault("guest panic", "panic.toml", frozenset({1})),
    # 300 s is the shortest --deadline rig accepts
    Fault("plan over the deadline", "long-wait.toml", frozenset({1}), deadline_s=300, weight=0.3),
    Fault("guest OOM", "oom.toml", frozenset({0}), args=("--memory", "512")),
    Fault("SSH dropped", "sshd-killed.toml", frozenset({3})),
    # a full disk ends the run at the host's next write (QEMU's overlay, or rig's own)
    Fault("disk full", "wait.toml", frozenset({3}), _fill_disk(30), disk_mib=256),
    Fault("QEMU killed", "wait.toml", frozenset({3}), _signal_qemu(signal.SIGKILL, 20)),
    Fault("QEMU frozen", "short-wait.toml", frozenset({3}), _signal_qemu(signal.SIGSTOP, 10)),
    Fault("rig interrupted", "wait.toml", frozenset({130}), _signal_rig(signal.SIGINT, 40)),
    Fault("rig terminated", "wait.toml", frozenset({130}), _signal_rig(signal.SIGTERM, 40)),
    Fault("rig killed", "wait.toml", frozenset({-signal.SIGKILL}), _signal_rig(signal.SIGKILL, 40),
          report_expected=False),
)


@dataclass
class Outcome:
    fault: str
    exit_code: int
    wall_s: float
    hung: bool
    orphans: list[str]
    lost: list[str]
    wrong_exit: bool


def soak_one(index: int, fault: Fault, kernel: str, out: Path, rng: random.Random) -> Outcome:
    kept = out / f"run-{index:03d}"
    disk = None
    if fault.disk_mib is not None:
        disk = out / f"disk-{index:03d}"
        disk.mkdir()
        subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={fault.disk_mib}m,mode=0700", "tmpfs", str(disk)],
                       check=True)
    try:
        return _soak_in(index, fault, kernel, kept if disk is None else disk / kept.name, out, rng)
    finally:
        if disk is not None:
            # what the run left, kept (the disk itself holds the filler): then the tmpfs goes
            if (disk / kept.name).exists():
                shutil.copytree(disk / kept.name, kept, symlinks=True, dirs_exist_ok=True,
                                ignore=shutil.ignore_patterns("overlay.qcow2", "*.sock"))
            subprocess.run(["umount", "-l", str(disk)], check=False)
            disk.rmdir()


def _soak_in(index: int, fault: Fault, kernel: str, run_dir: Path, out: Path, rng: random.Random) -> Outcome:
    argv = [sys.executable, "-m", "rig", "run", "--quiet", "--kernel", kernel, "--plan", str(PLANS / fault.plan),
            "--pressure", "none", "--deadline", str(fault.deadline_s), "--out", str(run_dir), *fault.args]
    started = time.monotonic()
    proc = subprocess.Popen(argv, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    if fault.act is not None:
        fault.act(proc, run_dir, rng)
    hung = False
    try:
        proc.wait(timeout=max(1.0, fault.deadline_s + GRACE_S - (time.monotonic() - started)))
    except subprocess.TimeoutExpired:
        hung = True
        proc.kill()
        proc.wait()
    wall = time.monotonic() - started
    stderr = proc.stderr.read() if proc.stderr else ""
    time.sleep(2)  # QEMU's end after rig's (pdeathsig) takes a moment
    orphans = [f"{pid} qemu" for pid in _qemu_pids(run_dir)] + _children_named(("ssh", "make"), run_dir)
    for pid in _qemu_pids(run_dir):  # leave nothing for the next run
        os.kill(pid, signal.SIGKILL)
    lost = []
    consoles = list(run_dir.glob("attempt-*/vm/console.log")) + list(run_dir.glob("attempt-*/collect/console.log"))
    if run_dir.exists() and not consoles and (run_dir / "attempt-1").exists():
        lost.append("console log")
    if fault.report_expected and not hung and not (run_dir / "report.json").is_file():
        lost.append("report.json")
    exit_code = proc.returncode
    ran_clean = exit_code == 0 and fault.act is not None  # the fault came after the run had ended
    wrong = exit_code not in fault.exits and not ran_clean
    if wrong or hung or orphans or lost:
        (out / f"run-{index:03d}.stderr").write_text(stderr)
    return Outcome(fault.name, exit_code, wall, hung, orphans, lost, wrong)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100)
    parser.add_argument("--kernel", default="debian:6.1")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, help="where the run directories go (default: a new temporary one)")
    parser.add_argument("--only", action="append", choices=[f.name for f in FAULTS], metavar="FAULT",
                        help="draw only from these faults (repeatable; default: all of them)")
    args = parser.parse_args()
    faults = [f for f in FAULTS if not args.only or f.name in args.only]
    rng = random.Random(args.seed)
    out = args.out or Path(tempfile.mkdtemp(prefix="rig-soak-"))
    out.mkdir(parents=True, exist_ok=True)
    outcomes: list[Outcome] = []
    for index in range(args.runs):
        fault = rng.choices(faults, weights=[f.weight for f in faults])[0]
        outcome = soak_one(index, fault, args.kernel, out, rng)
        outcomes.append(outcome)
        flags = [w for w, bad in (("HUNG", outcome.hung), ("ORPHANS", outcome.orphans),
                                  ("LOST " + "+".join(outcome.lost), outcome.lost),
                                  ("WRONG EXIT", outcome.wrong_exit)) if bad]
        print(f"{index + 1:3d}/{args.runs} {fault.name:<18} exit {outcome.exit_code:>4} {outcome.wall_s:6.0f} s "
              f"{' '.join(flags) or 'ok'}", flush=True)
        with open(out / "soak.jsonl", "a") as log:
            log.write(json.dumps(outcome.__dict__) + "\n")
    drawn = Counter(o.fault for o in outcomes)
    print(f"\nruns {len(outcomes)} ({', '.join(f'{n} {f}' for f, n in drawn.items())})")
    print(f"hung {sum(o.hung for o in outcomes)}, orphans {sum(bool(o.orphans) for o in outcomes)}, "
          f"lost logs {sum(bool(o.lost) for o in outcomes)}, wrong exit codes {sum(o.wrong_exit for o in outcomes)}")
    print(f"run directories: {out}")
    bad = any(o.hung or o.orphans or o.lost or o.wrong_exit for o in outcomes)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
