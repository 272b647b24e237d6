"""Kernel reports, KUnit (KTAP) and IGT results out of raw console text: pure parsers.

    parse_log(data) -> list[Finding]      every kernel report in a console log or dmesg
    Finding, LeakGroup                    frozen dataclasses (see rig.splat.model)

KTAP lives in rig.splat.ktap; IGT output, results.json and the one map of IGT's exit
codes and result words in rig.splat.igt; the test a finding belongs to (by the task that
printed it or allocated its leaked objects, else its place in the log) in
rig.splat.attribution. rig.analysis runs them all once over an attempt's raw material.
"""

from __future__ import annotations

from rig.splat.model import Finding, LeakGroup
from rig.splat.parser import parse_log

__all__ = ["Finding", "LeakGroup", "parse_log"]
