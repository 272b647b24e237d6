"""The matrix report: finished cells merged into matrix.json, matrix.html (a grid coloured
by status, findings grouped by signature across cells), matrix.md (mail-ready), one
junit.xml with a test suite per cell, and kcidb.json in KernelCI's KCIDB v5 schema.

It reads only what cells leave on disk (matrix-cell.json and report.json, rig's versioned
formats), so `rig matrix report DIR...` merges cells run anywhere: by `rig matrix run`,
by GitLab jobs, or plain `rig run` directories (their axes read from report.json).
"""

from __future__ import annotations

import hashlib
import html
import json
import os
import re
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rig.errors import UserError
from rig.matrix.cells import _short, varying_axes
from rig.matrix.runner import CELL_FILE, CellResult, Status, load_cell_result, status_of_run
from rig.matrix.spec import AXES

MATRIX_SCHEMA = 1
KCIDB_ORIGIN = "rig"
KCIDB_VERSION = {"major": 5, "minor": 3}

COLOURS = {Status.PASS: "#2e7d32", Status.FAIL: "#c62828", Status.ERROR: "#ef6c00",
           Status.NOT_APPLICABLE: "#757575", Status.INTERRUPTED: "#6a1b9a", Status.WAITING: "#9e9e9e"}


@dataclass(frozen=True)
class CellRecord:
    """One finished cell as the reports see it."""

    result: CellResult
    run_dir: Path
    report: Mapping[str, Any] | None  # report.json, absent for a cell that did not run

    @property
    def findings(self) -> list[Mapping[str, Any]]:
        return list(self.report.get("findings", [])) if self.report else []

    @property
    def tests(self) -> list[Mapping[str, Any]]:
        return list(self.report.get("tests", [])) if self.report else []

    @property
    def ran(self) -> bool:
        return self.result.status in (Status.PASS, Status.FAIL) and self.report is not None


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return data if isinstance(data, dict) else None


def _axes_of_report(report: Mapping[str, Any]) -> dict[str, str]:
    kernel, machine = report.get("kernel") or {}, report.get("machine") or {}
    return {"kernel": str(kernel.get("spec", "")), "arch": str(kernel.get("arch", machine.get("arch", ""))),
            "gpu": str(machine.get("gpu", "")), "series": str((report.get("series") or {}).get("spec", "")),
            "profile": str(kernel.get("profile", "")), "plan": str((report.get("plan") or {}).get("name", "")),
            "pressure": str(report.get("pressure", ""))}


def _report_problem(report: Mapping[str, Any]) -> str | None:
    """What in a report.json is not of the shape rig writes (in the fields the matrix
    reports read), or None: a hand-edited or foreign file is named, not a traceback."""
    from rig.report.model import SCHEMA_VERSION  # the report model imports the matrix spec's modules

    schema = report.get("schema", 1)
    if isinstance(schema, bool) or not isinstance(schema, int) or not 1 <= schema <= SCHEMA_VERSION:
        return f"schema {schema!r} (this rig reads 1 to {SCHEMA_VERSION})"
    if "exit_code" in report and (isinstance(report["exit_code"], bool) or not isinstance(report["exit_code"], int)):
        return f"exit_code {report['exit_code']!r} is not a number"
    if not isinstance(report.get("summary", ""), str) or not isinstance(report.get("pressure", ""), str):
        return "summary and pressure must be strings"
    for key in ("kernel", "machine", "plan", "series", "verdict"):
        if report.get(key) is not None and not isinstance(report[key], dict):
            return f"{key} must be an object"
    for key in ("findings", "tests"):
        listed = report.get(key, [])
        if not isinstance(listed, list) or not all(isinstance(item, dict) for item in listed):
            return f"{key} must be a list of objects"
    for test in report.get("tests", []):
        duration = test.get("duration_s")
        if duration is not None and (isinstance(duration, bool) or not isinstance(duration, int | float)):
            return f"tests[].duration_s {duration!r} is not a number"
    unexpected = (report.get("verdict") or {}).get("unexpected_failures", [])
    if not isinstance(unexpected, list) or not all(isinstance(name, str) for name in unexpected):
        return "verdict.unexpected_failures must be a list of test names"
    return None


def _record(directory: Path) -> CellRecord | None:
    result = load_cell_result(directory)
    report = _read_json(directory / "report.json")
    if result is None and report is None:
        return None
    if report is not None and (problem := _report_problem(report)) is not None:
        raise UserError(f"{directory / 'report.json'} is not a rig run report this rig can read: {problem}",
                        hint="pass directories of `rig run` or `rig matrix run` made by this rig "
                             "(or run the cell again)")
    if result is None:  # a plain `rig run` directory
        assert report is not None
        code = int(report.get("exit_code", 4))
        result = CellResult(directory.name, _axes_of_report(report), status_of_run(code), code,
                            str(report.get("summary", "")))
    return CellRecord(result, directory, report)


