"""report.html: one self-contained page (no network, no scripts): the findings with
collapsible reports, the test table, the memory timeline drawn as inline SVG, and the
guest's display embedded as a PNG."""

from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from rig.report.model import Outcome, RunReport, also_text, flags_text, seen_text
from rig.results import TestStatus
from rig.verdict import JudgedFinding

CSS = """
body{font-family:system-ui,-apple-system,sans-serif;margin:2em auto;max-width:1100px;color:#1d1d1f;padding:0 1em}
h1{font-size:1.5em;margin-bottom:.2em} h2{font-size:1.2em;margin-top:1.6em;border-bottom:1px solid #ddd}
.verdict{font-weight:600;padding:.5em .8em;border-radius:6px;display:inline-block}
.fail{background:#fde8e8;color:#9b1c1c} .error{color:#9b1c1c;font-weight:600} .pass{background:#e6f6ea;color:#1e6b34}
table{border-collapse:collapse;width:100%;font-size:.9em} td,th{padding:.25em .6em;border-bottom:1px solid #eee;text-align:left}
tr.bad td{color:#9b1c1c;font-weight:600} tr.expected td{color:#8a6d00}
details{border:1px solid #ddd;border-radius:6px;margin:.6em 0;padding:.4em .8em}
details.new{border-left:5px solid #c81e1e} details.pre-existing{border-left:5px solid #e3a008}
details.host-fault{border-left:5px solid #9061f9} details.known{border-left:5px solid #0e9f6e}
details.fixed{border-left:5px solid #31c48d} .answer{font-weight:600;color:#9b1c1c;margin:.3em 0}
summary{cursor:pointer;font-weight:600} .meta{color:#555;font-size:.9em;margin:.3em 0}
pre{background:#f6f8fa;padding:.8em;overflow-x:auto;font-size:.8em;line-height:1.35}
dl{display:grid;grid-template-columns:max-content auto;gap:.2em 1em} dt{color:#555}
img.screen{max-width:100%;border:1px solid #ccc}
.legend span{margin-right:1.2em;font-size:.85em}
"""

PLOT_W, PLOT_H = 960, 260
_MARGIN = {"left": 60, "right": 60, "top": 16, "bottom": 34}
_SERIES = (("mem_available_mib", "MemAvailable (MiB)", "#1a56db"), ("balloon_mib", "balloon size (MiB)", "#e3a008"),
           ("mem_free_mib", "MemFree (MiB)", "#31c48d"))
