"""rig's command line: the only place that prints results or chooses an exit code.

Each subcommand is a module in `rig.commands` with:
    NAME: str, HELP: str (one line), EXAMPLES: list[str], ORDER: int
    add_arguments(parser) -> None
    run(args) -> int
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import signal
import sys
import traceback
from types import ModuleType

import rig.commands
from rig import __version__
from rig.errors import RigError, Terminated, disk_full, raise_terminated

EXIT_OK, EXIT_KERNEL, EXIT_USER, EXIT_HOST, EXIT_BUG, EXIT_INTERRUPTED = 0, 1, 2, 3, 4, 130

DESCRIPTION = """\
rig builds a kernel with your patch series, boots it under QEMU with a GPU device
model, runs IGT and KUnit under memory pressure, and tells you which lockdep,
kmemleak, KASAN, WARN and hang reports your series introduced.

exit codes: 0 clean, 1 kernel problem found, 2 bad input, 3 host problem, 4 rig bug
"""


def _command_modules() -> list[ModuleType]:
    modules = [
        importlib.import_module(f"rig.commands.{info.name}")
        for info in pkgutil.iter_modules(rig.commands.__path__)
        if not info.name.startswith("_")
    ]
    return sorted(modules, key=lambda m: (getattr(m, "ORDER", 50), m.NAME))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rig", description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action="version", version=f"rig {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for module in _command_modules():
        examples = "\n".join(f"  {line}" for line in module.EXAMPLES)
        cmd = sub.add_parser(
            module.NAME,
            help=module.HELP,
            description=module.HELP,
            epilog=f"examples:\n{examples}" if examples else None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(cmd)
        cmd.set_defaults(_run=module.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = _handle_sigterm()
    try:
        return int(args._run(args))
    except RigError as exc:
        print(exc.render(), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt as exc:
        how = "terminated (SIGTERM)" if isinstance(exc, Terminated) else "interrupted"
        print(f"rig: {how}; everything collected so far is kept in the run directory", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        return EXIT_OK
    except Exception as exc:
        if (full := disk_full(exc)) is not None:
            print(full.render(), file=sys.stderr)
            return full.exit_code
        traceback.print_exc()
        print("rig: internal error: this is a bug in rig; please report it with the traceback above",
              file=sys.stderr)
        return EXIT_BUG
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _handle_sigterm() -> signal.Handlers | object | None:
    """SIGTERM becomes Terminated (a KeyboardInterrupt) for the length of the command, so
    it stops what rig started the way Ctrl-C does, in every phase (a build's make, an
    image's mmdebstrap, a guest); the handler it replaced, or None where none can be
    installed (not the main thread: rig called from a library)."""
    try:
        return signal.signal(signal.SIGTERM, raise_terminated)
    except ValueError:
        return None
