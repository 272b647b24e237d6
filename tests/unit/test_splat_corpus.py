"""rig splat against real kernel reports with the titles syzbot gives them.

The corpus lives in the shared folder beside the repository (see tests/conftest.py);
part of it is held back elsewhere to check that these rules generalise, so the figures
here must come from general rules, never from special cases for files.

Run directly for a per-file listing of misses:  python tests/unit/test_splat_corpus.py
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from rig.splat import parse_log

DETECTION_MIN = 0.98  # report vs no report, over every file
TITLE_MIN = 0.95  # first finding's title == expected title, over files not marked corrupted
EXTRACTION_MIN = 0.93  # share of the expected REPORT: lines found, in order, in the cut-out report


@dataclass(frozen=True)
class Case:
    name: str
    title: str
    alt: tuple[str, ...]
    kind: str
    corrupted: bool
    log: bytes
    report: str | None  # the expected cut-out report, when the file gives one


def load_case(path: Path) -> Case:
    data = path.read_bytes()
    head, _, body = data.partition(b"\n\n")
    fields: dict[str, list[str]] = defaultdict(list)
    for raw in head.decode("utf-8", "replace").splitlines():
        if raw.startswith("#") or ":" not in raw:
            continue
        key, _, value = raw.partition(":")
        fields[key.strip()].append(value.strip())
    report = None
    marker = body.find(b"\nREPORT:\n")
    if marker >= 0:
        report = body[marker + len(b"\nREPORT:\n"):].decode("utf-8", "replace")
        body = body[:marker]
    title = (fields.get("TITLE") or [""])[0]
    return Case(
        name=path.name,
        title=title,
        alt=tuple(fields.get("ALT", [])),
        kind=(fields.get("TYPE") or ["NONE" if not title else "UNTYPED"])[0],
        corrupted=(fields.get("CORRUPTED") or ["N"])[0] == "Y",
        log=body,
        report=report,
    )


@dataclass
class Figures:
    files: int = 0
    detected_right: int = 0
    titled: int = 0
    titled_right: int = 0
    extraction_lines: int = 0
    extraction_found: int = 0
    per_kind: dict[str, list[int]] = field(default_factory=lambda: defaultdict(lambda: [0, 0, 0, 0]))
    misses: list[str] = field(default_factory=list)

    @property
    def detection(self) -> float:
        return self.detected_right / self.files

    @property
    def title(self) -> float:
        return self.titled_right / self.titled

    @property
    def extraction(self) -> float:
        return self.extraction_found / max(self.extraction_lines, 1)


def _report_lines_found(expected: str, got: str) -> tuple[int, int]:
    """How many lines of the expected report appear, in order, in the cut-out report."""
    want = [ln.strip() for ln in expected.splitlines() if ln.strip()]
    have = [ln.strip() for ln in got.splitlines()]
    found, pos = 0, 0
    for line in want:
        try:
            pos = have.index(line, pos) + 1
            found += 1
        except ValueError:
            continue
    return len(want), found


def measure(corpus: Path) -> Figures:
    figures = Figures()
    for path in sorted(corpus.iterdir(), key=lambda p: (len(p.name), p.name)):
        if not path.is_file() or path.name.startswith(".") or path.name.upper().startswith("README"):
            continue
        case = load_case(path)
        findings = parse_log(case.log)
        figures.files += 1
        stats = figures.per_kind[case.kind]
        stats[0] += 1
        detected = bool(findings) == bool(case.title)
        figures.detected_right += detected
        stats[1] += detected
        got = findings[0].title if findings else ""
        if not detected:
            figures.misses.append(f"{case.name}: detection: expected {case.title!r}, got {got!r}")
        if case.title and not case.corrupted:
            figures.titled += 1
            stats[2] += 1
            if got == case.title:
                figures.titled_right += 1
                stats[3] += 1
            elif detected:
                figures.misses.append(f"{case.name}: title: expected {case.title!r}, got {got!r}")
        if case.report is not None and findings:
            total, found = _report_lines_found(case.report, findings[0].report)
            figures.extraction_lines += total
            figures.extraction_found += found
    return figures


def render(figures: Figures) -> str:
    lines = [f"{'kind':28} {'files':>5} {'detect':>7} {'titled':>6} {'title ok':>8}"]
    for kind, (files, det, titled, ok) in sorted(figures.per_kind.items(), key=lambda kv: -kv[1][0]):
        rate = f"{ok / titled:6.1%}" if titled else "     -"
        lines.append(f"{kind:28} {files:5} {det / files:7.1%} {titled:6} {rate:>8}")
    lines.append(f"detection {figures.detected_right}/{figures.files} = {figures.detection:.1%}; "
                 f"title {figures.titled_right}/{figures.titled} = {figures.title:.1%}; "
                 f"report lines {figures.extraction_found}/{figures.extraction_lines} = {figures.extraction:.1%}")
    return "\n".join(lines)


def test_corpus_detection_and_titles(corpus_dir: Path) -> None:
    figures = measure(corpus_dir)
    print()
    print(render(figures))
    assert figures.files >= 100, "the corpus looks incomplete"
    assert figures.detection >= DETECTION_MIN, "\n".join(figures.misses)
    assert figures.title >= TITLE_MIN, "\n".join(figures.misses)
    assert figures.extraction >= EXTRACTION_MIN


_PREFIX = re.compile(rb"^\[ *\d+\.\d+\](?:\[ *[TC]\d+\])? ?", re.M)


def _cases(corpus: Path) -> list[Case]:
    return [load_case(p) for p in sorted(corpus.iterdir())
            if p.is_file() and not p.name.startswith(".") and not p.name.upper().startswith("README")]


def test_corpus_titles_survive_crlf_and_missing_prefixes(corpus_dir: Path) -> None:
    """Line endings never change a title; printk prefixes only matter where they tell
    interleaved CPUs apart (at most 1% of the files)."""
    changed_by_prefix = 0
    with_prefix = 0
    for case in _cases(corpus_dir):
        titles = [f.title for f in parse_log(case.log)]
        assert [f.title for f in parse_log(case.log.replace(b"\n", b"\r\n"))] == titles, case.name
        if _PREFIX.search(case.log):
            with_prefix += 1
            bare = parse_log(_PREFIX.sub(b"", case.log))
            changed_by_prefix += (bare[0].title if bare else "") != (titles[0] if titles else "")
    assert changed_by_prefix <= with_prefix // 100 + 1


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
    from tests.conftest import CORPUS

    result = measure(CORPUS / "syzkaller-linux-report")
    print("\n".join(result.misses))
    print(render(result))