_SHRINK_COLOR = "#9061f9"
_KERNEL_EVENT_COLOR = "#d62728"


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _ticks(low: float, high: float, count: int = 5) -> list[float]:
    if high <= low:
        return [low]
    step = (high - low) / count
    magnitude = 10 ** len(str(int(step))) / 10 if step >= 1 else 1
    step = max(magnitude, round(step / magnitude) * magnitude)
    first = int(low // step) * step
    ticks = []
    value = first
    while value <= high + 1e-9:
        if value >= low - 1e-9:
            ticks.append(value)
        value += step
    return ticks


def timeline_svg(timeline: dict[str, Any]) -> str:
    """The memory timeline as an SVG line plot: MiB on the left axis, shrinker objects on
    the right, seconds since the workloads started along the bottom."""
    samples = timeline.get("samples", [])
    if not samples:
        return "<p>No timeline was recorded.</p>"
    left, right, top, bottom = _MARGIN["left"], _MARGIN["right"], _MARGIN["top"], _MARGIN["bottom"]
    width, height = PLOT_W - left - right, PLOT_H - top - bottom
    times = [s["t"] for s in samples]
    t0, t1 = min(times), max(times)
    t1 = t1 if t1 > t0 else t0 + 1
    mib = [s[k] for s in samples for k, _, _ in _SERIES if s.get(k) is not None]
    y_max = max(mib) * 1.05 if mib else 1
    shrink = [s["shrinker_objects"] for s in samples if s.get("shrinker_objects") is not None]
    s_max = max(shrink) * 1.05 if shrink and max(shrink) > 0 else 1

    def x(t: float) -> float:
        return left + (t - t0) / (t1 - t0) * width

    def y(v: float, top_value: float) -> float:
        return top + height - v / top_value * height

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {PLOT_W} {PLOT_H}" width="100%" '
             f'role="img" aria-label="memory timeline">',
             f'<rect x="{left}" y="{top}" width="{width}" height="{height}" fill="#fbfbfd" stroke="#ccc"/>']
    for tick in _ticks(0, y_max):
        parts.append(f'<line x1="{left}" x2="{left + width}" y1="{y(tick, y_max):.1f}" y2="{y(tick, y_max):.1f}" '
                     'stroke="#eee"/>')
        parts.append(f'<text x="{left - 6}" y="{y(tick, y_max) + 4:.1f}" font-size="11" text-anchor="end">'
                     f'{tick:g}</text>')
    for tick in _ticks(t0, t1, 8):
        parts.append(f'<text x="{x(tick):.1f}" y="{top + height + 16}" font-size="11" text-anchor="middle">'
                     f'{tick:g}</text>')
    parts.append(f'<text x="{left + width / 2}" y="{PLOT_H - 4}" font-size="11" text-anchor="middle">'
                 'seconds since the workloads started</text>')
    parts.append(f'<text x="14" y="{top + height / 2}" font-size="11" text-anchor="middle" '
                 f'transform="rotate(-90 14 {top + height / 2})">MiB</text>')
    for t, what in timeline.get("events", []):
        if t0 <= t <= t1:
            parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top}" y2="{top + height}" stroke="#bbb" '
                         f'stroke-dasharray="3,3"><title>{_e(what)} at {t:g} s</title></line>')
    for t, what in timeline.get("kernel_events", []):
        if t0 <= t <= t1:  # what the kernel freed, as a mark on the time axis
            parts.append(f'<line x1="{x(t):.1f}" x2="{x(t):.1f}" y1="{top + height - 10}" y2="{top + height}" '
                         f'stroke="{_KERNEL_EVENT_COLOR}" stroke-width="2"><title>{_e(what)} at {t:g} s</title></line>')
    for key, label, color in _SERIES:
        points = [(x(s["t"]), y(s[key], y_max)) for s in samples if s.get(key) is not None]
        if points:
            path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
            parts.append(f'<polyline fill="none" stroke="{color}" stroke-width="2" points="{path}">'
                         f'<title>{_e(label)}</title></polyline>')
    if shrink:
        points = [(x(s["t"]), y(s["shrinker_objects"], s_max)) for s in samples
                  if s.get("shrinker_objects") is not None]
        path = " ".join(f"{px:.1f},{py:.1f}" for px, py in points)
        parts.append(f'<polyline fill="none" stroke="{_SHRINK_COLOR}" stroke-width="1.5" stroke-dasharray="5,3" '
                     f'points="{path}"><title>shrinker objects</title></polyline>')
        for tick in _ticks(0, s_max, 4):
            parts.append(f'<text x="{left + width + 6}" y="{y(tick, s_max) + 4:.1f}" font-size="11" '
                         f'fill="{_SHRINK_COLOR}">{tick:g}</text>')
    parts.append("</svg>")
    legend = "".join(f'<span style="color:{c}">&#9644; {_e(label)}</span>' for _, label, c in _SERIES)
    legend += f'<span style="color:{_SHRINK_COLOR}">&#9476; shrinker objects (right axis)</span>'
    if timeline.get("kernel_events"):
        legend += f'<span style="color:{_KERNEL_EVENT_COLOR}">| kernel reclaim messages (purges, OOM kills)</span>'
    return "".join(parts) + f'<div class="legend">{legend}</div>'


def _screendump(report: RunReport, run_dir: Path | None) -> str:
    relative = report.artifacts.screendump
    if not relative or run_dir is None:
        return "<p>No screendump was taken.</p>"
    path = run_dir / relative
    if not path.is_file():
        return f"<p>The screendump {_e(relative)} is missing.</p>"
    encoded = base64.b64encode(path.read_bytes()).decode()
    return f'<img class="screen" alt="the guest display at the end of the run" src="data:image/png;base64,{encoded}">'


def _finding(number: int, judged: JudgedFinding) -> str:
    finding, status = judged.finding, str(judged.status)
    meta = [f"status: {_e(status)}", f"kind: {_e(finding.kind)}", f"test: {_e(judged.test or judged.attribution)}"]
    if judged.also:
        meta.append(f"also: {_e(also_text(judged.also))}")
    if judged.count > 1:
        meta.append(f"seen {judged.count} times")
    if judged.series is not None or judged.base is not None:
        flags = flags_text(judged)
        meta.append(f"seen in {_e(seen_text(judged.series, judged.base))}" + (f" ({_e(flags)})" if flags else ""))
    if judged.first_bad_patch is not None:
        bad = judged.first_bad_patch
        meta.append(f"first bad patch: {bad.index} {_e(bad.subject)}"
                    + (f" ({bad.confidence:.0%} confidence)" if bad.confidence < 1 else ""))
    body = [f'<div class="meta">{" &middot; ".join(meta)}</div>']
    if finding.lock_chain:
        body.append(f'<div class="meta">lock chain: <code>{_e(" -> ".join(finding.lock_chain))}</code></div>')
    for group in finding.leak_groups:
        body.append(f'<div class="meta">leaked {group.count} object(s), {group.total_bytes} bytes, from '
                    f'<code>{_e(" <- ".join(group.frames[:4]))}</code></div>')
    if judged.note:
        body.append(f'<div class="meta">note: {_e(judged.note)}</div>')
    if judged.link:
        body.append(f'<div class="meta">link: {_e(judged.link)}</div>')
    body.append(f"<pre>{_e(finding.report)}</pre>")
    return (f'<details class="{_e(status)}" {"open" if status == "new" and number == 1 else ""}>'
            f"<summary>{number}. {_e(finding.title)}</summary>{''.join(body)}</details>")


