"""report.md: ready to paste into a reply on the series (plain text that reads well
both rendered and in a mail client: report texts in indented code blocks)."""

from __future__ import annotations

from typing import Any

_FAILING = {"fail", "timeout", "crash"}


def _indent(text: str) -> str:
    return "\n".join(("    " + line) if line else "" for line in text.rstrip().splitlines())


def _kernel_line(data: dict[str, Any]) -> str:
    kernel = data.get("kernel", {})
    return f"{kernel.get('spec', '?')} ({kernel.get('release') or 'release unknown'})"


def render(data: dict[str, Any]) -> str:
    kernel = data.get("kernel", {})
    series = data.get("series") or {}
    verdict = data.get("verdict", {})
    findings = data.get("findings", [])
    lines: list[str] = []
    new = [f for f in findings if f.get("status") == "new"]
    applied = " with this series applied" if series else ""
    if new:
        lines.append(f"rig found {len(new)} new kernel report{'s' if len(new) != 1 else ''}{applied}.")
    else:
        lines.append(f"rig found no new kernel reports{applied}.")
    lines.append("")
    lines.append(f"- kernel: {_kernel_line(data)}")
    lines.append(f"- base: {kernel.get('base') or kernel.get('spec', '?')}")
    if series:
        count = len(series.get("patches", []))
        lines.append(f"- series: {series.get('spec')} ({count} patch{'es' if count != 1 else ''})")
        for patch in series.get("patches", []):
            lines.append(f"  - [{patch.get('number')}] {patch.get('subject')} ({patch.get('author')})")
    else:
        lines.append("- series: none")
    lines.append(f"- config profile: {kernel.get('profile', 'default')}")
    plan = data.get("plan", {})
    lines.append(f"- tests: plan '{plan.get('name')}' ({plan.get('description', '')}), "
                 f"memory pressure: {data.get('pressure', 'none')}")
    machine = data.get("machine", {})
    if machine:
        lines.append(f"- machine: QEMU {machine.get('accel', '')}, {machine.get('cpus')} vCPUs, "
                     f"{machine.get('memory_mib')} MiB, GPU {machine.get('gpu')}")
    lines.append(f"- verdict: {verdict.get('summary', '')}")
    lines.append("")
    for number, finding in enumerate(findings, 1):
        status = finding.get("status", "new")
        lines.append(f"## {number}. {finding['title']}" + ("" if status == "new" else f" ({status})"))
        lines.append("")
        where = finding.get("test") or ("boot" if finding.get("attribution") == "boot" else "unknown")
        lines.append(f"Triggered by: {where}" + (f" (by {finding['attribution']})" if finding.get("test") else ""))
        if finding.get("also"):
            lines.append(f"Also triggered by: {', '.join(finding['also'])}")
        if finding.get("lock_chain"):
            lines.append(f"Lock chain: {' -> '.join(finding['lock_chain'])}")
        for group in finding.get("leak_groups", []):
            lines.append(f"Leaked: {group['count']} object{'s' if group['count'] != 1 else ''}, "
                         f"{group['total_bytes']} bytes, from {' <- '.join(group['frames'][:4])}")
        if finding.get("count", 1) > 1:
            lines.append(f"Seen {finding['count']} times.")
        if finding.get("note"):
            lines.append(f"Note: {finding['note']}")
        lines.append("")
        lines.append(_indent(finding.get("report", "")))
        lines.append("")
    failing = [t for t in data.get("tests", []) if t["status"] in _FAILING]
    expected = {e["test"] for e in verdict.get("expected_failures", [])}
    unexpected = [t for t in failing if t["name"] not in expected]
    if unexpected:
        lines.append("## Failing tests")
        lines.append("")
        for test in unexpected:
            lines.append(f"- {test['name']} ({test.get('driver') or 'any driver'}): {test['raw_status']}")
        lines.append("")
    totals = verdict.get("totals") or data.get("totals", {})
    if totals:
        lines.append("Test totals: " + ", ".join(f"{count} {status}" for status, count in totals.items()))
        lines.append("")
    lines.append("Reproduce with:")
    lines.append("")
    lines.append(_indent(data.get("command", "rig run")))
    lines.append("")
    return "\n".join(lines)
