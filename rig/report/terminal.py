"""The terminal summary: the answer first (what each patch introduced, with its counts per
side), then the findings, the failing tests, the totals, and how the run ended."""

from __future__ import annotations

from rich.console import Console
from rich.table import Table
from rich.text import Text

from rig.report.model import Outcome, RunReport, also_text, flags_text, headline, seen_text
from rig.results import TestStatus

_STYLE = {"new": "bold red", "pre-existing": "yellow", "host-fault": "magenta", "known": "cyan", "fixed": "green"}


def _answer(report: RunReport, console: Console) -> None:
    answers = report.answers()
    for patch, what in answers:
        line = Text()
        if patch is not None:
            line.append(f"{report.patch_label(patch)} introduced: ", style="bold")
        else:
            line.append("the series introduced: " if report.series else "new: ", style="bold")
        line.append(what, style="red")
        console.print(line)
    if answers:
        console.print("")


def first_line(text: str) -> str:
    """A test's reason on one table row: its headline, with how many more lines there are."""
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return ""
    return headline(text) + (f" (+{len(lines) - 1} more lines)" if len(lines) > 1 else "")


def render(report: RunReport, console: Console) -> None:
    verdict = report.verdict
    _answer(report, console)
    if verdict.base_note:
        console.print(f"base kernel: {verdict.base_note}", highlight=False)
    if verdict.settle_note:
        console.print(f"settling: {verdict.settle_note}", highlight=False)
    if verdict.findings:
        console.print(Text(f"Kernel reports ({len(verdict.findings)})", style="bold"))
        for judged in verdict.findings:
            finding, status = judged.finding, str(judged.status)
            line = Text("  ")
            line.append(f"[{status}] ", style=_STYLE.get(status, ""))
            line.append(finding.title, style="bold")
            console.print(line)
            where = judged.test or judged.attribution
            console.print(f"      during: {where}" + (f"   (x{judged.count})" if judged.count > 1 else ""),
                          highlight=False)
            seen = seen_text(judged.series, judged.base)
            if seen and (len(verdict.runs) > 1 or verdict.runs.get("series", 1) > 1):
                flags = flags_text(judged)
                console.print(f"      seen:   {seen}" + (f"   {flags}" if flags else ""),
                              highlight=False)
            if judged.first_bad_patch is not None:
                bad = judged.first_bad_patch
                console.print(f"      first bad patch: {bad.index} '{bad.subject}'"
                              + (f" (confidence {bad.confidence:.0%})" if bad.confidence < 1 else ""),
                              highlight=False)
            if judged.also:
                console.print(f"      also:   {also_text(judged.also)}", highlight=False)
            if finding.lock_chain:
                console.print(f"      locks:  {' -> '.join(finding.lock_chain)}", highlight=False)
            for group in finding.leak_groups[:3]:
                console.print(f"      leaked: {group.count} x, {group.total_bytes} bytes from "
                              f"{' <- '.join(group.frames[:3])}", highlight=False)
            if judged.note:
                console.print(f"      note:   {judged.note}", highlight=False)
    else:
        console.print(Text("No kernel reports.", style="green"))
    failing = [t for t in verdict.judged_tests if str(t.status) != "ok"]
    if failing:
        table = Table(title="Failing tests", show_edge=False, title_justify="left")
        for column in ("test", "driver", "result", "status", "failed in", ""):
            table.add_column(column)
        for test in failing:
            status = str(test.status)
            note = {"expected": f"expected: {test.note}", "new": "UNEXPECTED"}.get(status, test.note)
            table.add_row(test.name, test.result.driver or "-", test.result.raw_status, status,
                          seen_text(test.series, test.base), note, style="red" if status == "new" else "dim")
        console.print(table)
    warned = [t for t in verdict.judged_tests if t.warns and not t.result.failing]
    if warned:
        table = Table(title="Tests that passed with a warning", show_edge=False, title_justify="left")
        for column in ("test", "driver", "warned in", "warning"):
            table.add_column(column)
        for test in warned:
            table.add_row(test.name, test.result.driver or "-", seen_text(test.warned, test.warned_base),
                          first_line(test.result.detail) or test.result.raw_status, style="yellow")
        console.print(table)
        both = sum(1 for t in warned if t.warned and t.warned.k and t.warned_base and t.warned_base.k)
        if both:
            console.print(f"{both} of them warned on the base kernel too: not the series' doing", highlight=False)
    absent = [t for t in verdict.tests if t.status is TestStatus.ABSENT]
    if absent:
        # which case it is matters: a suite to build with --profile kunit, or one this version lacks
        console.print("Absent: " + ", ".join(f"{t.name} ({t.raw_status})" for t in absent), highlight=False)
    totals = verdict.totals()
    console.print("Tests: " + (", ".join(f"{n} {s}" for s, n in totals.items()) or "none ran"), highlight=False)
    gpu = report.gpu
    if gpu is not None and (gpu.injected or gpu.events):
        console.print("GPU: " + "; ".join(gpu.summary()), highlight=False)
    for problem in verdict.problems:
        console.print(f"[yellow]note:[/yellow] {problem}", highlight=False)
    for attempt in report.attempts:
        hang = attempt.hang
        if hang is None or attempt.side != "series":
            continue
        stuck = sum(1 for task in hang.blocked if task.state == "D")
        got = [f"{stuck} blocked task(s)", f"{len(hang.cpus)} CPU backtrace(s)"]
        if hang.vcpus:
            got.append(f"{len(hang.vcpus)} vCPU(s) seen by QEMU")
        if hang.dump:
            got.append(f"memory dump {hang.dump}")
        console.print(f"the guest hung (attempt {attempt.number}: {hang.reason}); its kernel was asked: "
                      + ", ".join(got) + " (report.md: When the guest hung)", highlight=False)
    error = report.error
    if error is not None:
        # The headline only: the report's text is above (a finding) or in the log named here.
        console.print(Text(f"The run ended early during {error.phase.value}: {error.headline}", style="bold red"))
        if error.log:
            console.print(f"  log: {error.log}", highlight=False)
        if error.hint:
            console.print(f"  what to do: {error.hint}", highlight=False)
    decision = report.decision
    console.print(Text(decision.summary, style="bold green" if decision.outcome is Outcome.PASS else "bold red"))
