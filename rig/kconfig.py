"""Kernel configuration: fragments and profiles merged on top of allnoconfig, then every
asked-for symbol checked against the resulting .config.

Starting from `allnoconfig` (not defconfig) keeps the kernel lean: only what the QEMU
guest and the debug options need gets built. Kconfig silently drops a symbol whose
dependencies are unmet or that this kernel version lacks, so rig checks each one and
says why it did not stick.
"""

from __future__ import annotations

import os
import re
import tomllib
from dataclasses import dataclass
from pathlib import Path

from rig import cache
from rig.errors import UserError

# kernel-configs/ ships beside the package in a source checkout.
CONFIGS_DIR = Path(__file__).resolve().parent.parent / "kernel-configs"

OPTIONAL_TAG = re.compile(r"^#\s*rig:\s*optional\b")
# "# rig: only x86_64" (or several target names): the next line is for those targets only.
ONLY_TAG = re.compile(r"^#\s*rig:\s*only\s+(?P<targets>[\w\s]+?)\s*$")
SET_LINE = re.compile(r"^(CONFIG_[A-Za-z0-9_]+)=(.*)$")
UNSET_LINE = re.compile(r"^#\s*(CONFIG_[A-Za-z0-9_]+) is not set\s*$")
# The values a Kconfig symbol can take, written as a .config writes them: a tristate, a
# decimal or hex number, or a double-quoted string (backslash escapes inside). Anything else
# Kconfig drops with a warning in the middle of a build log; rig says so before building.
VALUE = re.compile(r'^(y|m|n|-?[0-9]+|0[xX][0-9a-fA-F]+|"(?:[^"\\]|\\.)*")$')


@dataclass(frozen=True)
class Setting:
    """One symbol a fragment asks for."""

    symbol: str  # without the CONFIG_ prefix
    value: str  # "y", "n", "m", a number or a quoted string, as written
    optional: bool
    origin: str  # "file:line", for messages
    only: tuple[str, ...] = ()  # the targets (rig.target names) this line is for; empty: all

    def applies_to(self, target: str) -> bool:
        return not self.only or target in self.only


@dataclass(frozen=True)
class Miss:
    """An asked-for symbol the resulting .config does not have as asked."""

    setting: Setting
    actual: str | None  # value in .config, None when absent
    reason: str
    absent: bool = False  # no Kconfig entry: this kernel version does not have the symbol

    def describe(self) -> str:
        got = "not set" if self.actual in (None, "n") else f"={self.actual}"
        optional = ", optional" if self.setting.optional else ""
        return f"CONFIG_{self.setting.symbol}={self.setting.value} ({self.setting.origin}{optional}): {got}; {self.reason}"


@dataclass(frozen=True)
class Profile:
    name: str
    description: str
    fragments: tuple[Path, ...]


# --- fragments and profiles -----------------------------------------------------------


def parse_fragment(path: Path) -> list[Setting]:
    """Settings of one fragment; a `# rig: optional` line marks the next setting optional,
    a `# rig: only TARGET...` line makes it apply to those targets only."""
    try:
        lines = path.read_text().splitlines()
    except OSError as exc:
        raise UserError(f"cannot read config fragment {path}: {exc.strerror}",
                        hint="pass --config with a readable file of CONFIG_FOO=y lines") from exc
    except UnicodeDecodeError as exc:
        raise UserError(f"config fragment {path} is not a text file (byte {exc.start} is not UTF-8)",
                        hint="pass --config with a text file of CONFIG_FOO=y lines") from exc
    settings: list[Setting] = []
    optional_next = False
    only_next: tuple[str, ...] = ()
    for number, raw in enumerate(lines, 1):
        line = raw.strip()
        origin = f"{path.name}:{number}"
        if OPTIONAL_TAG.match(line):
            optional_next = True
            continue
        if only := ONLY_TAG.match(line):
            only_next = tuple(only.group("targets").split())
            continue
        if unset := UNSET_LINE.match(line):
            settings.append(Setting(unset.group(1)[len("CONFIG_"):], "n", optional_next, origin, only_next))
        elif assign := SET_LINE.match(line):
            value = assign.group(2).strip()
            if not VALUE.match(value):
                raise UserError(f"{path}:{number}: {assign.group(1)}={value!r} is not a value Kconfig takes",
                                hint="give y, m or n, a number (decimal or 0x hex), or a string in double "
                                     "quotes, as in CONFIG_CMDLINE=\"console=ttyS0\"")
            settings.append(Setting(assign.group(1)[len("CONFIG_"):], value, optional_next, origin, only_next))
        elif line and not line.startswith("#"):
            raise UserError(f"{path}:{number} is not a kernel config line: {raw!r}",
                            hint="fragments hold lines like CONFIG_FOO=y or '# CONFIG_FOO is not set'")
        else:
            continue
        optional_next, only_next = False, ()
    return settings


