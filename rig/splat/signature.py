"""Number normalisation for titles, and the fingerprint that tells one bug from another."""

from __future__ import annotations

import hashlib
import re

_HEX_ADDR = re.compile(r"\b(?:0x)?[0-9a-fA-F]*[0-9][0-9a-fA-F]*\b")
# Arch entry wrappers keep the "sys_" (sys_futex); the inner __se_/__do_/compat_ wrappers
# are named by the syscall alone (memfd_secret), as syzbot does.
_SYSCALL_ENTRY = re.compile(r"^(?:__x64_|__ia32_|__arm64_|__riscv_|__s390x_|__s390_|__powerpc_|__)?(?:SyS|sys)_(\w+)$")
_SYSCALL_INNER = re.compile(r"^(?:__se_|__do_|__compat_|compat_)(?:SyS|sys|SYSC)_(\w+)$")
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


def canonical_function(name: str) -> str:
    """Syscall entry points differ by arch and kernel version; syzbot names them sys_X."""
    m = _SYSCALL_INNER.match(name)
    if m is not None:
        return m.group(1)
    m = _SYSCALL_ENTRY.match(name)
    return f"sys_{m.group(1)}" if m else name


def canonical_lock(name: str) -> str:
    """Lock class names without the instance numbers lockdep appends (#2, /1)."""
    return _LOCK_INSTANCE.sub("", name)


def signature_of(kind: str, title: str, lock_chain: tuple[str, ...]) -> str:
    """Same kind, title and (for lockdep) lock classes: the same bug."""
    parts = [kind, title, *sorted({canonical_lock(lock) for lock in lock_chain})]
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:16]
