"""Number normalisation for titles, and the fingerprint that tells one bug from another."""

from __future__ import annotations

import hashlib
import re

from rig.splat.symbols import canonical_function

__all__ = ["canonical_function", "canonical_lock", "normalize_numbers", "signature_of"]

_HEX_ADDR = re.compile(r"\b(?:0x)?[0-9a-fA-F]*[0-9][0-9a-fA-F]*\b")
_LOCK_INSTANCE = re.compile(r"#\d+$|/\d+$")


def normalize_numbers(text: str) -> str:
    """Addresses (6+ hex digits) become ADDR and other bare numbers NUM, as in syzbot titles."""

    def repl(m: re.Match[str]) -> str:
        token = m.group(0)
        digits = token[2:] if token.lower().startswith("0x") else token
        if len(digits) >= 6 and not digits.isdigit() or len(digits) >= 8:
            return "ADDR"
        if token.lower().startswith("0x") or digits.isdigit():
            return "NUM"
        return token

    return _HEX_ADDR.sub(repl, text)


def canonical_lock(name: str) -> str:
    """Lock class names without the instance numbers lockdep appends (#2, /1)."""
    return _LOCK_INSTANCE.sub("", name)


def signature_of(kind: str, title: str, lock_chain: tuple[str, ...]) -> str:
    """Same kind, title and (for lockdep) lock classes: the same bug."""
    parts = [kind, title, *sorted({canonical_lock(lock) for lock in lock_chain})]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
