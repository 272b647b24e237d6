"""`rig completion`: print a shell completion script for rig (bash or zsh)."""

from __future__ import annotations

import argparse

from rig.completion import SHELLS

NAME = "completion"
HELP = "print a shell completion script: subcommands, options, plans, profiles, GPU models"
ORDER = 90
EXAMPLES = [
    "source <(rig completion bash)",
    "rig completion bash > ~/.local/share/bash-completion/completions/rig",
    "source <(rig completion zsh)",
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("shell", choices=sorted(SHELLS), help="the shell to complete in")


def run(args: argparse.Namespace) -> int:
    from rig.cli import build_parser

    print(SHELLS[args.shell](build_parser()), end="")
    return 0
