"""Whether any of many patterns matches somewhere in a string: one test for a whole list.

The skip lists that name a report's guilty frame hold hundreds of patterns, most of them
plain words ("kmalloc", "spin_lock") and the rest words with a little regex around them
("^_*down_read", "readb$"). Joined as they are into one alternation, the regex engine
tries every entry at every character of a function name. Here the same test is built as
a prefix tree: entries that start with the same characters share them, so at each
character the engine tries only the few first characters the entries begin with, and
follows one branch. Entries anchored at the start ("^...") are tried at the start only.
An entry that holds another plain-word entry is dropped, as the word matches wherever
the entry would. The answer, whether some entry matches, is the same as the plain
alternation's for every string (tests/unit/test_splat_skip.py compares them).
"""

from __future__ import annotations

import re
from collections import defaultdict
from collections.abc import Callable, Iterable

# Characters with a meaning in a pattern; a plain word holds none of them.
_META = frozenset("\\.^$*+?{}[]()|")
_QUANTIFIERS = frozenset("?*+{")


def compile_any(patterns: Iterable[str]) -> Callable[[str], bool]:
    """A test of whether any of `patterns` is found in a string (`re.search`, no flags)."""
    anywhere: set[tuple[str, str]] = set()  # (plain head, regex rest): searched for anywhere
    at_start: set[tuple[str, str]] = set()  # ... matched at the start ("^...")
    after_underscores: set[tuple[str, str]] = set()  # ... matched after any leading "_" ("^_*...")
    for pattern in patterns:
        for alternative in _top_level_alternatives(pattern):
            if not alternative.startswith("^"):
                anywhere.add(_split(alternative))
            elif alternative.startswith("^_*") and alternative[3:4] not in _QUANTIFIERS:
                after_underscores.add(_split(alternative[3:]))
            else:
                at_start.add(_split(alternative[1:]))
    words = {head for head, rest in anywhere if not rest}
    if "" in words:
        return lambda text: True  # an empty pattern is found in every string
    anywhere = {(head, rest) for head, rest in anywhere if not _holds_word(head, words - {head} if not rest else words)}
    at_start = {(head, rest) for head, rest in at_start if not _holds_word(head, words)}
    after_underscores = {(head, rest) for head, rest in after_underscores if not _holds_word(head, words)}

    starts = []
    if at_start:
        starts.append(_tree(at_start))
    if after_underscores:
        starts.append("_*" + _tree(after_underscores))
    match = re.compile("|".join(f"(?:{s})" for s in starts)).match if starts else None
    search = re.compile(_tree(anywhere)).search if anywhere else None

    if match is None and search is None:
        return lambda text: False
    if match is None:
        assert search is not None
        return lambda text: search(text) is not None
    if search is None:
        return lambda text: match(text) is not None
    return lambda text: match(text) is not None or search(text) is not None


def _top_level_alternatives(pattern: str) -> list[str]:
    """`pattern` cut at its "|" outside groups and character sets."""
    out: list[str] = []
    depth = 0
    in_set = False
    start = i = start_of_set = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\":
            i += 2
            continue
        if in_set:
            if ch == "]" and i > start_of_set + 1:
                in_set = False
        elif ch == "[":
            in_set = True
            start_of_set = i + (1 if pattern[i + 1:i + 2] == "^" else 0)
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "|" and depth == 0:
            out.append(pattern[start:i])
            start = i + 1
        i += 1
    out.append(pattern[start:])
    return out


def _split(pattern: str) -> tuple[str, str]:
    """(the plain characters every match starts with, the pattern after them)."""
    i = 0
    while i < len(pattern) and pattern[i] not in _META:
        i += 1
    if 0 < i < len(pattern) and pattern[i] in _QUANTIFIERS:
        i -= 1  # the last plain character is repeated ("kv?"): it belongs to the rest
    return pattern[:i], pattern[i:]


def _holds_word(head: str, words: set[str]) -> bool:
    """Every match of an entry that starts with `head` holds one of the plain words."""
    return any(word in head for word in words)


def _tree(entries: set[tuple[str, str]]) -> str:
    """One pattern for the entries: their plain heads as a prefix tree, each rest at its leaf."""
    if ("", "") in entries:
        return ""  # matched already: whatever follows adds nothing
    alternatives = [f"(?:{rest})" for head, rest in sorted(entries) if not head]
    by_first: dict[str, set[tuple[str, str]]] = defaultdict(set)
    for head, rest in entries:
        if head:
            by_first[head[0]].add((head[1:], rest))
    for first, tails in sorted(by_first.items()):
        alternatives.append(re.escape(first) + _tree(tails))
    return alternatives[0] if len(alternatives) == 1 else "(?:" + "|".join(alternatives) + ")"
