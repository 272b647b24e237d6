"""report.md: ready to paste into a reply on the series (plain text that reads well
both rendered and in a mail client: report texts in indented code blocks). New findings
come grouped under the patch that introduced them (when bisected), so each group can go
in the reply to that patch."""

from __future__ import annotations

from rig.forensics import SYSRQ_PURPOSE, HangRecord
from rig.reclaim_events import summary as reclaim_summary
from rig.report.model import AttemptRecord, RunReport, also_text, flags_text, headline, seen_text
from rig.verdict import JudgedFinding


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
    elif not report.attempts and report.ended is not None:
        lines.append(f"rig did not get to boot the kernel{applied}: the run ended before its first guest.")
    else:
        lines.append(f"rig found no new kernel reports{applied}.")
    answers = report.answers()
    if answers:
        lines.append("")
        for patch, what in answers:
            who = f"{report.patch_label(patch)} introduced" if patch else "New"
            lines.append(f"- {who}: {what}")
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
    for denial in kernel.sandbox_denials:
        lines.append(f"- sandbox: the series' build {denial}")
    lines.append(f"- tests: plan '{report.plan.name}' ({report.plan.description}), "
                 f"memory pressure: {report.pressure}")
    machine = report.machine
    lines.append(f"- machine: QEMU {machine.accel or ''} {machine.arch}, {machine.cpus} vCPUs, "
                 f"{machine.memory_mib} MiB, GPU {machine.gpu}")
    if verdict.base_note:
        lines.append(f"- base kernel runs: {verdict.base_note}")
    if verdict.settle_note:
        lines.append(f"- settling runs: {verdict.settle_note}")
    lines.append(f"- verdict: {report.decision.summary}")
    lines.append("")
    number = 0
    groups = _groups(report)
    level = "###" if any(heading for heading, _ in groups) else "##"
    for heading, group in groups:
        if heading:
            lines.append(f"## {heading}")
            lines.append("")
        for judged in group:
            number += 1
            lines += _finding(number, judged, report, level)
    unexpected = [t for t in verdict.judged_tests if str(t.status) == "new"]
    if unexpected:
        lines.append("## Failing tests")
        lines.append("")
        for test in unexpected:
            bad = test.first_bad_patch
            lines.append(f"- {test.name} ({test.result.driver or 'any driver'}): {test.result.raw_status}, "
                         f"{seen_text(test.series, test.base)}"
                         + (f"; first bad patch {bad.index} '{bad.subject}'" if bad else ""))
        lines.append("")
    others = [t for t in verdict.judged_tests if str(t.status) in ("known", "fixed", "pre-existing")]
    if others:
        lines.append("## Known, fixed and pre-existing test results")
        lines.append("")
        for test in others:
            lines.append(f"- {test.name}: {test.status} ({seen_text(test.series, test.base)})"
                         + (f", {test.note}" if test.note else ""))
        lines.append("")
    warned = [t for t in verdict.judged_tests if t.warns and not t.result.failing]
    if warned:
        lines.append("## Tests that passed with a warning")
        lines.append("")
        for test in warned:
            # the note, when there is one, already gives the counts and whose warning it is
            counts = test.note or f"warned in {seen_text(test.warned, test.warned_base)}"
            warning = headline(test.result.detail)
            lines.append(f"- {test.name} ({test.result.driver or 'any driver'}): "
                         + (f"{warning} ({counts})" if warning else counts))
        lines.append("")
    lines += _hangs(report)
    totals = verdict.totals()
    if totals:
        lines.append("Test totals: " + ", ".join(f"{count} {status}" for status, count in totals.items()))
        lines.append("")
    lines += _pressure(report)
    lines += _gpu(report)
    lines.append("Reproduce with:")
    lines.append("")
    lines.append(_indent(report.command or "rig run"))
    lines.append("")
    return "\n".join(lines)


