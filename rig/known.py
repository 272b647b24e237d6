"""Known issues: what a developer already knows fails, flakes or must not run.

    load_known(paths) -> KnownIssues

Two kinds of files, given with `rig run --known FILE` (repeatable):

- drm-ci's lists, read as drm-ci keeps them (drivers/gpu/drm/ci/xfails/), the kind told
  by the file name:
    `<driver>-<gpu>-fails.txt`   one `test@subtest,Status` a line, Status one of Fail,
                                 Crash, Timeout: the test is known to end that way
    `<driver>-<gpu>-flakes.txt`  one regular expression a line: tests that may fail
    `<driver>-<gpu>-skips.txt`   one regular expression a line: tests not to run
  `#` starts a comment line; blank lines are ignored. A regular expression matches a
  test when it matches anywhere in its name (as drm-ci's runner applies them), names
  being rig's: `kms_addfb_basic@too-high`, `kunit:drm_mm.drm_test_mm_init`.
- rig's own TOML of known kernel reports:
    [[finding]]
    title = "WARNING in vkms_vblank_simulate"   # exact title, or
    signature = "3f0c..."                        # the finding's signature
    reason = "vblank timer overruns under emulation"
    link = "https://lore.kernel.org/..."         # optional

A failing test a fails or flakes entry covers is `known`, not new; a fails entry whose
test now passes is reported so the list can drop it; a known kernel report is `known`.
"""

from __future__ import annotations

import re
import tomllib
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from rig.errors import UserError
from rig.results import TestResult, TestStatus
from rig.splat.model import Finding

# drm-ci's words for how a listed test ends, and the results of rig's that are that.
FAIL_STATUSES: dict[str, frozenset[TestStatus]] = {
    "Fail": frozenset({TestStatus.FAIL}),
    "Crash": frozenset({TestStatus.CRASH}),
    "Timeout": frozenset({TestStatus.TIMEOUT}),
}


@dataclass(frozen=True)
class KnownFailure:
    """One line of a fails list: this test is known to end this way."""

    test: str
    status: str  # Fail, Crash or Timeout
    source: str  # file:line

    @property
    def reason(self) -> str:
        return f"listed in {self.source} as {self.status}"


@dataclass(frozen=True)
class Pattern:
    """One line of a flakes or skips list."""

    regex: re.Pattern[str]
    source: str  # file:line

    def matches(self, name: str) -> bool:
        return self.regex.search(name) is not None


@dataclass(frozen=True)
class KnownFinding:
    title: str | None
    signature: str | None
    reason: str
    link: str | None
    source: str

    def matches(self, finding: Finding) -> bool:
        if self.signature and finding.signature == self.signature:
            return True
        return bool(self.title) and (finding.title == self.title or self.title in finding.alt_titles)


@dataclass(frozen=True)
class KnownMatch:
    """Why a finding or a test is known: the entry, said in one line."""

    reason: str
    link: str | None = None


@dataclass(frozen=True)
class KnownIssues:
    fails: tuple[KnownFailure, ...] = ()
    flakes: tuple[Pattern, ...] = ()
    skips: tuple[Pattern, ...] = ()
    findings: tuple[KnownFinding, ...] = ()
    files: tuple[str, ...] = ()

    def __bool__(self) -> bool:
        return bool(self.fails or self.flakes or self.skips or self.findings)

    def skipped(self, name: str) -> Pattern | None:
        return next((p for p in self.skips if p.matches(name)), None)

    def failure(self, name: str) -> KnownFailure | None:
        return next((f for f in self.fails if f.test == name), None)

    def flake(self, name: str) -> Pattern | None:
        return next((p for p in self.flakes if p.matches(name)), None)

    def test_match(self, result: TestResult) -> KnownMatch | None:
        """A failing test's known entry: a fails line for how it ended, or a flakes line."""
        listed = self.failure(result.name)
        if listed is not None and result.status in FAIL_STATUSES[listed.status]:
            return KnownMatch(listed.reason)
        flaky = self.flake(result.name)
        if flaky is not None:
            return KnownMatch(f"listed as flaky in {flaky.source} ({flaky.regex.pattern})")
        return None

    def finding_match(self, finding: Finding) -> KnownMatch | None:
        entry = next((k for k in self.findings if k.matches(finding)), None)
        return KnownMatch(f"{entry.reason} ({entry.source})", entry.link) if entry else None

    def to_json(self) -> dict[str, object]:
        return {"files": list(self.files), "fails": len(self.fails), "flakes": len(self.flakes),
                "skips": len(self.skips), "findings": len(self.findings)}


