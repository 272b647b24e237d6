"""rig splat against real kernel reports with the titles syzbot gives them.

The corpus lives in the shared folder beside the repository (see tests/conftest.py);
part of it is held back elsewhere to check that these rules generalise, so the figures
here must come from general rules, never from special cases for files.

The corpus is split, by file number, into a tuning part and a held-out part (see
HELD_OUT_EVERY). The rules are tuned on the tuning part only; the held-out part checks
that they hold on reports nobody looked at while writing them. The split is fixed: moving
a file between parts would make the held-out figure meaningless.

Run directly for a per-file listing of the tuning part's misses (the held-out part is
scored, never listed):  python tests/unit/test_splat_corpus.py
"""

from __future__ import annotations

import re
import sys
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from rig.splat import parse_log

DETECTION_MIN = 0.99  # report vs no report, over every file
TITLE_MIN = 0.97  # first finding's title == expected title, over files not marked corrupted
EXTRACTION_MIN = 0.93  # share of the expected REPORT: lines found, in order, in the cut-out report
# The held-out part may trail the tuning part by at most this much (detection and title):
# a wider gap means the rules fit the tuning files rather than the kinds of report.
HELD_OUT_GAP = 0.02

# Files whose number is a multiple of HELD_OUT_EVERY are held out from tuning (a quarter
# of the corpus); every other file is the tuning part. Fixed once, before any rule was
# tuned against the split: never change it.
HELD_OUT_EVERY = 4


def held_out(name: str) -> bool:
    """The file is in the held-out part (never used to tune the rules)."""
    return name.isdigit() and int(name) % HELD_OUT_EVERY == 0


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
    # the first finding's corrupted flag against the file's CORRUPTED (detected files only)
    flagged: int = 0
    flagged_right: int = 0
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


def _files(corpus: Path) -> list[Path]:
    return [p for p in sorted(corpus.iterdir(), key=lambda p: (len(p.name), p.name))
            if p.is_file() and not p.name.startswith(".") and not p.name.upper().startswith("README")]


def measure(corpus: Path, part: str = "all") -> Figures:
    """Scores over the files of `part`: "all", "tuning" or "held-out"."""
    assert part in ("all", "tuning", "held-out")
    figures = Figures()
    for path in _files(corpus):
        if part != "all" and held_out(path.name) != (part == "held-out"):
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
        if findings and case.title:
            figures.flagged += 1
            figures.flagged_right += findings[0].corrupted == case.corrupted
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
                 f"report lines {figures.extraction_found}/{figures.extraction_lines} = {figures.extraction:.1%}; "
                 f"corrupted flag {figures.flagged_right}/{figures.flagged}")
    return "\n".join(lines)


def test_corpus_detection_and_titles(corpus_dir: Path) -> None:
    figures = measure(corpus_dir)
    tuning = measure(corpus_dir, "tuning")
    held = measure(corpus_dir, "held-out")
    for name, part in (("tuning part", tuning), ("held-out part", held), ("whole corpus", figures)):
        print(f"\n{name}:")
        print(render(part))
    assert held.files >= 50 and tuning.files >= 150, "the corpus looks incomplete"
    # misses are listed for the tuning part only: the held-out files are not for tuning
    assert figures.detection >= DETECTION_MIN, "\n".join(tuning.misses)
    assert figures.title >= TITLE_MIN, "\n".join(tuning.misses)
    assert figures.extraction >= EXTRACTION_MIN
    # held-out misses are not listed (they are not for tuning), only the figures
    assert held.detection >= tuning.detection - HELD_OUT_GAP, "held-out detection trails the tuning part"
    assert held.title >= tuning.title - HELD_OUT_GAP, "held-out titles trail the tuning part"


_PREFIX = re.compile(rb"^\[ *\d+\.\d+\](?:\[ *[TC]\d+\])? ?", re.M)


def _cases(corpus: Path) -> list[Case]:
    return [load_case(p) for p in _files(corpus)]


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

    folder = CORPUS / "syzkaller-linux-report"
    result = measure(folder, "tuning")
    print("\n".join(result.misses))
    print("tuning part:")
    print(render(result))
    print("held-out part (scores only):")
    print(render(measure(folder, "held-out")))