def _pressure(report: RunReport) -> list[str]:
    """What the memory pressure did: the low point, the busiest shrinkers, what the kernel
    said it freed. A finding that only shows under pressure is judged with this at hand."""
    timeline = report.timeline
    if timeline is None or not timeline.samples:
        return []
    lines = [f"Memory pressure ({report.pressure}):"]
    available = [s.mem_available_mib for s in timeline.samples if s.mem_available_mib is not None]
    if available:
        lines.append(f"- MemAvailable went from {available[0]:g} down to {min(available):g} MiB")
    if timeline.top_shrinkers:
        top = ", ".join(f"{name} {count}" for name, count in list(timeline.top_shrinkers.items())[:3])
        lines.append(f"- most objects held by a shrinker: {top}")
    lines += [f"- {line}" for line in reclaim_summary(timeline.kernel_events)]
    lines.append("")
    return lines


def _gpu(report: RunReport) -> list[str]:
    """The GPU's health in the judged run: faults injected on purpose (--gpu-fault), what
    the model did with them, and the driver's timeouts, faults and resets, each in its test."""
    gpu = report.gpu
    if gpu is None or not (gpu.injected or gpu.events):
        return []
    lines = ["GPU events:"] + [f"- {line}" for line in gpu.summary()]
    lines.append("")
    lines.append("| time (s) | test | event | kernel message |")
    lines.append("|---:|---|---|---|")
    for event in gpu.events:
        when = f"{event.time:.3f}" if event.time is not None else "?"
        message = event.message.replace("|", "\\|")
        lines.append(f"| {when} | {event.test or 'none'} | {event.kind} | {message} |")
    lines.append("")
    return lines


def _groups(report: RunReport) -> list[tuple[str, list[JudgedFinding]]]:
    """New findings under the patch that introduced them, then the other new ones, then the rest."""
    verdict = report.verdict
    by_patch: dict[int, list[JudgedFinding]] = {}
    for judged in verdict.new_findings:
        if judged.first_bad_patch is not None:
            by_patch.setdefault(judged.first_bad_patch.index, []).append(judged)
    groups: list[tuple[str, list[JudgedFinding]]] = []
    total = len(report.series.patches) if report.series else 0
    for index in sorted(by_patch):
        subject = by_patch[index][0].first_bad_patch.subject  # type: ignore[union-attr]
        groups.append((f"[PATCH {index}/{total}] {subject}", by_patch[index]))
    rest_new = [f for f in verdict.new_findings if f.first_bad_patch is None]
    others = [f for f in verdict.findings if f.status != "new"]
    if rest_new:
        groups.append(("New findings" if groups else "", rest_new))
    if others:
        groups.append(("Other kernel reports" if groups else "", others))
    return groups


def _finding(number: int, judged: JudgedFinding, report: RunReport, level: str) -> list[str]:
    finding, status = judged.finding, str(judged.status)
    lines = [f"{level} {number}. {finding.title}" + ("" if status == "new" else f" ({status})"), ""]
    where = judged.test or ("boot" if judged.attribution == "boot" else "unknown")
    lines.append(f"Triggered by: {where}" + (f" (by {judged.attribution})" if judged.test else ""))
    if judged.also:
        lines.append(f"Also triggered by: {also_text(judged.also)}")
    seen = seen_text(judged.series, judged.base)
    if seen and (len(report.verdict.runs) > 1 or report.verdict.runs.get("series", 1) > 1):
        flags = flags_text(judged)
        lines.append(f"Seen in: {seen}" + (f" ({flags})" if flags else ""))
    if judged.first_bad_patch is not None:
        bad = judged.first_bad_patch
        lines.append(f"First bad patch: {bad.index} '{bad.subject}'"
                     + (f" (confidence {bad.confidence:.0%})" if bad.confidence < 1 else ""))
    if finding.lock_chain:
        lines.append(f"Lock chain: {' -> '.join(finding.lock_chain)}")
    for group in finding.leak_groups:
        lines.append(f"Leaked: {_plural(group.count, 'object', 'objects')}, {group.total_bytes} bytes, "
                     f"from {' <- '.join(group.frames[:4])}")
    if judged.count > 1:
        lines.append(f"Seen {judged.count} times.")
    if judged.note:
        lines.append(f"Note: {judged.note}")
    if judged.link:
        lines.append(f"Link: {judged.link}")
    lines.append("")
    lines.append(_indent(finding.report))
    lines.append("")
    return lines


# The stack words shown per vCPU (the report.json has them all).
MAX_VCPU_WORDS = 24


