"""Function names as titles give them: mangled Rust and C++ symbols demangled, syscall
entry points named alike on every architecture and kernel version.

A kernel with Rust code prints its Rust functions as the compiler mangled them
(`_RNvMs3_NtCs..._11rust_binder7processNtB5_7Process10update_ref`); syzbot names them
demangled and without generic parameters (`<rust_binder::process::Process>::update_ref`),
so rig does too. The v0 grammar read here is the one of the Rust symbol-mangling RFC
(rust-lang/rfcs 2603); legacy Rust and C++ names (`_ZN...E`) are read as far as their
nested name, which is all a title needs.
"""

from __future__ import annotations

from functools import lru_cache

# Prefixes syscall entry points carry on some architecture or kernel version; a title names
# a frame by its shortest form after removing one of them, as syzkaller's pkg/report does
# (linux.go, linuxStackParams.stripFramePrefixes): __x64_sys_ioctl -> sys_ioctl,
# __se_sys_ioctl, __do_sys_ioctl, ksys_ioctl, SyS_ioctl, sys_ioctl -> ioctl.
STRIP_PREFIXES = (
    "SYSC_", "SyS_", "sys_",  # SYSCALL_DEFINE wrappers before 4.17, and the plain entry
    "__x64_", "__ia32_", "__arm64_",  # the per-architecture entry stubs since 4.17
    "____sys_", "___sys_", "__sys_",  # the socket and ipc syscalls' shared bodies
    "__se_", "__se_sys_", "__do_sys_",  # SYSCALL_DEFINE's sign-extension and body functions
    "compat_SYSC_", "compat_SyS_",  # compat wrappers before 4.17
    "ksys_",  # in-kernel callers' entry (ksys_read, ksys_ioctl)
)


@lru_cache(maxsize=8192)
def canonical_function(name: str) -> str:
    """The name a title gives the function `name`: demangled, syscall prefix removed."""
    name = demangle(name)
    shortest = name
    for prefix in STRIP_PREFIXES:
        if name.startswith(prefix) and len(name) - len(prefix) < len(shortest):
            shortest = name[len(prefix):]
    return shortest


def demangle(name: str) -> str:
    """`name` demangled without parameters, or unchanged when it is no mangled name (or
    one this reader does not know)."""
    if name.startswith("_R"):
        return _demangle_v0(name) or name
    if name.startswith("_ZN") or name.startswith("_Z") and name[2:3].isdigit():
        return _demangle_nested(name) or name
    return name


# ---------------------------------------------------------------------------- Rust v0

# Basic types of the v0 grammar, by their one-letter code.
_BASIC = {
    "a": "i8", "b": "bool", "c": "char", "d": "f64", "e": "str", "f": "f32", "h": "u8",
    "i": "isize", "j": "usize", "l": "i32", "m": "u32", "n": "i128", "o": "u128",
    "s": "i16", "t": "u16", "u": "()", "v": "...", "x": "i64", "y": "u64", "z": "!", "p": "_",
}
_BASE62 = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"


class _Invalid(Exception):
    """Not a v0 symbol this reader understands."""


