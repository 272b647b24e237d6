"""The one-test forms of rig splat's pattern lists give the plain forms' answers.

Skip lists are compiled into a prefix tree (rig.splat.anymatch) and the header hints that
share a first word are found by one scan (rig.splat.cutting): both only to be faster, so
each is compared here with the plain form it replaces.
"""

from __future__ import annotations

import random
import re

import pytest

from rig.splat import cutting, rules
from rig.splat.anymatch import compile_any
from rig.splat.frames import COMMON_SKIP, SkipRule
from rig.splat.text import LogText


def _plain(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    return re.compile("|".join(f"(?:{p})" for p in patterns)) if patterns else None


def _skip_rules() -> list[SkipRule]:
    found = [COMMON_SKIP, rules.LEAK_SKIP, rules.LOCKDEP_SKIP, rules.REFCOUNT_SKIP, rules.ODEBUG_SKIP]
    found += [rule.skip for kind in rules.KINDS for rule in kind.rules]
    unique: dict[int, SkipRule] = {}
    for skip in found:
        unique.setdefault(id(skip), skip)
    return list(unique.values())


def _names(patterns: list[str], count: int, seed: int) -> list[str]:
    """Function-like names made of the patterns' own words, so that many come near a match."""
    rng = random.Random(seed)
    words = sorted({w for p in patterns for w in re.findall(r"[A-Za-z0-9_]+", p)})
    extra = ["_", "__", "___", "x", "64", "do_", "un", "sys_", "drm_", "vgem_", "E", "a"]
    names = set(words) | {"_" + w for w in words} | {"__" + w for w in words} | {w + "_x" for w in words}
    while len(names) < count:
        names.add("".join(rng.choice(words + extra) for _ in range(rng.randint(1, 4))))
    return sorted(names)


def test_every_skip_list_answers_as_its_plain_alternation() -> None:
    skips = _skip_rules()
    names = _names([p for s in skips for p in s.patterns], 6000, seed=15)
    checked = 0
    for skip in skips:
        plain = _plain(skip.patterns)
        for name in names:
            assert skip.skips(name) == (plain is not None and plain.search(name) is not None), (name, skip.patterns)
            checked += 1
    assert checked > 100_000
    # the names reach both answers for the common list, so a test that always said one would fail
    assert 200 < sum(COMMON_SKIP.skips(n) for n in names) < len(names) - 200


@pytest.mark.parametrize("patterns", [
    ("kmalloc", "kmalloc_node", "^kmalloc$", "^_*kmalloc"),  # words held by another word
    ("_trap$|do_trap", "^a|b$"),  # alternatives at the top level
    ("k?v?(?:m|z|c)alloc", "ab?c", "ab*c", "ab{2}c", "a{"),  # a repeat right after the plain part
    ("^_*(?:do_)?page_fault$", "^_*?x", "^_+y", "^^z"),  # anchored, with and without "_*"
    ("[|]bar", r"a\|b", r"\^c", r"crc\d+", "[]x]y", "[^]]z"),  # "|" and "^" that are no operators
    ("(read|write)_once_.*nocheck", "atomic(64)?_(dec|inc)", "el1h_64_sync(?:_handler)?"),
    ("",),  # an empty pattern is found everywhere
    (),
])
def test_edge_cases_answer_as_the_plain_alternation(patterns: tuple[str, ...]) -> None:
    test = compile_any(patterns)
    plain = _plain(patterns)
    names = ["", "_", "__x", "xy", "]y", "]]z", "z", "^c", "a|b", "|bar", "bar", "crc", "crc32", "kmalloc",
             "__kmalloc", "kmalloc_node", "x_trap", "do_trap_x", "trap", "a", "ba", "b", "kvzalloc", "valloc",
             "ac", "abc", "abbbc", "abbc", "a{", "a{2}", "page_fault", "__do_page_fault", "do_page_fault_x",
             "x", "_x", "y", "_y", "__y", "z", "read_once_size_nocheck", "atomic64_inc", "atomic_dec",
             "el1h_64_sync_handler"]
    names += _names(list(patterns), 400, seed=1)
    for name in names:
        assert test(name) == (plain is not None and plain.search(name) is not None), (name, patterns)


def test_hints_sharing_a_word_find_the_lines_each_hint_finds() -> None:
    lines = [
        "[    1.000000] VFS: Mounted root (ext4 filesystem) readonly on device 254:1.",
        "[    2.000000] VFS: Close: file count is 0 for ... VFS: ",
        "[    3.000000] systemd: VFS: VFS: Busy inodes after unmount of vda. Self-destruct in 5 seconds.",
        "[    4.000000] VFS:VFS: Busy inodes after unmount",
        "[    5.000000] VFS: Busy inodes",
        "[    6.000000] BUG: KASAN: use-after-free in vgem_gem_free+0x10/0x20",
        "VFS: Close: file count is ",
        "[    7.000000] error: int3: fault in SeaBIOS (version 1.16)",
    ]
    text = "\n".join(lines)
    want = []
    offset = 0
    for line in lines:
        if any(hint in line for hint in rules.HEADER_HINTS):
            want.append(offset)
        offset += len(line) + 1
    assert len(cutting._HINT_SCANS) < len(rules.HEADER_HINTS)  # some hints share a scan
    assert cutting._header_lines(LogText(text, text.encode())) == want
    assert cutting._header_lines(LogText(text)) == want
    assert len(want) == 6  # not the mount line nor the busy inodes line cut short


def test_header_pattern_matches_as_the_plain_headers() -> None:
    plain = re.compile("|".join(f"(?P<k{i}>{kind.header})" for i, kind in enumerate(rules.KINDS)))
    assert plain.pattern != cutting.HEADERS.pattern  # some header is written letter first
    lines = ["BUG: KASAN: use-after-free", "xBUG: a", "_BUG: b", "1BUG: c", " BUG: d", "aWARNING: e", "WARNING: f",
             "[  1.000000] INFO: task x:1 blocked for more than 10 seconds.", "ZINFO: g", "DEBUG: h", "BUGINFO: i",
             "BUG kmalloc-64 (Not tainted): Poison overwritten", "WARNINGWARNING: j", "kernel BUG at mm/x.c:1!",
             "Linux version 6.1.0", "unreferenced object 0xffff888 (size 64):", "general protection fault", ""]
    text = "\n".join(lines)
    for start in range(len(text)):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        want, got = plain.search(text, start, end), cutting.HEADERS.search(text, start, end)
        assert (want and (want.span(), want.lastgroup)) == (got and (got.span(), got.lastgroup)), text[start:end]


def test_console_line_pattern_reads_as_the_full_line_pattern() -> None:
    from rig.splat import text as console

    prefixes = ["[   12.345678] ", "[   12.345678][  T123] ", "[12.5][C3] ", "[ 1.0] [ T1] ", "[ 1.0]  ",
                "[   12.345678] host kernel: ", "[ 1.0] host kernel: [ T2] ", "[ 1.0] host kernel:", "[ 1.0 ] ",
                "[1.0][ X1] ", "[12.] ", "[.5] ", "[1.5]", "[ 1.0] a:b kernel: ", "<4>[ 1.0] ", "** 3 printk messages "
                "dropped ** [ 1.0] ", "Nov 29 05:00:01 host kernel: [ 1.0] ", "[Sun Nov 29 05:00:01 2026] ", ""]
    messages = ["BUG: x", "", " indented", "[ T5] y", "host kernel: z", "kernel: w", "\r", "[1.0] again"]
    matched = 0
    for prefix in prefixes:
        for message in messages:
            line = prefix + message
            fast = console._CONSOLE_LINE.match(line)
            if fast is None:
                continue
            matched += 1
            full = console._LINE.match(line)
            assert full is not None
            assert (fast.groups(""), fast.end()) == (full.groups(""), full.end()), line
    assert matched > 30


@pytest.mark.parametrize("end", ["other info that might help us debug this:", "stack backtrace:",
                                 "Possible unsafe locking scenario:"])
def test_lock_chain_stops_at_the_first_end_of_the_held_locks(end: str) -> None:
    from rig.splat.lockdep import lock_chain

    msgs = ["WARNING: possible recursive locking detected",
            "task/1 is trying to acquire lock:",
            "ffff0000 (&dev->lock){+.+.}-{3:3}, at: drm_a+0x1/0x2",
            "but task is already holding lock:",
            "ffff0001 (&obj->lock){+.+.}-{3:3}, at: drm_b+0x1/0x2",
            end,
            "ffff0002 (&late->lock){+.+.}-{3:3}, at: drm_c+0x1/0x2",
            "other info that might help us debug this:",
            "ffff0003 (&later->lock){+.+.}-{3:3}, at: drm_d+0x1/0x2"]
    assert lock_chain(msgs) == ("&dev->lock", "&obj->lock")
    assert lock_chain([m for m in msgs if m != end and not m.startswith("other info")]) == (
        "&dev->lock", "&obj->lock", "&late->lock", "&later->lock")