def load_profiles(configs_dir: Path = CONFIGS_DIR) -> dict[str, Profile]:
    data = tomllib.loads((configs_dir / "profiles.toml").read_text())
    profiles = {}
    for name, entry in data.items():
        fragments = tuple(configs_dir / f"{fragment}.config" for fragment in entry["fragments"])
        profiles[name] = Profile(name, entry.get("description", ""), fragments)
    return profiles


def profile(name: str, configs_dir: Path = CONFIGS_DIR) -> Profile:
    profiles = load_profiles(configs_dir)
    if name not in profiles:
        raise UserError(f"unknown profile '{name}'",
                        hint=f"pass --profile as one of: {', '.join(profiles)}")
    return profiles[name]


def merge(fragments: list[Path], *, target: str) -> dict[str, Setting]:
    """Settings by symbol for one target (a rig.target name); a later fragment wins, as
    with merge_config.sh. Lines marked for other targets are left out."""
    merged: dict[str, Setting] = {}
    for fragment in fragments:
        for setting in parse_fragment(fragment):
            if not setting.applies_to(target):
                continue
            merged.pop(setting.symbol, None)  # keep the order of the last mention
            merged[setting.symbol] = setting
    return merged


def render(settings: dict[str, Setting]) -> str:
    """The merged fragment as KCONFIG_ALLCONFIG reads it."""
    lines = []
    for s in settings.values():
        lines.append(f"# CONFIG_{s.symbol} is not set" if s.value == "n" else f"CONFIG_{s.symbol}={s.value}")
    return "\n".join(lines) + "\n"


def fragments_digest(fragments: list[Path]) -> str:
    return cache.digest([f.name.encode() + b"\0" + f.read_bytes() for f in fragments])


# --- reading a .config and the Kconfig tree -------------------------------------------


def read_config(path: Path) -> dict[str, str]:
    """Symbol -> value of a .config ("n" for '# CONFIG_X is not set')."""
    values: dict[str, str] = {}
    for line in path.read_text(errors="replace").splitlines():
        if assign := SET_LINE.match(line):
            values[assign.group(1)[len("CONFIG_"):]] = assign.group(2)
        elif unset := UNSET_LINE.match(line):
            values[unset.group(1)[len("CONFIG_"):]] = "n"
    return values


def kconfig_definitions(tree: Path, arch: str) -> dict[str, list[str]]:
    """Symbol -> the text of each of its `config`/`menuconfig` blocks in the tree's Kconfig
    files: the generic ones and those of arch/<arch>/ (a Target's kconfig_arch)."""
    definitions: dict[str, list[str]] = {}
    for path in _kconfig_files(tree, arch):
        current: str | None = None
        block: list[str] = []
        for line in path.read_text(errors="replace").splitlines():
            head = re.match(r"^\s*(?:menu)?config\s+([A-Za-z0-9_]+)\s*$", line)
            ends = re.match(r"^\s*(?:config|menuconfig|menu|endmenu|choice|endchoice|if|endif|source|comment)\b", line)
            if head or ends:
                if current is not None:
                    definitions.setdefault(current, []).append("\n".join(block))
                current, block = (head.group(1), []) if head else (None, [])
                continue
            if current is not None:
                block.append(line)
        if current is not None:
            definitions.setdefault(current, []).append("\n".join(block))
    return definitions


def _kconfig_files(tree: Path, arch: str) -> list[Path]:
    # Only the target's architecture: a symbol another architecture defines is not one
    # this build can have.
    skip_top = {".git", "Documentation", "tools", "samples"}
    found = []
    for dirpath, subdirs, files in os.walk(tree):
        directory = Path(dirpath)
        if directory == tree:
            subdirs[:] = [d for d in subdirs if d not in skip_top]
        elif directory == tree / "arch":
            subdirs[:] = [d for d in subdirs if d == arch]
        found += [directory / f for f in files if f.startswith("Kconfig")]
    return found


# --- verification ---------------------------------------------------------------------


def _matches(wanted: str, actual: str | None) -> bool:
    if wanted == "n":
        return actual in (None, "n")
    if actual is None:
        return False
    return wanted.strip('"') == actual.strip('"')


def _dependencies(blocks: list[str]) -> list[str]:
    deps = []
    for block in blocks:
        deps += [m.strip() for m in re.findall(r"^\s*depends on\s+(.*)$", block, re.M)]
    return deps


_TRISTATE = {"n": 0, "m": 1, "y": 2}
_TOKEN = re.compile(r"\s*(\|\||&&|!=|<=|>=|[!()=<>]|\"[^\"]*\"|'[^']*'|\$\([^)]*\)|[A-Za-z0-9_.+-]+)")


