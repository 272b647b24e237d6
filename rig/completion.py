"""Shell completion scripts for rig, generated from its own argument parser.

The script is static: every subcommand, option and known value is written into it when
`rig completion bash|zsh` runs, so completing costs the shell nothing (no Python start per
Tab). Values come from where rig itself reads them: plans shipped with rig, profiles in
kernel-configs/profiles.toml, each architecture's GPU models, Debian kernels, image
recipes and pressure kinds. A `.toml` plan or recipe, a series, a kernel image or a
directory complete as file names.
"""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Callable
from dataclasses import dataclass

# How an option's value completes when argparse has no choices for it.
FILES = "@files"
DIRS = "@dirs"


def _plans() -> list[str]:
    from rig.plan import shipped_plans

    return sorted(shipped_plans())


def _profiles() -> list[str]:
    from rig.kconfig import load_profiles

    return sorted(load_profiles())


def _gpus() -> list[str]:
    from rig.target import TARGETS

    return sorted({gpu for target in TARGETS.values() for gpu in target.gpus})


def _kernels() -> list[str]:
    from rig.source import DEBIAN_KERNELS

    return [f"debian:{version}" for version in DEBIAN_KERNELS]


def _recipes() -> list[str]:
    from rig.image import IMAGES_DIR

    return sorted(p.stem for p in IMAGES_DIR.glob("*.toml"))


def _pressures() -> list[str]:
    from rig.workloads.pressure import KINDS

    return list(KINDS)


# Option (by its dest) -> the words it completes to; a word list may end in FILES or DIRS
# when a path is also an answer (a plan file, a kernel checkout).
VALUES: dict[str, Callable[[], list[str]]] = {
    "plan": lambda: [*_plans(), FILES],
    "profile": _profiles,
    "gpu": _gpus,
    "kernel": lambda: [*_kernels(), DIRS],
    "image": lambda: [*_recipes(), FILES],
    "pressure": _pressures,
}
PATH_OPTIONS = {"series": FILES, "bzimage": FILES, "config": FILES, "extra_configs": FILES, "out": DIRS,
                "baseline": DIRS, "log": FILES}


@dataclass(frozen=True)
class Command:
    """One (sub)command as the shell sees it: its words after `rig`, options, values."""

    path: tuple[str, ...]  # ("image", "build")
    subcommands: tuple[str, ...]
    options: tuple[str, ...]
    values: dict[str, tuple[str, ...]]  # option -> its words (FILES/DIRS markers included)
    flags: frozenset[str]  # options that take no value


def _option_values(action: argparse.Action) -> tuple[str, ...] | None:
    if action.nargs == 0:
        return None
    if action.choices is not None:
        return tuple(str(c) for c in action.choices)
    if action.dest in VALUES:
        return tuple(VALUES[action.dest]())
    path = PATH_OPTIONS.get(action.dest)
    return (path,) if path else ()  # a number, a revision, a kernel argument: nothing to offer


def commands(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()) -> list[Command]:
    """Every command of the parser tree, depth first."""
    options: list[str] = []
    values: dict[str, tuple[str, ...]] = {}
    flags: set[str] = set()
    subparsers: dict[str, argparse.ArgumentParser] = {}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            subparsers.update(action.choices)
            continue
        for option in action.option_strings:
            options.append(option)
            found = _option_values(action)
            if found is None:
                flags.add(option)
            else:
                values[option] = found
    out = [Command(path, tuple(subparsers), tuple(options), values, frozenset(flags))]
    for name, sub in subparsers.items():
        out += commands(sub, (*path, name))
    return out


def _reply(words: tuple[str, ...]) -> str:
    """The bash statements that complete one value list."""
    plain = " ".join(w for w in words if w not in (FILES, DIRS))
    parts = ["COMPREPLY=()"]
    if plain:
        parts.append(f'COMPREPLY=($(compgen -W {shlex.quote(plain)} -- "$cur"))')
    if FILES in words or DIRS in words:
        parts.append(f'COMPREPLY+=($(compgen {"-f" if FILES in words else "-d"} -- "$cur"))')
    return "; ".join(parts)


# The words come from the line itself, not COMP_WORDS: bash splits "debian:6.1" at the
# colon (COMP_WORDBREAKS), and the prefix up to the colon is taken off the answers again.
_BASH_HEAD = """\
# rig's bash completion, made by `rig completion bash`. Load it with
#   source <(rig completion bash)
# or save it as ~/.local/share/bash-completion/completions/rig
_rig() {
    local line=${COMP_LINE:0:COMP_POINT} cur prev cmd= i w n
    local -a words
    read -ra words <<< "$line"
    [[ $line == *[[:space:]] ]] && words+=("")
    n=${#words[@]}
    cur=${words[n-1]}
    prev=${words[n-2]}
    # the (sub)command typed so far; options and their values are skipped
    for ((i = 1; i < n - 1; i++)); do
        w=${words[i]}
        [[ $w == -- ]] && return 0   # a guest command follows: not rig's words
        [[ $w == -* ]] && continue
        case "$cmd/$w" in
"""
_BASH_TAIL = """\
    if [[ $cur == *:* && $COMP_WORDBREAKS == *:* ]]; then
        local colon=${cur%"${cur##*:}"}
        COMPREPLY=("${COMPREPLY[@]#"$colon"}")
    fi
}
complete -o filenames -F _rig rig
"""


def bash(parser: argparse.ArgumentParser) -> str:
    """A bash completion script (zsh reads it through bashcompinit)."""
    table = commands(parser)
    lines = [_BASH_HEAD.rstrip("\n")]
    for command in table:
        for sub in command.subcommands:
            here = "/".join(command.path)
            lines.append(f"            {shlex.quote(here + '/' + sub)}) cmd={shlex.quote('/'.join((*command.path, sub)))} ;;")
    lines += ["        esac", "    done", '    case "$cmd $prev" in']
    for command in table:
        key = "/".join(command.path)
        for option, words in command.values.items():
            lines.append(f"        {shlex.quote(key + ' ' + option)}) {_reply(words)} ;;")
    lines += ['        *) case "$cmd" in']
    for command in table:
        options = shlex.quote(" ".join(command.options))
        # after a command with subcommands comes a subcommand, else a file (a log, a guest command)
        other = (f'COMPREPLY=($(compgen -W {shlex.quote(" ".join(command.subcommands))} -- "$cur"))'
                 if command.subcommands else 'COMPREPLY=($(compgen -f -- "$cur"))')
        pattern = shlex.quote("/".join(command.path)) if command.path else "''"
        lines.append(f'            {pattern}) if [[ $cur == -* ]]; then COMPREPLY=($(compgen -W {options} -- "$cur")); '
                     f"else {other}; fi ;;")
    lines += ["           esac ;;", "    esac", _BASH_TAIL]
    return "\n".join(lines)


def zsh(parser: argparse.ArgumentParser) -> str:
    """zsh runs the bash script through its bashcompinit layer."""
    return ("#compdef rig\n"
            "# rig's zsh completion, made by `rig completion zsh`; load it with  source <(rig completion zsh)\n"
            "autoload -U +X bashcompinit && bashcompinit\n"
            + bash(parser))


SHELLS: dict[str, Callable[[argparse.ArgumentParser], str]] = {"bash": bash, "zsh": zsh}
