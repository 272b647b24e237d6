"""The terminal summary: findings first (what the developer came for), then test totals."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

_STYLE = {"new": "bold red", "pre-existing": "yellow", "host-fault": "magenta"}
_FAILING = {"fail", "timeout", "crash"}


def render(data: dict[str, Any], console: Console) -> None:
    findings = data.get("findings", [])
    verdict = data.get("verdict", {})
    if findings:
        console.print(Text(f"Kernel reports ({len(findings)})", style="bold"))
        for finding in findings:
            status = finding.get("status", "new")
            line = Text("  ")
            line.append(f"[{status}] ", style=_STYLE.get(status, ""))
            line.append(finding["title"], style="bold")
            console.print(line)
            where = finding.get("test") or finding.get("attribution", "unknown")
            console.print(f"      during: {where}" + (f"   (x{finding['count']})" if finding.get("count", 1) > 1 else ""),
                          highlight=False)
            if finding.get("also"):
                console.print(f"      also:   {', '.join(finding['also'])}", highlight=False)
            if finding.get("lock_chain"):
                console.print(f"      locks:  {' -> '.join(finding['lock_chain'])}", highlight=False)
            for group in finding.get("leak_groups", [])[:3]:
                console.print(f"      leaked: {group['count']} x, {group['total_bytes']} bytes from "
                              f"{' <- '.join(group['frames'][:3])}", highlight=False)
            if finding.get("note"):
                console.print(f"      note:   {finding['note']}", highlight=False)
    else:
        console.print(Text("No kernel reports.", style="green"))
    tests = data.get("tests", [])
    expected = {e["test"]: e["reason"] for e in verdict.get("expected_failures", [])}
    failing = [t for t in tests if t["status"] in _FAILING]
    if failing:
        table = Table(title="Failing tests", show_edge=False, title_justify="left")
        table.add_column("test")
        table.add_column("driver")
        table.add_column("result")
        table.add_column("")
        for test in failing:
            note = f"expected: {expected[test['name']]}" if test["name"] in expected else "UNEXPECTED"
            table.add_row(test["name"], test.get("driver") or "-", test["raw_status"], note,
                          style="dim" if test["name"] in expected else "red")
        console.print(table)
    totals: dict[str, int] = {}
    for test in tests:
        totals[test["status"]] = totals.get(test["status"], 0) + 1
    console.print("Tests: " + (", ".join(f"{n} {s}" for s, n in sorted(totals.items())) or "none ran"),
                  highlight=False)
    for problem in verdict.get("problems", []):
        console.print(f"[yellow]note:[/yellow] {problem}", highlight=False)
    style = "bold red" if verdict.get("exit_code") else "bold green"
    console.print(Text(verdict.get("summary", ""), style=style))
