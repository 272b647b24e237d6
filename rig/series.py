"""Patch series intake and application.

A series comes as an mbox (one or many patches, cover letter skipped), a directory of
`*.patch` files, a git range `A..B` in a local kernel tree, or a lore message-id fetched
with b4. Each patch is split into its own file, so rig can apply and build them one at
a time, and listed with its number, subject and author.
"""

from __future__ import annotations

import email
import email.header
import email.policy
import mailbox
import re
import shutil
import socket
import sys
import threading
import urllib.parse
from dataclasses import dataclass, replace
from email.message import Message
from pathlib import Path
from typing import TYPE_CHECKING

from rig import cache, proc
from rig.errors import InfraError, UserError
from rig.paths import user_path

if TYPE_CHECKING:
    from rig.sandbox import Sandbox

# A message that is a patch carries a diff.
DIFF_MARK = re.compile(rb"^(diff --git |--- (a/|/dev/null)|Index: )", re.M)
# "[PATCH v2 3/7]", "[RFC PATCH 03/12]": the position of a patch in its series.
NUMBERED = re.compile(r"\[[^]]*?\b0*(\d+)/(\d+)\s*\]")
COVER = re.compile(r"\[[^]]*?\b0+/\d+\s*\]")

LORE_HOST = "lore.kernel.org"
LORE_PORT = 443
# b4 waits long on an unreachable network; find out in seconds instead.
LORE_PROBE_TIMEOUT_S = 5.0
B4_TIMEOUT_S = 300.0
GIT_AM_TIMEOUT_S = 600.0


class SeriesDoesNotApply(UserError):
    """A patch of the series does not apply to the kernel asked for: bad input for `rig run`,
    a `not-applicable` cell for `rig matrix` (the series was written for another kernel)."""

SERIES_FORMS = ("an mbox file, a directory of *.patch files, a git range A..B in a local --kernel checkout, "
                "or a lore message-id")


@dataclass(frozen=True)
class PatchInfo:
    number: int  # 1-based position in the series
    subject: str
    author: str
    path: Path  # this patch alone, as an mbox git am reads
    digest: str  # content hash of the patch file
    origin: str = ""  # the file (or range, or message-id) the user gave that holds it

    def title(self) -> str:
        return f"patch {self.number} \"{self.subject}\""

    def origin_note(self) -> str:
        """Where the patch came from, for errors ("; from FILE"): the file is what the user edits."""
        return f"; it comes from {self.origin}" if self.origin else ""


@dataclass(frozen=True)
class Series:
    spec: str
    kind: str  # "mbox" | "dir" | "range" | "msgid"
    patches: tuple[PatchInfo, ...]
    digest: str  # hash of every patch in order
    skipped: tuple[str, ...] = ()  # subjects of messages that were not patches (cover letters)


def _decode(value: str | None) -> str:
    if not value:
        return ""
    parts = email.header.decode_header(value)
    text = "".join(_text(p, c) if isinstance(p, bytes) else p for p, c in parts)
    return " ".join(text.split())


def _text(data: bytes, charset: str | None) -> str:
    """Header bytes in the charset the mail names; one Python does not know ("=?x-unknown?q?...?=",
    a mailer's typo) is read as UTF-8, the usual truth, rather than stopping the series."""
    try:
        return data.decode(charset or "utf-8", errors="replace")
    except LookupError:
        return data.decode("utf-8", errors="replace")


def _clean_subject(subject: str) -> str:
    return re.sub(r"^(\s*\[[^]]*\]\s*)+", "", subject).strip() or subject


