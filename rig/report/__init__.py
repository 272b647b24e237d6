"""Renderers of a run's report. They all read one RunReport (rig.report.model), which
report.json holds and loads back, so each can be re-run on an old report.json."""

from __future__ import annotations

import os
from pathlib import Path

from rig.report import html, json_report, junit, markdown
from rig.report.model import RunReport


def write_all(report: RunReport, run_dir: Path) -> dict[str, Path]:
    """Write every report file into `run_dir` (report.json first: the others are views
    of it, and it must exist even if a view fails); returns name -> path."""
    views = {"report.json": json_report.render, "junit.xml": junit.render, "report.md": markdown.render,
             "report.html": lambda r: html.render(r, run_dir)}
    written: dict[str, Path] = {}
    for name, render in views.items():
        path = run_dir / name
        # Whole or not at all: a Ctrl-C or a full disk halfway through a write leaves the
        # previous file (or none), never a truncated report.json that fails to load.
        staging = path.with_name(f".{name}.{os.getpid()}.tmp")
        try:
            staging.write_text(render(report))
            os.replace(staging, path)
        finally:
            staging.unlink(missing_ok=True)
        written[name] = path
    return written
