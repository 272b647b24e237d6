"""report.json: everything machine-readable; RunReport.from_json loads it back."""

from __future__ import annotations

import json

from rig.report.model import RunReport


def render(report: RunReport) -> str:
    return json.dumps(report.to_json(), indent=2, sort_keys=False, default=str) + "\n"