def _tokens(expression: str) -> list[str]:
    tokens, position = [], 0
    expression = expression.split("#", 1)[0].strip()
    while position < len(expression):
        match = _TOKEN.match(expression, position)
        if match is None:
            raise ValueError(f"cannot read Kconfig expression {expression!r}")
        tokens.append(match.group(1))
        position = match.end()
    return tokens


def evaluate(expression: str, config: dict[str, str]) -> int:
    """Kconfig's tristate value (0 n, 1 m, 2 y) of a `depends on` expression under `config`."""
    tokens = _tokens(expression)
    position = 0

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    def take() -> str:
        nonlocal position
        position += 1
        return tokens[position - 1]

    def text(token: str) -> str:
        if token[0] in "\"'":
            return token[1:-1]
        if token in _TRISTATE:
            return token
        return config.get(token, "n" if re.fullmatch(r"[A-Z0-9_]+", token) and not token.isdigit() else token)

    def primary() -> int:
        token = take()
        if token == "(":
            value = disjunction()
            take()  # ")"
            return value
        if peek() in ("=", "!=", "<", ">", "<=", ">="):
            op, left, right = take(), text(token), text(take())
            if op in ("=", "!="):
                return 2 if (left == right) == (op == "=") else 0
            try:
                a, b = float(int(left, 0)), float(int(right, 0))
            except ValueError:
                a, b = _TRISTATE.get(left, 0), _TRISTATE.get(right, 0)
            return 2 if {"<": a < b, ">": a > b, "<=": a <= b, ">=": a >= b}[op] else 0
        return _TRISTATE.get(text(token), 0)

    def negation() -> int:
        if peek() == "!":
            take()
            return 2 - negation()
        return primary()

    def conjunction() -> int:
        value = negation()
        while peek() == "&&":
            take()
            value = min(value, negation())
        return value

    def disjunction() -> int:
        value = conjunction()
        while peek() == "||":
            take()
            value = max(value, conjunction())
        return value

    return disjunction()


def _unmet(deps: list[str], config: dict[str, str]) -> list[str]:
    """The `depends on` lines that are false under `config`, each with its symbols' values."""
    unmet = []
    for dep in deps:
        try:
            if evaluate(dep, config) > 0:
                continue
        except (ValueError, IndexError):
            pass  # an expression rig cannot read: show it as it is
        symbols = dict.fromkeys(re.findall(r"\b[A-Z][A-Z0-9_]*\b", dep))
        values = ", ".join(f"{sym}={config.get(sym, 'n')}" for sym in symbols)
        unmet.append(f"{dep} [{values}]" if values else dep)
    return unmet


def verify(settings: dict[str, Setting], config_path: Path, tree: Path, *, arch: str) -> list[Miss]:
    """Every asked-for symbol the .config lacks, each with why."""
    config = read_config(config_path)
    failed = [s for s in settings.values() if not _matches(s.value, config.get(s.symbol))]
    if not failed:
        return []
    definitions = kconfig_definitions(tree, arch)
    misses = []
    for setting in failed:
        actual = config.get(setting.symbol)
        blocks = definitions.get(setting.symbol)
        if not blocks:
            reason = "not in this kernel version (no Kconfig entry defines it)"
        else:
            deps = _dependencies(blocks)
            unmet = _unmet(deps, config)
            if setting.value == "n":
                reason = "another option selects it, or it has no prompt to turn it off"
            elif actual not in (None, "n"):
                reason = f"Kconfig chose {actual} (a range, a choice or a 'select' decided it)"
            elif unmet:
                reason = "unmet dependency: depends on " + "; and on ".join(unmet)
            elif not any(re.search(r"^\s*(bool|tristate|int|hex|string)\s+\"", b, re.M) for b in blocks):
                reason = "it has no prompt: only another option can select it"
            else:
                reason = "unmet dependency of the menu or 'if' block around it (see its Kconfig file)"
        misses.append(Miss(setting, actual, reason, absent=not blocks))
    return misses


def check(settings: dict[str, Setting], config_path: Path, tree: Path, config_label: str,
          *, arch: str) -> list[Miss]:
    """Raise UserError when a required symbol did not stick; return the optional misses."""
    misses = verify(settings, config_path, tree, arch=arch)
    required = [m for m in misses if not m.setting.optional]
    if required:
        # Only the required misses: an optional option this version lacks is expected here.
        listing = "\n    ".join(m.describe() for m in required)
        raise UserError(
            f"{len(required)} required kernel option(s) did not stick in {config_label}:\n    {listing}",
            hint="add the missing dependencies to your --config fragment, mark version-specific lines "
                 "with a '# rig: optional' line above them, or drop them",
        )
    return misses
