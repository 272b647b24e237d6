"""report.json: everything machine-readable, the source the other renderers read."""

from __future__ import annotations

import json
from typing import Any

SCHEMA_VERSION = 1


def render(data: dict[str, Any]) -> str:
    return json.dumps({"schema": SCHEMA_VERSION, **data}, indent=2, sort_keys=False, default=str) + "\n"
