"""Kernel reports, KUnit (KTAP) and IGT results out of raw console text: pure parsers.

    parse_log(data) -> list[Finding]      every kernel report in a console log or dmesg
    Finding, LeakGroup                    frozen dataclasses (see rig.splat.model)

KTAP lives in rig.splat.ktap, IGT output and results.json in rig.splat.igt, and mapping a
log position to the IGT subtest or KUnit case running at the time in rig.splat.attribution.
"""

from __future__ import annotations

from rig.splat.model import Finding, LeakGroup
from rig.splat.parser import parse_log

__all__ = ["Finding", "LeakGroup", "parse_log"]
