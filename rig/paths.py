"""Paths as users write them on the command line and in matrix files."""

from __future__ import annotations

from pathlib import Path

from rig.errors import UserError


def user_path(text: str) -> Path:
    """`text` with a leading ~ or ~user expanded, as a shell would; left as written when
    there is no such user or home (Path.expanduser raises then), so the path is simply
    one that does not exist, and the caller's own check names it. A NUL character (which
    no file name holds, and which the OS refuses in a path) is bad input of its own."""
    if "\0" in text:
        raise UserError(f"{text!r} holds a NUL character, which no path can", hint="remove it")
    path = Path(text)
    try:
        return path.expanduser()
    except RuntimeError:
        return path