class _V0:
    """A recursive-descent reader of one v0 symbol (after its "_R")."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.depth = 0

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else ""

    def next(self) -> str:
        ch = self.peek()
        if not ch:
            raise _Invalid
        self.pos += 1
        return ch

    def eat(self, ch: str) -> bool:
        if self.peek() == ch:
            self.pos += 1
            return True
        return False

    def base62(self) -> int:
        if self.eat("_"):
            return 0
        value = 0
        while not self.eat("_"):
            digit = _BASE62.find(self.next())
            if digit < 0:
                raise _Invalid
            value = value * 62 + digit
        return value + 1

    def decimal(self) -> int:
        start = self.pos
        while self.peek().isdigit():
            self.pos += 1
        if start == self.pos:
            raise _Invalid
        return int(self.text[start:self.pos])

    def disambiguator(self) -> None:
        if self.eat("s"):
            self.base62()

    def ident(self) -> str:
        self.disambiguator()
        punycode = self.eat("u")
        size = self.decimal()
        self.eat("_")
        word = self.text[self.pos:self.pos + size]
        if len(word) != size:
            raise _Invalid
        self.pos += size
        return word if not punycode else "{punycode " + word + "}"

    def backref(self, read: str) -> str:
        target = self.base62()
        if target >= self.pos:
            raise _Invalid
        saved, self.pos = self.pos, target
        try:
            return self.path() if read == "path" else self.type()
        finally:
            self.pos = saved

    def path(self) -> str:
        self.depth += 1
        if self.depth > 64:
            raise _Invalid
        try:
            tag = self.next()
            if tag == "C":
                return self.ident()
            if tag == "M":
                self.disambiguator()
                self.path()  # the impl's own path: not part of the name
                return f"<{self.type()}>"
            if tag == "X":
                self.disambiguator()
                self.path()
                impl_type = self.type()
                return f"<{impl_type} as {self.path()}>"
            if tag == "Y":
                impl_type = self.type()
                return f"<{impl_type} as {self.path()}>"
            if tag == "N":
                namespace = self.next()
                parent = self.path()
                name = self.ident()
                if namespace.isupper():  # closures, shims: compiler-made, named by kind
                    kind = {"C": "closure", "S": "shim"}.get(namespace, namespace)
                    return f"{parent}::{{{kind}}}"
                return f"{parent}::{name}" if name else parent
            if tag == "I":
                base = self.path()
                while not self.eat("E"):
                    self.generic_arg()
                return base  # no parameters in a title
            if tag == "B":
                return self.backref("path")
            raise _Invalid
        finally:
            self.depth -= 1

    def generic_arg(self) -> None:
        if self.eat("L"):
            self.base62()
        elif self.eat("K"):
            self.const()
        else:
            self.type()

    def const(self) -> None:
        if self.eat("p"):
            return
        if self.eat("B"):
            self.base62()
            return
        self.type()
        self.eat("n")
        while not self.eat("_"):
            if self.next() not in "0123456789abcdef":
                raise _Invalid

    def type(self) -> str:
        self.depth += 1
        if self.depth > 64:
            raise _Invalid
        try:
            tag = self.peek()
            if tag in _BASIC:
                self.pos += 1
                return _BASIC[tag]
            if tag in "CMXYNI":
                return self.path()
            self.pos += 1
            if tag == "B":
                return self.backref("type")
            if tag in "RQ":
                if self.eat("L"):
                    self.base62()
                return ("&" if tag == "R" else "&mut ") + self.type()
            if tag in "PO":
                return ("*const " if tag == "P" else "*mut ") + self.type()
            if tag == "S":
                return f"[{self.type()}]"
            if tag == "A":
                inner = self.type()
                self.const()
                return f"[{inner}; _]"
            if tag == "T":
                parts = []
                while not self.eat("E"):
                    parts.append(self.type())
                return "(" + ", ".join(parts) + ("," if len(parts) == 1 else "") + ")"
            if tag == "F":
                self.fn_sig()
                return "fn(..)"
            if tag == "D":
                bounds = self.dyn_bounds()
                if self.eat("L"):
                    self.base62()
                return "dyn " + bounds
            raise _Invalid
        finally:
            self.depth -= 1

    def fn_sig(self) -> None:
        if self.eat("G"):
            self.base62()
        self.eat("U")
        if self.eat("K"):
            if not self.eat("C"):
                self.ident()
        while not self.eat("E"):
            self.type()
        self.type()

    def dyn_bounds(self) -> str:
        if self.eat("G"):
            self.base62()
        traits = []
        while not self.eat("E"):
            traits.append(self.path())
            while self.eat("p"):
                self.ident()
                self.type()
        return " + ".join(traits)


def _demangle_v0(name: str) -> str | None:
    reader = _V0(name[2:])
    try:
        if reader.peek().isdigit():
            reader.decimal()  # encoding version
        return reader.path()
    except (_Invalid, RecursionError):
        return None


# ---------------------------------------------------------------------------- legacy / C++

# Escapes legacy Rust mangling uses inside identifiers.
_LEGACY_ESCAPES = (("$LT$", "<"), ("$GT$", ">"), ("$RF$", "&"), ("$BP$", "*"), ("$C$", ","),
                   ("$u20$", " "), ("$u27$", "'"), ("$u5b$", "["), ("$u5d$", "]"), ("$u7e$", "~"),
                   ("$SP$", "@"), ("$LP$", "("), ("$RP$", ")"), ("..", "::"))


def _demangle_nested(name: str) -> str | None:
    """`_ZN` length-prefixed parts `E` (or one `_Z` part): the parts joined by `::`; a legacy
    Rust hash part (`17h` and 16 hex digits) dropped, its escapes undone."""
    pos = 3 if name.startswith("_ZN") else 2
    parts: list[str] = []
    while pos < len(name) and name[pos].isdigit():
        end = pos
        while end < len(name) and name[end].isdigit():
            end += 1
        size = int(name[pos:end])
        part = name[end:end + size]
        if len(part) != size:
            return None
        parts.append(part)
        pos = end + size
        if not name.startswith("_ZN"):
            break
    if not parts:
        return None
    last = parts[-1]
    if len(parts) > 1 and len(last) == 17 and last[0] == "h" and all(c in "0123456789abcdef" for c in last[1:]):
        parts.pop()
    out = []
    for part in parts:
        if part.startswith("_$"):
            part = part[1:]
        for escape, plain in _LEGACY_ESCAPES:
            part = part.replace(escape, plain)
        out.append(part)
    return "::".join(out)
