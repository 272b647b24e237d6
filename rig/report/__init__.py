"""Renderers of a run's report. They all read the same plain data (what report.json
holds), so each can be tested with realistic data and re-run on an old report.json."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rig.report import html, json_report, junit, markdown

FILES = {"report.json": json_report.render, "junit.xml": junit.render, "report.md": markdown.render,
         "report.html": html.render}


def write_all(data: dict[str, Any], run_dir: Path) -> dict[str, Path]:
    """Write every report file into `run_dir`; returns name -> path."""
    written: dict[str, Path] = {}
    for name, render in FILES.items():
        path = run_dir / name
        path.write_text(render(data, run_dir) if name == "report.html" else render(data))
        written[name] = path
    return written
