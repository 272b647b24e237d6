"""report.md: ready to paste into a reply on the series (plain text that reads well
both rendered and in a mail client: report texts in indented code blocks)."""

from __future__ import annotations

from rig.report.model import RunReport


def _indent(text: str) -> str:
    return "\n".join(("    " + line) if line else "" for line in text.rstrip().splitlines())


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def render(report: RunReport) -> str:
    verdict, kernel, series = report.verdict, report.kernel, report.series
    lines: list[str] = []
    applied = " with this series applied" if series else ""
    new = verdict.new_findings
    if new:
        lines.append(f"rig found {_plural(len(new), 'new kernel report', 'new kernel reports')}{applied}.")
    else:
        lines.append(f"rig found no new kernel reports{applied}.")
    error = report.error
    if error is not None:
        lines.append("")
        lines.append(f"The run ended early during {error.phase.value}: {error.headline}")
    lines.append("")
    lines.append(f"- kernel: {kernel.spec} ({kernel.release or 'release unknown'}), {kernel.arch}")
    lines.append(f"- base: {kernel.base}")
    if series:
        lines.append(f"- series: {series.spec} ({_plural(len(series.patches), 'patch', 'patches')})")
        for patch in series.patches:
            lines.append(f"  - [{patch.number}] {patch.subject} ({patch.author})")
    else:
        lines.append("- series: none")
    lines.append(f"- config profile: {kernel.profile}")
    lines.append(f"- tests: plan '{report.plan.name}' ({report.plan.description}), "
                 f"memory pressure: {report.pressure}")
    machine = report.machine
    lines.append(f"- machine: QEMU {machine.accel or ''} {machine.arch}, {machine.cpus} vCPUs, "
                 f"{machine.memory_mib} MiB, GPU {machine.gpu}")
    lines.append(f"- verdict: {report.decision.summary}")
    lines.append("")
    for number, judged in enumerate(verdict.findings, 1):
        finding, status = judged.finding, str(judged.status)
        lines.append(f"## {number}. {finding.title}" + ("" if status == "new" else f" ({status})"))
        lines.append("")
        where = judged.test or ("boot" if judged.attribution == "boot" else "unknown")
        lines.append(f"Triggered by: {where}" + (f" (by {judged.attribution})" if judged.test else ""))
        if judged.also:
            lines.append(f"Also triggered by: {', '.join(judged.also)}")
        if finding.lock_chain:
            lines.append(f"Lock chain: {' -> '.join(finding.lock_chain)}")
        for group in finding.leak_groups:
            lines.append(f"Leaked: {_plural(group.count, 'object', 'objects')}, {group.total_bytes} bytes, "
                         f"from {' <- '.join(group.frames[:4])}")
        if judged.count > 1:
            lines.append(f"Seen {judged.count} times.")
        if judged.note:
            lines.append(f"Note: {judged.note}")
        lines.append("")
        lines.append(_indent(finding.report))
        lines.append("")
    unexpected = [t for t in verdict.tests if t.name in verdict.unexpected_failures]
    if unexpected:
        lines.append("## Failing tests")
        lines.append("")
        for test in unexpected:
            lines.append(f"- {test.name} ({test.driver or 'any driver'}): {test.raw_status}")
        lines.append("")
    totals = verdict.totals()
    if totals:
        lines.append("Test totals: " + ", ".join(f"{count} {status}" for status, count in totals.items()))
        lines.append("")
    lines.append("Reproduce with:")
    lines.append("")
    lines.append(_indent(report.command or "rig run"))
    lines.append("")
    return "\n".join(lines)