def _natural(text: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", text)]


def gather(directories: Iterable[Path], order: Sequence[str] = ()) -> list[CellRecord]:
    """The cells under each directory: a matrix output (its cells/), a cell or a run directory;
    in `order` (the matrix file's) where given, else by name with numbers as numbers."""
    records: list[CellRecord] = []
    for directory in directories:
        found = ([_record(d) for d in sorted((directory / "cells").iterdir()) if d.is_dir()]
                 if (directory / "cells").is_dir() else [_record(directory)])
        if not any(found):
            raise UserError(f"{directory} holds no matrix cell (no {CELL_FILE} or report.json)",
                            hint="pass a `rig matrix run` output directory, cell directories or `rig run` "
                                 "directories")
        records += [r for r in found if r is not None]
    seen: dict[str, CellRecord] = {}
    for record in records:  # the same cell twice (two merged outputs): the later one counts
        seen[record.result.id] = record
    rank = {cell_id: index for index, cell_id in enumerate(order)}
    return sorted(seen.values(), key=lambda r: (rank.get(r.result.id, len(rank)), _natural(r.result.id)))


# ------------------------------------------------------------------ findings across cells


@dataclass(frozen=True)
class FindingGroup:
    signature: str
    title: str
    kind: str
    cells: Mapping[str, str]  # cell id -> the finding's status there (new, pre-existing, host fault)


def group_findings(records: Sequence[CellRecord]) -> list[FindingGroup]:
    groups: dict[str, dict[str, Any]] = {}
    for record in records:
        for finding in record.findings:
            signature = str(finding.get("signature") or finding.get("title"))
            group = groups.setdefault(signature, {"title": str(finding.get("title", "")),
                                                  "kind": str(finding.get("kind", "")), "cells": {}})
            group["cells"].setdefault(record.result.id, str(finding.get("status", "new")))
    return sorted((FindingGroup(sig, g["title"], g["kind"], g["cells"]) for sig, g in groups.items()),
                  key=lambda g: (-len(g.cells), g.title))


def _labels(records: Sequence[CellRecord]) -> dict[str, str]:
    varying = varying_axes([dict(r.result.axes) for r in records]) if len(records) > 1 else ()
    return {r.result.id: "/".join(_short(a, r.result.axes.get(a, "")) for a in varying) or r.result.id
            for r in records}


def where_line(group: FindingGroup, records: Sequence[CellRecord]) -> str:
    """"6.1/virtio-gpu, 6.12/virtio-gpu; not on 7.2": where it was seen, and where it was not."""
    labels = _labels(records)
    seen = [labels[cid] for cid in labels if cid in group.cells]
    absent = [r for r in records if r.ran and r.result.id not in group.cells]
    text = ", ".join(seen)
    if not absent:
        return text
    varying = varying_axes([dict(r.result.axes) for r in records]) if len(records) > 1 else ()
    # an axis value on which it never showed names the absence shortest ("not on 7.2")
    values: list[str] = []
    covered: set[str] = set()
    for axis in varying:
        for value in dict.fromkeys(r.result.axes[axis] for r in absent):
            with_value = [r for r in records if r.ran and r.result.axes[axis] == value]
            if with_value and all(r.result.id not in group.cells for r in with_value):
                values.append(_short(axis, value))
                covered |= {r.result.id for r in with_value}
    rest = [labels[r.result.id] for r in absent if r.result.id not in covered]
    return f"{text}; not on {', '.join(values + rest)}"


# ------------------------------------------------------------------ matrix.json


def _rel(path: Path, out: Path) -> str:
    return os.path.relpath(path, out)


def matrix_json(records: Sequence[CellRecord], out: Path) -> dict[str, Any]:
    cells = []
    for record in records:
        result = record.result
        cells.append({
            **result.to_json(),
            "run_dir": _rel(record.run_dir, out),
            "report_html": _rel(record.run_dir / "report.html", out) if record.report else None,
            "findings": [{"title": f.get("title"), "kind": f.get("kind"), "signature": f.get("signature"),
                          "status": f.get("status"), "test": f.get("test")} for f in record.findings],
            "tests": len(record.tests),
        })
    counts: dict[str, int] = {}
    for record in records:
        counts[record.result.status.value] = counts.get(record.result.status.value, 0) + 1
    return {"schema": MATRIX_SCHEMA, "exit_code": exit_code(records), "counts": counts, "cells": cells,
            "findings": [{"signature": g.signature, "title": g.title, "kind": g.kind, "cells": dict(g.cells),
                          "where": where_line(g, records)} for g in group_findings(records)]}


def exit_code(records: Sequence[CellRecord]) -> int:
    """The matrix's exit code: a rig error (3, 4, 130) first, then a failing cell (1), else 0.
    A not-applicable cell is an answer, not a failure."""
    codes = [r.result.exit_code or 0 for r in records if r.result.status in (Status.ERROR, Status.INTERRUPTED)]
    if codes:
        return max(codes)
    return 1 if any(r.result.status == Status.FAIL for r in records) else 0


# ------------------------------------------------------------------ matrix.md


def markdown(records: Sequence[CellRecord]) -> str:
    labels = _labels(records)
    lines = ["# rig matrix", "", "| cell | status | summary |", "|---|---|---|"]
    for record in records:
        summary = record.result.summary.splitlines()[0] if record.result.summary else ""
        lines.append(f"| {labels[record.result.id]} | {record.result.status.value} | {summary.replace('|', '/')} |")
    groups = group_findings(records)
    lines += ["", "## Findings", ""]
    if not groups:
        lines.append("No kernel reports in any cell.")
    for group in groups:
        statuses = sorted(set(group.cells.values()))
        lines.append(f"- **{group.title}** ({group.kind}, {'/'.join(statuses)}): {where_line(group, records)}")
    not_applicable = [r for r in records if r.result.status == Status.NOT_APPLICABLE]
    if not_applicable:
        lines += ["", "## Not applicable", ""]
        for record in not_applicable:
            first = record.result.summary.splitlines()[0] if record.result.summary else ""
            lines.append(f"- {labels[record.result.id]}: {first}")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------ matrix.html


def _grid(records: Sequence[CellRecord], out: Path) -> str:
    """Columns: the first varying axis's values; rows: the other varying axes' combinations."""
    varying = varying_axes([dict(r.result.axes) for r in records]) if len(records) > 1 else ()
    column_axis = varying[0] if varying else None
    row_axes = varying[1:]
    columns = list(dict.fromkeys(r.result.axes[column_axis] for r in records)) if column_axis else [""]
    rows = list(dict.fromkeys(tuple(r.result.axes[a] for a in row_axes) for r in records))
    at = {(tuple(r.result.axes[a] for a in row_axes), r.result.axes[column_axis] if column_axis else ""): r
          for r in records}
    head = "".join(f"<th>{html.escape(_short(column_axis, c)) if column_axis else 'cell'}</th>" for c in columns)
    body = []
    for row in rows:
        label = "/".join(_short(a, v) for a, v in zip(row_axes, row, strict=True)) or "&nbsp;"
        cells = []
        for column in columns:
            record = at.get((row, column))
            if record is None:
                cells.append('<td class="none">excluded</td>')
                continue
            status = record.result.status
            text = html.escape(status.value)
            if record.report is not None:
                text = f'<a href="{html.escape(_rel(record.run_dir / "report.html", out))}">{text}</a>'
            title = html.escape(record.result.summary.splitlines()[0] if record.result.summary else "")
            cells.append(f'<td class="cell" data-status="{status.value}" title="{title}" '
                         f'style="background:{COLOURS.get(status, "#9e9e9e")}">{text}</td>')
        body.append(f"<tr><th>{html.escape(label)}</th>{''.join(cells)}</tr>")
    axes_note = html.escape(" x ".join(varying) or "one cell")
    return (f'<p class="axes">{axes_note}</p><table class="grid"><tr><th></th>{head}</tr>'
            + "".join(body) + "</table>")


def render_html(records: Sequence[CellRecord], out: Path) -> str:
    groups = group_findings(records)
    items = "".join(f"<li><b>{html.escape(g.title)}</b> <span class=kind>{html.escape(g.kind)}</span>: "
                    f"{html.escape(where_line(g, records))}</li>" for g in groups) or "<li>No kernel reports.</li>"
    labels = _labels(records)
    details = "".join(
        f"<tr><td>{html.escape(labels[r.result.id])}</td><td>{html.escape(r.result.status.value)}</td>"
        f"<td>{html.escape(r.result.summary.splitlines()[0] if r.result.summary else '')}</td></tr>"
        for r in records)
    return f"""<!doctype html>
<html><head><meta charset="utf-8"><title>rig matrix</title>
<style>
body {{ font-family: sans-serif; margin: 2em; color: #212121; }}
table.grid {{ border-collapse: collapse; }}
table.grid th, table.grid td {{ border: 2px solid #fff; padding: 1.2em 1.6em; text-align: center; }}
td.cell, td.cell a {{ color: #fff; font-weight: bold; }}
td.none {{ background: #eeeeee; color: #9e9e9e; }}
.kind {{ color: #757575; }}
table.cells td {{ padding: 0.2em 0.8em; border-bottom: 1px solid #e0e0e0; }}
</style></head><body>
<h1>rig matrix</h1>
{_grid(records, out)}
<h2>Findings across cells</h2>
<ul>{items}</ul>
<h2>Cells</h2>
<table class="cells">{details}</table>
</body></html>
"""


# ------------------------------------------------------------------ junit.xml


def _clean(text: str) -> str:
    return "".join(ch for ch in text if ch in "\t\n\r" or ord(ch) >= 0x20)


def ended(test: dict[str, Any]) -> str:
    """How a test of a cell's report.json ended: `result` from report schema 3 on (where
    `status` is the verdict's new/pre-existing/...), `status` before it."""
    return str(test.get("result", test.get("status")))


def junit(records: Sequence[CellRecord]) -> str:
    root = ET.Element("testsuites", name="rig matrix")
    for record in records:
        result = record.result
        failing = [t for t in record.tests if ended(t) in ("fail", "timeout", "crash")]
        unexpected = set(record.report.get("verdict", {}).get("unexpected_failures", [])) if record.report else set()
        new = [f for f in record.findings if f.get("status") == "new"]
        suite = ET.SubElement(root, "testsuite", name=result.id,
                              tests=str(len(record.tests) + len(record.findings) + 1),
                              failures=str(len([t for t in failing if t.get("name") in unexpected]) + len(new)),
                              errors=str(int(result.status == Status.ERROR)),
                              skipped=str(int(result.status == Status.NOT_APPLICABLE)))
        props = ET.SubElement(suite, "properties")
        for axis in AXES:
            ET.SubElement(props, "property", name=axis, value=str(result.axes.get(axis, "")))
        case = ET.SubElement(suite, "testcase", name="run", classname=f"{result.id}.rig",
                             time=f"{result.duration_s:.1f}")
        if result.status == Status.NOT_APPLICABLE:
            ET.SubElement(case, "skipped", message=_clean(result.summary.splitlines()[0] if result.summary else ""))
        elif result.status == Status.ERROR:
            ET.SubElement(case, "error", message=_clean(result.summary.splitlines()[0] if result.summary else ""))\
                .text = _clean(result.summary)
        for test in record.tests:
            case = ET.SubElement(suite, "testcase", name=str(test.get("name")), classname=f"{result.id}.test",
                                 time=f"{test.get('duration_s') or 0:.3f}")
            if test.get("name") in unexpected:
                ET.SubElement(case, "failure", message=str(test.get("raw_status", ended(test))))\
                    .text = _clean(str(test.get("detail", "")))
            elif ended(test) in ("skip", "absent"):
                ET.SubElement(case, "skipped", message=str(test.get("raw_status", ended(test))))
        for finding in record.findings:
            case = ET.SubElement(suite, "testcase", name=str(finding.get("title")),
                                 classname=f"{result.id}.kernel.{finding.get('kind')}")
            text = _clean(f"test: {finding.get('test') or '-'}\n\n{finding.get('report', '')}")
            if finding.get("status") == "new":
                ET.SubElement(case, "failure", message=_clean(str(finding.get("title"))),
                              type=str(finding.get("kind"))).text = text
            else:
                ET.SubElement(case, "system-out").text = _clean(f"{finding.get('status')}\n\n{text}")
    ET.indent(root)
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + ET.tostring(root, encoding="unicode") + "\n"


# ------------------------------------------------------------------ kcidb.json

_TEST_STATUS = {"pass": "PASS", "fail": "FAIL", "crash": "FAIL", "timeout": "ERROR", "skip": "SKIP",
                "absent": "SKIP", "incomplete": "ERROR"}


def kcidb_path(test_name: str) -> str:
    """A rig test name as a KCIDB test path: dot-separated words of [A-Za-z0-9_-] (IGT's
    "vgem_basic@mmap" -> "igt.vgem_basic.mmap", "script:dri-clients" -> "script.dri-clients")."""
    kind, sep, rest = test_name.partition(":")
    parts = [kind, *re.split(r"[@.]", rest)] if sep else ["igt", *test_name.split("@")]
    return ".".join(re.sub(r"[^A-Za-z0-9_-]", "_", p) or "_" for p in parts)


def _id(*parts: str) -> str:
    return f"{KCIDB_ORIGIN}:" + hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]