def load_known(paths: Iterable[Path]) -> KnownIssues:
    """Every file read and checked; all the problems of all the files in one UserError."""
    fails: list[KnownFailure] = []
    flakes: list[Pattern] = []
    skips: list[Pattern] = []
    findings: list[KnownFinding] = []
    problems: list[str] = []
    files: list[str] = []
    for path in paths:
        path = Path(path)
        files.append(str(path))
        try:
            text = path.read_text()
        except (OSError, UnicodeDecodeError) as exc:
            problems.append(f"{path}: cannot read it ({exc})")
            continue
        name = path.name
        if name.endswith(".toml"):
            findings += _toml(text, path, problems)
        elif name.endswith("-fails.txt"):
            fails += _fails(text, path, problems)
        elif name.endswith("-flakes.txt"):
            flakes += _patterns(text, path, problems)
        elif name.endswith("-skips.txt"):
            skips += _patterns(text, path, problems)
        else:
            problems.append(f"{path}: not a known-issues file rig reads (a name ending in -fails.txt, "
                            "-flakes.txt, -skips.txt, or a .toml of known findings)")
    if problems:
        raise UserError("cannot read the known issues:\n    " + "\n    ".join(problems),
                        hint="fix the lines named above; the formats are described in `rig run --help` (--known)")
    return KnownIssues(tuple(fails), tuple(flakes), tuple(skips), tuple(findings), tuple(files))


def _lines(text: str) -> Iterable[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if line and not line.startswith("#"):
            yield number, line


def _fails(text: str, path: Path, problems: list[str]) -> list[KnownFailure]:
    out = []
    for number, line in _lines(text):
        test, comma, status = line.rpartition(",")
        if not comma or not test or status not in FAIL_STATUSES:
            problems.append(f"{path}:{number}: '{line}' is not 'test@subtest,Status' with Status one of "
                            f"{', '.join(FAIL_STATUSES)}")
            continue
        out.append(KnownFailure(test.removeprefix("igt@"), status, f"{path.name}:{number}"))
    return out


def _patterns(text: str, path: Path, problems: list[str]) -> list[Pattern]:
    out = []
    for number, line in _lines(text):
        try:
            out.append(Pattern(re.compile(line), f"{path.name}:{number}"))
        # OverflowError: a repeat count past re's limit (a{99999999999}); RecursionError: nesting
        except (re.error, OverflowError, RecursionError) as exc:
            problems.append(f"{path}:{number}: '{line}' is not a regular expression ({exc})")
    return out


def _toml(text: str, path: Path, problems: list[str]) -> list[KnownFinding]:
    try:
        data = tomllib.loads(text)
    except (tomllib.TOMLDecodeError, RecursionError) as exc:  # RecursionError: brackets nested too deep
        problems.append(f"{path}: not valid TOML ({exc})")
        return []
    out = []
    unknown = sorted(set(data) - {"finding"})
    if unknown:
        problems.append(f"{path}: unknown table(s) {', '.join(unknown)} (known: finding)")
    entries = data.get("finding", [])
    if not isinstance(entries, list):
        problems.append(f"{path}: finding must be an array of tables ([[finding]])")
        return []
    for index, entry in enumerate(entries, 1):
        where = f"{path}: finding #{index}"
        if not isinstance(entry, dict):
            problems.append(f"{where}: must be a table")
            continue
        extra = sorted(set(entry) - {"title", "signature", "reason", "link"})
        if extra:
            problems.append(f"{where}: unknown key(s) {', '.join(extra)} (known: title, signature, reason, link)")
        title, signature, reason, link = (entry.get(k) for k in ("title", "signature", "reason", "link"))
        if not (isinstance(title, str) and title) and not (isinstance(signature, str) and signature):
            problems.append(f"{where}: give a title or a signature")
            continue
        if not isinstance(reason, str) or not reason.strip():
            problems.append(f"{where}: give a reason, so the next reader knows why it is known")
            continue
        if link is not None and not isinstance(link, str):
            problems.append(f"{where}: link must be a string")
            link = None
        out.append(KnownFinding(title if isinstance(title, str) and title else None,
                                signature if isinstance(signature, str) and signature else None,
                                reason.strip(), link, f"{path.name} #{index}"))
    return out