def _split_mbox(path: Path) -> list[bytes]:
    """The raw messages of an mbox; a lone `git format-patch` file without a From line is one message."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise UserError(f"cannot read series file {path}: {exc.strerror or exc}",
                        hint="check the path and its permissions") from exc
    if not data.startswith(b"From "):
        return [data] if data.strip() else []
    box = mailbox.mbox(str(path), create=False)
    try:
        return [box.get_bytes(key) for key in box.keys()]
    finally:
        box.close()


def _body_bytes(message: Message) -> bytes:
    if message.is_multipart():
        return b"\n".join(_body_bytes(part) for part in message.get_payload())  # type: ignore[union-attr]
    payload = message.get_payload(decode=True)
    return payload if isinstance(payload, bytes) else b""


def read_patches(raw_messages: list[tuple[str, bytes]], spec: str) -> tuple[list[_Found], list[str]]:
    """The patches among raw messages (label, bytes), in series order, and the subjects of
    the messages that are not patches; a series without a patch, or with a damaged patch,
    is a UserError. Pure: reads nothing, writes nothing."""
    found: list[_Found] = []
    skipped: list[str] = []
    for label, raw in raw_messages:
        message = email.message_from_bytes(raw, policy=email.policy.compat32)
        subject = _decode(message.get("Subject")) or label
        body = _body_bytes(message)
        if COVER.search(subject) or not DIFF_MARK.search(body):
            skipped.append(subject)
            continue
        numbered = NUMBERED.search(subject)
        author = _decode(message.get("From")) or "unknown author"
        found.append(_Found(int(numbered.group(1)) if numbered else None, _clean_subject(subject), author, raw,
                            label, damage(body)))
    if not found:
        what = f"{len(skipped)} message(s), none with a diff" if skipped else "no messages"
        raise UserError(f"series {spec} holds no patch ({what})",
                        hint=f"pass --series as {SERIES_FORMS}; patches come from git format-patch or b4 am")
    # Mail order is not always series order; "[PATCH n/N]" is.
    if all(item.number is not None for item in found):
        found.sort(key=lambda item: item.number or 0)
    for index, item in enumerate(found, 1):
        if item.damage is not None:
            origin = f"; it comes from {item.label}" if item.label else ""
            raise UserError(f"patch {index} \"{item.subject}\" is damaged: {item.damage}{origin}",
                            hint=f"the patch text in {item.label or spec} was cut short or changed after git "
                                 "format-patch wrote it (a truncated download, an edited hunk, lines rewrapped by "
                                 "a mail client); make it again with git format-patch or b4 am")
    return found, skipped


def parse_messages(raw_messages: list[tuple[str, bytes]], spec: str, kind: str, workdir: Path) -> Series:
    """Patches from raw messages (label, bytes), each written to its own file in `workdir`.

    The label says where a message came from (its file, or the range or message-id)."""
    found, skipped = read_patches(raw_messages, spec)
    workdir.mkdir(parents=True, exist_ok=True)
    patches = []
    for index, item in enumerate(found, 1):
        path = workdir / f"{index:04d}.patch"
        raw = item.raw
        if not raw.startswith(b"From "):
            raw = b"From rig Mon Sep 17 00:00:00 2001\n" + raw
        path.write_bytes(raw)
        patches.append(PatchInfo(index, item.subject, item.author, path, cache.digest([raw]), item.label))
    return Series(spec, kind, tuple(patches), cache.digest([p.digest for p in patches]), tuple(skipped))


@dataclass(frozen=True)
class _Found:
    """A message that is a patch, before it is numbered and written out."""

    number: int | None  # n of "[PATCH n/N]"
    subject: str
    author: str
    raw: bytes
    label: str
    damage: str | None  # why its diff cannot be applied as it stands, or None


# "@@ -12,7 +12,8 @@": a hunk and how many lines of the old and new file it holds (a
# count left out is 1), as git apply reads it.
HUNK = re.compile(rb"^@@ -\d+(?:,(\d+))? \+\d+(?:,(\d+))? @@")


def damage(body: bytes) -> str | None:
    """Why the diff in a patch mail's body is damaged, or None.

    git apply counts each hunk's lines against its header: a context line (" ", or an empty
    line a mail client stripped) is in both files, "-" in the old, "+" in the new, "\\"
    annotates the line before. A hunk that ends before its counts do was cut short (a
    truncated mbox or download); a line that is none of these inside a hunk was changed
    (rewrapped by a mail client, or edited by hand). git am would say "corrupt patch"
    only after the kernel source is fetched; this says it in a millisecond.
    """
    old = new = 0
    header = b""
    in_diff = False
    lines = body.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()  # the newline that ends the last line
    for number, line in enumerate(lines, 1):
        if old > 0 or new > 0:
            kind = line[:1]
            if kind in (b" ", b"", b"\r"):
                old, new = old - 1, new - 1
            elif kind == b"-":
                old -= 1
            elif kind == b"+":
                new -= 1
            elif kind == b"\\":
                continue
            else:
                return (f"line {number} of the mail body, inside the hunk {_show(header)}, is not a diff line: "
                        f"{_show(line)}")
            if old < 0 or new < 0:
                return f"the hunk {_show(header)} has more lines than its header counts (line {number})"
            continue
        if DIFF_MARK.match(line):
            in_diff = True
        elif in_diff and (hunk := HUNK.match(line)):
            header = line
            old = 1 if hunk.group(1) is None else int(hunk.group(1))
            new = 1 if hunk.group(2) is None else int(hunk.group(2))
    if old > 0 or new > 0:
        return (f"the mail ends inside the hunk {_show(header)}, {max(old, new)} line(s) short "
                "(the file was cut off)")
    return None


def _show(line: bytes, limit: int = 72) -> str:
    text = line.decode("utf-8", errors="replace").rstrip("\r")
    return repr(text if len(text) <= limit else text[:limit] + "...")


def load(spec: str, workdir: Path, *, repo: Path | None = None) -> Series:
    """Read a --series spec into one file per patch under `workdir`.

    `repo` is the local kernel checkout, needed for a git range.
    """
    if not spec.strip():  # Path("") is the current directory: never read it as a series
        raise UserError("--series is empty", hint=f"pass --series as {SERIES_FORMS}, or leave it out")
    if workdir.exists():
        shutil.rmtree(workdir)
    path = user_path(spec)
    if path.is_file():
        return parse_messages([(str(path), m) for m in _split_mbox(path)], spec, "mbox", workdir)
    if path.is_dir():
        files = _series_files(path, spec)
        messages = [(str(f), m) for f in files for m in _split_mbox(f)]
        return parse_messages(messages, spec, "dir", workdir)
    form = classify(spec)
    if form == "range":
        return _git_range(spec, workdir, repo)
    if form == "msgid":
        return _lore(spec, workdir)
    raise _not_a_series(spec)


def classify(spec: str) -> str:
    """What a --series spec that is no file or directory is: "range", "msgid" or "" (neither)."""
    if re.fullmatch(r"[^\s.][^\s]*\.\.\.?[^\s]+", spec):
        return "range"
    if _looks_like_msgid(spec):
        return "msgid"
    return ""


def _not_a_series(spec: str) -> UserError:
    path = user_path(spec)
    if "/" in spec or path.suffix in (".mbox", ".mbx", ".patch", ".eml", ".txt"):
        return UserError(f"series {spec}: no such file or directory",
                         hint=f"check the path; --series is {SERIES_FORMS}")
    return UserError(f"series '{spec}' is not a file, a directory, a git range or a message-id",
                     hint=f"pass --series as {SERIES_FORMS}")


def check(spec: str, *, kernel: str) -> None:
    """The --series problems that can be told before anything is fetched or built, as a
    UserError: a file or directory is read (its patches found, damage named, nothing
    written), a git range needs a local --kernel checkout holding both ends, a message-id
    must be one. Side-effect free; `load` repeats what it needs."""
    if not spec.strip():
        raise UserError("--series is empty", hint=f"pass --series as {SERIES_FORMS}, or leave it out")
    path = user_path(spec)
    if path.is_file():
        read_patches([(str(path), m) for m in _split_mbox(path)], spec)
        return
    if path.is_dir():
        read_patches([(str(f), m) for f in _series_files(path, spec) for m in _split_mbox(f)], spec)
        return
    form = classify(spec)
    if form == "range":
        _check_range(spec, kernel)
    elif form == "msgid":
        if (problem := msgid_problem(spec)) is not None:
            raise UserError(f"series {spec!r} is not a message-id: {problem}",
                            hint="give the Message-ID of the series' first mail (or cover letter) as lore shows "
                                 "it, like 20250101120000.1234-1-dev@example.org, or a lore.kernel.org link")
    else:
        raise _not_a_series(spec)


def _check_range(spec: str, kernel: str) -> None:
    if kernel.startswith("debian:"):
        raise UserError(f"the git range {spec} needs a local kernel checkout, not {kernel}",
                        hint="pass --kernel PATH of the checkout that holds the range, or --series as an mbox")
    if "..." in spec:
        raise UserError(f"{spec} is a symmetric range", hint="pass the series as A..B (patches in B not in A)")
    repo = user_path(kernel)
    if not (repo / ".git").exists():
        return  # the --kernel check names that problem
    for end in spec.split(".."):
        result = proc.run(["git", "rev-parse", "--verify", "--quiet", f"{end}^{{commit}}"], cwd=repo,
                          timeout=60, check=False, what=f"git rev-parse {end}")
        if not result.ok:
            raise UserError(f"git range {spec}: {end} is not a commit in {repo}",
                            hint="pass --series as A..B with A and B commits (or branches, tags) of the "
                                 "--kernel checkout")


# RFC 5322's msg-id: id-left "@" id-right, each dot-atom text (lore also has ids with a
# bracketed domain on the right). No spaces, one "@", no empty part.
_ATOM = r"[A-Za-z0-9!#$%&'*+/=?^_`{|}~-]+"
_MSGID = re.compile(rf"{_ATOM}(?:\.{_ATOM})*@(?:{_ATOM}(?:\.{_ATOM})*|\[[^]\s\\]*\])")
_LORE_URL = re.compile(r"https?://lore\.kernel\.org/(?:[^/\s]+/)?(?P<id>[^/\s]+)/?.*")


def msgid_problem(spec: str) -> str | None:
    """What makes `spec` no message-id (or lore link to one), or None."""
    found = _LORE_URL.fullmatch(spec)
    if found is not None:
        spec = urllib.parse.unquote(found.group("id"))
    elif spec.startswith(("http://", "https://")):
        return "a link that is not lore.kernel.org's"
    text = spec.strip()
    if text.startswith("<") != text.endswith(">"):
        return "unbalanced angle brackets"
    text = text.strip("<>")
    if text.count("@") != 1:
        return f"it holds {text.count('@')} '@' (a message-id has one)"
    left, right = text.split("@")
    if not left or not right:
        return "an empty part before or after the '@'"
    if not _MSGID.fullmatch(text):
        return "characters a message-id cannot hold (spaces, brackets, two dots in a row)"
    return None


# What a series directory may hold: git format-patch's files, or the mbox b4 saved.
MBOX_SUFFIXES = (".mbox", ".mbx")


def _series_files(directory: Path, spec: str) -> list[Path]:
    """The patch files of a series directory: its *.patch files in name order, else its
    one mbox (b4 am and mail clients save a series as one file in a directory)."""
    patches = sorted(directory.glob("*.patch"))
    if patches:
        return patches
    mboxes = sorted(f for f in directory.iterdir() if f.is_file() and f.suffix in MBOX_SUFFIXES)
    if len(mboxes) == 1:
        return mboxes
    if mboxes:
        names = ", ".join(f.name for f in mboxes)
        raise UserError(f"series directory {spec} holds several mboxes ({names}) and no *.patch files",
                        hint="pass --series as the one mbox to test")
    raise UserError(f"series directory {spec} has no *.patch files and no .mbox",
                    hint="create the files with git format-patch, or pass --series as an mbox")


def _git_range(spec: str, workdir: Path, repo: Path | None) -> Series:
    if repo is None:
        raise UserError(f"the git range {spec} needs a local kernel checkout",
                        hint="pass --kernel PATH of the checkout that holds the range, or --series as an mbox")
    if "..." in spec:
        raise UserError(f"{spec} is a symmetric range", hint="pass the series as A..B (patches in B not in A)")
    result = proc.run(["git", "format-patch", "--stdout", "--no-signature", spec], cwd=repo, timeout=300,
                      check=False, what=f"git format-patch {spec}")
    if not result.ok:
        raise UserError(f"git range {spec} is not valid in {repo}: {result.stderr.strip()}",
                        hint="pass --series as A..B with A and B commits of the --kernel checkout")
    if not result.stdout.strip():
        raise UserError(f"git range {spec} holds no commits", hint="check the order: A..B lists commits in B not in A")
    workdir.mkdir(parents=True, exist_ok=True)
    mbox = workdir.parent / f"{workdir.name}.mbox"
    mbox.write_text(result.stdout)
    series = parse_messages([(spec, m) for m in _split_mbox(mbox)], spec, "range", workdir)
    mbox.unlink()
    return series


def range_start(spec: str) -> str | None:
    """A of a git range "A..B" (None for anything else)."""
    if "..." in spec:
        return None
    match = re.fullmatch(r"([^\s.][^\s]*?)\.\.([^\s.][^\s]*)", spec)
    return match.group(1) if match else None


def _looks_like_msgid(spec: str) -> bool:
    spec = spec.strip("<>")
    return "@" in spec and not spec.startswith("/") or spec.startswith(("https://lore.kernel.org/", "http://lore."))


def _probe(host: str, port: int, timeout: float) -> str | None:
    """None when host:port accepts a connection within `timeout`, else why not.

    The name lookup runs in a thread: getaddrinfo has no timeout of its own.
    """
    outcome: list[str | None] = []

    def connect() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as exc:
            outcome.append(exc.strerror or str(exc))

    worker = threading.Thread(target=connect, daemon=True)
    worker.start()
    worker.join(timeout + 1.0)
    return outcome[0] if outcome else f"no answer within {timeout:.0f} s"


def _lore(spec: str, workdir: Path) -> Series:
    problem = _probe(LORE_HOST, LORE_PORT, LORE_PROBE_TIMEOUT_S)
    if problem is not None:
        raise InfraError(f"cannot reach {LORE_HOST} to fetch series {spec}: {problem}",
                         hint=f"save the series as an mbox where the network works (b4 am {spec}) "
                              "and pass --series FILE")
    # b4 comes with rig's virtual environment ("lore" extra), which may not be on PATH.
    beside_python = Path(sys.executable).parent / "b4"
    b4 = str(beside_python) if beside_python.exists() else proc.require_tool("b4", "b4")
    fetched = workdir.parent / f"{workdir.name}.b4"
    if fetched.exists():
        shutil.rmtree(fetched)
    fetched.mkdir(parents=True)
    proc.run([b4, "am", "-o", fetched, "-n", "series", spec.strip("<>")],
             timeout=B4_TIMEOUT_S, error=UserError, what=f"b4 am {spec}",
             hint="check the message-id on lore.kernel.org")
    mboxes = sorted(fetched.glob("*.mbx")) + sorted(fetched.glob("*.mbox"))
    if not mboxes:
        raise UserError(f"b4 found no patches for {spec}", hint="check the message-id on lore.kernel.org")
    series = parse_messages([(spec, m) for m in _split_mbox(mboxes[0])], spec, "msgid", workdir)
    return series


# --- applying -------------------------------------------------------------------------

AM_ENV = {
    "GIT_COMMITTER_NAME": "rig",
    "GIT_COMMITTER_EMAIL": "rig@localhost",
}


def apply(patch: PatchInfo, worktree: Path, *, sandbox: Sandbox | None = None) -> None:
    """`git am` one patch (in `sandbox` when given); on failure abort and raise a
    UserError naming patch, files and git's words."""

    def git_am(*args: str | Path) -> proc.Result:
        argv: list[str | Path] = ["git", "am", *args]
        if sandbox is not None:  # the patch file may sit in a hidden directory (the run's own)
            fence = replace(sandbox, readable=(*sandbox.readable, Path(patch.path).resolve()))
            argv = [*fence.wrap(argv, cwd=worktree, env=AM_ENV)]
        return proc.run(argv, cwd=worktree, timeout=GIT_AM_TIMEOUT_S, env=AM_ENV, check=False,
                        what=f"git am {patch.title()}")

    # The committer date follows the author date, so the same series gives the same
    # commit ids (and kernel release string) every time.
    result = git_am("--committer-date-is-author-date", "--keep-cr", patch.path)
    if result.ok:
        return
    git_am("--abort")  # --abort records the reset in the reflog, which needs a committer identity too
    output = "\n".join(part for part in (result.stdout, result.stderr) if part).strip()
    files = conflicting_files(output)
    if _CORRUPT.search(output):
        raise UserError(
            f"{patch.title()} is damaged{patch.origin_note()}; git am said:\n    " + "\n    ".join(
                line for line in output.splitlines() if line.strip() and not line.startswith("hint:")),
            hint=f"the patch text in {patch.origin or patch.path} was changed after git format-patch wrote it "
                 "(an edited hunk, lines rewrapped or whitespace lost by a mail client); make it again "
                 "with git format-patch or b4 am")
    # git's advice on --continue/--skip/--abort does not apply: rig has aborted already.
    advice = ("hint:", "When you have resolved", "If you prefer to skip", "To restore the original")
    detail = "\n    ".join(line for line in output.splitlines() if line.strip() and not line.startswith(advice))
    raise SeriesDoesNotApply(
        f"{patch.title()} does not apply"
        + (f" (conflicting files: {', '.join(files)})" if files else "")
        + f"{patch.origin_note()}; git am said:\n    {detail}",
        hint="rebase the series on this kernel (or pass the --kernel/--base it was written for)",
    )


# git apply's words for a patch text that is not a valid diff (not one that does not fit).
_CORRUPT = re.compile(r"^(error: )?(corrupt patch at line \d+|patch fragment without header at line \d+|"
                      r"No valid patches in input)", re.M)


def conflicting_files(git_output: str) -> list[str]:
    files: list[str] = []
    patterns = (
        r"^error: patch failed: (.+?):\d+$",
        r"^error: (.+?): does not exist in index$",
        r"^error: (.+?): No such file or directory$",
        r"^error: (.+?): already exists in (?:index|working directory)$",
        r"^CONFLICT \([^)]*\): Merge conflict in (.+)$",
    )
    for line in git_output.splitlines():
        for pattern in patterns:
            match = re.match(pattern, line.strip())
            if match and match.group(1) not in files:
                files.append(match.group(1))
    return files