def kcidb(records: Sequence[CellRecord]) -> dict[str, Any]:
    """Checkouts (kernel + series), builds (+ arch, profile), tests (per cell: the run as
    "rig", each test under its path), issues (one per finding signature) and incidents."""
    checkouts: dict[str, dict[str, Any]] = {}
    builds: dict[str, dict[str, Any]] = {}
    tests: list[dict[str, Any]] = []
    issues: dict[str, dict[str, Any]] = {}
    incidents: list[dict[str, Any]] = []
    for record in records:
        axes, result = record.result.axes, record.result
        checkout_id = _id("checkout", axes["kernel"], axes["series"])
        checkout = checkouts.setdefault(checkout_id, {
            "id": checkout_id, "origin": KCIDB_ORIGIN, "tree_name": _short("kernel", axes["kernel"]),
            "comment": f"{axes['kernel']}" + (f" + {axes['series']}" if axes["series"] else ""),
            "valid": True, "misc": {"kernel": axes["kernel"], "series": axes["series"]}})
        if result.status == Status.NOT_APPLICABLE:
            checkout["valid"] = False
            checkout["log_excerpt"] = result.summary[:16000]
            continue
        build_id = _id("build", axes["kernel"], axes["series"], axes["arch"], axes["profile"])
        release = (record.report or {}).get("kernel", {}).get("release") if record.report else None
        build_failed = result.summary.startswith("the build failed")
        builds.setdefault(build_id, {
            "id": build_id, "origin": KCIDB_ORIGIN, "checkout_id": checkout_id, "architecture": axes["arch"],
            "config_name": axes["profile"], "status": "FAIL" if build_failed else "PASS",
            "misc": {"kernel_release": release} if release else {}})
        if build_failed:
            continue
        environment = {"comment": f"gpu {axes['gpu']}, pressure {axes['pressure']}, plan {axes['plan']}",
                       "misc": {"gpu": axes["gpu"], "pressure": axes["pressure"], "plan": axes["plan"],
                                "cell": result.id}}
        run_status = {Status.PASS: "PASS", Status.FAIL: "FAIL"}.get(result.status, "ERROR")
        run_id = _id("test", result.id, "rig")
        run_test = {"id": run_id, "origin": KCIDB_ORIGIN, "build_id": build_id, "path": "rig",
                    "status": run_status, "environment": environment,
                    "comment": (result.summary.splitlines()[0] if result.summary else result.status.value)[:1000]}
        if result.duration_s:
            run_test["duration"] = round(result.duration_s, 1)
        tests.append(run_test)
        for test in record.tests:
            name = str(test.get("name", ""))
            entry = {"id": _id("test", result.id, name), "origin": KCIDB_ORIGIN, "build_id": build_id,
                     "path": f"rig.{kcidb_path(name)}", "status": _TEST_STATUS.get(ended(test), "ERROR"),
                     "environment": environment, "misc": {"name": name}}
            if test.get("duration_s") is not None:
                entry["duration"] = float(test["duration_s"])
            tests.append(entry)
        for finding in record.findings:
            signature = str(finding.get("signature") or finding.get("title"))
            issue_id = _id("issue", signature)
            issues.setdefault(issue_id, {"id": issue_id, "version": 1, "origin": KCIDB_ORIGIN,
                                         "comment": str(finding.get("title", "")),
                                         "misc": {"kind": finding.get("kind"), "signature": signature}})
            incidents.append({"id": _id("incident", result.id, signature), "origin": KCIDB_ORIGIN,
                              "issue_id": issue_id, "issue_version": 1, "test_id": run_id, "present": True,
                              "comment": f"{finding.get('status')} in {result.id}"})
    return {"version": dict(KCIDB_VERSION), "checkouts": list(checkouts.values()), "builds": list(builds.values()),
            "tests": tests, "issues": list(issues.values()), "incidents": incidents}


# ------------------------------------------------------------------ all of them


def write_all(records: Sequence[CellRecord], out: Path) -> dict[str, Any]:
    out.mkdir(parents=True, exist_ok=True)
    data = matrix_json(records, out)
    files = {"matrix.json": json.dumps(data, indent=2) + "\n", "matrix.html": render_html(records, out),
             "matrix.md": markdown(records), "junit.xml": junit(records),
             "kcidb.json": json.dumps(kcidb(records), indent=2) + "\n"}
    for name, text in files.items():
        tmp = out / (name + ".tmp")
        tmp.write_text(text)
        os.replace(tmp, out / name)
    return data
