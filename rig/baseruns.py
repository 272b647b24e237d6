"""The base kernel's runs, kept in rig's cache: a second series on the same base runs
only its own side.

    base_key(build_key, plan, pressure, guest, image, repeat, skips) -> str
    load(key) -> CachedBase | None
    store(key, runs, source)

The key holds everything that makes the base runs what they are: the base kernel's
build (its cache key), what the plan runs, the pressure, the machine (GPU, memory,
CPUs, architecture, command line), the guest image, how many runs, the tests a skips
list keeps out, and rig's version (its parsers read the runs). What is kept is each
run's analysis (findings with their tests, test results) and its attempt record, not
the guest's files: those stay in the run directory that made them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rig import __version__, cache
from rig.analysis import KNOWN_HOST_FAULTS, AnalysedFinding, Analysis
from rig.guest_spec import GuestSpec
from rig.known import Pattern
from rig.plan import Plan
from rig.report.model import AttemptRecord
from rig.results import TestName, TestResult
from rig.splat.attribution import Placement
from rig.splat.model import Finding, Source

FORMAT = 1

STORE = cache.Store("base-runs", lambda entry: (entry / "runs.json").is_file())


@dataclass(frozen=True)
class CachedRun:
    record: AttemptRecord
    analysis: Analysis


@dataclass(frozen=True)
class CachedBase:
    key: str
    runs: tuple[CachedRun, ...]
    source: str  # the run directory whose base runs these are
    created: float  # time.time() when they were stored


def plan_identity(plan: Plan) -> str:
    """What a plan runs (not its name, file or expected failures: they change no run)."""
    return repr((plan.igt, plan.kunit_suites, plan.scripts, plan.kmemleak_scan, plan.inactivity_timeout_s))


def base_key(build_key: str, plan: Plan, pressure: str, guest: GuestSpec, image: str, repeat: int,
             skips: Sequence[Pattern] = ()) -> str:
    return cache.digest(["base-runs", str(FORMAT), __version__, build_key, plan_identity(plan), pressure,
                         json.dumps(guest.to_json(), sort_keys=True), image, str(repeat),
                         *(p.regex.pattern for p in skips)])


def load(key: str) -> CachedBase | None:
    entry = STORE.lookup(key)
    if entry is None:
        return None
    try:
        data = json.loads((entry / "runs.json").read_text())
        runs = tuple(CachedRun(AttemptRecord.from_json(r["record"]), analysis_from_json(r["analysis"]))
                     for r in data["runs"])
        return CachedBase(key, runs, str(data.get("source", "")), float(data.get("created", 0.0)))
    except (OSError, ValueError, KeyError, TypeError):
        return None  # a damaged entry is a miss: the base runs again and replaces it


def store(key: str, runs: Sequence[tuple[AttemptRecord, Analysis]], source: Path) -> Path:
    with STORE.lock(key, timeout_s=60, what="storing base runs"):
        staging = STORE.staging(key)
        (staging / "runs.json").write_text(json.dumps({
            "format": FORMAT, "created": time.time(), "source": str(source),
            "runs": [{"record": record.to_json(), "analysis": analysis_to_json(analysis)}
                     for record, analysis in runs]}, indent=1, default=str))
        return STORE.publish(staging, key)


def analysis_to_json(analysis: Analysis) -> dict[str, Any]:
    return {
        "findings": [{"finding": f.finding.to_json(), "source": str(f.source),
                      "test": str(f.test) if f.test is not None else None, "placement": str(f.placement),
                      "also": [str(t) for t in f.also], "count": f.count,
                      "host_fault": f.host_fault.name if f.host_fault else None} for f in analysis.findings],
        "tests": [t.to_json() for t in analysis.tests],
        "host_fault": analysis.host_fault, "debug_locks": analysis.debug_locks, "problems": list(analysis.problems),
    }


def analysis_from_json(data: dict[str, Any]) -> Analysis:
    faults = {fault.name: fault for fault in KNOWN_HOST_FAULTS}
    findings = tuple(AnalysedFinding(Finding.from_json(f["finding"]), Source(f["source"]),
                                     TestName.parse(f["test"]) if f.get("test") else None, Placement(f["placement"]),
                                     tuple(TestName.parse(t) for t in f.get("also", ())), int(f.get("count", 1)),
                                     faults.get(f.get("host_fault") or ""))
                     for f in data["findings"])
    return Analysis(findings, (), tuple(TestResult.from_json(t) for t in data["tests"]), data.get("host_fault"),
                    data.get("debug_locks"), tuple(data.get("problems", ())))