def _gpu(report: RunReport) -> list[str]:
    """Injected GPU faults, the model's counts and the driver's GPU events with their tests."""
    gpu = report.gpu
    if gpu is None or not (gpu.injected or gpu.events):
        return []
    out = ["<h2>GPU events</h2>"] + [f"<p>{_e(line)}</p>" for line in gpu.summary()]
    out.append("<table><tr><th>time (s)</th><th>test</th><th>event</th><th>kernel message</th></tr>")
    for event in gpu.events:
        when = "" if event.time is None else f"{event.time:.3f}"
        out.append(f"<tr><td>{when}</td><td>{_e(event.test or '-')}</td><td>{_e(event.kind)}</td>"
                   f"<td><code>{_e(event.message)}</code></td></tr>")
    out.append("</table>")
    return out


def render(report: RunReport, run_dir: Path | None = None) -> str:
    verdict, kernel, series, plan = report.verdict, report.kernel, report.series, report.plan
    decision = report.decision
    css_class = "pass" if decision.outcome is Outcome.PASS else "fail"
    out = ["<!DOCTYPE html><html lang=\"en\"><head><meta charset=\"utf-8\">",
           f"<title>rig run: {_e(decision.summary)}</title><style>{CSS}</style></head><body>",
           f"<h1>rig run report</h1><div class=\"verdict {css_class}\">{_e(decision.summary)}</div>"]
    for patch, what in report.answers():
        who = f"{report.patch_label(patch)} introduced" if patch else "new"
        out.append(f'<p class="answer">{_e(who)}: {_e(what)}</p>')
    if report.error is not None:
        error = report.error
        out.append(f'<p class="error">The run ended early during {_e(error.phase.value)}: {_e(error.headline)}</p>')
        if error.hint:
            out.append(f"<p>What to do: {_e(error.hint)}</p>")
    out += ["<dl>",
            f"<dt>kernel</dt><dd>{_e(kernel.spec)} ({_e(kernel.release or '?')}), {_e(kernel.arch)}, "
            f"profile {_e(kernel.profile)}</dd>",
            f"<dt>series</dt><dd>{_e(series.spec if series else 'none')}"]
    if series and series.patches:
        out.append("<ol>" + "".join(f"<li>{_e(p.subject)} <small>({_e(p.author)})</small></li>"
                                    for p in series.patches) + "</ol>")
    out.append("</dd>")
    out.append(f"<dt>plan</dt><dd>{_e(plan.name)}: {_e(plan.description)}</dd>")
    out.append(f"<dt>pressure</dt><dd>{_e(report.pressure)}</dd>")
    runs = ", ".join(f"{n} {'with the series' if side == 'series' else 'of the base kernel'}"
                     for side, n in verdict.runs.items())
    out.append(f"<dt>runs</dt><dd>{_e(runs)}{(' (' + _e(verdict.base_note) + ')') if verdict.base_note else ''}</dd>")
    if verdict.settle_note:
        out.append(f"<dt>settling</dt><dd>{_e(verdict.settle_note)}</dd>")
    out.append(f"<dt>reproduce</dt><dd><code>{_e(report.command)}</code></dd></dl>")
    out.append(f"<h2>Findings ({len(verdict.findings)})</h2>")
    out.append("".join(_finding(i, f) for i, f in enumerate(verdict.findings, 1)) or "<p>No kernel reports.</p>")
    out.append("<h2>Memory timeline</h2>")
    out.append(timeline_svg(report.timeline.to_json() if report.timeline else {}))
    out += _gpu(report)
    out.append(f"<h2>Tests ({len(verdict.judged_tests)})</h2><table><tr><th>test</th><th>driver</th><th>result</th>"
               "<th>time (s)</th><th>status</th><th>failed in</th><th>note</th></tr>")
    for test in verdict.judged_tests:
        result, status = test.result, str(test.status)
        row_class = {"new": "bad", "expected": "expected", "known": "expected", "pre-existing": "expected"}.get(status, "")
        note = test.note or ("unexpected failure" if status == "new" else "")
        if result.status is TestStatus.WARN and result.detail:
            note = f"warning: {result.detail}"  # what IGT saw in dmesg (the reason for warn)
        if test.warns:
            note += f" (warned in {seen_text(test.warned, test.warned_base)})"
        if test.first_bad_patch is not None:
            note += f" first bad patch: {test.first_bad_patch.index} {test.first_bad_patch.subject}"
        duration = result.duration_s
        out.append(f'<tr class="{row_class}"><td>{_e(test.name)}</td><td>{_e(result.driver or "-")}</td>'
                   f'<td>{_e(result.raw_status)}</td><td>{"" if duration is None else f"{duration:.2f}"}</td>'
                   f"<td>{_e(status)}</td><td>{_e(seen_text(test.series, test.base))}</td><td>{_e(note)}</td></tr>")
    out.append("</table>")
    out.append("<h2>Display at the end of the run</h2>")
    out.append(_screendump(report, run_dir))
    out.append("</body></html>\n")
    return "".join(out)