def _size(n: int) -> str:
    for unit in ("bytes", "KiB", "MiB"):
        if n < 1024 or unit == "MiB":
            return f"{n} {unit}" if unit == "bytes" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def _hangs(report: RunReport) -> list[str]:
    """"When the guest hung": for each attempt of the tested kernel that hung, what rig
    asked its kernel, what came back, and each blocked task and CPU with its stack."""
    hung = [a for a in report.attempts if a.hang is not None and a.side == "series"]
    if not hung:
        return []
    lines = ["## When the guest hung", ""]
    for attempt in hung:
        assert attempt.hang is not None
        lines += _hang(attempt, attempt.hang)
    return lines


def _hang(attempt: AttemptRecord, hang: HangRecord) -> list[str]:
    where = f"Attempt {attempt.number}" + (f" ({attempt.scope})" if attempt.scope else "")
    lines = [f"{where}: {hang.reason}; rig asked the guest's kernel before stopping it"
             + (f" ({hang.seconds:.0f} s)." if hang.seconds else "."), ""]
    for ask in hang.asks:
        how = {"keyboard": "the keyboard", "ssh": "/proc/sysrq-trigger over SSH"}.get(ask.route, ask.route)
        answer = "answered" if ask.answered else "no answer" + (f" ({ask.error})" if ask.error else "")
        lines.append(f"- sysrq {ask.key} ({SYSRQ_PURPOSE.get(ask.key, '')}) through {how}: {answer}")
    if hang.skipped:
        lines.append(f"- not sent: sysrq {', '.join(hang.skipped)} (the kernel took no keyboard interrupt)")
    if hang.nmi is not None:
        answer = ("the kernel answered on the console" if hang.nmi_answered else "no answer on the console")
        lines.append(f"- NMI (QMP inject-nmi): {hang.nmi}, {answer}" if hang.nmi == "sent" else f"- NMI: {hang.nmi}")
    if hang.dump is not None:
        lines.append(f"- memory dump: {hang.dump} ({_size(hang.dump_bytes or 0)}); open it with "
                     f"`crash vmlinux {hang.dump}`")
    elif hang.dump_error is not None:
        lines.append(f"- memory dump failed: {hang.dump_error}")
    lines.append("")
    # sysrq w shows the tasks in uninterruptible sleep; sysrq t every task, of which only
    # those are the hang's.
    stuck = [t for t in hang.blocked if t.state == "D"]
    if stuck:
        lines.append(f"Blocked tasks ({len(stuck)}):")
        lines.append("")
        for task in stuck:
            pid = f" (pid {task.pid})" if task.pid is not None else ""
            waits = task.waits_in
            lines.append(f"- {task.comm}{pid}, state {task.state}" + (f", in {waits}" if waits else ""))
            lines.append("")
            lines.append(_indent(task.text))
            lines.append("")
    if hang.cpus:
        lines.append(f"CPU backtraces ({len(hang.cpus)}):")
        lines.append("")
        for cpu in hang.cpus:
            if cpu.idle:
                lines.append(f"- CPU {cpu.cpu}: idle" + (f" (in {cpu.frames[0]})" if cpu.frames else ""))
                lines.append("")
                continue
            lines.append(f"- CPU {cpu.cpu}" + (f", in {cpu.running}" if cpu.running else ""))
            lines.append("")
            lines.append(_indent(cpu.text))
            lines.append("")
    if hang.vcpus:
        lines.append("Every vCPU as QEMU saw it before the NMI (program counter, then the kernel functions its "
                     "stack points to, innermost first; not all of them are calls):")
        lines.append("")
        for vcpu in hang.vcpus:
            lines.append(f"- vCPU {vcpu.cpu} at {vcpu.pc}")
            if vcpu.stack:
                lines.append("")
                lines.append(_indent("\n".join(vcpu.stack[:MAX_VCPU_WORDS])))
            lines.append("")
    elif hang.vcpus_error:
        lines.append(f"QEMU could not show the vCPUs: {hang.vcpus_error}")
        lines.append("")
    if not stuck and not hang.cpus and not hang.vcpus:
        lines.append("The guest's kernel showed no blocked task and no CPU backtrace.")
        lines.append("")
    return lines
